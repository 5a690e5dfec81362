//! Output heads: genre logits (multi-label) and a standardized rating.

use crate::cpu_kernels::dropout;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;

/// Maps an embedding to genre logits `[B, G]` and a standardized rating `[B]`
/// (the rating on the 0–10 scale is `mean + std * value`, see `RatingScale`).
#[derive(Module, Debug)]
pub struct OutputHead {
    dropout: Dropout,
    genre: Linear,
    rating: Linear,
}

impl OutputHead {
    pub fn new(embed_dim: usize, n_genres: usize, dropout: f64, device: &Device) -> Self {
        Self {
            dropout: DropoutConfig::new(dropout).init(),
            genre: LinearConfig::new(embed_dim, n_genres.max(1)).init(device),
            rating: LinearConfig::new(embed_dim, 1).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<1>) {
        let x = dropout(&self.dropout, x);
        let genre = self.genre.forward(x.clone());
        let rating = self.rating.forward(x).squeeze_dim(1);
        (genre, rating)
    }
}

/// Maps standardized ratings back to the 0–10 scale.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RatingScale {
    pub mean: f64,
    pub std: f64,
}

impl RatingScale {
    /// The training ratings' mean and standard deviation, as `prepare` fitted them.
    pub fn of(state: &cinefuse_data::prepared::PreprocessState) -> Self {
        Self {
            mean: state.rating_mean,
            std: state.rating_std,
        }
    }

    /// Whether the scale can map ratings back: `prepare` fits a mean on the 0–10 scale and a
    /// std of at least 0.001; a saved scale outside that was edited or damaged.
    pub fn check(&self) -> Result<(), String> {
        let Self { mean, std } = *self;
        if (0.0..=10.0).contains(&mean) && std.is_finite() && std > 0.0 {
            return Ok(());
        }
        Err(format!(
            "rating_scale = {{ mean = {mean}, std = {std} }}: expected a mean in 0..=10 and \
             a finite std > 0"
        ))
    }

    pub fn to_rating(&self, standardized: f32) -> f32 {
        ((f64::from(standardized) * self.std + self.mean).clamp(0.0, 10.0)) as f32
    }

    pub fn standardize(&self, rating: Tensor<1>) -> Tensor<1> {
        (rating - self.mean) / self.std
    }
}

#[cfg(test)]
mod tests {
    use super::RatingScale;

    #[test]
    fn a_rating_scale_that_cannot_map_ratings_back_is_refused() {
        assert!(
            RatingScale {
                mean: 6.5,
                std: 1.0
            }
            .check()
            .is_ok()
        );
        assert!(
            RatingScale {
                mean: 0.0,
                std: 1e-3
            }
            .check()
            .is_ok()
        );
        for (mean, std) in [
            (6.5, 0.0),
            (6.5, -1.0),
            (6.5, f64::NAN),
            (11.0, 1.0),
            (f64::INFINITY, 1.0),
        ] {
            let e = RatingScale { mean, std }.check().unwrap_err();
            assert!(e.starts_with("rating_scale = "), "{e}");
        }
    }
}

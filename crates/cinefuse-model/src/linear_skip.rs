//! The linear skip (`model.linear_skip`, as in "wide & deep", Cheng et al. 2016): one linear
//! map from every branch's skip features straight to the genre logits, added to the model's
//! own. On a few thousand movies a linear model on the frozen backbone features and the
//! metadata is a strong peer, best on rare genres (docs/RESULTS.md); with the skip the network
//! contains that linear model, and its deep part learns what the linear one misses.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

/// Each skip block's rows have about this norm, whatever the block's width, so that a wide
/// block (1,280 poster features) does not drown a narrow one, nor the other way round.
pub const BLOCK_NORM: f64 = 8.0;

/// Scales a block `[B, d]` of unit-variance columns to rows of norm about `BLOCK_NORM`.
pub fn skip_block(x: Tensor<2>) -> Tensor<2> {
    let d = x.dims()[1].max(1);
    x * (BLOCK_NORM / (d as f64).sqrt())
}

/// Each row shifted to mean 0 and scaled to variance 1 (a LayerNorm without parameters).
pub fn standardize_rows(x: Tensor<2>) -> Tensor<2> {
    let centred = x.clone() - x.mean_dim(1);
    let var = centred.clone().powi_scalar(2).mean_dim(1);
    centred / (var + 1e-5).sqrt()
}

#[derive(Module, Debug)]
pub struct LinearSkip {
    linear: Linear,
}

impl LinearSkip {
    /// `d_in`: the sum of the branches' skip widths.
    pub fn new(d_in: usize, n_genres: usize, device: &Device) -> Self {
        Self {
            linear: LinearConfig::new(d_in, n_genres.max(1)).init(device),
        }
    }

    /// Genre logits `[B, G]` from the branches' skip blocks, in branch order, each already
    /// zeroed for movies that lack its modality.
    pub fn forward(&self, blocks: Vec<Tensor<2>>) -> Tensor<2> {
        self.linear.forward(Tensor::cat(blocks, 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn blocks_have_the_same_row_norm_whatever_their_width() {
        let device = Device::default();
        for d in [4usize, 384, 1280] {
            let x = Tensor::<2>::from_data(
                TensorData::new(
                    (0..2 * d)
                        .map(|i| ((i * 37 % 11) as f32) * 0.3 - 1.0)
                        .collect(),
                    [2, d],
                ),
                &device,
            );
            let rows = skip_block(standardize_rows(x))
                .powi_scalar(2)
                .sum_dim(1)
                .sqrt()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            for norm in rows {
                assert!((f64::from(norm) - BLOCK_NORM).abs() < 1e-2, "d={d}: {norm}");
            }
        }
    }

    #[test]
    fn standardized_rows_have_mean_zero_and_unit_variance() {
        let device = Device::default();
        let x = Tensor::<2>::from_data([[1.0f32, 2.0, 3.0, 10.0], [0.1, 0.1, 0.2, 0.2]], &device);
        let s = standardize_rows(x);
        let mean = s
            .clone()
            .mean_dim(1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let var = s
            .powi_scalar(2)
            .mean_dim(1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for (m, v) in mean.iter().zip(&var) {
            assert!(m.abs() < 1e-5 && (v - 1.0).abs() < 1e-2, "{m} {v}");
        }
    }
}

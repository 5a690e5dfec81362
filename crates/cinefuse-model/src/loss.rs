//! Training loss: BCE-with-logits for genres (optional per-genre `pos_weight`) and Huber or
//! MSE for the standardized rating, each masked by label presence and weighted from config.

use burn::config::Config;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RatingLoss {
    Huber,
    Mse,
}

#[derive(Config, Debug)]
pub struct LossConfig {
    #[config(default = 1.0)]
    pub genre_weight: f64,
    #[config(default = 1.0)]
    pub rating_weight: f64,
    #[config(default = "RatingLoss::Huber")]
    pub rating_loss: RatingLoss,
    /// Huber transition point, in standard deviations of the rating.
    #[config(default = 1.0)]
    pub huber_delta: f64,
    /// Weight positives of genre g by `neg_g / pos_g` (from the training counts), capped.
    #[config(default = false)]
    pub pos_weight: bool,
    #[config(default = 10.0)]
    pub pos_weight_max: f64,
    /// Weight of a listwise term beside the per-genre BCE: cross-entropy between the softmax
    /// over a movie's genre logits and its genres spread evenly (multi-label softmax). It scores
    /// genres against each other within a movie, which BCE never does; 0 leaves it out.
    #[config(default = 0.0)]
    pub listwise_weight: f64,
    /// Focal loss (Lin et al. 2017): each genre's BCE term times `(1 − p_t)^γ`, where `p_t` is
    /// the probability given to the right answer, so the many easy negatives of a rare genre
    /// weigh less. 0 is plain BCE.
    #[config(default = 0.0)]
    pub focal_gamma: f64,
}

impl LossConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.genre_weight < 0.0
            || self.rating_weight < 0.0
            || self.genre_weight + self.rating_weight == 0.0
        {
            return Err(format!(
                "loss.genre_weight = {}, loss.rating_weight = {}: expected non-negative weights, not both zero",
                self.genre_weight, self.rating_weight
            ));
        }
        if self.huber_delta <= 0.0 {
            return Err(format!(
                "loss.huber_delta = {}: expected > 0",
                self.huber_delta
            ));
        }
        if !self.listwise_weight.is_finite() || self.listwise_weight < 0.0 {
            return Err(format!(
                "loss.listwise_weight = {}: expected a finite number >= 0",
                self.listwise_weight
            ));
        }
        if !(0.0..=5.0).contains(&self.focal_gamma) {
            return Err(format!(
                "loss.focal_gamma = {}: expected 0..=5",
                self.focal_gamma
            ));
        }
        if self.pos_weight_max < 1.0 {
            return Err(format!(
                "loss.pos_weight_max = {}: expected >= 1",
                self.pos_weight_max
            ));
        }
        Ok(())
    }

    /// Per-genre positive weights from training counts, or `None` when disabled.
    pub fn pos_weights(&self, train_counts: &[usize], n_train: usize) -> Option<Vec<f32>> {
        self.pos_weight.then(|| {
            train_counts
                .iter()
                .map(|&p| {
                    let neg = n_train.saturating_sub(p) as f64;
                    (neg / p.max(1) as f64).clamp(1.0, self.pos_weight_max) as f32
                })
                .collect()
        })
    }

    /// What predictions subtract from the genre logits before the sigmoid. Weighting a genre's
    /// positives by w moves the loss's optimum from logit(p) to logit(p) + ln w, so the trained
    /// logits overstate every up-weighted genre; ln w takes that back out. The thresholds
    /// absorb the shift, but rankings across genres (top-1, micro AP) do not. Empty when
    /// `pos_weight` is off.
    pub fn genre_logit_shift(&self, train_counts: &[usize], n_train: usize) -> Vec<f32> {
        self.pos_weights(train_counts, n_train)
            .map(|w| w.iter().map(|w| w.ln()).collect())
            .unwrap_or_default()
    }
}

/// The loss and its two components (already weighted into `total`).
#[derive(Debug, Clone)]
pub struct LossParts {
    pub total: Tensor<1>,
    pub genre: Tensor<1>,
    pub rating: Tensor<1>,
}

impl LossParts {
    /// (total, genre, rating) on the host, with one device read instead of three.
    pub fn values(&self) -> [f32; 3] {
        let v = Tensor::cat(
            vec![self.total.clone(), self.genre.clone(), self.rating.clone()],
            0,
        )
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("three f32 values");
        [v[0], v[1], v[2]]
    }
}

/// Numerically stable BCE with logits, per element: `[B, G]`.
pub fn bce_with_logits(
    logits: Tensor<2>,
    targets: Tensor<2>,
    pos_weight: Option<Tensor<1>>,
) -> Tensor<2> {
    // log(1 + e^{-x}) computed as softplus(-x) = max(-x, 0) + log(1 + e^{-|x|})
    let log_sig_neg =
        (logits.clone().neg().clamp_min(0.0)) + (logits.clone().abs().neg().exp() + 1.0).log();
    let coef = match pos_weight {
        Some(pw) => {
            let pw = pw.unsqueeze_dim::<2>(0);
            (targets.clone() * (pw - 1.0)) + 1.0
        }
        None => targets.ones_like(),
    };
    (targets.ones_like() - targets) * logits + coef * log_sig_neg
}

/// `(1 − p_t)^γ` per element `[B, G]`, with `p_t` the sigmoid's probability of the target.
pub fn focal_factor(logits: Tensor<2>, targets: Tensor<2>, gamma: f64) -> Tensor<2> {
    let p = burn::tensor::activation::sigmoid(logits);
    // 1 − p_t = p where the target is 0, 1 − p where it is 1.
    let miss = p.clone() + targets * (p * -2.0 + 1.0);
    miss.clamp_min(1e-12).powf_scalar(gamma)
}

/// Per row `[B]`: cross-entropy between `softmax(logits)` and the row's targets normalised to
/// sum to one; 0 for a row without positives (the caller's mask drops it anyway).
pub fn listwise_cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let log_p = burn::tensor::activation::log_softmax(logits, 1);
    let count = targets.clone().sum_dim(1).clamp_min(1.0);
    ((targets * log_p).sum_dim(1).neg() / count).squeeze_dim::<1>(1)
}

/// Mean of `values [B]` over rows where `mask [B]` is 1 (0 when no row counts). With
/// `rows`, the sum is divided by that count instead of the mask's own.
pub fn masked_mean_rows(values: Tensor<1>, mask: Tensor<1>, rows: Option<usize>) -> Tensor<1> {
    let sum = (values * mask.clone()).sum();
    match rows {
        Some(n) => sum / n.max(1) as f64,
        None => sum / mask.sum().clamp_min(1.0),
    }
}

/// Rows with genres and rows with a rating in a whole batch. A data-parallel shard divides
/// its loss sums by the batch's counts, so the shards' losses (and gradients) add up to the
/// batch's exactly, however the rows without a rating fall into shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossRows {
    pub genres: usize,
    pub rating: usize,
}

/// What a batch's predictions are scored against: multi-hot genres and standardized
/// ratings with their presence masks, the per-genre positive weights, and (data parallel) the
/// whole batch's row counts.
#[derive(Debug, Clone)]
pub struct LossTargets {
    pub genres: Tensor<2>,
    pub genres_present: Tensor<1>,
    pub rating_std: Tensor<1>,
    pub rating_present: Tensor<1>,
    pub pos_weight: Option<Tensor<1>>,
    pub rows: Option<LossRows>,
}

impl LossConfig {
    /// The losses of one head's genre logits and standardized rating against `targets`.
    pub fn compute(
        &self,
        genre_logits: Tensor<2>,
        rating_std_pred: Tensor<1>,
        targets: &LossTargets,
    ) -> LossParts {
        let LossTargets {
            genres,
            genres_present,
            rating_std: rating_std_target,
            rating_present,
            pos_weight,
            rows,
        } = targets.clone();
        let [_, g] = genre_logits.dims();
        let mut terms = bce_with_logits(genre_logits.clone(), genres.clone(), pos_weight);
        if self.focal_gamma > 0.0 {
            terms = terms * focal_factor(genre_logits.clone(), genres.clone(), self.focal_gamma);
        }
        let mut per_row = terms.sum_dim(1).squeeze_dim::<1>(1) / g.max(1) as f64;
        if self.listwise_weight > 0.0 {
            per_row = per_row + listwise_cross_entropy(genre_logits, genres) * self.listwise_weight;
        }
        let genre = masked_mean_rows(per_row, genres_present, rows.map(|r| r.genres));
        let diff = rating_std_pred - rating_std_target;
        let per_row = match self.rating_loss {
            RatingLoss::Mse => diff.powf_scalar(2.0),
            RatingLoss::Huber => {
                let d = self.huber_delta;
                let a = diff.abs();
                let quad = a.clone().clamp_max(d);
                let lin = a - quad.clone();
                quad.powf_scalar(2.0) * 0.5 + lin * d
            }
        };
        let rating = masked_mean_rows(per_row, rating_present, rows.map(|r| r.rating));
        let total = genre.clone() * self.genre_weight + rating.clone() * self.rating_weight;
        LossParts {
            total,
            genre,
            rating,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logit_shift_is_the_log_of_the_capped_positive_weight() {
        let loss = LossConfig::new()
            .with_pos_weight(true)
            .with_pos_weight_max(2.0);
        // 10 movies: 5 positives → w = 1, 4 → 1.5, 1 → 9 capped at 2.
        let shift = loss.genre_logit_shift(&[5, 4, 1], 10);
        let expected = [0.0f32, 1.5f32.ln(), 2.0f32.ln()];
        for (s, e) in shift.iter().zip(expected) {
            assert!((s - e).abs() < 1e-6, "{shift:?}");
        }
        assert_eq!(shift.len(), 3);
        assert!(LossConfig::new().genre_logit_shift(&[5, 4], 10).is_empty());
    }

    #[test]
    fn the_focal_factor_is_the_missed_probability_to_the_power_gamma() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_floats([[0.0, 2.0, -2.0]], &device);
        let targets = Tensor::<2>::from_floats([[1.0, 1.0, 1.0]], &device);
        let f = focal_factor(logits.clone(), targets, 2.0)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let miss = |x: f32| 1.0 - 1.0 / (1.0 + (-x).exp());
        for (got, x) in f.iter().zip([0.0f32, 2.0, -2.0]) {
            assert!((got - miss(x).powi(2)).abs() < 1e-5, "{got} at logit {x}");
        }
        // A negative target misses by p itself.
        let zeros = Tensor::<2>::from_floats([[0.0, 0.0, 0.0]], &device);
        let f = focal_factor(logits, zeros, 1.0)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!((f[1] - (1.0 - miss(2.0))).abs() < 1e-5, "{f:?}");
        for bad in [-0.5, 6.0, f64::NAN] {
            let e = LossConfig::new()
                .with_focal_gamma(bad)
                .validate()
                .unwrap_err();
            assert!(e.starts_with("loss.focal_gamma"), "{e}");
        }
    }

    #[test]
    fn the_focal_loss_weighs_an_easy_genre_less_than_a_hard_one() {
        let device = Device::flex();
        // One movie, two genres it has: one predicted confidently, one missed.
        let logits = Tensor::<2>::from_floats([[4.0, -1.0]], &device);
        let targets = LossTargets {
            genres: Tensor::<2>::from_floats([[1.0, 1.0]], &device),
            genres_present: Tensor::<1>::from_floats([1.0], &device),
            rating_std: Tensor::<1>::from_floats([0.0], &device),
            rating_present: Tensor::<1>::from_floats([0.0], &device),
            pos_weight: None,
            rows: None,
        };
        let rating = Tensor::<1>::from_floats([0.0], &device);
        let genre_loss = |gamma: f64| {
            let c = LossConfig::new().with_focal_gamma(gamma);
            c.compute(logits.clone(), rating.clone(), &targets)
                .genre
                .into_scalar::<f32>()
        };
        let (plain, focal) = (genre_loss(0.0), genre_loss(2.0));
        let bce = |x: f32| (1.0 + (-x).exp()).ln();
        assert!(
            (plain - (bce(4.0) + bce(-1.0)) / 2.0).abs() < 1e-5,
            "{plain}"
        );
        let miss = |x: f32| 1.0 - 1.0 / (1.0 + (-x).exp());
        let want = (bce(4.0) * miss(4.0).powi(2) + bce(-1.0) * miss(-1.0).powi(2)) / 2.0;
        assert!((focal - want).abs() < 1e-5, "{focal} vs {want}");
    }

    #[test]
    fn listwise_term_is_the_softmax_cross_entropy_against_the_spread_genres() {
        let device = Default::default();
        let logits = Tensor::<2>::from_floats([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], &device);
        let targets = Tensor::<2>::from_floats([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]], &device);
        let got = listwise_cross_entropy(logits, targets)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let lse = (2f64.exp() + 1.0 + (-1f64).exp()).ln();
        let want = 0.5 * ((lse - 2.0) + (lse - 0.0));
        assert!((got[0] as f64 - want).abs() < 1e-5, "{got:?} vs {want}");
        assert_eq!(got[1], 0.0, "a movie without genres adds nothing");
    }

    #[test]
    fn the_listwise_term_adds_to_the_genre_loss_only_when_weighted() {
        let device = Default::default();
        let targets = LossTargets {
            genres: Tensor::from_floats([[1.0, 0.0]], &device),
            genres_present: Tensor::from_floats([1.0], &device),
            rating_std: Tensor::from_floats([0.0], &device),
            rating_present: Tensor::from_floats([0.0], &device),
            pos_weight: None,
            rows: None,
        };
        let logits = || Tensor::<2>::from_floats([[0.0, 0.0]], &device);
        let rating = || Tensor::<1>::from_floats([0.0], &device);
        let plain = LossConfig::new()
            .compute(logits(), rating(), &targets)
            .values();
        let listwise = LossConfig::new()
            .with_listwise_weight(0.5)
            .compute(logits(), rating(), &targets)
            .values();
        // Two equal logits: softmax gives the positive 1/2, so the term is ln 2, weighted 0.5.
        let extra = listwise[1] - plain[1];
        assert!(
            (extra - 0.5 * 2f32.ln()).abs() < 1e-5,
            "{plain:?} {listwise:?}"
        );
        assert!(
            LossConfig::new()
                .with_listwise_weight(-1.0)
                .validate()
                .is_err()
        );
    }
}

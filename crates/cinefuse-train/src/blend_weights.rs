//! The weights of a blend, learned on out-of-fold predictions by greedy ensemble selection
//! (Caruana, Niculescu-Mizil, Crew & Ksikes 2004; AutoGluon's weighted ensemble does the same):
//! start from nothing and, round after round, add (with replacement) the model whose inclusion
//! most lowers the loss of the running average. A model's weight is the share of rounds that
//! chose it, so weights are non-negative, sum to 1, and a model that only adds noise gets none.
//! Few rounds keep the weights coarse, which is itself a guard against fitting the noise of
//! the out-of-fold movies.

/// Selection rounds: weights are multiples of 1/25.
pub const ROUNDS: usize = 25;

/// Weights for the models whose predictions (the same flattened movies × outputs each) are
/// `preds`, minimising `loss` of their weighted average. Ties go to the earlier model.
pub fn greedy_weights(preds: &[Vec<f32>], loss: impl Fn(&[f32]) -> f64, rounds: usize) -> Vec<f32> {
    let n = preds.first().map_or(0, Vec::len);
    let mut sum = vec![0f64; n];
    let mut counts = vec![0usize; preds.len()];
    for round in 1..=rounds {
        let average_with = |m: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((sum[i] + f64::from(preds[m][i])) / round as f64) as f32)
                .collect()
        };
        let Some(best) = (0..preds.len())
            .map(|m| (m, loss(&average_with(m))))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(m, _)| m)
        else {
            break;
        };
        counts[best] += 1;
        for (s, p) in sum.iter_mut().zip(&preds[best]) {
            *s += f64::from(*p);
        }
    }
    counts
        .iter()
        .map(|c| *c as f32 / rounds.max(1) as f32)
        .collect()
}

/// Mean binary cross-entropy of probabilities against 0/1 targets (clamped away from 0 and 1).
pub fn log_loss(probs: &[f32], targets: &[f32]) -> f64 {
    let eps = 1e-6;
    let total: f64 = probs
        .iter()
        .zip(targets)
        .map(|(p, t)| {
            let p = f64::from(*p).clamp(eps, 1.0 - eps);
            let t = f64::from(*t);
            -(t * p.ln() + (1.0 - t) * (1.0 - p).ln())
        })
        .sum();
    total / probs.len().max(1) as f64
}

pub fn mean_abs_error(pred: &[f32], truth: &[f32]) -> f64 {
    let total: f64 = pred
        .iter()
        .zip(truth)
        .map(|(p, t)| f64::from((p - t).abs()))
        .sum();
    total / pred.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_better_model_gets_the_weight_and_noise_gets_none() {
        let truth = vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let good = vec![0.9, 0.1, 0.8, 0.2, 0.9, 0.1];
        let noise = vec![0.5, 0.9, 0.1, 0.8, 0.4, 0.6];
        let w = greedy_weights(&[noise, good], |p| log_loss(p, &truth), ROUNDS);
        assert_eq!(w, vec![0.0, 1.0]);
    }

    #[test]
    fn two_models_with_opposite_errors_are_mixed_evenly() {
        let truth = vec![5.0, 6.0, 7.0, 8.0];
        let high: Vec<f32> = truth.iter().map(|t| t + 1.0).collect();
        let low: Vec<f32> = truth.iter().map(|t| t - 1.0).collect();
        let w = greedy_weights(&[high, low], |p| mean_abs_error(p, &truth), 24);
        assert_eq!(w, vec![0.5, 0.5]);
        assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn a_partly_useful_model_gets_a_partial_weight() {
        // The average of a and b is better than either alone, but b is worse than a.
        let truth = vec![0.0, 0.0, 0.0, 0.0];
        let a = vec![1.0, -1.0, 1.0, -1.0];
        let b = vec![-1.5, 1.5, -1.5, 1.5];
        let w = greedy_weights(&[a, b], |p| mean_abs_error(p, &truth), ROUNDS);
        assert!(w[0] > w[1] && w[1] > 0.0, "{w:?}");
    }

    #[test]
    fn losses_are_the_textbook_values() {
        assert!((log_loss(&[0.5], &[1.0]) - std::f64::consts::LN_2).abs() < 1e-9);
        assert!(log_loss(&[0.0], &[1.0]).is_finite());
        assert_eq!(mean_abs_error(&[1.0, 3.0], &[2.0, 2.0]), 1.0);
    }
}

//! Logistic stacking of a blend's genre probabilities: per genre, a logistic regression on the
//! parts' logits, learned on their out-of-fold predictions. Unlike one weight per part it lets
//! each genre trust each part differently (the plot-neighbour vote is sharp for a rare genre
//! told by a few alike plots, and blunt for a common one), and it recalibrates the sum.
//!
//! The fit is L2-penalised Newton–Raphson (scikit-learn's `LogisticRegression(C)` objective:
//! ½‖w‖² + C·Σ log loss, the bias unpenalised); with a handful of inputs per genre it converges
//! in a few steps.

use serde::{Deserialize, Serialize};

use crate::predictions::Predictions;

/// The inverse penalty, as scikit-learn's `C`; chosen out of fold (`scripts/oof_probes.py`).
pub const STACKING_C: f64 = 0.1;

/// Probabilities are clipped this far from 0 and 1 before their logit is taken.
const EPS: f32 = 1e-6;

/// Per genre: one weight per part's logit, then the bias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenreStacking {
    pub coefficients: Vec<Vec<f32>>,
}

fn logit(p: f32) -> f64 {
    let p = f64::from(p.clamp(EPS, 1.0 - EPS));
    (p / (1.0 - p)).ln()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl GenreStacking {
    /// Learns the stacker from each part's probabilities `[movie × genre]` (the same labelled
    /// movies in each) and the 0/1 `targets` in the same layout.
    pub fn fit(parts: &[&[f32]], targets: &[f32], n_genres: usize) -> Self {
        let n = targets.len() / n_genres.max(1);
        let coefficients = (0..n_genres)
            .map(|g| {
                let x: Vec<Vec<f64>> = (0..n)
                    .map(|i| parts.iter().map(|p| logit(p[i * n_genres + g])).collect())
                    .collect();
                let y: Vec<f64> = (0..n)
                    .map(|i| f64::from(targets[i * n_genres + g]))
                    .collect();
                fit_logistic(&x, &y, STACKING_C)
                    .into_iter()
                    .map(|c| c as f32)
                    .collect()
            })
            .collect();
        Self { coefficients }
    }

    pub fn n_parts(&self) -> usize {
        self.coefficients
            .first()
            .map_or(0, |c| c.len().saturating_sub(1))
    }

    /// Each part's logit weight averaged over the genres: how much the stacking leans on it.
    pub fn mean_weights(&self) -> Vec<f32> {
        let n = self.coefficients.len().max(1) as f32;
        (0..self.n_parts())
            .map(|p| self.coefficients.iter().map(|c| c[p]).sum::<f32>() / n)
            .collect()
    }

    /// The stacked probabilities `[movie × genre]` from each part's.
    pub fn apply(&self, parts: &[&[f32]], n_genres: usize) -> Vec<f32> {
        let len = parts.first().map_or(0, |p| p.len());
        (0..len)
            .map(|j| {
                let c = &self.coefficients[j % n_genres];
                let (w, bias) = c.split_at(c.len() - 1);
                let z: f64 = parts
                    .iter()
                    .zip(w)
                    .map(|(p, w)| f64::from(*w) * logit(p[j]))
                    .sum::<f64>()
                    + f64::from(bias[0]);
                sigmoid(z) as f32
            })
            .collect()
    }

    /// The first inconsistency with `n_parts` parts and `n_genres` genres.
    pub fn check(&self, n_parts: usize, n_genres: usize) -> Result<(), String> {
        if self.coefficients.len() != n_genres {
            return Err(format!(
                "{} genres in the stacking, {n_genres} in the model",
                self.coefficients.len()
            ));
        }
        if self.coefficients.iter().any(|c| c.len() != n_parts + 1) {
            return Err(format!(
                "each genre's stacking needs {} coefficients (one per part and a bias)",
                n_parts + 1
            ));
        }
        if self.coefficients.iter().flatten().any(|c| !c.is_finite()) {
            return Err("a stacking coefficient is not finite".into());
        }
        Ok(())
    }
}

/// Member predictions of several parts for the same movies, combined: probabilities by the
/// stacking over the first parts when there is one (the genre weights then only mix modality
/// shares and losses), else by `genre_weights`; ratings by `rating_weights`.
pub fn combine(
    each: &[Predictions],
    (genre_weights, rating_weights): (&[f32], &[f32]),
    stacking: Option<&GenreStacking>,
) -> Predictions {
    let mut out = Predictions::weighted(each, genre_weights, rating_weights);
    if let Some(s) = stacking {
        let probs: Vec<&[f32]> = each[..s.n_parts()]
            .iter()
            .map(|p| p.probs.as_slice())
            .collect();
        out.probs = s.apply(&probs, out.n_genres);
        out.genre_shift = Vec::new();
    }
    out
}

/// Weights then bias of an L2-penalised logistic regression of `y` on the rows `x`. A genre
/// with only one class gets zero weights and the (clipped) base rate as its bias.
fn fit_logistic(x: &[Vec<f64>], y: &[f64], c: f64) -> Vec<f64> {
    let d = x.first().map_or(0, Vec::len);
    let mean = y.iter().sum::<f64>() / y.len().max(1) as f64;
    let mut beta = vec![0.0; d + 1];
    let base = f64::from(EPS).max(mean.min(1.0 - f64::from(EPS)));
    beta[d] = (base / (1.0 - base)).ln();
    if mean <= 0.0 || mean >= 1.0 {
        return beta;
    }
    let penalty = 1.0 / c;
    for _ in 0..100 {
        let (mut grad, mut hess) = (vec![0.0; d + 1], vec![vec![0.0; d + 1]; d + 1]);
        for (row, t) in x.iter().zip(y) {
            // The row with its constant 1 for the bias.
            let xs: Vec<f64> = row.iter().copied().chain([1.0]).collect();
            let p = sigmoid(xs.iter().zip(&beta).map(|(a, b)| a * b).sum());
            let w = (p * (1.0 - p)).max(1e-12);
            for ((g, h), xa) in grad.iter_mut().zip(&mut hess).zip(&xs) {
                *g += (p - t) * xa;
                for (hab, xb) in h.iter_mut().zip(&xs) {
                    *hab += w * xa * xb;
                }
            }
        }
        for a in 0..d {
            grad[a] += penalty * beta[a];
            hess[a][a] += penalty;
        }
        let Some(step) = solve(hess, grad) else { break };
        let size = step.iter().map(|s| s.abs()).fold(0.0, f64::max);
        beta.iter_mut().zip(&step).for_each(|(b, s)| *b -= s);
        if size < 1e-9 {
            break;
        }
    }
    beta
}

/// `a⁻¹ b` by Gaussian elimination with partial pivoting; `None` when `a` is singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (top, below) = a.split_at_mut(col + 1);
        let pivot_row = &top[col];
        for (offset, r) in below.iter_mut().enumerate() {
            let f = r[col] / pivot_row[col];
            for (x, p) in r[col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
            b[col + 1 + offset] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - tail) / a[row][row];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newton_matches_the_closed_form_of_a_one_input_logistic_regression() {
        // Two groups at x = ±1 with 80 % and 20 % positives and no penalty to speak of: the
        // maximum-likelihood fit passes through both rates exactly, w = logit(0.8), b = 0.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for (v, positives) in [(1.0, 8), (-1.0, 2)] {
            for i in 0..10 {
                x.push(vec![v]);
                y.push(f64::from(i < positives));
            }
        }
        let beta = fit_logistic(&x, &y, 1e9);
        assert!((beta[0] - 4f64.ln()).abs() < 1e-6, "{beta:?}");
        assert!(beta[1].abs() < 1e-6, "{beta:?}");
        // A strong penalty pulls the weight towards 0.
        assert!(fit_logistic(&x, &y, 1e-3)[0].abs() < 0.1);
    }

    #[test]
    fn the_stacker_trusts_the_part_that_knows_and_ignores_noise() {
        // Genre 0 is told by part 0, genre 1 by part 1; each other part is a coin toss.
        let n = 400;
        let mut parts = [Vec::new(), Vec::new()];
        let mut targets = Vec::new();
        for i in 0..n {
            let (y0, y1) = (i % 2, (i / 2) % 2);
            let noise = ((i * 7919) % 97) as f32 / 97.0;
            parts[0].extend([if y0 == 1 { 0.8 } else { 0.2 }, 0.3 + 0.4 * noise]);
            parts[1].extend([0.3 + 0.4 * noise, if y1 == 1 { 0.9 } else { 0.1 }]);
            targets.extend([y0 as f32, y1 as f32]);
        }
        let views: Vec<&[f32]> = parts.iter().map(Vec::as_slice).collect();
        let s = GenreStacking::fit(&views, &targets, 2);
        assert!(s.check(2, 2).is_ok());
        let [g0, g1] = [&s.coefficients[0], &s.coefficients[1]];
        assert!(g0[0] > 1.0 && g0[1].abs() < 0.2, "{g0:?}");
        assert!(g1[1] > 1.0 && g1[0].abs() < 0.2, "{g1:?}");
        let p = s.apply(&views, 2);
        assert!(p[2] > 0.9 && p[0] < 0.1, "{:?}", &p[..4]);
    }

    #[test]
    fn mean_weights_average_each_parts_weight_over_the_genres_without_the_bias() {
        let s = GenreStacking {
            coefficients: vec![vec![1.0, 0.0, 5.0], vec![3.0, 2.0, -5.0]],
        };
        assert_eq!(s.mean_weights(), vec![2.0, 1.0]);
    }

    #[test]
    fn a_genre_without_positives_gets_its_base_rate() {
        let parts = [[0.3f32, 0.6, 0.2, 0.7].as_slice()];
        let s = GenreStacking::fit(&parts, &[0.0, 1.0, 0.0, 0.0], 2);
        assert_eq!(s.coefficients[0][0], 0.0);
        let p = s.apply(&parts, 2);
        assert!(p[0] < 1e-5, "{p:?}");
        assert!(s.check(2, 2).unwrap_err().contains("coefficients"));
    }
}

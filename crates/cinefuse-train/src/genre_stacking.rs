//! Logistic stacking of a blend's genre probabilities: per genre, a logistic regression on the
//! parts' logits, learned on their out-of-fold predictions. Unlike one weight per part it lets
//! each genre trust each part differently (the plot-neighbour vote is sharp for a rare genre
//! told by a few alike plots, and blunt for a common one), and it recalibrates the sum.
//!
//! Each genre's fit is an L2-penalised logistic regression (`logistic_fit.rs`, scikit-learn's
//! `LogisticRegression(C)` objective).

use serde::{Deserialize, Serialize};

use crate::logistic_fit::{fit_logistic, sigmoid};
use crate::predictions::Predictions;

/// The inverse penalty, as scikit-learn's `C`; chosen out of fold (`scripts/oof_probes.py`).
pub const STACKING_C: f64 = 0.1;

/// No sound stacking comes near this: its inputs are logits within ±14 and its weights are
/// penalised. A larger coefficient is a fit that ran away (before the fit was damped, a rare
/// genre's bias reached −7·10¹¹ and the genre was never predicted).
const MAX_COEFFICIENT: f32 = 1e3;

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
                fit_logistic(&x, &y, STACKING_C, f64::from(EPS))
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
        if let Some(g) = self
            .coefficients
            .iter()
            .position(|c| c.iter().any(|v| v.abs() > MAX_COEFFICIENT))
        {
            return Err(format!(
                "the stacking coefficients of genre {} of {n_genres}, {:?}, ran away \
                 (cinefuse before 2026-12-04 could fit them so; learn the blend again: remove \
                 its blend.json and run `cinefuse train --resume` on its folder)",
                g + 1,
                self.coefficients[g]
            ));
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

/// Replaces the stacked probabilities of the movies `picked` (by row) in `out` by
/// `stacking`'s stacking of the same parts `each`: a movie missing an input is stacked by the
/// stacking learnt without it (`plotless_stacking.rs`, `metadataless_stacking.rs`).
pub fn restack_movies(
    out: &mut Predictions,
    each: &[Predictions],
    stacking: &GenreStacking,
    picked: impl Fn(usize) -> bool,
) {
    let g = out.n_genres;
    let n = out.probs.len() / g.max(1);
    if !(0..n).any(&picked) {
        return;
    }
    let parts: Vec<&[f32]> = each[..stacking.n_parts()]
        .iter()
        .map(|p| p.probs.as_slice())
        .collect();
    let stacked = stacking.apply(&parts, g);
    for i in (0..n).filter(|i| picked(*i)) {
        out.probs[i * g..(i + 1) * g].copy_from_slice(&stacked[i * g..(i + 1) * g]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_stacking_that_ran_away_is_refused() {
        let mut s = GenreStacking {
            coefficients: vec![vec![0.4, 0.3, -2.0], vec![31.0, 29.7, -7.2e11]],
        };
        let e = s.check(2, 2).unwrap_err();
        assert!(e.contains("genre 2 of 2") && e.contains("ran away"), "{e}");
        s.coefficients[1][2] = -3.5;
        assert!(s.check(2, 2).is_ok());
    }
}

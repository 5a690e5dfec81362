//! Bootstrap confidence intervals for an evaluation's headline metrics: how far a score
//! measured on a few hundred test movies could move on another draw of movies like them.
//! Movies are resampled with replacement (the genre-labelled ones for the genre metrics, the
//! rated ones for the rating metrics), every metric is recomputed with the same thresholds,
//! and the interval is the percentile range of the resampled scores.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::metrics::{GenrePredictions, genre_metrics, rating_metrics};

/// Resamples `eval` draws unless told otherwise (`eval --bootstrap N`).
pub const DEFAULT_RESAMPLES: usize = 1000;
/// The intervals' nominal level.
pub const LEVEL: f64 = 0.95;
/// Fixed, so the same predictions always get the same intervals.
const SEED: u64 = 20_261_203;

/// Percentile intervals keyed by metric name (`micro_f1`, `top1`, `mae`, … as in the report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confidence {
    pub level: f64,
    pub resamples: usize,
    pub intervals: BTreeMap<String, [f64; 2]>,
}

impl Confidence {
    pub fn get(&self, metric: &str) -> Option<[f64; 2]> {
        self.intervals.get(metric).copied()
    }
}

/// Intervals for the genre metrics (at `thresholds`) and the rating metrics; `None` when
/// `resamples` is 0. A part with no labelled movies gets no intervals.
pub fn confidence(
    genres: &GenrePredictions,
    thresholds: &[f32],
    ratings: (&[f32], &[f32]),
    resamples: usize,
) -> Option<Confidence> {
    if resamples == 0 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut draws: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    if genres.rows() > 0 {
        for _ in 0..resamples {
            let m = genre_metrics(
                &resample_genres(genres, &draw(&mut rng, genres.rows())),
                thresholds,
                &[],
            );
            for (name, v) in [
                ("micro_f1", m.micro_f1),
                ("macro_f1", m.macro_f1),
                ("samples_f1", m.samples_f1),
                ("map", m.map),
                ("micro_ap", m.micro_ap),
                ("top1", m.top1),
            ] {
                draws.entry(name).or_default().push(v);
            }
        }
    }
    let (pred, truth) = ratings;
    if !pred.is_empty() {
        for _ in 0..resamples {
            let idx = draw(&mut rng, pred.len());
            let p: Vec<f32> = idx.iter().map(|&i| pred[i]).collect();
            let t: Vec<f32> = idx.iter().map(|&i| truth[i]).collect();
            let m = rating_metrics(&p, &t);
            for (name, v) in [
                ("mae", m.mae),
                ("rmse", m.rmse),
                ("r2", m.r2),
                ("within_10pct", m.within_10pct),
            ] {
                draws.entry(name).or_default().push(v);
            }
        }
    }
    let intervals = draws
        .into_iter()
        .map(|(name, mut v)| (name.to_string(), percentile_range(&mut v, LEVEL)))
        .collect();
    Some(Confidence {
        level: LEVEL,
        resamples,
        intervals,
    })
}

/// `n` row indices drawn uniformly with replacement.
fn draw(rng: &mut StdRng, n: usize) -> Vec<usize> {
    (0..n).map(|_| rng.random_range(0..n)).collect()
}

fn resample_genres(p: &GenrePredictions, rows: &[usize]) -> GenrePredictions {
    let g = p.n_genres;
    let pick = |v: &[f32]| -> Vec<f32> {
        rows.iter()
            .flat_map(|&i| v[i * g..(i + 1) * g].iter().copied())
            .collect()
    };
    GenrePredictions {
        n_genres: g,
        probs: pick(&p.probs),
        targets: pick(&p.targets),
        shift: p.shift.clone(),
    }
}

/// The central `level` range of `values` (sorted in place), by nearest rank.
fn percentile_range(values: &mut [f64], level: f64) -> [f64; 2] {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let tail = (1.0 - level) / 2.0;
    let lo = ((n as f64) * tail).floor() as usize;
    let hi = (((n as f64) * (1.0 - tail)).ceil() as usize).clamp(1, n) - 1;
    [values[lo.min(n - 1)], values[hi]]
}

/// A Wilson score interval for a share `hits / n` at `LEVEL` (the coverage of the rating
/// interval: one yes/no per movie, so no resampling is needed).
pub fn wilson(hits: usize, n: usize) -> Option<[f64; 2]> {
    if n == 0 {
        return None;
    }
    let z = 1.959_963_984_540_054_f64;
    let (n, p) = (n as f64, hits as f64 / n as f64);
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    Some([(centre - half).max(0.0), (centre + half).min(1.0)])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` movies, 3 genres: genre 0 always true and ranked first for the first `hits`
    /// movies; genre 1 ranked first (and false) for the rest.
    fn genres(n: usize, hits: usize) -> GenrePredictions {
        let mut probs = Vec::new();
        let mut targets = Vec::new();
        for i in 0..n {
            let first = if i < hits { 0 } else { 1 };
            for k in 0..3 {
                probs.push(if k == first { 0.9 } else { 0.2 });
                targets.push(if k == 0 { 1.0 } else { 0.0 });
            }
        }
        GenrePredictions {
            n_genres: 3,
            probs,
            targets,
            shift: Vec::new(),
        }
    }

    #[test]
    fn intervals_hold_the_estimate_and_narrow_with_more_movies() {
        let thr = [0.5f32; 3];
        let small = confidence(&genres(100, 80), &thr, (&[], &[]), 400).unwrap();
        let large = confidence(&genres(1600, 1280), &thr, (&[], &[]), 400).unwrap();
        let [lo, hi] = small.get("top1").unwrap();
        assert!(lo < 0.8 && 0.8 < hi, "{lo}..{hi}");
        // Binomial: ±1.96·√(0.16/100) ≈ ±0.078 on 100 movies, a quarter of that on 1,600.
        assert!((hi - lo) > 0.11 && (hi - lo) < 0.21, "{lo}..{hi}");
        let [llo, lhi] = large.get("top1").unwrap();
        assert!(llo < 0.8 && 0.8 < lhi);
        assert!((lhi - llo) < (hi - lo) / 3.0, "{llo}..{lhi} vs {lo}..{hi}");
        assert!(
            small.get("mae").is_none(),
            "no rated movies, no rating interval"
        );
    }

    #[test]
    fn the_same_predictions_get_the_same_intervals() {
        let (p, t) = ([5.0f32, 6.0, 7.5, 3.0, 8.0], [5.5f32, 6.0, 7.0, 4.0, 8.5]);
        let a = confidence(&genres(50, 30), &[0.5; 3], (&p, &t), 200).unwrap();
        let b = confidence(&genres(50, 30), &[0.5; 3], (&p, &t), 200).unwrap();
        assert_eq!(a, b);
        let [lo, hi] = a.get("mae").unwrap();
        assert!(
            lo <= 0.4 && 0.4 <= hi && lo >= 0.0 && hi <= 1.0,
            "{lo}..{hi}"
        );
        assert!(confidence(&genres(50, 30), &[0.5; 3], (&p, &t), 0).is_none());
    }

    #[test]
    fn a_perfect_score_has_no_spread() {
        let c = confidence(&genres(40, 40), &[0.5; 3], (&[], &[]), 100).unwrap();
        assert_eq!(c.get("top1"), Some([1.0, 1.0]));
        assert_eq!(c.get("micro_f1"), Some([1.0, 1.0]));
    }

    #[test]
    fn percentile_range_takes_the_central_share() {
        let mut v: Vec<f64> = (0..1000).rev().map(f64::from).collect();
        assert_eq!(percentile_range(&mut v, 0.95), [25.0, 974.0]);
        assert_eq!(percentile_range(&mut [3.0], 0.95), [3.0, 3.0]);
    }

    #[test]
    fn wilson_matches_the_textbook_interval() {
        // 90 of 100: Wilson 95 % interval 0.8256–0.9448.
        let [lo, hi] = wilson(90, 100).unwrap();
        assert!(
            (lo - 0.8256).abs() < 1e-3 && (hi - 0.9448).abs() < 1e-3,
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 0), None);
        assert_eq!(wilson(5, 5).unwrap()[1], 1.0);
    }
}

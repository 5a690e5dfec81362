//! Bootstrap confidence intervals for an evaluation's headline metrics: how far a score
//! measured on a few hundred test movies could move on another draw of movies like them.
//! Movies are resampled with replacement (the genre-labelled ones for the genre metrics, the
//! rated ones for the rating metrics), every metric is recomputed with the same thresholds,
//! and the interval is the percentile range of the resampled scores.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::metrics::{GenrePredictions, f1, rating_metrics};

/// Resamples `eval` draws unless told otherwise (`eval --bootstrap N`).
pub const DEFAULT_RESAMPLES: usize = 1000;
/// The most `eval --bootstrap` draws: 100 times the default, far past where the percentiles
/// settle; an extra digit or two would otherwise keep `eval` busy for hours.
pub const MAX_RESAMPLES: usize = 100_000;
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
        let table = GenreTable::new(genres, thresholds);
        for _ in 0..resamples {
            let m = table.metrics(&counts(&mut rng, genres.rows()));
            for (name, v) in GENRE_METRICS.iter().zip(m) {
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

/// The genre metrics a resample recomputes, in `GenreTable::metrics`' order.
const GENRE_METRICS: [&str; 6] = [
    "micro_f1",
    "macro_f1",
    "samples_f1",
    "map",
    "micro_ap",
    "top1",
];

/// What every resample of the genre-labelled movies reuses: each movie's decisions at the
/// fixed thresholds and its top-1 hit, and the score orders the average precisions walk. A
/// resample is then a count per movie, and each metric one weighted pass (no sorting), which
/// keeps 1,000 resamples of thousands of movies to seconds. Scores tied between different
/// movies keep their original order, which `genre_metrics` on a materialised resample could
/// break differently; nothing else differs (the tests compare the two).
struct GenreTable {
    g: usize,
    labels: Vec<bool>,
    /// `[N, G]` confusion cell of each decision: true positive, false positive, false negative.
    cells: Vec<Cell>,
    row_f1: Vec<f64>,
    top1_hit: Vec<bool>,
    /// Per genre, the movies by descending probability.
    genre_order: Vec<Vec<usize>>,
    /// All (movie, genre) pairs by descending probability.
    pair_order: Vec<usize>,
}

#[derive(Clone, Copy, PartialEq)]
enum Cell {
    Tp,
    Fp,
    Fn,
    Tn,
}

impl GenreTable {
    fn new(p: &GenrePredictions, thresholds: &[f32]) -> Self {
        let (n, g) = (p.rows(), p.n_genres);
        let labels: Vec<bool> = (0..n * g).map(|j| p.t(j / g, j % g)).collect();
        let cells: Vec<Cell> = (0..n * g)
            .map(
                |j| match (p.p(j / g, j % g) >= thresholds[j % g], labels[j]) {
                    (true, true) => Cell::Tp,
                    (true, false) => Cell::Fp,
                    (false, true) => Cell::Fn,
                    (false, false) => Cell::Tn,
                },
            )
            .collect();
        let row_f1 = (0..n)
            .map(|i| {
                let row = &cells[i * g..(i + 1) * g];
                let count = |c: Cell| row.iter().filter(|x| **x == c).count();
                f1(count(Cell::Tp), count(Cell::Fp), count(Cell::Fn))
            })
            .collect();
        let top1_hit = (0..n)
            .map(|i| {
                let best = (0..g).fold(0, |b, k| if p.p(i, k) > p.p(i, b) { k } else { b });
                g > 0 && labels[i * g + best]
            })
            .collect();
        let by_score = |score: &dyn Fn(usize) -> f32, len: usize| {
            let mut order: Vec<usize> = (0..len).collect();
            order.sort_by(|a, b| score(*b).total_cmp(&score(*a)).then(a.cmp(b)));
            order
        };
        let genre_order = (0..g).map(|k| by_score(&|i| p.p(i, k), n)).collect();
        let pair_order = by_score(&|j| p.probs[j], n * g);
        Self {
            g,
            labels,
            cells,
            row_f1,
            top1_hit,
            genre_order,
            pair_order,
        }
    }

    /// micro-F1, macro-F1, samples-F1, mAP, micro AP and top-1 of the resample that holds
    /// movie i `counts[i]` times.
    fn metrics(&self, counts: &[u32]) -> [f64; 6] {
        let g = self.g;
        let n: u32 = counts.iter().sum();
        let mut tally = vec![[0usize; 3]; g];
        for (j, cell) in self.cells.iter().enumerate() {
            let c = counts[j / g] as usize;
            match cell {
                Cell::Tp => tally[j % g][0] += c,
                Cell::Fp => tally[j % g][1] += c,
                Cell::Fn => tally[j % g][2] += c,
                Cell::Tn => {}
            }
        }
        let occurring: Vec<usize> = (0..g).filter(|&k| tally[k][0] + tally[k][2] > 0).collect();
        let mean_over_occurring = |f: &dyn Fn(usize) -> f64| {
            let sum: f64 = occurring.iter().map(|&k| f(k)).sum();
            sum / occurring.len().max(1) as f64
        };
        let sum_of = |i: usize| tally.iter().map(|t| t[i]).sum::<usize>();
        let per_movie = |v: &dyn Fn(usize) -> f64| {
            let sum: f64 = counts
                .iter()
                .enumerate()
                .map(|(i, &c)| f64::from(c) * v(i))
                .sum();
            sum / f64::from(n.max(1))
        };
        [
            f1(sum_of(0), sum_of(1), sum_of(2)),
            mean_over_occurring(&|k| f1(tally[k][0], tally[k][1], tally[k][2])),
            per_movie(&|i| self.row_f1[i]),
            mean_over_occurring(&|k| {
                weighted_ap(
                    self.genre_order[k]
                        .iter()
                        .map(|&i| (counts[i], self.labels[i * g + k])),
                )
            }),
            weighted_ap(
                self.pair_order
                    .iter()
                    .map(|&j| (counts[j / g], self.labels[j])),
            ),
            per_movie(&|i| f64::from(u8::from(self.top1_hit[i]))),
        ]
    }
}

/// Average precision of entries already in descending score order, each `(copies, label)`:
/// the copies of one entry take consecutive ranks.
fn weighted_ap(entries: impl Iterator<Item = (u32, bool)> + Clone) -> f64 {
    let positives: u32 = entries.clone().filter(|e| e.1).map(|e| e.0).sum();
    if positives == 0 {
        return 0.0;
    }
    let (mut rank, mut tp, mut sum) = (0u32, 0u32, 0.0);
    for (copies, label) in entries {
        for _ in 0..copies {
            rank += 1;
            if label {
                tp += 1;
                sum += f64::from(tp) / f64::from(rank);
            }
        }
    }
    sum / f64::from(positives)
}

/// How many times each of `n` movies is drawn in a resample of `n`.
fn counts(rng: &mut StdRng, n: usize) -> Vec<u32> {
    let mut c = vec![0u32; n];
    for _ in 0..n {
        c[rng.random_range(0..n)] += 1;
    }
    c
}

/// `n` row indices drawn uniformly with replacement.
fn draw(rng: &mut StdRng, n: usize) -> Vec<usize> {
    (0..n).map(|_| rng.random_range(0..n)).collect()
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
    fn a_weighted_pass_scores_a_resample_as_genre_metrics_does() {
        // Distinct random probabilities (no ties), three genres, 60 movies.
        let mut rng = StdRng::seed_from_u64(3);
        let (n, g) = (60, 3);
        let probs: Vec<f32> = (0..n * g).map(|_| rng.random::<f32>()).collect();
        let targets: Vec<f32> = (0..n * g)
            .map(|j| {
                f32::from(u8::from(
                    rng.random::<f32>() < 0.3 || j % g == 0 && j % 7 == 0,
                ))
            })
            .collect();
        let p = GenrePredictions {
            n_genres: g,
            probs,
            targets,
            shift: Vec::new(),
        };
        let thr = [0.4f32, 0.6, 0.5];
        let table = GenreTable::new(&p, &thr);
        for counts in [vec![1u32; n], counts(&mut rng, n), counts(&mut rng, n)] {
            let rows: Vec<usize> = (0..n).flat_map(|i| vec![i; counts[i] as usize]).collect();
            let m = crate::metrics::genre_metrics(&resample_genres(&p, &rows), &thr, &[]);
            let expected = [
                m.micro_f1,
                m.macro_f1,
                m.samples_f1,
                m.map,
                m.micro_ap,
                m.top1,
            ];
            for (name, (a, b)) in GENRE_METRICS
                .iter()
                .zip(table.metrics(&counts).iter().zip(expected))
            {
                assert!((a - b).abs() < 1e-9, "{name}: {a} vs {b}");
            }
        }
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

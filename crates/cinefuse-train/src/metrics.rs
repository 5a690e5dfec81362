//! Evaluation metrics on host vectors. Genres: micro/macro/samples F1, mAP, top-1 accuracy,
//! per-genre precision/recall/F1 (thresholds are tuned in `thresholds.rs`). Rating: MAE, RMSE,
//! R² and the share of predictions within 10 % of the true rating.

use serde::{Deserialize, Serialize};

/// Reads a number written by serde_json, where NaN (a metric without data) became `null`.
pub fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Row-major `[N, G]` probabilities and targets; rows without genre labels are excluded
/// by the caller.
#[derive(Debug, Clone)]
pub struct GenrePredictions {
    pub n_genres: usize,
    pub probs: Vec<f32>,
    pub targets: Vec<f32>,
    /// The logit shift already taken out of `probs` (`RunInfo::genre_logit_shift`; empty:
    /// none). Threshold tuning moves its grid by it, so a shift changes no decision.
    pub shift: Vec<f32>,
}

impl GenrePredictions {
    pub fn rows(&self) -> usize {
        self.probs.len().checked_div(self.n_genres).unwrap_or(0)
    }
    pub(crate) fn p(&self, i: usize, g: usize) -> f32 {
        self.probs[i * self.n_genres + g]
    }
    pub(crate) fn t(&self, i: usize, g: usize) -> bool {
        self.targets[i * self.n_genres + g] > 0.5
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PerGenre {
    pub genre: String,
    pub threshold: f32,
    pub support: usize,
    /// Confusion counts at `threshold`.
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
    pub tn: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub precision: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub recall: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub f1: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub average_precision: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GenreMetrics {
    #[serde(deserialize_with = "nan_if_null")]
    pub micro_f1: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub macro_f1: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub samples_f1: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub map: f64,
    /// Average precision over all (movie, genre) pairs at once: how well the probabilities
    /// rank, whatever the thresholds (scikit-learn's `average="micro"`).
    #[serde(default)]
    #[serde(deserialize_with = "nan_if_null")]
    pub micro_ap: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub top1: f64,
    pub per_genre: Vec<PerGenre>,
}

impl GenreMetrics {
    /// The decision threshold of each genre, in genre order.
    pub fn thresholds(&self) -> Vec<f32> {
        self.per_genre.iter().map(|x| x.threshold).collect()
    }
}

/// The headline scores of one split: what the sweep's tables and the runs page show.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SplitScores {
    pub micro_f1: f64,
    pub macro_f1: f64,
    pub top1: f64,
    pub map: f64,
    pub mae: f64,
    pub within_10pct: f64,
}

impl SplitScores {
    pub fn of(g: &GenreMetrics, r: &RatingMetrics) -> Self {
        Self {
            micro_f1: g.micro_f1,
            macro_f1: g.macro_f1,
            top1: g.top1,
            map: g.map,
            mae: r.mae,
            within_10pct: r.within_10pct,
        }
    }
}

pub(crate) fn f1(tp: usize, fp: usize, fn_: usize) -> f64 {
    let d = 2 * tp + fp + fn_;
    if d == 0 {
        0.0
    } else {
        2.0 * tp as f64 / d as f64
    }
}

/// Average precision of one genre (area under the precision–recall step curve).
pub fn average_precision(scores: &[f32], labels: &[bool]) -> f64 {
    let positives = labels.iter().filter(|l| **l).count();
    if positives == 0 {
        return 0.0;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b)));
    let (mut tp, mut sum) = (0usize, 0.0);
    for (rank, &i) in order.iter().enumerate() {
        if labels[i] {
            tp += 1;
            sum += tp as f64 / (rank + 1) as f64;
        }
    }
    sum / positives as f64
}

/// What thresholding the predictions decided, counted: per genre, and per movie.
struct DecisionCounts {
    tp: Vec<usize>,
    fp: Vec<usize>,
    fn_: Vec<usize>,
    /// The sum over movies of each movie's own F1.
    samples_f1: f64,
    /// Movies whose most likely genre is one of theirs.
    top1_hits: usize,
}

fn decision_counts(p: &GenrePredictions, thresholds: &[f32]) -> DecisionCounts {
    let g = p.n_genres;
    let mut c = DecisionCounts {
        tp: vec![0; g],
        fp: vec![0; g],
        fn_: vec![0; g],
        samples_f1: 0.0,
        top1_hits: 0,
    };
    for i in 0..p.rows() {
        let (mut rtp, mut rfp, mut rfn) = (0, 0, 0);
        let mut best = 0;
        for (k, &threshold) in thresholds[..g].iter().enumerate() {
            match (p.p(i, k) >= threshold, p.t(i, k)) {
                (true, true) => {
                    c.tp[k] += 1;
                    rtp += 1
                }
                (true, false) => {
                    c.fp[k] += 1;
                    rfp += 1
                }
                (false, true) => {
                    c.fn_[k] += 1;
                    rfn += 1
                }
                _ => {}
            }
            if p.p(i, k) > p.p(i, best) {
                best = k;
            }
        }
        c.samples_f1 += f1(rtp, rfp, rfn);
        if g > 0 && p.t(i, best) {
            c.top1_hits += 1;
        }
    }
    c
}

/// Computes every genre metric with one decision threshold per genre.
pub fn genre_metrics(p: &GenrePredictions, thresholds: &[f32], names: &[String]) -> GenreMetrics {
    let (n, g) = (p.rows(), p.n_genres);
    let DecisionCounts {
        tp,
        fp,
        fn_,
        samples_f1,
        top1_hits,
    } = decision_counts(p, thresholds);
    let per_genre: Vec<PerGenre> = (0..g)
        .map(|k| per_genre_of(p, k, thresholds[k], names, [tp[k], fp[k], fn_[k]]))
        .collect();
    // Macro averages over genres that occur in this split (absent genres have undefined F1/AP).
    let occurring: Vec<&PerGenre> = per_genre.iter().filter(|x| x.support > 0).collect();
    let mean = |f: &dyn Fn(&PerGenre) -> f64| {
        if occurring.is_empty() {
            0.0
        } else {
            occurring.iter().map(|x| f(x)).sum::<f64>() / occurring.len() as f64
        }
    };
    GenreMetrics {
        micro_f1: f1(tp.iter().sum(), fp.iter().sum(), fn_.iter().sum()),
        macro_f1: mean(&|x| x.f1),
        samples_f1: if n == 0 { 0.0 } else { samples_f1 / n as f64 },
        map: mean(&|x| x.average_precision),
        micro_ap: average_precision(
            &p.probs,
            &p.targets.iter().map(|t| *t > 0.5).collect::<Vec<_>>(),
        ),
        top1: if n == 0 {
            0.0
        } else {
            top1_hits as f64 / n as f64
        },
        per_genre,
    }
}

/// Genre `k`'s scores at `threshold`, from its true-positive, false-positive and
/// false-negative counts.
fn per_genre_of(
    p: &GenrePredictions,
    k: usize,
    threshold: f32,
    names: &[String],
    [tp, fp, fn_]: [usize; 3],
) -> PerGenre {
    let n = p.rows();
    let scores: Vec<f32> = (0..n).map(|i| p.p(i, k)).collect();
    let labels: Vec<bool> = (0..n).map(|i| p.t(i, k)).collect();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    PerGenre {
        genre: names.get(k).cloned().unwrap_or_else(|| format!("genre{k}")),
        threshold,
        support: tp + fn_,
        tp,
        fp,
        fn_,
        tn: n - tp - fp - fn_,
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fn_),
        f1: f1(tp, fp, fn_),
        average_precision: average_precision(&scores, &labels),
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RatingMetrics {
    #[serde(deserialize_with = "nan_if_null")]
    pub mae: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub rmse: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub r2: f64,
    /// Share of predictions within 10 % of the true rating.
    #[serde(deserialize_with = "nan_if_null")]
    pub within_10pct: f64,
    pub count: usize,
}

/// The headline numbers of one evaluation, as an export's manifest keeps them for its
/// validation (or out-of-fold) and test predictions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Scores {
    pub movies: usize,
    /// Out-of-fold predictions of a bag or blend, not one validation split.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub out_of_fold: bool,
    #[serde(deserialize_with = "nan_if_null")]
    pub micro_f1: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub macro_f1: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub samples_f1: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub map: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub top1: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub mae: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub rmse: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub r2: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub within_10pct: f64,
}

impl Scores {
    pub fn of(movies: usize, g: &GenreMetrics, r: &RatingMetrics) -> Self {
        Self {
            movies,
            out_of_fold: false,
            micro_f1: g.micro_f1,
            macro_f1: g.macro_f1,
            samples_f1: g.samples_f1,
            map: g.map,
            top1: g.top1,
            mae: r.mae,
            rmse: r.rmse,
            r2: r.r2,
            within_10pct: r.within_10pct,
        }
    }
}

pub fn rating_metrics(pred: &[f32], truth: &[f32]) -> RatingMetrics {
    let n = pred.len().min(truth.len());
    if n == 0 {
        return RatingMetrics::default();
    }
    let mean_t = truth.iter().map(|t| f64::from(*t)).sum::<f64>() / n as f64;
    let (mut abs, mut sq, mut tot, mut within) = (0.0, 0.0, 0.0, 0usize);
    for (p, t) in pred.iter().zip(truth) {
        let (p, t) = (f64::from(*p), f64::from(*t));
        abs += (p - t).abs();
        sq += (p - t).powi(2);
        tot += (t - mean_t).powi(2);
        if (p - t).abs() <= 0.1 * t.abs() + 1e-9 {
            within += 1;
        }
    }
    RatingMetrics {
        mae: abs / n as f64,
        rmse: (sq / n as f64).sqrt(),
        r2: if tot > 0.0 { 1.0 - sq / tot } else { 0.0 },
        within_10pct: within as f64 / n as f64,
        count: n,
    }
}

/// Split-conformal half-width: the ⌈(n+1)(1−α)⌉-th smallest absolute residual.
pub fn conformal_quantile(residuals: &[f32], coverage: f64) -> f32 {
    if residuals.is_empty() {
        return f32::INFINITY;
    }
    let mut r: Vec<f32> = residuals.iter().map(|x| x.abs()).collect();
    r.sort_by(f32::total_cmp);
    let n = r.len();
    let k = (((n + 1) as f64) * coverage).ceil() as usize;
    if k > n {
        f32::INFINITY
    } else {
        r[k.max(1) - 1]
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Residuals of a model whose errors are Gaussian with a known σ: the 90 % half-width is
    /// 1.645 σ, and an interval calibrated on one sample covers about 90 % of another.
    #[test]
    fn the_conformal_interval_is_calibrated_on_known_noise() {
        use rand::{Rng, SeedableRng};
        let sigma = 0.7f32;
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        // Box–Muller: a standard normal from two uniforms.
        let mut draw = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    let (u, v): (f32, f32) = (rng.random::<f32>().max(1e-12), rng.random());
                    sigma * (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
                })
                .collect()
        };
        let (calibration, test) = (draw(4000), draw(4000));
        let half_width = conformal_quantile(&calibration, 0.9);
        assert!(
            (half_width / sigma - 1.645).abs() < 0.06,
            "half-width {half_width} vs 1.645 σ = {}",
            1.645 * sigma
        );
        let covered = test.iter().filter(|r| r.abs() <= half_width).count() as f64 / 4000.0;
        assert!((0.88..=0.92).contains(&covered), "covered {covered}");
        assert_eq!(
            conformal_quantile(&calibration[..5], 0.9),
            f32::INFINITY,
            "too few to calibrate"
        );
    }

    /// Also the threshold tests' fixture.
    pub(crate) fn preds() -> GenrePredictions {
        // 3 movies × 2 genres. A: positives at .9 and .1, negative at .6; B: positives at .7 and
        // .4, negative at .2.
        GenrePredictions {
            n_genres: 2,
            probs: vec![0.9, 0.2, 0.6, 0.7, 0.1, 0.4],
            targets: vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
            shift: Vec::new(),
        }
    }

    #[test]
    fn genre_metrics_match_hand_computation() {
        let names = vec!["A".to_string(), "B".to_string()];
        let m = genre_metrics(&preds(), &[0.5, 0.5], &names);
        // Predictions at 0.5: row0 {A}, row1 {A,B}, row2 {}.
        // A: tp1 fp1 fn1 → F1 0.5; B: tp1 fp0 fn1 → F1 2/3.
        assert!((m.per_genre[0].f1 - 0.5).abs() < 1e-12);
        assert!((m.per_genre[1].f1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.macro_f1 - (0.5 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        // micro: tp2 fp1 fn2 → 4/7
        assert!((m.micro_f1 - 4.0 / 7.0).abs() < 1e-12);
        // samples: row0 F1=1, row1 tp1 fp1 → 2/3, row2 tp0 fn2 → 0
        assert!((m.samples_f1 - (1.0 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        // top-1: row0 A ✓, row1 B ✓, row2 B ✓
        assert!((m.top1 - 1.0).abs() < 1e-12);
        // AP of A: scores .9(+) .6(-) .1(+) → (1/1 + 2/3)/2
        assert!((m.per_genre[0].average_precision - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        // AP of B: .7(+) .4(+) .2(-) → 1
        assert!((m.per_genre[1].average_precision - 1.0).abs() < 1e-12);
        assert_eq!(m.per_genre[0].support, 2);
        let b = &m.per_genre[1];
        assert_eq!((b.tp, b.fp, b.fn_, b.tn), (1, 0, 1, 1));
        assert!((m.per_genre[0].precision - 0.5).abs() < 1e-12);
    }

    #[test]
    fn rating_metrics_match_hand_computation() {
        let m = rating_metrics(&[5.0, 7.0, 9.0], &[5.5, 7.0, 6.0]);
        assert!((m.mae - (0.5 + 0.0 + 3.0) / 3.0).abs() < 1e-9);
        assert!((m.rmse - ((0.25 + 9.0) / 3.0f64).sqrt()).abs() < 1e-9);
        // within 10 %: |5-5.5| = .5 <= .55 ✓, 0 ✓, 3 > .6 ✗
        assert!((m.within_10pct - 2.0 / 3.0).abs() < 1e-9);
        let mean = (5.5 + 7.0 + 6.0) / 3.0;
        let tot: f64 = [5.5f64, 7.0, 6.0].iter().map(|t| (t - mean).powi(2)).sum();
        assert!((m.r2 - (1.0 - 9.25 / tot)).abs() < 1e-9);
    }

    #[test]
    fn conformal_quantile_is_the_right_order_statistic() {
        let r: Vec<f32> = (1..=9).map(|x| x as f32).collect();
        // n = 9, 90 %: ceil(10 * 0.9) = 9 → the largest
        assert_eq!(conformal_quantile(&r, 0.9), 9.0);
        // 50 %: ceil(5) = 5 → 5
        assert_eq!(conformal_quantile(&r, 0.5), 5.0);
        assert!(conformal_quantile(&r[..3], 0.9).is_infinite());
    }
}

//! Decision thresholds per genre, tuned for F1 on held-out predictions (a run's validation
//! split, or a bag's or blend's out-of-fold predictions).
//!
//! A genre's own F1-best threshold is noisy where the genre has few positives: on movies outside
//! the dev set a flat 0.5 beat the tuned per-genre thresholds on micro-F1 (issue 26), and out of
//! fold (docs/RESULTS.md) pulling each genre's threshold part of the way toward the one threshold
//! shared by all genres that maximises micro-F1 raised micro-F1 without costing macro-F1. So
//! each threshold is `(1 − weight) × own + weight × shared` (`train.shared_threshold_weight`;
//! 0 keeps the per-genre thresholds, 1 shares one).
//!
//! A genre's own threshold comes from one of two rules (`train.threshold_rule`): the F1-best
//! value on a grid, or half the genre's best F1. For calibrated probabilities the F1-optimal
//! threshold is exactly half the optimal F1 (Lipton, Elkan and Narayanaswamy 2014); the best F1
//! is a smoother statistic of few positives than the argmax that the grid picks, so the rule
//! transfers better to unseen movies where a genre is rare. It assumes calibration: on
//! probabilities that overstate a genre it cuts far too low.

use serde::{Deserialize, Serialize};

use crate::metrics::{GenrePredictions, f1};

/// The grid's step: thresholds are searched over {0.05, 0.10, …, 0.95}.
const STEP: f32 = 0.05;
const STEPS: std::ops::Range<i32> = 1..20;
/// Ties go to the grid value closest to this one.
const MIDDLE: f32 = 0.5;

/// How a genre's own threshold is chosen (`train.threshold_rule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdRule {
    /// The F1-best value in {0.05, 0.10, …, 0.95}.
    #[default]
    Grid,
    /// Half the genre's best F1 on that grid (needs calibrated probabilities).
    HalfBestF1,
}

/// Each genre's own threshold (by `rule`) pulled by `weight` toward the grid threshold with
/// the best micro-F1 over all genres; with a logit shift, each genre's grid is moved by it.
pub fn pooled_thresholds(p: &GenrePredictions, rule: ThresholdRule, weight: f32) -> Vec<f32> {
    let shared = if weight > 0.0 { shared_best(p) } else { MIDDLE };
    (0..p.n_genres)
        .map(|k| {
            let shift = shift_of(p, k);
            let own = match rule {
                ThresholdRule::Grid => own_best(p, k),
                ThresholdRule::HalfBestF1 => unshifted(half_best_f1(p, k), shift),
            };
            shifted((1.0 - weight) * own + weight * shared, shift)
        })
        .collect()
}

/// The decision rule in words, for `eval`'s report and the model card.
pub fn describe(rule: ThresholdRule, weight: f32) -> String {
    let own = match rule {
        ThresholdRule::Grid => "each genre's own F1-best threshold",
        ThresholdRule::HalfBestF1 => "half each genre's best F1",
    };
    match weight {
        w if w <= 0.0 => own.to_string(),
        w if w >= 1.0 => "one threshold shared by all genres".to_string(),
        w => format!(
            "{own}, pulled {:.0} % of the way to one shared threshold",
            w * 100.0
        ),
    }
}

/// Half of genre `k`'s best F1 on the grid: a threshold on the probabilities themselves (the
/// shift already taken out), which are the calibrated ones. Clamped to the grid's range, so a
/// genre the predictions never find still gets a usable cut.
fn half_best_f1(p: &GenrePredictions, k: usize) -> f32 {
    let [tp, fp, fn_] = counts(p, k, shifted(own_best(p, k), shift_of(p, k)));
    (f1(tp, fp, fn_) as f32 / 2.0).clamp(STEP, 1.0 - STEP)
}

/// The micro-F1-best grid threshold shared by every genre, before the shifts.
fn shared_best(p: &GenrePredictions) -> f32 {
    best_on_grid(|t| {
        let mut total = [0usize; 3];
        for k in 0..p.n_genres {
            let c = counts(p, k, shifted(t, shift_of(p, k)));
            (0..3).for_each(|j| total[j] += c[j]);
        }
        f1(total[0], total[1], total[2])
    })
}

/// Genre `k`'s F1-best grid threshold, before its shift.
fn own_best(p: &GenrePredictions, k: usize) -> f32 {
    let shift = shift_of(p, k);
    best_on_grid(|t| {
        let [tp, fp, fn_] = counts(p, k, shifted(t, shift));
        f1(tp, fp, fn_)
    })
}

/// The grid value with the highest `score` (ties → closest to the middle).
fn best_on_grid(score: impl Fn(f32) -> f64) -> f32 {
    let mut best = (f64::MIN, MIDDLE);
    for step in STEPS {
        let t = step as f32 * STEP;
        let s = score(t);
        let closer = (t - MIDDLE).abs() < (best.1 - MIDDLE).abs();
        if s > best.0 + 1e-12 || ((s - best.0).abs() <= 1e-12 && closer) {
            best = (s, t);
        }
    }
    best.1
}

/// True positives, false positives and false negatives of genre `k` at `threshold`.
fn counts(p: &GenrePredictions, k: usize, threshold: f32) -> [usize; 3] {
    let mut c = [0usize; 3];
    for i in 0..p.rows() {
        match (p.p(i, k) >= threshold, p.t(i, k)) {
            (true, true) => c[0] += 1,
            (true, false) => c[1] += 1,
            (false, true) => c[2] += 1,
            _ => {}
        }
    }
    c
}

fn shift_of(p: &GenrePredictions, k: usize) -> f32 {
    p.shift.get(k).copied().unwrap_or(0.0)
}

/// The probability `t` becomes when `shift` is taken out of its logit.
fn shifted(t: f32, shift: f32) -> f32 {
    moved(t, -shift)
}

/// The inverse of `shifted`: the grid value that `shifted` takes to `t`.
fn unshifted(t: f32, shift: f32) -> f32 {
    moved(t, shift)
}

fn moved(t: f32, by: f32) -> f32 {
    if by == 0.0 {
        return t;
    }
    let logit = (t / (1.0 - t)).ln() + by;
    1.0 / (1.0 + (-logit).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::genre_metrics;
    use crate::metrics::tests::preds;

    #[test]
    fn tuned_thresholds_improve_f1() {
        let p = preds();
        let t = pooled_thresholds(&p, ThresholdRule::Grid, 0.0);
        let tuned = genre_metrics(&p, &t, &[]);
        let base = genre_metrics(&p, &[0.5, 0.5], &[]);
        assert!(tuned.macro_f1 >= base.macro_f1);
        // Genre B: any threshold in (0.2, 0.4] captures both positives without the negative.
        assert!(t[1] > 0.2 && t[1] <= 0.4, "{t:?}");
        assert!((tuned.per_genre[1].f1 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_logit_shift_moves_the_threshold_grid_and_changes_no_decision() {
        let p = preds();
        let shift = vec![0.7f32, 0.3];
        let logit = |q: f32| (q / (1.0 - q)).ln();
        let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
        let moved = GenrePredictions {
            probs: (0..p.probs.len())
                .map(|i| sigmoid(logit(p.probs[i]) - shift[i % 2]))
                .collect(),
            shift: shift.clone(),
            ..p.clone()
        };
        for weight in [0.0, 0.5, 1.0] {
            let (t, t_moved) = (
                pooled_thresholds(&p, ThresholdRule::Grid, weight),
                pooled_thresholds(&moved, ThresholdRule::Grid, weight),
            );
            for k in 0..2 {
                assert!((sigmoid(logit(t[k]) - shift[k]) - t_moved[k]).abs() < 1e-6);
            }
            let (a, b) = (
                genre_metrics(&p, &t, &[]),
                genre_metrics(&moved, &t_moved, &[]),
            );
            assert_eq!(a.micro_f1, b.micro_f1);
            assert_eq!(a.macro_f1, b.macro_f1);
        }
    }

    /// Genre A is best cut at 0.35 on its own (0.30 ties), genre B at 0.70 (0.75 ties); one
    /// threshold for both is best at 0.35 (micro-F1 10/12), where B has two false positives.
    fn two_apart() -> GenrePredictions {
        let rows = [
            // (p_A, y_A, p_B, y_B)
            (0.37, 1.0, 0.77, 1.0),
            (0.27, 0.0, 0.67, 0.0),
            (0.47, 1.0, 0.47, 0.0),
            (0.95, 1.0, 0.95, 1.0),
            (0.12, 0.0, 0.12, 0.0),
        ];
        GenrePredictions {
            n_genres: 2,
            probs: rows.iter().flat_map(|r| [r.0, r.2]).collect(),
            targets: rows.iter().flat_map(|r| [r.1, r.3]).collect(),
            shift: Vec::new(),
        }
    }

    #[test]
    fn the_weight_moves_each_threshold_toward_the_shared_one() {
        let p = two_apart();
        let own = pooled_thresholds(&p, ThresholdRule::Grid, 0.0);
        let close = |a: f32, b: f32| (a - b).abs() < 1e-6;
        assert!(close(own[0], 0.35) && close(own[1], 0.70), "{own:?}");
        assert!(close(shared_best(&p), 0.35));
        let half = pooled_thresholds(&p, ThresholdRule::Grid, 0.5);
        assert!(close(half[0], 0.35) && close(half[1], 0.525), "{half:?}");
        assert!(
            pooled_thresholds(&p, ThresholdRule::Grid, 1.0)
                .iter()
                .all(|t| close(*t, 0.35))
        );
    }

    #[test]
    fn the_rule_is_described_in_words() {
        let half = describe(ThresholdRule::HalfBestF1, 0.25);
        assert_eq!(
            half,
            "half each genre's best F1, pulled 25 % of the way to one shared threshold"
        );
        assert_eq!(
            describe(ThresholdRule::Grid, 0.0),
            "each genre's own F1-best threshold"
        );
        assert_eq!(
            describe(ThresholdRule::HalfBestF1, 1.0),
            "one threshold shared by all genres"
        );
    }

    #[test]
    fn the_half_best_rule_cuts_each_genre_at_half_its_best_f1() {
        for p in [preds(), two_apart()] {
            let grid = pooled_thresholds(&p, ThresholdRule::Grid, 0.0);
            let best = genre_metrics(&p, &grid, &[]);
            let half = pooled_thresholds(&p, ThresholdRule::HalfBestF1, 0.0);
            for k in 0..p.n_genres {
                let want = (best.per_genre[k].f1 as f32 / 2.0).clamp(0.05, 0.95);
                assert!((half[k] - want).abs() < 1e-6, "{k}: {half:?} vs {want}");
            }
            // Pulled all the way, the rule no longer matters.
            let shared = pooled_thresholds(&p, ThresholdRule::Grid, 1.0);
            assert_eq!(
                pooled_thresholds(&p, ThresholdRule::HalfBestF1, 1.0),
                shared
            );
        }
        // Genre A: own half-best 0.5 (F1 1 at 0.35), pulled halfway to the shared 0.35.
        let p = two_apart();
        let pulled = pooled_thresholds(&p, ThresholdRule::HalfBestF1, 0.5);
        assert!((pulled[0] - 0.425).abs() < 1e-6, "{pulled:?}");
    }

    #[test]
    fn the_half_best_rule_reads_the_probabilities_a_shift_left() {
        // The rule's cut is a probability: the same best F1 gives the same number whatever
        // shift was taken out, and the pull toward the shared threshold happens on the
        // shifted grid's scale, as the grid rule's does.
        let p = preds();
        let shift = vec![0.7f32, -0.3];
        let moved = GenrePredictions {
            shift: shift.clone(),
            ..p.clone()
        };
        let t_moved = pooled_thresholds(&moved, ThresholdRule::HalfBestF1, 0.0);
        let grid_best = |q: &GenrePredictions| {
            let g = pooled_thresholds(q, ThresholdRule::Grid, 0.0);
            genre_metrics(q, &g, &[])
        };
        for k in 0..2 {
            let want = (grid_best(&moved).per_genre[k].f1 as f32 / 2.0).clamp(0.05, 0.95);
            assert!((t_moved[k] - want).abs() < 1e-6, "{t_moved:?}");
        }
        let (shared, pulled) = (
            super::shared_best(&moved),
            pooled_thresholds(&moved, ThresholdRule::HalfBestF1, 0.5),
        );
        for k in 0..2 {
            let own = unshifted(t_moved[k], shift[k]);
            let want = shifted(0.5 * own + 0.5 * shared, shift[k]);
            assert!((pulled[k] - want).abs() < 1e-6, "{pulled:?}");
        }
        for (a, b) in [(0.3f32, 0.7f32), (0.12, -1.5)] {
            assert!((unshifted(shifted(a, b), b) - a).abs() < 1e-6);
        }
    }

    #[test]
    fn on_calibrated_probabilities_half_the_best_f1_is_near_the_best_cut() {
        // 20,000 movies whose genre truly has probability p (a fixed pseudo-random sequence):
        // the rule's cut scores within half a point of the best cut on the grid, where a cut
        // at the best F1 itself (the rule without the half) would lose several points.
        let mut state = 0x9e37_79b9_u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let (mut probs, mut targets) = (Vec::new(), Vec::new());
        for _ in 0..20_000 {
            let q = next().powi(3);
            probs.push(q);
            targets.push(if next() < q { 1.0 } else { 0.0 });
        }
        let p = GenrePredictions {
            n_genres: 1,
            probs,
            targets,
            shift: Vec::new(),
        };
        let f1_at = |t: f32| genre_metrics(&p, &[t], &[]).micro_f1;
        let best = f1_at(pooled_thresholds(&p, ThresholdRule::Grid, 0.0)[0]);
        let half = pooled_thresholds(&p, ThresholdRule::HalfBestF1, 0.0)[0];
        assert!(f1_at(half) > best - 0.005, "{} vs {best}", f1_at(half));
        assert!(
            f1_at(best as f32) < best - 0.02,
            "{} vs {best}",
            f1_at(best as f32)
        );
    }
}

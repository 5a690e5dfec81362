//! L2-penalised logistic regression by damped Newton–Raphson: scikit-learn's
//! `LogisticRegression(C)` objective, ½‖w‖² + C·Σ log loss with the bias unpenalised (scaled
//! here by 1/C: Σ log loss + ½‖w‖²/C, the same minimum). With a handful of inputs it converges in
//! a few steps.
//!
//! The step is damped (backtracking until the objective falls enough): Newton's full step can
//! overshoot and then oscillate between two points for ever. It did on a real blend — a rare
//! genre's inputs, far from zero and nearly collinear, sent its bias to −7·10¹¹ after 100
//! undamped steps, so the genre was never predicted.

/// Newton steps at most; a damped fit of a few inputs needs well under twenty.
const MAX_STEPS: usize = 100;

/// The fit stops when no coefficient moves more than this.
const TOLERANCE: f64 = 1e-9;

/// Armijo's constant: a step is taken once it lowers the objective by this share of what the
/// local quadratic promises.
const SUFFICIENT_DECREASE: f64 = 1e-4;

/// Weights then bias of the penalised logistic regression of the 0/1 `y` on the rows `x`, with
/// the inverse penalty `c`. Without both classes the weights are zero and the bias is the
/// logit of the base rate clipped `eps` from 0 and 1.
pub fn fit_logistic(x: &[Vec<f64>], y: &[f64], c: f64, eps: f64) -> Vec<f64> {
    let d = x.first().map_or(0, Vec::len);
    let mean = y.iter().sum::<f64>() / y.len().max(1) as f64;
    let mut beta = vec![0.0; d + 1];
    let base = eps.max(mean.min(1.0 - eps));
    beta[d] = (base / (1.0 - base)).ln();
    if mean <= 0.0 || mean >= 1.0 {
        return beta;
    }
    let penalty = 1.0 / c;
    let mut value = objective(x, y, &beta, penalty);
    for _ in 0..MAX_STEPS {
        let (grad, hess) = gradient_and_hessian(x, y, &beta, penalty);
        let Some(step) = solve(hess, grad.clone()) else {
            break;
        };
        let promised: f64 = grad.iter().zip(&step).map(|(g, s)| g * s).sum();
        let Some((next, next_value, scale)) = damped(&beta, &step, promised, value, |b| {
            objective(x, y, b, penalty)
        }) else {
            break; // no step lowers the objective: as close to the minimum as f64 gets
        };
        let moved = step.iter().map(|s| (s * scale).abs()).fold(0.0, f64::max);
        (beta, value) = (next, next_value);
        if moved < TOLERANCE {
            break;
        }
    }
    beta
}

/// The first of the steps `beta − t·step` (t = 1, ½, ¼, …) that lowers `f` from `value` enough,
/// with its objective and `t`; `None` when even a tiny step does not.
fn damped(
    beta: &[f64],
    step: &[f64],
    promised: f64,
    value: f64,
    f: impl Fn(&[f64]) -> f64,
) -> Option<(Vec<f64>, f64, f64)> {
    let mut t = 1.0;
    while t > 1e-12 {
        let next: Vec<f64> = beta.iter().zip(step).map(|(b, s)| b - t * s).collect();
        let next_value = f(&next);
        if next_value <= value - SUFFICIENT_DECREASE * t * promised {
            return Some((next, next_value, t));
        }
        t *= 0.5;
    }
    None
}

/// `log(1 + eˢ)` without overflow.
fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

/// The logistic function: a score's probability.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The score of row `row` under `beta` (its last entry the bias).
fn score(row: &[f64], beta: &[f64]) -> f64 {
    row.iter().zip(beta).map(|(a, b)| a * b).sum::<f64>() + beta[row.len()]
}

/// Σ log loss + ½·penalty·‖w‖², the bias unpenalised.
fn objective(x: &[Vec<f64>], y: &[f64], beta: &[f64], penalty: f64) -> f64 {
    let d = beta.len() - 1;
    let loss: f64 = x
        .iter()
        .zip(y)
        .map(|(row, t)| {
            let z = score(row, beta);
            softplus(z) - t * z
        })
        .sum();
    loss + 0.5 * penalty * beta[..d].iter().map(|w| w * w).sum::<f64>()
}

fn gradient_and_hessian(
    x: &[Vec<f64>],
    y: &[f64],
    beta: &[f64],
    penalty: f64,
) -> (Vec<f64>, Vec<Vec<f64>>) {
    let d = beta.len() - 1;
    let (mut grad, mut hess) = (vec![0.0; d + 1], vec![vec![0.0; d + 1]; d + 1]);
    for (row, t) in x.iter().zip(y) {
        let p = sigmoid(score(row, beta));
        let w = (p * (1.0 - p)).max(1e-12);
        // The row with its constant 1 for the bias.
        let xs: Vec<f64> = row.iter().copied().chain([1.0]).collect();
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
    (grad, hess)
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

    const EPS: f64 = 1e-6;

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
        let beta = fit_logistic(&x, &y, 1e9, EPS);
        assert!((beta[0] - 4f64.ln()).abs() < 1e-6, "{beta:?}");
        assert!(beta[1].abs() < 1e-6, "{beta:?}");
        // A strong penalty pulls the weight towards 0.
        assert!(fit_logistic(&x, &y, 1e-3, EPS)[0].abs() < 0.1);
    }

    /// Four parts' logits of a rare genre for 21 movies (two of them in it), cut down from the
    /// genre whose undamped fit ran away in a real blend: full Newton steps oscillate between
    /// two points and leave the bias at about −3·10¹¹ after 100 steps.
    fn runaway_rare_genre() -> (Vec<Vec<f64>>, Vec<f64>) {
        let rows: [([f64; 4], f64); 21] = [
            ([-8.7, -3.7, -7.3, -6.7], 0.0),
            ([-6.8, -4.1, -7.2, -6.7], 0.0),
            ([-5.5, -3.8, -5.5, -4.1], 0.0),
            ([-5.1, -7.5, -7.1, -6.7], 0.0),
            ([-6.9, -2.8, -6.0, -6.8], 0.0),
            ([-5.4, -5.1, -5.5, -6.5], 0.0),
            ([-5.6, -5.9, -7.4, -6.7], 0.0),
            ([-5.1, -6.3, -7.0, -6.7], 0.0),
            ([-5.2, -3.4, -6.0, -6.1], 0.0),
            ([-6.8, -4.1, -7.0, -6.8], 0.0),
            ([-7.9, -5.6, -7.2, -6.7], 0.0),
            ([-6.3, -2.6, -5.5, -4.8], 0.0),
            ([-7.3, -5.2, -6.8, -6.3], 0.0),
            ([1.0, -2.6, 2.1, 0.2], 1.0),
            ([-5.9, -3.9, -6.5, -6.8], 0.0),
            ([-6.2, -3.3, -5.5, -6.7], 0.0),
            ([-7.1, -8.1, -6.7, -6.7], 0.0),
            ([0.8, -2.7, 1.6, -0.8], 1.0),
            ([-7.6, -4.9, -7.1, -2.7], 0.0),
            ([-6.4, -6.2, -5.6, -5.9], 0.0),
            ([1.5, -2.6, 1.9, 1.2], 0.0),
        ];
        rows.iter().map(|(r, t)| (r.to_vec(), *t)).unzip()
    }

    #[test]
    fn a_fit_whose_full_newton_steps_oscillate_still_reaches_the_minimum() {
        let (x, y) = runaway_rare_genre();
        let beta = fit_logistic(&x, &y, 0.1, EPS);
        // scikit-learn 1.x, LogisticRegression(C=0.1, tol=1e-10) on the same rows.
        let reference = [0.193_044, 0.058_096, 0.257_915, 0.089_553, -0.320_637];
        for (b, r) in beta.iter().zip(reference) {
            assert!((b - r).abs() < 1e-4, "{beta:?} against {reference:?}");
        }
        // The minimum: the gradient vanishes there.
        let (grad, _) = gradient_and_hessian(&x, &y, &beta, 10.0);
        assert!(grad.iter().all(|g| g.abs() < 1e-6), "{grad:?}");
    }

    #[test]
    fn the_objective_never_rises_from_the_start() {
        let (x, y) = runaway_rare_genre();
        let mean: f64 = 2.0 / 21.0;
        let start = [0.0, 0.0, 0.0, 0.0, (mean / (1.0 - mean)).ln()];
        let beta = fit_logistic(&x, &y, 0.1, EPS);
        assert!(objective(&x, &y, &beta, 10.0) < objective(&x, &y, &start, 10.0));
    }

    #[test]
    fn softplus_is_exact_far_out_on_both_sides() {
        assert_eq!(softplus(-800.0), 0.0);
        assert_eq!(softplus(800.0), 800.0);
        assert!((softplus(0.0) - 2f64.ln()).abs() < 1e-15);
    }

    #[test]
    fn solve_inverts_a_pivoting_system_and_refuses_a_singular_one() {
        let a = vec![vec![0.0, 2.0], vec![1.0, 1.0]];
        assert_eq!(solve(a, vec![4.0, 3.0]), Some(vec![1.0, 2.0]));
        assert_eq!(
            solve(vec![vec![1.0, 2.0], vec![2.0, 4.0]], vec![1.0, 2.0]),
            None
        );
    }
}

//! Softmax over the last axis and the exact (erf) GELU, forward and backward, with a
//! branch-free polynomial `exp` that LLVM vectorizes. The generic element-wise path calls the C
//! library's scalar `expf`/`erff` per element, and for attention scores masked to a large
//! negative value every `expf` underflows into the library's slow errno path.

use rayon::prelude::*;

use crate::simd::best_simd;

/// Rows (or elements) per parallel task: enough work to amortize scheduling.
const PER_TASK: usize = 1 << 14;

/// `e^x` for `x` in roughly [-87, 88] to within 2 ulp; inputs below are clamped, so the result
/// never underflows to a subnormal.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // x = n·ln2 + r with |r| ≤ ln2/2; e^x = 2^n · e^r.
    // Round to nearest by the 1.5·2²³ trick: after adding it, the low mantissa bits of `t`
    // hold n as an integer. (`f32::round` is a libm call on baseline x86-64 and a float→int
    // `as` cast saturates with branches; either keeps the loop scalar.)
    const ROUNDER: f32 = 12_582_912.0;
    let t = x * std::f32::consts::LOG2_E + ROUNDER;
    let n = t - ROUNDER;
    let n_int = (t.to_bits() as i32).wrapping_sub(ROUNDER.to_bits() as i32);
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    // Degree-6 Taylor polynomial of e^r on [-0.35, 0.35] (Horner form).
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits((n_int.wrapping_add(127) as u32) << 23);
    p * scale
}

/// `erf(x)` to about 5e-7 absolute in f32 (Abramowitz & Stegun 7.1.26: 1.5e-7 in exact
/// arithmetic, plus rounding in `1 − poly · e^{−x²}` near 0), branch-free.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// Softmax of every row of length `row` in `x` into `y`.
pub fn softmax_forward(x: &[f32], row: usize, y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "softmax: input and output lengths differ");
    assert!(
        row > 0 && x.len().is_multiple_of(row),
        "softmax: rows of {row} do not tile {}",
        x.len()
    );
    let per_task = (PER_TASK / row).max(1) * row;
    y.par_chunks_mut(per_task)
        .zip(x.par_chunks(per_task))
        .for_each(|(y, x)| softmax_rows(x, row, y));
}

#[inline(always)]
fn softmax_rows_body(x: &[f32], row: usize, y: &mut [f32]) {
    for (y, x) in y.chunks_exact_mut(row).zip(x.chunks_exact(row)) {
        let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        y.iter_mut().zip(x).for_each(|(o, &v)| *o = exp(v - max));
        let inv = 1.0 / y.iter().sum::<f32>();
        y.iter_mut().for_each(|o| *o *= inv);
    }
}

best_simd!(fn softmax_rows(x: &[f32], row: usize, y: &mut [f32]) => softmax_rows_body);

/// `dx = y ⊙ (dy − Σ dy ⊙ y)` per row, from the softmax output `y`.
pub fn softmax_backward(y: &[f32], dy: &[f32], row: usize, dx: &mut [f32]) {
    assert!(
        y.len() == dy.len() && y.len() == dx.len(),
        "softmax backward: lengths differ"
    );
    assert!(row > 0 && y.len().is_multiple_of(row));
    let per_task = (PER_TASK / row).max(1) * row;
    dx.par_chunks_mut(per_task)
        .zip(y.par_chunks(per_task).zip(dy.par_chunks(per_task)))
        .for_each(|(dx, (y, dy))| softmax_backward_rows(y, dy, row, dx));
}

#[inline(always)]
fn softmax_backward_rows_body(y: &[f32], dy: &[f32], row: usize, dx: &mut [f32]) {
    for ((dx, y), dy) in dx
        .chunks_exact_mut(row)
        .zip(y.chunks_exact(row))
        .zip(dy.chunks_exact(row))
    {
        let dot: f32 = y.iter().zip(dy).map(|(a, b)| a * b).sum();
        for ((d, &a), &g) in dx.iter_mut().zip(y).zip(dy) {
            *d = a * (g - dot);
        }
    }
}

best_simd!(fn softmax_backward_rows(y: &[f32], dy: &[f32], row: usize, dx: &mut [f32]) => softmax_backward_rows_body);

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π)
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// `gelu(x) = x · Φ(x) = ½ x (1 + erf(x/√2))`.
pub fn gelu_forward(x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "gelu: input and output lengths differ");
    y.par_chunks_mut(PER_TASK)
        .zip(x.par_chunks(PER_TASK))
        .for_each(|(y, x)| gelu_slice(x, y));
}

#[inline(always)]
fn gelu_slice_body(x: &[f32], y: &mut [f32]) {
    y.iter_mut()
        .zip(x)
        .for_each(|(o, &v)| *o = 0.5 * v * (1.0 + erf(v * FRAC_1_SQRT_2)));
}

best_simd!(fn gelu_slice(x: &[f32], y: &mut [f32]) => gelu_slice_body);

/// `dx = dy · (Φ(x) + x · φ(x))`.
pub fn gelu_backward(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    assert!(
        x.len() == dy.len() && x.len() == dx.len(),
        "gelu backward: lengths differ"
    );
    dx.par_chunks_mut(PER_TASK)
        .zip(x.par_chunks(PER_TASK).zip(dy.par_chunks(PER_TASK)))
        .for_each(|(dx, (x, dy))| gelu_backward_slice(x, dy, dx));
}

#[inline(always)]
fn gelu_backward_slice_body(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    for ((d, &v), &g) in dx.iter_mut().zip(x).zip(dy) {
        let cdf = 0.5 * (1.0 + erf(v * FRAC_1_SQRT_2));
        let pdf = INV_SQRT_2PI * exp(-0.5 * v * v);
        *d = g * (cdf + v * pdf);
    }
}

best_simd!(fn gelu_backward_slice(x: &[f32], dy: &[f32], dx: &mut [f32]) => gelu_backward_slice_body);

#[cfg(test)]
mod tests {
    #[test]
    fn exp_and_erf_match_the_standard_library() {
        // Below -87 the input is clamped: tiny, positive, never subnormal.
        assert_eq!(super::exp(-1.0e4), super::exp(-87.0));
        assert!(super::exp(-87.0) > f32::MIN_POSITIVE);
        for i in -1980..=2000 {
            let x = i as f32 * 0.0437;
            let (got, want) = (super::exp(x), x.exp());
            assert!(
                ((got - want) / want).abs() < 4e-7,
                "exp({x}): {got} vs {want}"
            );
        }
        for i in -1000..=1000 {
            let x = i as f32 * 0.003;
            let want = series_erf(x as f64) as f32;
            assert!(
                (super::erf(x) - want).abs() < 5e-7,
                "erf({x}): {} vs {want}",
                super::erf(x)
            );
        }
        // Beyond 3, erf is within 2.3e-5 of ±1 and approaches it monotonically.
        let tail: Vec<f32> = (0..200)
            .map(|i| super::erf(3.0 + i as f32 * 0.05))
            .collect();
        assert!(tail.windows(2).all(|w| w[0] <= w[1] && w[1] <= 1.0));
        assert!(tail.iter().all(|&v| v > 1.0 - 2.3e-5));
        assert_eq!(super::erf(-4.0), -super::erf(4.0));
    }

    /// erf by its Maclaurin series, accurate in f64 for |x| ≤ 3.
    fn series_erf(x: f64) -> f64 {
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 * sum.abs().max(1e-300) {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}

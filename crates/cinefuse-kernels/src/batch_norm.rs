//! Batch normalization over NCHW `f32` data in training mode (batch statistics), forward and
//! backward, each in one or two passes over the data instead of the dozen element-wise tensor
//! operations (each with its own allocation) that a composed implementation costs.

use rayon::prelude::*;

use crate::simd::best_simd;

/// Batch statistics saved by the forward pass for the backward pass and the running averages.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStats {
    pub mean: Vec<f32>,
    /// Biased variance (divided by the count), the one used to normalize.
    pub var: Vec<f32>,
    pub inv_std: Vec<f32>,
}

/// Per-channel sums over every `[h, w]` plane of channel `c`: `f(plane)` summed over the batch.
fn per_channel<F>(x_len: usize, channels: usize, plane: usize, f: F) -> Vec<f64>
where
    F: Fn(usize, usize) -> f64 + Sync,
{
    let batch = x_len / (channels * plane);
    (0..channels)
        .into_par_iter()
        .map(|c| (0..batch).map(|b| f(b, c)).sum())
        .collect()
}

/// `Σ f(a[i], b[i])` over one plane in 16 independent f32 lanes (which LLVM vectorizes), the
/// lanes then added in f64. A plane is at most a few thousand values, so f32 lanes lose nothing
/// that matters; a single f64 chain would be scalar and serial.
#[inline(always)]
fn plane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(&x, &y)| f(x, y) as f64)
        .sum();
    for (ca, cb) in a_chunks.zip(b_chunks) {
        for i in 0..LANES {
            acc[i] += f(ca[i], cb[i]);
        }
    }
    acc.iter().map(|&v| v as f64).sum::<f64>() + tail
}

#[inline(always)]
fn sum_body(a: &[f32]) -> f64 {
    plane_sum(a, a, |v, _| v)
}

#[inline(always)]
fn centered_squares_body(a: &[f32], mean: f32) -> f64 {
    plane_sum(a, a, |v, _| (v - mean) * (v - mean))
}

#[inline(always)]
fn centered_dot_body(a: &[f32], b: &[f32], mean: f32) -> f64 {
    plane_sum(a, b, |v, g| (v - mean) * g)
}

#[inline(always)]
fn affine_body(x: &[f32], y: &mut [f32], scale: f32, shift: f32) {
    y.iter_mut()
        .zip(x)
        .for_each(|(o, &v)| *o = v * scale + shift);
}

/// `dx = k · (dy − mean_dy − x̂ · mean_dy_x̂)` with `x̂ = (x − mean) · inv_std`.
#[inline(always)]
fn input_gradient_body(x: &[f32], dy: &[f32], dx: &mut [f32], stats: [f32; 5]) {
    let [mean, inv_std, k, mean_dy, mean_dy_xhat] = stats;
    for ((d, &v), &g) in dx.iter_mut().zip(x).zip(dy) {
        let xhat = (v - mean) * inv_std;
        *d = k * (g - mean_dy - xhat * mean_dy_xhat);
    }
}

best_simd!(fn sum(a: &[f32]) -> f64 => sum_body);
best_simd!(fn centered_squares(a: &[f32], mean: f32) -> f64 => centered_squares_body);
best_simd!(fn centered_dot(a: &[f32], b: &[f32], mean: f32) -> f64 => centered_dot_body);
best_simd!(fn affine(x: &[f32], y: &mut [f32], scale: f32, shift: f32) => affine_body);
best_simd!(fn input_gradient(x: &[f32], dy: &[f32], dx: &mut [f32], stats: [f32; 5]) => input_gradient_body);

/// `y = (x - mean) / sqrt(var + eps) * gamma + beta` with the batch's per-channel mean and
/// biased variance. `x` is `[batch, channels, plane]`.
pub fn batch_norm_forward(
    x: &[f32],
    channels: usize,
    plane: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32],
) -> BatchStats {
    assert_eq!(
        x.len(),
        y.len(),
        "batch norm: input and output lengths differ"
    );
    assert!(channels > 0 && plane > 0 && x.len().is_multiple_of(channels * plane));
    assert_eq!(gamma.len(), channels, "batch norm: gamma length");
    assert_eq!(beta.len(), channels, "batch norm: beta length");
    let count = (x.len() / channels) as f64;
    let at = |b: usize, c: usize| &x[(b * channels + c) * plane..][..plane];
    let sums = per_channel(x.len(), channels, plane, |b, c| sum(at(b, c)));
    let mean: Vec<f32> = sums.iter().map(|s| (s / count) as f32).collect();
    // Second pass around the mean: no cancellation from E[x²] − E[x]².
    let sq = per_channel(x.len(), channels, plane, |b, c| {
        centered_squares(at(b, c), mean[c])
    });
    let var: Vec<f32> = sq.iter().map(|s| (s / count) as f32).collect();
    let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    y.par_chunks_mut(plane)
        .zip(x.par_chunks(plane))
        .enumerate()
        .for_each(|(i, (y_p, x_p))| {
            let c = i % channels;
            let scale = gamma[c] * inv_std[c];
            let shift = beta[c] - mean[c] * scale;
            affine(x_p, y_p, scale, shift);
        });
    BatchStats { mean, var, inv_std }
}

/// Gradients of [`batch_norm_forward`]: writes `dx`, returns `(dgamma, dbeta)`.
pub fn batch_norm_backward(
    x: &[f32],
    dy: &[f32],
    channels: usize,
    plane: usize,
    gamma: &[f32],
    stats: &BatchStats,
    dx: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(
        x.len(),
        dy.len(),
        "batch norm backward: input and gradient lengths differ"
    );
    assert_eq!(
        x.len(),
        dx.len(),
        "batch norm backward: input gradient length"
    );
    assert!(channels > 0 && plane > 0 && x.len().is_multiple_of(channels * plane));
    let count = (x.len() / channels) as f32;
    let range = |b: usize, c: usize| (b * channels + c) * plane..(b * channels + c + 1) * plane;
    let dbeta: Vec<f32> = per_channel(x.len(), channels, plane, |b, c| sum(&dy[range(b, c)]))
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let dgamma: Vec<f32> = per_channel(x.len(), channels, plane, |b, c| {
        centered_dot(&x[range(b, c)], &dy[range(b, c)], stats.mean[c]) * stats.inv_std[c] as f64
    })
    .into_iter()
    .map(|v| v as f32)
    .collect();
    dx.par_chunks_mut(plane)
        .zip(x.par_chunks(plane).zip(dy.par_chunks(plane)))
        .enumerate()
        .for_each(|(i, (dx_p, (x_p, dy_p)))| {
            let c = i % channels;
            let (m, s) = (stats.mean[c], stats.inv_std[c]);
            let k = gamma[c] * s;
            let (mean_dy, mean_dy_xhat) = (dbeta[c] / count, dgamma[c] / count);
            input_gradient(x_p, dy_p, dx_p, [m, s, k, mean_dy, mean_dy_xhat]);
        });
    (dgamma, dbeta)
}

//! 2-D convolution on NCHW `f32` data (groups = 1, dilation = 1), forward and both backward
//! passes, as per-sample im2col + one gemm each.
//!
//! Why not the backend's generic convolution: at the poster CNN's shapes (a few dozen channels,
//! feature maps of a few hundred pixels, batch 32) the generic path spends most of its time
//! outside the matrix product — a layout change of the whole input per call, a convolution
//! transpose for the input gradient, and a weight gradient computed as a convolution whose
//! kernel is the whole feature map. Here every pass is one gemm per sample on an im2col matrix
//! that fits in L2, parallel over the batch.

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

/// Samples per partial sum of the weight gradient.
const WEIGHT_GRAD_CHUNK: usize = 4;

/// Shapes of one convolution. Weight layout is `[c_out, c_in, kh, kw]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dShape {
    pub batch: usize,
    pub c_in: usize,
    pub height: usize,
    pub width: usize,
    pub c_out: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl Conv2dShape {
    pub fn out_height(&self) -> usize {
        (self.height + 2 * self.padding[0] - self.kernel[0]) / self.stride[0] + 1
    }

    pub fn out_width(&self) -> usize {
        (self.width + 2 * self.padding[1] - self.kernel[1]) / self.stride[1] + 1
    }

    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    fn col_rows(&self) -> usize {
        self.c_in * self.kernel[0] * self.kernel[1]
    }

    fn out_pixels(&self) -> usize {
        self.out_height() * self.out_width()
    }

    fn in_pixels(&self) -> usize {
        self.height * self.width
    }

    pub fn input_len(&self) -> usize {
        self.batch * self.c_in * self.in_pixels()
    }

    pub fn output_len(&self) -> usize {
        self.batch * self.c_out * self.out_pixels()
    }

    pub fn weight_len(&self) -> usize {
        self.c_out * self.col_rows()
    }

    /// Panics with the mismatch when a buffer does not fit the shape: the callers build
    /// shapes from tensors, so a mismatch is a bug, not bad input.
    fn check(&self, what: &str, len: usize, expected: usize) {
        assert_eq!(len, expected, "conv2d {what}: length {len}, shape {self:?}");
    }
}

/// The range of output positions `o` whose input position `o * stride + k - pad` is inside
/// `0..size`, so the inner loops need no bounds checks.
fn valid_outputs(size: usize, out: usize, stride: usize, k: usize, pad: usize) -> (usize, usize) {
    let first = pad.saturating_sub(k).div_ceil(stride);
    // Smallest o with o * stride + k >= size + pad.
    let end = (size + pad).saturating_sub(k).div_ceil(stride).min(out);
    (first.min(end), end)
}

/// Fills `col` (`[col_rows, out_pixels]`, row-major) from one sample's `[c_in, h, w]` input.
fn im2col(s: &Conv2dShape, x: &[f32], col: &mut [f32]) {
    im2col_strided(s, x, col, s.out_pixels());
}

/// [`im2col`] into rows `row_stride` apart, so several samples can sit side by side in one
/// `[col_rows, samples · out_pixels]` matrix (`col` starts at this sample's first column).
fn im2col_strided(s: &Conv2dShape, x: &[f32], col: &mut [f32], row_stride: usize) {
    let (oh, ow) = (s.out_height(), s.out_width());
    let [kh, kw] = s.kernel;
    let [sh, sw] = s.stride;
    let [ph, pw] = s.padding;
    for row in 0..s.col_rows() {
        let col_row = &mut col[row * row_stride..row * row_stride + oh * ow];
        let c = row / (kh * kw);
        let (ki, kj) = ((row / kw) % kh, row % kw);
        let plane = &x[c * s.in_pixels()..(c + 1) * s.in_pixels()];
        let (y0, y1) = valid_outputs(s.height, oh, sh, ki, ph);
        let (x0, x1) = valid_outputs(s.width, ow, sw, kj, pw);
        col_row[..y0 * ow].fill(0.0);
        col_row[y1 * ow..].fill(0.0);
        if sw == 1 && sh == 1 && ow == s.width {
            same_size_rows(
                col_row,
                plane,
                s.width,
                [y0, y1],
                [x0, x1],
                ki + y0,
                kj,
                [ph, pw],
            );
            continue;
        }
        for oy in y0..y1 {
            let iy = oy * sh + ki - ph;
            let dst = &mut col_row[oy * ow..(oy + 1) * ow];
            dst[..x0].fill(0.0);
            dst[x1..].fill(0.0);
            let src = &plane[iy * s.width..(iy + 1) * s.width];
            if sw == 1 {
                let ix0 = x0 + kj - pw;
                dst[x0..x1].copy_from_slice(&src[ix0..ix0 + (x1 - x0)]);
            } else {
                let ix0 = x0 * sw + kj - pw;
                for (d, v) in dst[x0..x1].iter_mut().zip(src[ix0..].iter().step_by(sw)) {
                    *d = *v;
                }
            }
        }
    }
}

/// One im2col row of a stride-1 convolution whose output is as wide as its input (the usual
/// "same" padding): output rows `y0..y1` are then one contiguous run of the input plane, shifted
/// by `kj − pw`, so they are copied in one go and only the `x ∉ x0..x1` edge values (which the
/// shift wrapped in from the neighbouring row) are zeroed after. The general path makes one
/// short copy per output row, and those calls cost more than the data they move.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn same_size_rows(
    col_row: &mut [f32],
    plane: &[f32],
    width: usize,
    [y0, y1]: [usize; 2],
    [x0, x1]: [usize; 2],
    first_input_row_plus_pad: usize,
    kj: usize,
    [ph, pw]: [usize; 2],
) {
    if y0 >= y1 {
        return;
    }
    let block = &mut col_row[y0 * width..y1 * width];
    // Input index of the block's first element; may be one or more before the plane's start
    // (left padding on the first row) or run past its end (right padding on the last row).
    let start = ((first_input_row_plus_pad - ph) * width + kj) as isize - pw as isize;
    let end = start + block.len() as isize;
    let (from, to) = (start.max(0), end.min(plane.len() as isize));
    let lead = (from - start) as usize;
    block[..lead].fill(0.0);
    let copied = (to - from) as usize;
    block[lead..lead + copied].copy_from_slice(&plane[from as usize..to as usize]);
    block[lead + copied..].fill(0.0);
    for row in block.chunks_exact_mut(width) {
        row[..x0].fill(0.0);
        row[x1..].fill(0.0);
    }
}

/// Adds `col` (`[col_rows, out_pixels]`) back into one sample's `[c_in, h, w]` gradient:
/// the adjoint of [`im2col`].
fn col2im(s: &Conv2dShape, col: &[f32], dx: &mut [f32]) {
    let (oh, ow) = (s.out_height(), s.out_width());
    let [kh, kw] = s.kernel;
    let [sh, sw] = s.stride;
    let [ph, pw] = s.padding;
    for (row, col_row) in col.chunks_exact(oh * ow).enumerate() {
        let c = row / (kh * kw);
        let (ki, kj) = ((row / kw) % kh, row % kw);
        let plane = &mut dx[c * s.height * s.width..(c + 1) * s.height * s.width];
        let (y0, y1) = valid_outputs(s.height, oh, sh, ki, ph);
        let (x0, x1) = valid_outputs(s.width, ow, sw, kj, pw);
        for oy in y0..y1 {
            let iy = oy * sh + ki - ph;
            let src = &col_row[oy * ow + x0..oy * ow + x1];
            let dst = &mut plane[iy * s.width..(iy + 1) * s.width];
            if sw == 1 {
                let ix0 = x0 + kj - pw;
                for (d, v) in dst[ix0..ix0 + src.len()].iter_mut().zip(src) {
                    *d += v;
                }
            } else {
                let ix0 = x0 * sw + kj - pw;
                for (d, v) in dst[ix0..].iter_mut().step_by(sw).zip(src) {
                    *d += v;
                }
            }
        }
    }
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]`, all row-major unless strides say otherwise.
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: [usize; 2],
    rhs: &[f32],
    rhs_strides: [usize; 2],
) {
    debug_assert!(dst.len() >= m * n);
    debug_assert!(
        m == 0 || k == 0 || lhs.len() > (m - 1) * lhs_strides[0] + (k - 1) * lhs_strides[1]
    );
    debug_assert!(
        k == 0 || n == 0 || rhs.len() > (k - 1) * rhs_strides[0] + (n - 1) * rhs_strides[1]
    );
    // SAFETY: the asserts above (checked by the callers' shape arithmetic) keep every index
    // gemm touches inside the three slices; dst does not alias lhs or rhs (distinct borrows).
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_strides[1] as isize,
            lhs_strides[0] as isize,
            rhs.as_ptr(),
            rhs_strides[1] as isize,
            rhs_strides[0] as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// `out[b] = weight · im2col(x[b])`, plus `bias` per output channel when given.
pub fn conv2d_forward(
    s: &Conv2dShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    s.check("input", x.len(), s.input_len());
    s.check("weight", weight.len(), s.weight_len());
    s.check("output", out.len(), s.output_len());
    let (k, p) = (s.col_rows(), s.out_pixels());
    let (in_len, out_len) = (s.c_in * s.in_pixels(), s.c_out * p);
    let group = samples_per_gemm(p);
    out.par_chunks_mut(group * out_len)
        .enumerate()
        .for_each_init(
            // The side-by-side product buffer is only needed when samples are grouped.
            || {
                let wide = if group > 1 { out_len * group } else { 0 };
                (vec![0.0f32; k * group * p], vec![0.0f32; wide])
            },
            |(col, wide), (g, out_g)| {
                let n = out_g.len() / out_len;
                let first = g * group;
                if n == 1 {
                    im2col(s, &x[first * in_len..(first + 1) * in_len], col);
                    matmul(s.c_out, p, k, out_g, false, weight, [k, 1], col, [p, 1]);
                } else {
                    // Samples side by side: one [c_out, n·p] product, then back to NCHW.
                    let ld = n * p;
                    for i in 0..n {
                        let b = first + i;
                        im2col_strided(s, &x[b * in_len..(b + 1) * in_len], &mut col[i * p..], ld);
                    }
                    matmul(s.c_out, ld, k, wide, false, weight, [k, 1], col, [ld, 1]);
                    for (i, out_b) in out_g.chunks_exact_mut(out_len).enumerate() {
                        for (o, plane) in out_b.chunks_exact_mut(p).enumerate() {
                            plane.copy_from_slice(&wide[o * ld + i * p..o * ld + (i + 1) * p]);
                        }
                    }
                }
                if let Some(bias) = bias {
                    for (plane, &v) in out_g.chunks_exact_mut(p).zip(bias.iter().cycle()) {
                        plane.iter_mut().for_each(|o| *o += v);
                    }
                }
            },
        );
}

/// Samples whose pixels go into one gemm: small feature maps make a narrow product that
/// gemm runs far below its peak, so several samples are put side by side to reach
/// about `MIN_GEMM_COLUMNS` columns.
fn samples_per_gemm(out_pixels: usize) -> usize {
    const MIN_GEMM_COLUMNS: usize = 256;
    MIN_GEMM_COLUMNS.div_ceil(out_pixels.max(1)).max(1)
}

/// Gradient with respect to the input: `dx[b] = col2im(weightᵀ · dout[b])`.
pub fn conv2d_backward_input(s: &Conv2dShape, weight: &[f32], dout: &[f32], dx: &mut [f32]) {
    s.check("weight", weight.len(), s.weight_len());
    s.check("output gradient", dout.len(), s.output_len());
    s.check("input gradient", dx.len(), s.input_len());
    if let Some((transposed, flipped)) = as_forward_convolution(s, weight) {
        return conv2d_forward(&transposed, dout, &flipped, None, dx);
    }
    let (k, p) = (s.col_rows(), s.out_pixels());
    let out_len = s.c_out * p;
    dx.par_chunks_mut(s.c_in * s.in_pixels())
        .enumerate()
        .for_each_init(
            || vec![0.0f32; k * p],
            |col, (b, dx_b)| {
                // weightᵀ is [k, c_out]: read the row-major [c_out, k] weight with swapped strides.
                let dout_b = &dout[b * out_len..(b + 1) * out_len];
                matmul(k, p, s.c_out, col, false, weight, [1, k], dout_b, [p, 1]);
                dx_b.fill(0.0);
                col2im(s, col, dx_b);
            },
        );
}

/// For stride 1, the input gradient is itself a convolution: of the output gradient with the
/// weight flipped in space and transposed in channels, padded by `kernel − 1 − padding`. That
/// runs the forward path (a gemm with `c_out · kh · kw` as its inner dimension, no scatter-add)
/// instead of a gemm over only `c_out` followed by col2im.
fn as_forward_convolution(s: &Conv2dShape, weight: &[f32]) -> Option<(Conv2dShape, Vec<f32>)> {
    let [kh, kw] = s.kernel;
    if s.stride != [1, 1] || s.padding[0] >= kh || s.padding[1] >= kw {
        return None;
    }
    let transposed = Conv2dShape {
        batch: s.batch,
        c_in: s.c_out,
        height: s.out_height(),
        width: s.out_width(),
        c_out: s.c_in,
        kernel: s.kernel,
        stride: [1, 1],
        padding: [kh - 1 - s.padding[0], kw - 1 - s.padding[1]],
    };
    let mut flipped = vec![0.0; weight.len()];
    for o in 0..s.c_out {
        for c in 0..s.c_in {
            for i in 0..kh {
                for j in 0..kw {
                    flipped[((c * s.c_out + o) * kh + kh - 1 - i) * kw + kw - 1 - j] =
                        weight[((o * s.c_in + c) * kh + i) * kw + j];
                }
            }
        }
    }
    Some((transposed, flipped))
}

/// Gradient with respect to the weight: `dw = Σ_b dout[b] · im2col(x[b])ᵀ`.
pub fn conv2d_backward_weight(s: &Conv2dShape, x: &[f32], dout: &[f32], dw: &mut [f32]) {
    s.check("input", x.len(), s.input_len());
    s.check("output gradient", dout.len(), s.output_len());
    s.check("weight gradient", dw.len(), s.weight_len());
    let (k, p) = (s.col_rows(), s.out_pixels());
    let (in_len, out_len) = (s.c_in * s.in_pixels(), s.c_out * p);
    // Fixed chunks of the batch, each summed into its own partial in parallel, then the partials
    // added in order: the result does not depend on thread count or scheduling.
    let partials: Vec<Vec<f32>> = (0..s.batch.div_ceil(WEIGHT_GRAD_CHUNK))
        .into_par_iter()
        .map(|chunk| {
            let mut col = vec![0.0f32; k * p];
            // Accumulates dwᵀ = col · doutᵀ ([k, c_out]): the long `p` axis is then contiguous
            // in both operands, which gemm packs faster than the transposed-col formulation.
            let mut acc_t = vec![0.0f32; k * s.c_out];
            let samples = chunk * WEIGHT_GRAD_CHUNK..((chunk + 1) * WEIGHT_GRAD_CHUNK).min(s.batch);
            for (i, b) in samples.enumerate() {
                im2col(s, &x[b * in_len..(b + 1) * in_len], &mut col);
                let dout_b = &dout[b * out_len..(b + 1) * out_len];
                matmul(
                    k,
                    s.c_out,
                    p,
                    &mut acc_t,
                    i > 0,
                    &col,
                    [p, 1],
                    dout_b,
                    [1, p],
                );
            }
            acc_t
        })
        .collect();
    dw.fill(0.0);
    for partial in &partials {
        for (o, row) in dw.chunks_exact_mut(k).enumerate() {
            row.iter_mut()
                .enumerate()
                .for_each(|(j, d)| *d += partial[j * s.c_out + o]);
        }
    }
}

/// Gradient with respect to the bias: the output gradient summed per channel.
pub fn conv2d_backward_bias(s: &Conv2dShape, dout: &[f32], dbias: &mut [f32]) {
    s.check("output gradient", dout.len(), s.output_len());
    s.check("bias gradient", dbias.len(), s.c_out);
    let p = s.out_pixels();
    dbias.fill(0.0);
    for sample in dout.chunks_exact(s.c_out * p) {
        for (d, plane) in dbias.iter_mut().zip(sample.chunks_exact(p)) {
            *d += plane.iter().sum::<f32>();
        }
    }
}

//! The kernels against direct-loop references (convolution) and finite differences (batch norm).

use cinefuse_kernels::*;

/// Deterministic values in [-1, 1) without a dependency.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

/// Visits every (sample, out channel, in channel, ki, kj, oy, ox, iy, ix) that contributes.
fn for_each_tap(s: &Conv2dShape, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
    let (oh, ow) = (s.out_height(), s.out_width());
    for b in 0..s.batch {
        for o in 0..s.c_out {
            for c in 0..s.c_in {
                for ki in 0..s.kernel[0] {
                    for kj in 0..s.kernel[1] {
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let iy = (oy * s.stride[0] + ki) as isize - s.padding[0] as isize;
                                let ix = (ox * s.stride[1] + kj) as isize - s.padding[1] as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= s.height as isize
                                    || ix >= s.width as isize
                                {
                                    continue;
                                }
                                let x_i = ((b * s.c_in + c) * s.height + iy as usize) * s.width
                                    + ix as usize;
                                let w_i = ((o * s.c_in + c) * s.kernel[0] + ki) * s.kernel[1] + kj;
                                let o_i = ((b * s.c_out + o) * oh + oy) * ow + ox;
                                f(x_i, w_i, o_i, o, b);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn shapes() -> Vec<Conv2dShape> {
    let shape = |batch, c_in, height, width, c_out, k: [usize; 2], stride, padding| Conv2dShape {
        batch,
        c_in,
        height,
        width,
        c_out,
        kernel: k,
        stride,
        padding,
    };
    vec![
        shape(3, 3, 9, 7, 4, [3, 3], [1, 1], [1, 1]),
        shape(5, 2, 10, 8, 3, [3, 3], [2, 2], [1, 1]),
        shape(2, 4, 7, 6, 5, [1, 1], [2, 2], [0, 0]),
        shape(9, 3, 8, 9, 2, [3, 2], [1, 2], [2, 0]),
        shape(1, 1, 5, 5, 1, [5, 5], [1, 1], [0, 0]),
        // "Same"-size stride-1 convolutions (im2col's one-copy path), wider padding than 1.
        shape(2, 2, 6, 8, 3, [5, 5], [1, 1], [2, 2]),
        shape(3, 2, 4, 9, 2, [3, 5], [1, 1], [1, 2]),
    ]
}

#[test]
fn conv2d_matches_direct_loops_forward_and_backward() {
    for (n, s) in shapes().into_iter().enumerate() {
        let seed = n as u64 * 10;
        let x = values(s.input_len(), seed);
        let w = values(s.weight_len(), seed + 1);
        let bias = values(s.c_out, seed + 2);
        let dout = values(s.output_len(), seed + 3);

        let (mut want_out, mut want_dx, mut want_dw) = (
            vec![0.0; s.output_len()],
            vec![0.0; s.input_len()],
            vec![0.0; s.weight_len()],
        );
        let mut want_db = vec![0.0; s.c_out];
        for_each_tap(&s, |x_i, w_i, o_i, _, _| {
            want_out[o_i] += x[x_i] * w[w_i];
            want_dx[x_i] += w[w_i] * dout[o_i];
            want_dw[w_i] += x[x_i] * dout[o_i];
        });
        let plane = s.out_height() * s.out_width();
        for (i, v) in want_out.iter_mut().enumerate() {
            *v += bias[(i / plane) % s.c_out];
            want_db[(i / plane) % s.c_out] += dout[i];
        }

        let mut out = vec![f32::NAN; s.output_len()];
        conv2d_forward(&s, &x, &w, Some(&bias), &mut out);
        assert_close(&format!("shape {n} forward"), &out, &want_out, 1e-4);
        let mut dx = vec![f32::NAN; s.input_len()];
        conv2d_backward_input(&s, &w, &dout, &mut dx);
        assert_close(&format!("shape {n} input grad"), &dx, &want_dx, 1e-4);
        let mut dw = vec![f32::NAN; s.weight_len()];
        conv2d_backward_weight(&s, &x, &dout, &mut dw);
        assert_close(&format!("shape {n} weight grad"), &dw, &want_dw, 1e-4);
        let mut db = vec![f32::NAN; s.c_out];
        conv2d_backward_bias(&s, &dout, &mut db);
        assert_close(&format!("shape {n} bias grad"), &db, &want_db, 1e-4);
    }
}

#[test]
fn conv2d_weight_gradient_is_bitwise_reproducible() {
    let s = Conv2dShape {
        batch: 13,
        c_in: 4,
        height: 12,
        width: 10,
        c_out: 6,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
    };
    let (x, dout) = (values(s.input_len(), 1), values(s.output_len(), 2));
    let run = || {
        let mut dw = vec![0.0; s.weight_len()];
        conv2d_backward_weight(&s, &x, &dout, &mut dw);
        dw
    };
    let first = run();
    for _ in 0..5 {
        assert_eq!(run(), first);
    }
}

#[test]
#[should_panic(expected = "conv2d weight")]
fn conv2d_rejects_a_weight_of_the_wrong_size() {
    let s = shapes()[0];
    let mut out = vec![0.0; s.output_len()];
    conv2d_forward(&s, &vec![0.0; s.input_len()], &[0.0; 3], None, &mut out);
}

/// Loss `Σ y·r` for a fixed `r`, so `dy = r`.
fn bn_loss(
    x: &[f32],
    channels: usize,
    plane: usize,
    gamma: &[f32],
    beta: &[f32],
    r: &[f32],
) -> f64 {
    let mut y = vec![0.0; x.len()];
    batch_norm_forward(x, channels, plane, gamma, beta, 1e-5, &mut y);
    y.iter()
        .zip(r)
        .map(|(a, b)| (*a as f64) * (*b as f64))
        .sum()
}

#[test]
fn batch_norm_normalizes_each_channel() {
    let (channels, plane, batch) = (3, 20, 4);
    let x: Vec<f32> = values(batch * channels * plane, 5)
        .iter()
        .enumerate()
        .map(|(i, v)| v * 3.0 + (i / plane % channels) as f32 * 10.0)
        .collect();
    let mut y = vec![0.0; x.len()];
    let stats = batch_norm_forward(
        &x,
        channels,
        plane,
        &[2.0, 1.0, 0.5],
        &[1.0, 0.0, -1.0],
        1e-5,
        &mut y,
    );
    for c in 0..channels {
        let ys: Vec<f32> = (0..batch)
            .flat_map(|b| y[(b * channels + c) * plane..][..plane].to_vec())
            .collect();
        let mean = ys.iter().sum::<f32>() / ys.len() as f32;
        let var = ys.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / ys.len() as f32;
        assert!(
            (mean - [1.0, 0.0, -1.0][c]).abs() < 1e-4,
            "channel {c} mean {mean}"
        );
        assert!(
            (var.sqrt() - [2.0, 1.0, 0.5][c]).abs() < 1e-3,
            "channel {c} std {}",
            var.sqrt()
        );
        assert!(
            (stats.mean[c] - c as f32 * 10.0).abs() < 1.0,
            "channel {c} batch mean {}",
            stats.mean[c]
        );
    }
}

#[test]
fn batch_norm_backward_matches_finite_differences() {
    let (channels, plane, batch) = (2, 6, 3);
    let x = values(batch * channels * plane, 7);
    let gamma = vec![1.5, -0.7];
    let beta = vec![0.2, 0.4];
    let r = values(x.len(), 8);
    let mut y = vec![0.0; x.len()];
    let stats = batch_norm_forward(&x, channels, plane, &gamma, &beta, 1e-5, &mut y);
    let mut dx = vec![0.0; x.len()];
    let (dgamma, dbeta) = batch_norm_backward(&x, &r, channels, plane, &gamma, &stats, &mut dx);

    let h = 1e-2f32;
    let numeric = |f: &dyn Fn(f32) -> f64| ((f(h) - f(-h)) / (2.0 * h as f64)) as f32;
    for i in 0..x.len() {
        let d = numeric(&|e| {
            let mut xe = x.clone();
            xe[i] += e;
            bn_loss(&xe, channels, plane, &gamma, &beta, &r)
        });
        assert!(
            (d - dx[i]).abs() < 2e-2,
            "dx[{i}]: analytic {}, numeric {d}",
            dx[i]
        );
    }
    for c in 0..channels {
        let dg = numeric(&|e| {
            let mut g = gamma.clone();
            g[c] += e;
            bn_loss(&x, channels, plane, &g, &beta, &r)
        });
        let db = numeric(&|e| {
            let mut b = beta.clone();
            b[c] += e;
            bn_loss(&x, channels, plane, &gamma, &b, &r)
        });
        assert!(
            (dg - dgamma[c]).abs() < 1e-2,
            "dgamma[{c}]: {} vs {dg}",
            dgamma[c]
        );
        assert!(
            (db - dbeta[c]).abs() < 1e-2,
            "dbeta[{c}]: {} vs {db}",
            dbeta[c]
        );
    }
}

#[test]
fn dropout_masks_keep_the_right_fraction_and_are_reproducible() {
    let mut a = vec![0.0; 100_003];
    dropout_mask(&mut a, 0.9, 42);
    let kept = a.iter().filter(|&&v| v > 0.0).count() as f64 / a.len() as f64;
    assert!((kept - 0.9).abs() < 0.005, "kept {kept}");
    assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.9).abs() < 1e-6));
    let mut b = vec![0.0; 100_003];
    dropout_mask(&mut b, 0.9, 42);
    assert_eq!(a, b, "same seed, same mask");
    dropout_mask(&mut b, 0.9, 43);
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64;
    // Two independent masks agree on 0.9² + 0.1² = 82 % of the elements.
    assert!(
        (same - 0.82).abs() < 0.01,
        "masks of different seeds agree on {same}"
    );
    // No short period: the two halves of one mask are not the same pattern.
    assert_ne!(a[..50_000], a[50_000..100_000]);
}

#[test]
fn softmax_rows_sum_to_one_and_backward_matches_finite_differences() {
    let row = 7;
    let mut x = values(row * 5, 21);
    x[3] = -1.0e4; // a masked score: weight ~0, no NaN
    let mut y = vec![0.0; x.len()];
    softmax_forward(&x, row, &mut y);
    for r in y.chunks(row) {
        assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
    assert!(y[3] < 1e-30);
    let want: Vec<f32> = x
        .chunks(row)
        .flat_map(|r| {
            let m = r.iter().cloned().fold(f32::MIN, f32::max);
            let e: Vec<f64> = r.iter().map(|&v| ((v - m) as f64).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(move |v| (v / s) as f32)
        })
        .collect();
    assert_close("softmax", &y, &want, 1e-6);

    let g = values(x.len(), 22);
    let mut dx = vec![0.0; x.len()];
    softmax_backward(&y, &g, row, &mut dx);
    let loss = |x: &[f32]| {
        let mut y = vec![0.0; x.len()];
        softmax_forward(x, row, &mut y);
        y.iter()
            .zip(&g)
            .map(|(a, b)| (*a as f64) * (*b as f64))
            .sum::<f64>()
    };
    for i in 0..x.len() {
        if i == 3 {
            continue;
        }
        let (mut up, mut down) = (x.clone(), x.clone());
        up[i] += 1e-2;
        down[i] -= 1e-2;
        let numeric = ((loss(&up) - loss(&down)) / 2e-2) as f32;
        assert!(
            (numeric - dx[i]).abs() < 1e-3,
            "dx[{i}]: {} vs {numeric}",
            dx[i]
        );
    }
}

#[test]
fn gelu_matches_its_definition_and_its_derivative() {
    let x: Vec<f32> = (-400..=400).map(|i| i as f32 * 0.02).collect();
    let mut y = vec![0.0; x.len()];
    gelu_forward(&x, &mut y);
    // Reference: x·Φ(x) with Φ from erf's f64 Maclaurin series, accurate for |x| ≤ 4; beyond,
    // GELU is within 2e-4 of ReLU.
    let phi = |v: f64| {
        let z = v / std::f64::consts::SQRT_2;
        let (mut term, mut sum, mut n) = (z, z, 0.0);
        while term.abs() > 1e-18 {
            n += 1.0;
            term *= -z * z / n;
            sum += term / (2.0 * n + 1.0);
        }
        0.5 * (1.0 + sum * 2.0 / std::f64::consts::PI.sqrt())
    };
    for (&v, &got) in x.iter().zip(&y) {
        if v.abs() > 4.0 {
            assert!((got - v.max(0.0)).abs() < 2e-4, "gelu({v}) = {got}");
            continue;
        }
        let want = v as f64 * phi(v as f64);
        assert!(
            (got as f64 - want).abs() < 2e-6 * (1.0 + want.abs()),
            "gelu({v}): {got} vs {want}"
        );
    }
    let ones = vec![1.0; x.len()];
    let mut dx = vec![0.0; x.len()];
    gelu_backward(&x, &ones, &mut dx);
    for (i, &v) in x.iter().enumerate().step_by(7) {
        let (mut a, mut b) = ([0.0f32], [0.0f32]);
        gelu_forward(&[v + 1e-2], &mut a);
        gelu_forward(&[v - 1e-2], &mut b);
        let numeric = (a[0] - b[0]) / 2e-2;
        assert!(
            (numeric - dx[i]).abs() < 2e-3,
            "gelu'({v}): {} vs {numeric}",
            dx[i]
        );
    }
}

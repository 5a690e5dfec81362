//! Per-layer timings of the kernels at the quickstart poster CNN's shapes (batch 32), for
//! working on the kernels themselves. The end-to-end numbers are `cinefuse bench`'s.
//!
//!     cargo run -p cinefuse-kernels --example kernel_speed

use std::time::Instant;

use cinefuse_kernels::*;

/// Milliseconds per call of `f`, averaged over `reps` calls after one warm-up call.
fn millis(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    for _ in 0..reps {
        f();
    }
    start.elapsed().as_secs_f64() * 1e3 / reps as f64
}

fn main() {
    // (c_in, c_out, height, width, kernel, stride): the stem, the three stages and a shortcut.
    let layers = [
        (3, 16, 72, 48, 3, 2),
        (16, 16, 36, 24, 3, 1),
        (16, 32, 36, 24, 3, 2),
        (32, 32, 18, 12, 3, 1),
        (16, 32, 36, 24, 1, 2),
        (32, 64, 18, 12, 3, 2),
        (64, 64, 9, 6, 3, 1),
    ];
    let reps = 20;
    for (c_in, c_out, height, width, k, stride) in layers {
        let pad = k / 2;
        let s = Conv2dShape {
            batch: 32,
            c_in,
            height,
            width,
            c_out,
            kernel: [k, k],
            stride: [stride, stride],
            padding: [pad, pad],
        };
        let x: Vec<f32> = (0..s.input_len()).map(|i| (i % 17) as f32 * 0.1).collect();
        let weight: Vec<f32> = (0..s.weight_len()).map(|i| (i % 7) as f32 * 0.01).collect();
        let (mut out, mut dx, mut dw) = (
            vec![0.0; s.output_len()],
            vec![0.0; s.input_len()],
            vec![0.0; s.weight_len()],
        );
        let forward = millis(reps, || conv2d_forward(&s, &x, &weight, None, &mut out));
        let input_grad = millis(reps, || conv2d_backward_input(&s, &weight, &out, &mut dx));
        let weight_grad = millis(reps, || conv2d_backward_weight(&s, &x, &out, &mut dw));

        let plane = s.out_height() * s.out_width();
        let ones = vec![1.0; c_out];
        let (mut y, mut dy) = (vec![0.0; s.output_len()], vec![0.0; s.output_len()]);
        let norm = millis(reps, || {
            let stats = batch_norm_forward(&out, c_out, plane, &ones, &ones, 1e-5, &mut y);
            batch_norm_backward(&out, &y, c_out, plane, &ones, &stats, &mut dy);
        });
        println!(
            "conv {c_in:>2}->{c_out:<2} {height}x{width} k{k} s{stride}: forward {forward:.3} ms, \
             input grad {input_grad:.3} ms, weight grad {weight_grad:.3} ms | batch norm {c_out} \
             forward+backward {norm:.3} ms"
        );
    }
}

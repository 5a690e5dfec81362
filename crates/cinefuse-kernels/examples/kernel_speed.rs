use cinefuse_kernels::*;
use std::time::Instant;
fn main() {
    let b = 32;
    let shapes = [
        (3, 16, 72, 48, 3, 2),
        (16, 16, 36, 24, 3, 1),
        (16, 32, 36, 24, 3, 2),
        (32, 32, 18, 12, 3, 1),
        (16, 32, 36, 24, 1, 2),
        (32, 64, 18, 12, 3, 2),
        (64, 64, 9, 6, 3, 1),
    ];
    for (ci, co, h, w, k, st) in shapes {
        let p = if k == 3 { 1 } else { 0 };
        let s = Conv2dShape {
            batch: b,
            c_in: ci,
            height: h,
            width: w,
            c_out: co,
            kernel: [k, k],
            stride: [st, st],
            padding: [p, p],
        };
        let x = vec![0.5f32; s.input_len()];
        let wt = vec![0.1f32; s.weight_len()];
        let mut out = vec![0.0; s.output_len()];
        let mut dx = vec![0.0; s.input_len()];
        let mut dw = vec![0.0; s.weight_len()];
        let reps = 20;
        let t = Instant::now();
        for _ in 0..reps {
            conv2d_forward(&s, &x, &wt, None, &mut out);
        }
        let f = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        let t = Instant::now();
        for _ in 0..reps {
            conv2d_backward_input(&s, &wt, &out, &mut dx);
        }
        let bi = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        let t = Instant::now();
        for _ in 0..reps {
            conv2d_backward_weight(&s, &x, &out, &mut dw);
        }
        let bw = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        let mut y = vec![0.0; s.output_len()];
        let g = vec![1.0; co];
        let t = Instant::now();
        for _ in 0..reps {
            let st = batch_norm_forward(
                &out,
                co,
                s.out_height() * s.out_width(),
                &g,
                &g,
                1e-5,
                &mut y,
            );
            batch_norm_backward(
                &out,
                &y,
                co,
                s.out_height() * s.out_width(),
                &g,
                &st,
                &mut vec![0.0; s.output_len()],
            );
        }
        let bn = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        println!(
            "conv {ci}->{co} {h}x{w} k{k} s{st}: fwd {f:.3} bwd_x {bi:.3} bwd_w {bw:.3} ms | bn {co} fwd+bwd {bn:.3} ms"
        );
    }
}

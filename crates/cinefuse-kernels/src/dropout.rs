//! Dropout masks from a counter-based generator: element `i` of the mask depends only on
//! `(seed, i)`, so masks are filled in parallel and still reproducible for a given seed, whatever
//! the thread count. Drawing the same masks from a sequential cryptographic RNG (what a generic
//! `random_like(Bernoulli)` does) cost a fifth of the text encoder's training step.

use rayon::prelude::*;

/// SplitMix64's output function: a bijective mix with good avalanche, enough for dropout.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `mask` with `1 / keep` (kept) or `0` (dropped), each element kept with probability
/// `keep`, independently.
pub fn dropout_mask(mask: &mut [f32], keep: f32, seed: u64) {
    assert!(
        keep > 0.0 && keep <= 1.0,
        "dropout keep probability {keep} is not in (0, 1]"
    );
    // Compare 24-bit uniforms against the threshold: exact in f32 arithmetic.
    let threshold = (keep as f64 * (1u64 << 24) as f64) as u64;
    let scale = 1.0 / keep;
    let base = mix(seed);
    mask.par_chunks_mut(4096)
        .enumerate()
        .for_each(|(c, chunk)| {
            let start = (c * 4096) as u64;
            for (j, m) in chunk.iter_mut().enumerate() {
                let r =
                    mix(base.wrapping_add((start + j as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)));
                *m = if (r >> 40) < threshold { scale } else { 0.0 };
            }
        });
}

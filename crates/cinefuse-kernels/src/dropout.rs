//! Dropout masks from a counter-based generator: element `i` of the mask depends only on
//! `(seed, i)`, so masks are filled in parallel and still reproducible for a given seed, whatever
//! the thread count. Drawing the same masks from a sequential cryptographic RNG (what a generic
//! `random_like(Bernoulli)` does) cost a fifth of the text encoder's training step.

use rayon::prelude::*;

use crate::simd::best_simd;

/// Elements per parallel task.
const PER_TASK: usize = 1 << 14;

/// MurmurHash3's 32-bit finalizer: a bijection with full avalanche, and only 32-bit
/// multiplies, so the mask loop vectorizes.
#[inline(always)]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// SplitMix64's output function, to spread the user's seed over both 32-bit halves.
fn mix64(mut z: u64) -> u64 {
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
    assert!(
        mask.len() <= u32::MAX as usize,
        "dropout mask of {} elements: at most 2³² are distinct",
        mask.len()
    );
    let key = mix64(seed);
    mask.par_chunks_mut(PER_TASK)
        .enumerate()
        .for_each(|(c, chunk)| fill(chunk, (c * PER_TASK) as u32, key, keep));
}

#[inline(always)]
fn fill_body(chunk: &mut [f32], start: u32, key: u64, keep: f32) {
    // Compare 24-bit uniforms against the threshold: exact in f32 arithmetic.
    let threshold = (keep as f64 * (1u64 << 24) as f64) as u32;
    let scale = 1.0 / keep;
    let (lo, hi) = (key as u32, (key >> 32) as u32);
    for (j, m) in chunk.iter_mut().enumerate() {
        let i = start.wrapping_add(j as u32);
        let r = fmix32(fmix32(i.wrapping_mul(0x9e37_79b9) ^ lo).wrapping_add(hi));
        *m = if (r >> 8) < threshold { scale } else { 0.0 };
    }
}

best_simd!(fn fill(chunk: &mut [f32], start: u32, key: u64, keep: f32) => fill_body);

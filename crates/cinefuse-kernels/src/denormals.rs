//! Subnormal ("denormal") floats make x86 arithmetic one or two orders of magnitude slower,
//! and backpropagating through padded attention produces them in bulk: a MiniLM fine-tuning
//! step on batches with padding ran 6–10× slower than on the same batches without it
//! (BENCHMARKS.md). Flushing them to zero (FTZ and DAZ in MXCSR, which is per thread) removes
//! that; the values lost are below 1.2e-38.

/// Sets flush-to-zero and denormals-are-zero on the calling thread (x86-64; elsewhere it does
/// nothing).
pub fn flush_denormals_on_this_thread() {
    #[cfg(target_arch = "x86_64")]
    #[allow(deprecated)]
    // std deprecates MXCSR access as a whole; FTZ/DAZ only round subnormals.
    // SAFETY: MXCSR bits 15 (FTZ) and 6 (DAZ) only make this thread's SSE arithmetic treat
    // subnormal inputs and results as zero; no memory safety depends on them.
    unsafe {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        _mm_setcsr(_mm_getcsr() | 0x8040);
    }
}

/// Flushes denormals on the calling thread and on every thread of rayon's global pool, which
/// runs Burn's flex kernels and cinefuse's own. Call it once at start-up.
pub fn flush_denormals() {
    flush_denormals_on_this_thread();
    let built = rayon::ThreadPoolBuilder::new()
        .start_handler(|_| flush_denormals_on_this_thread())
        .build_global();
    if built.is_err() {
        // The pool already runs: reach each of its threads.
        rayon::broadcast(|_| flush_denormals_on_this_thread());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn subnormal_results_become_zero_on_a_flushed_thread() {
        let half_of_smallest = || black_box(f32::MIN_POSITIVE) / black_box(4.0);
        // On a thread of its own, so the other tests keep the default mode.
        let (before, after) = std::thread::spawn(move || {
            let before = half_of_smallest();
            flush_denormals_on_this_thread();
            (before, half_of_smallest())
        })
        .join()
        .unwrap();
        assert!(before > 0.0 && before.is_subnormal(), "{before}");
        assert_eq!(after, 0.0);
    }
}

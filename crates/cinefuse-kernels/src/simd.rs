//! Runtime selection of the widest vector instructions for the element-wise loops. The crate
//! is compiled for the baseline target (SSE2 on x86-64, so binaries run on any CPU); the loops
//! are plain Rust that LLVM vectorizes, and `best_simd!` compiles each one again with AVX-512
//! and with AVX2 enabled, picking at run time what the CPU has.

/// `best_simd!(fn name(args) [-> ret] => body_fn)` defines `name`, which calls the
/// `#[inline(always)]` function `body_fn` compiled for the best instruction set available.
macro_rules! best_simd {
    (fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $body:ident) => {
        best_simd!(fn $name($($arg: $ty),*) -> () => $body);
    };
    (fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty => $body:ident) => {
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports the features `avx512` was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above, for AVX2 and FMA.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub(crate) use best_simd;

//! Mixed-precision training: each step runs on a copy of the model cast to f16 or bf16, while
//! the f32 master weights and the optimizer state stay where they are. The casts are recorded
//! by autodiff, so the gradients arrive on the masters in f32. f16 needs dynamic loss scaling:
//! small gradients underflow to zero in its 5-bit exponent without it.

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};
use cinefuse_data::MovieBatch;
use cinefuse_data::batch::{PlotStates, PosterStates};
use cinefuse_model::ModelOutput;
use serde::{Deserialize, Serialize};

use super::grads::{grads_are_finite, scale_grads};
use crate::config::Precision;

/// The compute type of a precision (`None`: plain f32, nothing to cast).
pub(crate) fn compute_dtype(precision: Precision) -> Option<FloatDType> {
    match precision {
        Precision::F32 => None,
        Precision::F16 => Some(FloatDType::F16),
        Precision::Bf16 => Some(FloatDType::BF16),
    }
}

/// A copy of `module` whose parameters are `dtype` casts of the f32 masters.
pub(crate) fn cast_params<M: Module>(module: &M, dtype: FloatDType) -> M {
    struct Cast(FloatDType);
    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            param.map(|t| t.cast(dtype))
        }
    }
    module.clone().map(&mut Cast(dtype))
}

/// Puts `module`'s running statistics (batch norm's) back in f32 after a step on its cast
/// copy. A copy shares each `RunningState` with its master, and `cast_params`' mapper writes
/// the cast into that shared state in place, so the step leaves the master's statistics in
/// the half type; the update the step made is kept, stored in f32 again. The parameters are
/// f32 masters and are left as they are.
pub(crate) fn running_statistics_to_f32<M: Module>(module: &M) {
    struct Back;
    impl ModuleMapper for Back {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if param.val().dtype() == DType::F32 {
                return param;
            }
            param.map(|t| t.cast(FloatDType::F32))
        }
    }
    // Pending per-thread updates are merged into the shared state first (`valid` syncs it).
    drop(module.valid());
    drop(module.clone().map(&mut Back));
}

/// The batch's model inputs in `dtype`; targets stay f32 (the loss is computed in f32).
pub(crate) fn cast_inputs(batch: &MovieBatch, dtype: FloatDType) -> MovieBatch {
    let c = |t: &Tensor<2>| t.clone().cast(dtype);
    let c1 = |t: &Tensor<1>| t.clone().cast(dtype);
    MovieBatch {
        posters: batch.posters.clone().cast(dtype),
        poster_present: c1(&batch.poster_present),
        token_mask: c(&batch.token_mask),
        plot_present: c1(&batch.plot_present),
        numeric: c(&batch.numeric),
        numeric_missing: c(&batch.numeric_missing),
        poster_features: batch.poster_features.as_ref().map(c),
        plot_features: batch.plot_features.as_ref().map(c),
        plot_states: batch.plot_states.as_ref().map(|s| PlotStates {
            from_layer: s.from_layer,
            states: s.states.clone().cast(dtype),
        }),
        poster_states: batch.poster_states.as_ref().map(|s| PosterStates {
            from_block: s.from_block,
            maps: s.maps.clone().cast(dtype),
        }),
        ..batch.clone()
    }
}

/// The outputs back in f32, so losses and their reductions run at full precision.
pub(crate) fn outputs_to_f32(mut out: ModelOutput) -> ModelOutput {
    let f = FloatDType::F32;
    out.genre_logits = out.genre_logits.cast(f);
    out.rating = out.rating.cast(f);
    out.weights = out.weights.map(|w| w.cast(f));
    for m in &mut out.per_modality {
        m.genre_logits = m.genre_logits.clone().cast(f);
        m.rating = m.rating.clone().cast(f);
        m.present = m.present.clone().cast(f);
    }
    out
}

/// Dynamic loss scaling for f16: the loss is multiplied by `scale` before the backward pass
/// and the gradients divided by it after. A step whose gradients overflow is skipped and the
/// scale halved; after `GROWTH_INTERVAL` clean steps in a row it doubles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScale {
    pub scale: f64,
    pub clean_steps: usize,
}

impl LossScale {
    pub const INITIAL: f64 = 65536.0;
    pub const GROWTH_INTERVAL: usize = 2000;

    pub fn new() -> Self {
        Self {
            scale: Self::INITIAL,
            clean_steps: 0,
        }
    }

    /// Divides `grads` (computed from the scaled loss) by the scale and updates it. Returns
    /// false when they overflowed: the step is to be skipped, and the scale was lowered.
    pub(crate) fn unscale<M: Module>(&mut self, grads: &mut GradientsParams, model: &M) -> bool {
        let finite = grads_are_finite(grads, model);
        if finite {
            // A power of two: the division is exact.
            scale_grads(grads, 1.0 / self.scale, model);
        }
        self.update(finite)
    }

    /// Updates the scale after a step; returns whether the step's gradients may be applied.
    pub fn update(&mut self, grads_finite: bool) -> bool {
        if !grads_finite {
            self.scale = (self.scale / 2.0).max(1.0);
            self.clean_steps = 0;
            return false;
        }
        self.clean_steps += 1;
        if self.clean_steps == Self::GROWTH_INTERVAL {
            self.scale = (self.scale * 2.0).min(2f64.powi(24));
            self.clean_steps = 0;
        }
        true
    }
}

impl Default for LossScale {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;

    #[test]
    fn the_scale_halves_on_overflow_and_grows_after_clean_steps() {
        let mut s = LossScale::new();
        assert!(!s.update(false));
        assert_eq!(s.scale, LossScale::INITIAL / 2.0);
        for _ in 0..LossScale::GROWTH_INTERVAL - 1 {
            assert!(s.update(true));
        }
        assert_eq!(s.scale, LossScale::INITIAL / 2.0);
        assert!(s.update(true));
        assert_eq!((s.scale, s.clean_steps), (LossScale::INITIAL, 0));
        for _ in 0..40 {
            s.update(false);
        }
        assert_eq!(s.scale, 1.0, "never below 1");
    }

    #[test]
    fn unscaling_divides_finite_gradients_and_skips_overflowing_ones() {
        let device = Device::flex().autodiff();
        let layer = LinearConfig::new(2, 1).init(&device);
        let grads_times = |factor: f32| {
            let x = Tensor::<2>::from_data([[1.0, 3.0]], &device);
            let loss = layer.forward(x).sum() * factor;
            burn::optim::GradientsParams::from_grads(loss.backward(), &layer)
        };
        let weight = |g: &GradientsParams| {
            g.get::<2>(layer.weight.id)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let mut s = LossScale::new();
        let mut grads = grads_times(s.scale as f32);
        assert!(s.unscale(&mut grads, &layer));
        assert_eq!(weight(&grads), vec![1.0, 3.0], "d(xW)/dW = x, unscaled");
        let mut grads = grads_times(f32::INFINITY);
        assert!(!s.unscale(&mut grads, &layer));
        assert_eq!(s.scale, LossScale::INITIAL / 2.0);
    }

    /// Gradients of the half-precision copy arrive on the f32 masters, in f32, and match the
    /// f32 gradients within half precision's resolution.
    #[test]
    fn gradients_of_the_cast_copy_reach_the_f32_masters() {
        let device = Device::flex().autodiff();
        let layer = LinearConfig::new(4, 3).init(&device);
        let x = Tensor::<2>::from_data([[0.5, -1.0, 2.0, 0.25]], &device);
        let grad = |half: bool| {
            let (l, input) = if half {
                (
                    cast_params(&layer, FloatDType::F16),
                    x.clone().cast(FloatDType::F16),
                )
            } else {
                (layer.clone(), x.clone())
            };
            let y = l.forward(input).cast(FloatDType::F32).powi_scalar(2).sum();
            let grads = y.backward();
            let g = layer
                .weight
                .val()
                .grad(&grads)
                .expect("the master gets a gradient");
            assert_eq!(g.dtype(), burn::tensor::DType::F32);
            g.into_data().try_to_vec::<f32>().unwrap()
        };
        let (full, half) = (grad(false), grad(true));
        for (a, b) in full.iter().zip(&half) {
            assert!((a - b).abs() <= 1e-2 * a.abs().max(1.0), "{a} vs {b}");
        }
    }

    /// After a step on the cast copy the masters' batch-norm running statistics are f32
    /// again, holding the values the step left (a `RunningState` is shared between a module and
    /// its clones, and the cast was written into it in place), and the parameters stay as they
    /// were.
    #[test]
    fn a_half_step_leaves_the_masters_running_statistics_in_f32() {
        let device = Device::flex().autodiff();
        let norm = burn::nn::BatchNormConfig::new(3).init(&device);
        let values = Tensor::<1>::from_data([0.5f32, -1.25, 3.0], &device);
        norm.running_mean.update(values.clone());
        drop(norm.valid());
        let half = cast_params(&norm, FloatDType::BF16);
        assert_eq!(
            norm.running_mean.value().dtype(),
            DType::BF16,
            "shared, cast in place"
        );
        drop(half);
        running_statistics_to_f32(&norm);
        for state in [&norm.running_mean, &norm.running_var] {
            assert_eq!(state.value().dtype(), DType::F32);
        }
        let mean = norm
            .running_mean
            .value()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(mean, vec![0.5, -1.25, 3.0], "exact in bf16 too");
        assert_eq!(norm.gamma.val().dtype(), DType::F32);
        assert!(
            norm.gamma.val().is_require_grad(),
            "the master still trains"
        );
    }
}

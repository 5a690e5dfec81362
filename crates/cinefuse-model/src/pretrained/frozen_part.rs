//! The tensors of a pretrained backbone that training never changes: all of them when it is
//! frozen, those below the last `trainable_layers` when it is fine-tuned. A run saves what it
//! trained without them, since they are the checkpoint it started from.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::prelude::*;

use super::{Backbone, Tuning};

/// Ids of every tensor `module` records: parameters and running statistics alike.
pub fn param_ids<M: Module>(module: &M) -> Vec<ParamId> {
    struct Ids(Vec<ParamId>);
    impl ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.push(p.id);
        }
        fn visit_int<const D: usize>(&mut self, p: &Param<Tensor<D, Int>>) {
            self.0.push(p.id);
        }
        fn visit_bool<const D: usize>(&mut self, p: &Param<Tensor<D, Bool>>) {
            self.0.push(p.id);
        }
    }
    let mut ids = Ids(Vec::new());
    module.visit(&mut ids);
    ids.0
}

/// The tensors of `backbone` that a run with `tuning` leaves as loaded, by id.
pub fn frozen_param_ids<B: Backbone>(backbone: &B, tuning: &Tuning) -> Vec<ParamId> {
    if tuning.freeze {
        return param_ids(backbone);
    }
    match tuning.trainable_layers {
        Some(n) => backbone.frozen_below_last(n),
        None => Vec::new(),
    }
}

/// How many leading values of each frozen tensor `frozen_probe` reads.
const PROBE_VALUES: usize = 8;

/// A cheap fingerprint of the frozen tensors `ids` of `module` as they are in memory: the sum
/// of the absolute values of each one's first few elements (float tensors; read back in one
/// transfer). A saved model records it, so a model whose frozen layers did not come from the
/// checkpoint (random ones, say) is refused when the saved weights are loaded over it, not
/// trained on.
pub fn frozen_probe<M: Module>(module: &M, ids: &[ParamId]) -> f64 {
    struct Heads<'a> {
        ids: std::collections::HashSet<&'a ParamId>,
        heads: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for Heads<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if self.ids.contains(&p.id) {
                let flat: Tensor<1> = p.val().flatten(0, D - 1);
                let n = flat.dims()[0].min(PROBE_VALUES);
                self.heads.push(flat.slice(0..n));
            }
        }
    }
    let mut heads = Heads {
        ids: ids.iter().collect(),
        heads: Vec::new(),
    };
    module.visit(&mut heads);
    if heads.heads.is_empty() {
        return 0.0;
    }
    let values = Tensor::cat(heads.heads, 0).into_data().convert::<f32>();
    // Unreadable values fingerprint as NaN, which agrees with nothing.
    match values.try_to_vec::<f32>() {
        Ok(v) => v.iter().map(|x| f64::from(x.abs())).sum(),
        Err(_) => f64::NAN,
    }
}

/// Whether two probes of the same tensors agree, allowing for a backend that keeps weights
/// at lower precision (f16 rounds each value by at most 2^-11 of itself).
pub fn probes_agree(saved: f64, now: f64) -> bool {
    (saved - now).abs() <= 1e-3 * saved.abs().max(now.abs()) + 1e-6
}

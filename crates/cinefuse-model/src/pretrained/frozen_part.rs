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

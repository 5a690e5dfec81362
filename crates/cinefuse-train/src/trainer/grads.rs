//! Operations on a step's gradients, parameter by parameter: splitting off a sub-module's,
//! adding another replica's, scaling, and checking that all are finite.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use cinefuse_model::pretrained::Backbone;
use std::collections::BTreeMap;

/// Moves the gradients of `module`'s parameters out of `grads` into their own set.
pub(crate) fn take_grads_of<M: Module>(grads: &mut GradientsParams, module: &M) -> GradientsParams {
    struct Take<'a> {
        from: &'a mut GradientsParams,
        to: GradientsParams,
    }
    impl ModuleVisitor for Take<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.from.remove::<D>(param.id) {
                self.to.register(param.id, g);
            }
        }
    }
    let mut take = Take {
        from: grads,
        to: GradientsParams::new(),
    };
    module.visit(&mut take);
    take.to
}

/// Moves the gradients of `backbone`'s parameters out of `grads`, one set per depth
/// (`Backbone::depth_of`), shallowest first.
pub(crate) fn take_grads_by_depth<B: Backbone>(
    grads: &mut GradientsParams,
    backbone: &B,
) -> Vec<(usize, GradientsParams)> {
    struct Take<'a, B> {
        from: &'a mut GradientsParams,
        backbone: &'a B,
        path: Vec<String>,
        to: BTreeMap<usize, GradientsParams>,
    }
    impl<B: Backbone> ModuleVisitor for Take<'_, B> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.from.remove::<D>(param.id) {
                let depth = self.backbone.depth_of(&self.path);
                self.to.entry(depth).or_default().register(param.id, g);
            }
        }
    }
    let mut take = Take {
        from: grads,
        backbone,
        path: Vec::new(),
        to: BTreeMap::new(),
    };
    backbone.visit(&mut take);
    take.to.into_iter().collect()
}

/// Adds `other` (already on `total`'s device) into `total`, parameter by parameter; a
/// parameter only one side has a gradient for keeps that one.
pub(crate) fn add_grads<M: Module>(
    total: &mut GradientsParams,
    mut other: GradientsParams,
    model: &M,
) {
    struct Add<'a> {
        total: &'a mut GradientsParams,
        other: &'a mut GradientsParams,
    }
    impl ModuleVisitor for Add<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let sum = match (
                self.total.remove::<D>(param.id),
                self.other.remove::<D>(param.id),
            ) {
                (Some(a), Some(b)) => a + b,
                (Some(g), None) | (None, Some(g)) => g,
                (None, None) => return,
            };
            self.total.register(param.id, sum);
        }
    }
    model.visit(&mut Add {
        total,
        other: &mut other,
    });
}

/// Multiplies every gradient of `model`'s parameters by `factor`.
pub(crate) fn scale_grads<M: Module>(grads: &mut GradientsParams, factor: f64, model: &M) {
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, g * self.factor);
            }
        }
    }
    model.visit(&mut Scale { grads, factor });
}

/// Whether every gradient value is finite (one device read for the whole set).
pub(crate) fn grads_are_finite<M: Module>(grads: &GradientsParams, model: &M) -> bool {
    struct Sum<'a> {
        grads: &'a GradientsParams,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for Sum<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                // A sum of absolute values is infinite or NaN exactly when some value is.
                let s = g.cast(burn::tensor::FloatDType::F32).abs().sum();
                self.total = Some(match self.total.take() {
                    Some(t) => t + s,
                    None => s,
                });
            }
        }
    }
    let mut sum = Sum { grads, total: None };
    model.visit(&mut sum);
    sum.total.is_none_or(|t| t.into_scalar::<f32>().is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    fn grads_of(layer: &Linear, x: f32) -> GradientsParams {
        let input = Tensor::<2>::full([2, 3], x, &layer.weight.device());
        GradientsParams::from_grads(layer.forward(input).sum().backward(), layer)
    }

    fn weight_grad(grads: &GradientsParams, layer: &Linear) -> Vec<f32> {
        grads
            .get::<2>(layer.weight.id)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn adding_scaling_and_splitting_act_per_parameter() {
        let device = Device::flex().autodiff();
        let layer = LinearConfig::new(3, 2).init(&device);
        let mut total = grads_of(&layer, 1.0);
        add_grads(&mut total, grads_of(&layer, 2.0), &layer);
        // d(sum(xW + b))/dW = sum over rows of x: 2 × 1 + 2 × 2.
        assert!(weight_grad(&total, &layer).iter().all(|&g| g == 6.0));
        scale_grads(&mut total, 0.5, &layer);
        assert!(weight_grad(&total, &layer).iter().all(|&g| g == 3.0));
        assert!(grads_are_finite(&total, &layer));
        let bias = layer.bias.as_ref().unwrap();
        let only_bias = take_grads_of(&mut total, bias);
        assert_eq!((only_bias.len(), total.len()), (1, 1));
        assert!(total.get::<1>(bias.id).is_none());
    }

    #[test]
    fn one_infinite_value_makes_the_set_not_finite() {
        let device = Device::flex().autodiff();
        let layer = LinearConfig::new(3, 2).init(&device);
        let mut grads = grads_of(&layer, 1.0);
        assert!(grads_are_finite(&grads, &layer));
        let w = grads.remove::<2>(layer.weight.id).unwrap();
        let inf = Tensor::full([1, 1], f32::INFINITY, &w.device());
        let poisoned = w.slice_assign([0..1, 0..1], inf);
        grads.register(layer.weight.id, poisoned);
        assert!(!grads_are_finite(&grads, &layer));
    }
}

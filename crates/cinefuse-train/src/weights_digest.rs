//! A fingerprint of a model's weights that depends on their values alone. The saved files also
//! record each parameter's id, which Burn draws anew whenever a model is built, so hashing the
//! files gave every export of the same run a different `weights_sha256`.

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use sha2::{Digest, Sha256};

/// Feeds every tensor of `module` (parameters and running statistics, in the module's own
/// order) into `hasher`: its kind, shape and little-endian values.
pub fn digest_weights<M: Module>(module: &M, hasher: &mut Sha256) {
    struct Feed<'a>(&'a mut Sha256);
    impl Feed<'_> {
        fn tensor(&mut self, kind: &[u8], shape: &[usize], data: TensorData) {
            self.0.update(kind);
            for d in shape {
                self.0.update((*d as u64).to_le_bytes());
            }
            self.0.update(data.as_bytes());
        }
    }
    impl ModuleVisitor for Feed<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let t = p.val();
            self.tensor(b"f32", &t.dims(), t.into_data().convert::<f32>());
        }
        fn visit_int<const D: usize>(&mut self, p: &Param<Tensor<D, Int>>) {
            let t = p.val();
            self.tensor(b"i64", &t.dims(), t.into_data().convert::<i64>());
        }
        fn visit_bool<const D: usize>(&mut self, p: &Param<Tensor<D, Bool>>) {
            let t = p.val();
            self.tensor(b"bool", &t.dims(), t.into_data());
        }
    }
    module.visit(&mut Feed(hasher));
}

/// `digest_weights` of one module, as hex.
pub fn weights_sha256<M: Module>(module: &M) -> String {
    let mut hasher = Sha256::new();
    digest_weights(module, &mut hasher);
    format!("{:x}", hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    fn linear(seed: u64) -> Linear {
        let device = Device::flex();
        device.seed(seed);
        LinearConfig::new(3, 2).init(&device)
    }

    #[test]
    fn the_same_values_give_the_same_digest_whatever_the_parameter_ids() {
        let a = linear(1);
        // The same values under new parameter ids, as a model loaded from a file gets them.
        let mut b = linear(2);
        b.weight = Param::from_tensor(a.weight.val());
        b.bias = a.bias.as_ref().map(|p| Param::from_tensor(p.val()));
        assert_ne!(a.weight.id, b.weight.id);
        assert_eq!(weights_sha256(&a), weights_sha256(&b));
    }

    #[test]
    fn one_changed_value_changes_the_digest() {
        let a = linear(1);
        let w = a.weight.val();
        let nine = Tensor::<2>::from_floats([[9.0]], &w.device());
        let mut b = a.clone();
        b.weight = Param::from_tensor(w.slice_assign([0..1, 0..1], nine));
        assert_ne!(weights_sha256(&a), weights_sha256(&b));
    }
}

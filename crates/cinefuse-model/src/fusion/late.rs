//! Late fusion: each modality's own head predicts; the predictions are averaged with learned
//! weights, renormalized over the modalities each movie actually has.

use burn::module::Param;
use burn::prelude::*;

use super::{FusionInput, FusionOutput, masked_softmax, stack_present};

#[derive(Module, Debug)]
pub struct LateFusion {
    /// One learned logit per modality.
    weights: Param<Tensor<1>>,
}

impl LateFusion {
    pub fn new(n_modalities: usize, device: &Device) -> Self {
        Self {
            weights: Param::from_tensor(Tensor::zeros([n_modalities], device)),
        }
    }

    pub fn forward(&self, input: FusionInput) -> FusionOutput {
        let present = stack_present(&input.present);
        let [b, m] = present.dims();
        let logits = self.weights.val().unsqueeze_dim::<2>(0).expand([b, m]);
        let w = masked_softmax(logits, present); // [B, M]
        let mut genre: Option<Tensor<2>> = None;
        let mut rating: Option<Tensor<1>> = None;
        for (i, (g, r)) in input
            .genre_logits
            .into_iter()
            .zip(input.ratings)
            .enumerate()
        {
            let wi = w.clone().slice([0..b, i..i + 1]); // [B, 1]
            let gi = g * wi.clone();
            let ri = r * wi.squeeze_dim::<1>(1);
            genre = Some(match genre {
                Some(acc) => acc + gi,
                None => gi,
            });
            rating = Some(match rating {
                Some(acc) => acc + ri,
                None => ri,
            });
        }
        FusionOutput {
            genre_logits: genre.expect("at least one modality"),
            rating: rating.expect("at least one modality"),
            weights: Some(w),
        }
    }
}

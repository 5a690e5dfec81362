//! Gated multimodal unit (Arevalo et al., 2017, generalized to M modalities): each modality
//! is projected with `tanh`, a gate computed from all inputs weights them (softmax over the
//! present modalities), and the gated sum feeds the head. The gates are reported per movie.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use super::{FusionConfig, FusionInput, FusionOutput, masked_softmax, stack_present};
use crate::head::OutputHead;

#[derive(Module, Debug)]
pub struct GmuFusion {
    projections: Vec<Linear>,
    gate: Linear,
    head: OutputHead,
}

impl GmuFusion {
    pub fn new(
        c: &FusionConfig,
        n_modalities: usize,
        embed_dim: usize,
        head: OutputHead,
        device: &Device,
    ) -> Self {
        Self {
            projections: (0..n_modalities)
                .map(|_| LinearConfig::new(embed_dim, c.hidden).init(device))
                .collect(),
            gate: LinearConfig::new(n_modalities * (embed_dim + 1), n_modalities).init(device),
            head,
        }
    }

    pub fn forward(&self, input: FusionInput) -> FusionOutput {
        let present = stack_present(&input.present);
        let masked: Vec<Tensor<2>> = input
            .embeddings
            .into_iter()
            .zip(&input.present)
            .map(|(e, p)| e * p.clone().unsqueeze_dim::<2>(1))
            .collect();
        let mut gate_in = masked.clone();
        gate_in.push(present.clone());
        let z = masked_softmax(self.gate.forward(Tensor::cat(gate_in, 1)), present); // [B, M]
        let [b, _] = z.dims();
        let mut h: Option<Tensor<2>> = None;
        for (i, (x, proj)) in masked.into_iter().zip(&self.projections).enumerate() {
            let hi = proj.forward(x).tanh() * z.clone().slice([0..b, i..i + 1]);
            h = Some(match h {
                Some(acc) => acc + hi,
                None => hi,
            });
        }
        let (genre_logits, rating) = self.head.forward(h.expect("at least one modality"));
        FusionOutput {
            genre_logits,
            rating,
            weights: Some(z),
        }
    }
}

//! Concatenation fusion: masked embeddings and the presence flags, concatenated → MLP → head.

use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;

use super::{FusionConfig, FusionInput, FusionOutput, stack_present};
use crate::cpu_kernels::{dropout, gelu};
use crate::head::OutputHead;

#[derive(Module, Debug)]
pub struct ConcatFusion {
    fc: Linear,
    dropout: Dropout,
    head: OutputHead,
}

impl ConcatFusion {
    pub fn new(
        c: &FusionConfig,
        n_modalities: usize,
        embed_dim: usize,
        head: OutputHead,
        device: &Device,
    ) -> Self {
        Self {
            fc: LinearConfig::new(n_modalities * (embed_dim + 1), c.hidden).init(device),
            dropout: DropoutConfig::new(c.dropout).init(),
            head,
        }
    }

    pub fn forward(&self, input: FusionInput) -> FusionOutput {
        let present = stack_present(&input.present);
        let mut parts: Vec<Tensor<2>> = input
            .embeddings
            .into_iter()
            .zip(&input.present)
            .map(|(e, p)| e * p.clone().unsqueeze_dim::<2>(1))
            .collect();
        parts.push(present);
        let h = dropout(&self.dropout, gelu(self.fc.forward(Tensor::cat(parts, 1))));
        let (genre_logits, rating) = self.head.forward(h);
        FusionOutput {
            genre_logits,
            rating,
            weights: None,
        }
    }
}

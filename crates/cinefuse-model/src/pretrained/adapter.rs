//! The trainable layer between a pretrained backbone's features and a modality embedding:
//! LayerNorm (the backbones' feature scales differ wildly: MiniLM's pooled values are ~0.1,
//! EfficientNet's ~1), dropout on the features, then Linear + GELU to `embed_dim`.

use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use crate::cpu_kernels::{dropout, gelu};

#[derive(Module, Debug)]
pub struct FeatureAdapter {
    norm: LayerNorm,
    dropout: Dropout,
    proj: Linear,
}

impl FeatureAdapter {
    pub fn new(in_dim: usize, embed_dim: usize, feature_dropout: f64, device: &Device) -> Self {
        Self {
            norm: LayerNormConfig::new(in_dim).init(device),
            dropout: DropoutConfig::new(feature_dropout).init(),
            proj: LinearConfig::new(in_dim, embed_dim).init(device),
        }
    }

    /// `[B, in_dim]` → `[B, embed_dim]`.
    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        let x = dropout(&self.dropout, self.norm.forward(features));
        gelu(self.proj.forward(x))
    }
}

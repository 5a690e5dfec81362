//! Embedding-bag plot encoder: the masked mean of token embeddings → two-layer MLP.
//! Order-blind but an order of magnitude cheaper than attention on a CPU.

use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;

use super::{TextEncoderConfig, masked_mean};
use crate::cpu_kernels::{dropout, gelu};

#[derive(Module, Debug)]
pub struct BagTextEncoder {
    tokens: Embedding,
    hidden: Linear,
    dropout: Dropout,
    proj: Linear,
}

impl BagTextEncoder {
    pub fn new(
        c: &TextEncoderConfig,
        vocab_size: usize,
        embed_dim: usize,
        device: &Device,
    ) -> Self {
        Self {
            tokens: EmbeddingConfig::new(vocab_size, c.d_model).init(device),
            hidden: LinearConfig::new(c.d_model, c.d_ff).init(device),
            dropout: DropoutConfig::new(c.dropout).init(),
            proj: LinearConfig::new(c.d_ff, embed_dim).init(device),
        }
    }

    pub fn forward(&self, tokens: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        let pooled = masked_mean(self.tokens.forward(tokens), mask);
        let h = dropout(&self.dropout, gelu(self.hidden.forward(pooled)));
        gelu(self.proj.forward(h))
    }
}

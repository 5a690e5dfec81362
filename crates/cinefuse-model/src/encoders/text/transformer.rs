//! Transformer plot encoder: token + learned positional embeddings → pre-norm transformer
//! encoder layers with the padding mask → mean or `[CLS]` pooling → projection.

use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;

use super::{Pooling, TextEncoderConfig, masked_mean};
use crate::cpu_kernels::gelu;
use crate::transformer_layer::EncoderStack;

#[derive(Module, Debug)]
pub struct TransformerTextEncoder {
    tokens: Embedding,
    positions: Embedding,
    encoder: EncoderStack,
    proj: Linear,
    #[module(skip)]
    cls_pooling: bool,
    #[module(skip)]
    max_tokens: usize,
}

impl TransformerTextEncoder {
    pub fn new(
        c: &TextEncoderConfig,
        vocab_size: usize,
        max_tokens: usize,
        embed_dim: usize,
        device: &Device,
    ) -> Self {
        Self {
            tokens: EmbeddingConfig::new(vocab_size, c.d_model).init(device),
            positions: EmbeddingConfig::new(max_tokens.max(1), c.d_model).init(device),
            encoder: EncoderStack::new(c.n_layers, c.d_model, c.d_ff, c.n_heads, c.dropout, device),
            proj: LinearConfig::new(c.d_model, embed_dim).init(device),
            cls_pooling: c.pooling == Pooling::Cls,
            max_tokens: max_tokens.max(1),
        }
    }

    /// `tokens [B, L]`, `mask [B, L]` (1 = real token) → `[B, embed_dim]`.
    pub fn forward(&self, tokens: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        let [b, l] = tokens.dims();
        let l = l.min(self.max_tokens);
        let tokens = tokens.slice([0..b, 0..l]);
        let mask = mask.slice([0..b, 0..l]);
        let device = tokens.device();
        let pos = Tensor::<1, Int>::arange(0..l as i64, &device)
            .unsqueeze_dim::<2>(0)
            .expand([b, l]);
        // Scaled token embeddings keep the positional signal from dominating at init.
        let x = self.tokens.forward(tokens) * 0.5 + self.positions.forward(pos) * 0.5;
        let pad = mask.clone().equal_elem(0.0);
        let h = self.encoder.forward(x, pad);
        let pooled = if self.cls_pooling {
            h.slice([0..b, 0..1]).squeeze_dim::<2>(1)
        } else {
            masked_mean(h, mask)
        };
        gelu(self.proj.forward(pooled))
    }
}

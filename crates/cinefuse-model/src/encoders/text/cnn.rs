//! 1-D CNN plot encoder: a convolution over token embeddings picks up short phrases,
//! then masked max pooling over time.

use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig, PaddingConfig1d,
};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::TextEncoderConfig;
use crate::cpu_kernels::{dropout, gelu};

#[derive(Module, Debug)]
pub struct CnnTextEncoder {
    tokens: Embedding,
    conv: Conv1d,
    dropout: Dropout,
    proj: Linear,
}

impl CnnTextEncoder {
    pub fn new(
        c: &TextEncoderConfig,
        vocab_size: usize,
        embed_dim: usize,
        device: &Device,
    ) -> Self {
        let pad = c.kernel_size / 2;
        Self {
            tokens: EmbeddingConfig::new(vocab_size, c.d_model).init(device),
            conv: Conv1dConfig::new(c.d_model, c.d_ff, c.kernel_size)
                .with_padding(PaddingConfig1d::Explicit(pad, pad))
                .init(device),
            dropout: DropoutConfig::new(c.dropout).init(),
            proj: LinearConfig::new(c.d_ff, embed_dim).init(device),
        }
    }

    pub fn forward(&self, tokens: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        // Padding embeddings are zeroed before the convolution, as its own zero padding is: a
        // plot's last windows then read the same whether the batch pads it by one token or by
        // many (GPU batches pad past the longest plot), so a plot encodes the same in any batch.
        let embedded = self.tokens.forward(tokens) * mask.clone().unsqueeze_dim::<3>(2);
        let x = embedded.swap_dims(1, 2); // [B, D, L]
        let h = relu(self.conv.forward(x)); // [B, F, L], >= 0
        // Padding positions are zeroed; since activations are >= 0, max pooling ignores them.
        let h = h * mask.unsqueeze_dim::<3>(1);
        let pooled = h.max_dim(2).squeeze_dim::<2>(2);
        gelu(self.proj.forward(dropout(&self.dropout, pooled)))
    }
}

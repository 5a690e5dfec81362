//! A pre-norm transformer encoder layer (self-attention, then a GELU feed-forward block, each
//! with a residual connection), the same function as Burn's `TransformerEncoderLayer` with
//! `norm_first`, written out so that its four dropouts use `cpu_kernels::dropout` and the query,
//! key and value projections are one matrix product instead of three.

use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use crate::cpu_kernels::{dropout, gelu, softmax};

/// Given to the attention scores of padding keys (the value Burn's attention uses by default),
/// far from f32's limits: their softmax weight is 0 on Burn's path and at most e⁻⁸⁷ of the
/// largest weight with the flex kernel, whose `exp` clamps there instead of underflowing.
const MASKED_SCORE: f32 = -1.0e4;

#[derive(Module, Debug)]
pub struct EncoderLayer {
    norm_attention: LayerNorm,
    /// `[d_model] → [3 · d_model]`: query, key and value side by side.
    qkv: Linear,
    attention_out: Linear,
    norm_feed_forward: LayerNorm,
    feed_forward_in: Linear,
    feed_forward_out: Linear,
    dropout: Dropout,
    #[module(skip)]
    n_heads: usize,
}

impl EncoderLayer {
    pub fn new(d_model: usize, d_ff: usize, n_heads: usize, dropout: f64, device: &Device) -> Self {
        assert!(
            n_heads > 0 && d_model.is_multiple_of(n_heads),
            "d_model {d_model} is not a multiple of n_heads {n_heads}"
        );
        Self {
            norm_attention: LayerNormConfig::new(d_model).init(device),
            qkv: LinearConfig::new(d_model, 3 * d_model).init(device),
            attention_out: LinearConfig::new(d_model, d_model).init(device),
            norm_feed_forward: LayerNormConfig::new(d_model).init(device),
            feed_forward_in: LinearConfig::new(d_model, d_ff).init(device),
            feed_forward_out: LinearConfig::new(d_ff, d_model).init(device),
            dropout: DropoutConfig::new(dropout).init(),
            n_heads,
        }
    }

    /// `x`: `[batch, length, d_model]`; `padding`: `[batch, length]`, true for padding tokens,
    /// which no position attends to.
    pub fn forward(&self, x: Tensor<3>, padding: Tensor<2, Bool>) -> Tensor<3> {
        let attended = self.attention(self.norm_attention.forward(x.clone()), padding);
        let x = x + dropout(&self.dropout, attended);
        let h = self.norm_feed_forward.forward(x.clone());
        let h = dropout(&self.dropout, gelu(self.feed_forward_in.forward(h)));
        x + dropout(&self.dropout, self.feed_forward_out.forward(h))
    }

    fn attention(&self, x: Tensor<3>, padding: Tensor<2, Bool>) -> Tensor<3> {
        let [b, l, d] = x.dims();
        let (h, dk) = (self.n_heads, d / self.n_heads);
        let qkv = self.qkv.forward(x);
        let heads = |i: usize| {
            qkv.clone()
                .slice([0..b, 0..l, i * d..(i + 1) * d])
                .reshape([b, l, h, dk])
                .swap_dims(1, 2)
        };
        let (q, k, v) = (heads(0), heads(1), heads(2));
        let scores = q.matmul(k.transpose()).div_scalar((dk as f32).sqrt());
        let scores = scores.mask_fill(padding.reshape([b, 1, 1, l]), MASKED_SCORE);
        let weights = dropout(&self.dropout, softmax(scores, 3));
        let context = weights.matmul(v).swap_dims(1, 2).reshape([b, l, d]);
        self.attention_out.forward(context)
    }
}

/// `n` encoder layers applied in turn with the same padding mask: the encoder of the
/// transformer plot encoder and of attention fusion.
#[derive(Module, Debug)]
pub struct EncoderStack {
    layers: Vec<EncoderLayer>,
}

impl EncoderStack {
    pub fn new(
        n_layers: usize,
        d_model: usize,
        d_ff: usize,
        n_heads: usize,
        dropout: f64,
        device: &Device,
    ) -> Self {
        Self {
            layers: (0..n_layers)
                .map(|_| EncoderLayer::new(d_model, d_ff, n_heads, dropout, device))
                .collect(),
        }
    }

    /// See [`EncoderLayer::forward`].
    pub fn forward(&self, x: Tensor<3>, padding: Tensor<2, Bool>) -> Tensor<3> {
        self.layers
            .iter()
            .fold(x, |h, layer| layer.forward(h, padding.clone()))
    }
}

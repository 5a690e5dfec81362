//! Hashed n-gram plot encoder (fastText-style): embeddings of every word and of every
//! adjacent word pair (hashed into `ngram_buckets` rows), averaged over the plot, then one
//! dense layer. A linear model on word and bigram counts is what makes TF-IDF + logistic
//! regression strong on short plots; this is that inside the network, trainable end to end.

use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;

use super::{TextEncoderConfig, masked_mean};
use crate::cpu_kernels::{dropout, gelu};

/// Bigram key `(a mod P) · P + (b mod P)`, then `mod buckets`: exact pair ids for vocabularies
/// up to P, and below 2³¹ so that it cannot overflow where integer tensors are 32-bit.
const PAIR_BASE: i64 = 46_337;

#[derive(Module, Debug)]
pub struct NgramTextEncoder {
    unigrams: Embedding,
    bigrams: Embedding,
    dropout: Dropout,
    proj: Linear,
    #[module(skip)]
    buckets: usize,
}

impl NgramTextEncoder {
    pub fn new(
        c: &TextEncoderConfig,
        vocab_size: usize,
        embed_dim: usize,
        device: &Device,
    ) -> Self {
        Self {
            unigrams: EmbeddingConfig::new(vocab_size, c.d_model).init(device),
            bigrams: EmbeddingConfig::new(c.ngram_buckets, c.d_model).init(device),
            dropout: DropoutConfig::new(c.dropout).init(),
            proj: LinearConfig::new(c.d_model, embed_dim).init(device),
            buckets: c.ngram_buckets,
        }
    }

    /// Bucket ids `[B, L−1]` of each adjacent token pair.
    pub fn bigram_ids(&self, tokens: Tensor<2, Int>) -> Tensor<2, Int> {
        let [b, l] = tokens.dims();
        let first = tokens.clone().slice([0..b, 0..l - 1]);
        let second = tokens.slice([0..b, 1..l]);
        let key = first.remainder_scalar(PAIR_BASE).mul_scalar(PAIR_BASE)
            + second.remainder_scalar(PAIR_BASE);
        key.remainder_scalar(self.buckets as i64)
    }

    pub fn forward(&self, tokens: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        let [b, l] = tokens.dims();
        let words = masked_mean(self.unigrams.forward(tokens.clone()), mask.clone());
        let pooled = if l > 1 {
            // A pair counts when both of its tokens are real.
            let pair_mask = mask.clone().slice([0..b, 0..l - 1]) * mask.slice([0..b, 1..l]);
            words + masked_mean(self.bigrams.forward(self.bigram_ids(tokens)), pair_mask)
        } else {
            words
        };
        gelu(self.proj.forward(dropout(&self.dropout, pooled)))
    }
}

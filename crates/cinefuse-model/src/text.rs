//! Plot encoder selection: a transformer, or lighter alternatives for fast CPU runs.

use burn::config::Config;
use burn::prelude::*;
use cinefuse_data::MovieBatch;
use serde::{Deserialize, Serialize};

use crate::encoder::ModalityEncoder;
use crate::pretrained_config::{Tuning, validate_tuning};
use crate::text_bag::BagTextEncoder;
use crate::text_cnn::CnnTextEncoder;
use crate::text_ngram::NgramTextEncoder;
use crate::text_transformer::TransformerTextEncoder;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextEncoderKind {
    /// Token + positional embeddings through pre-norm transformer encoder layers.
    Transformer,
    /// Embedding bag: masked mean of token embeddings → MLP.
    Bag,
    /// 1-D convolution over token embeddings → masked max pooling.
    Cnn,
    /// Hashed word + bigram embeddings, averaged (fastText-style).
    Ngram,
    /// A pretrained BERT-family checkpoint (`pretrained = "DIR"`, Hugging Face layout).
    Bert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    Mean,
    Cls,
}

#[derive(Config, Debug)]
pub struct TextEncoderConfig {
    #[config(default = "TextEncoderKind::Transformer")]
    pub kind: TextEncoderKind,
    #[config(default = 64)]
    pub d_model: usize,
    #[config(default = 2)]
    pub n_layers: usize,
    #[config(default = 4)]
    pub n_heads: usize,
    #[config(default = 128)]
    pub d_ff: usize,
    #[config(default = 0.1)]
    pub dropout: f64,
    #[config(default = "Pooling::Mean")]
    pub pooling: Pooling,
    /// Width of the CNN encoder's kernel.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// `kind = "ngram"`: rows of the hashed bigram table.
    #[config(default = 65536)]
    pub ngram_buckets: usize,
    /// Checkpoint folder of `kind = "bert"` (config.json, model.safetensors, tokenizer.json).
    #[config(default = "None")]
    pub pretrained: Option<PathBuf>,
    /// `kind = "bert"`: keep the backbone frozen (features computed once and cached).
    #[config(default = true)]
    pub freeze: bool,
    /// `kind = "bert"`, fine-tuning: backbone learning rate relative to the head's.
    #[config(default = 0.1)]
    pub lr_scale: f64,
    /// `kind = "bert"`, fine-tuning: train only the last N layers (all when unset).
    #[config(default = "None")]
    pub trainable_layers: Option<usize>,
    /// `kind = "bert"`: dropout on the pooled embedding before the adapter.
    #[config(default = 0.1)]
    pub feature_dropout: f64,
}

impl TextEncoderConfig {
    pub fn tuning(&self) -> Tuning {
        Tuning {
            freeze: self.freeze,
            lr_scale: self.lr_scale,
            trainable_layers: self.trainable_layers,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.kind == TextEncoderKind::Bert {
            return validate_tuning(
                "text",
                self.pretrained.as_deref(),
                &self.tuning(),
                self.feature_dropout,
            );
        }
        if self.pretrained.is_some() {
            return Err(format!(
                "model.text.pretrained is set but model.text.kind = {:?} trains from scratch; \
                 use kind = \"bert\"",
                self.kind
            ));
        }
        if self.d_model == 0 {
            return Err("model.text.d_model = 0: expected a positive size".into());
        }
        if self.kind == TextEncoderKind::Transformer {
            if self.n_heads == 0 || !self.d_model.is_multiple_of(self.n_heads) {
                return Err(format!(
                    "model.text.n_heads = {}: must divide model.text.d_model = {}",
                    self.n_heads, self.d_model
                ));
            }
            if self.n_layers == 0 {
                return Err("model.text.n_layers = 0: expected at least 1".into());
            }
        }
        if self.kind == TextEncoderKind::Ngram && !(1..=1 << 24).contains(&self.ngram_buckets) {
            return Err(format!(
                "model.text.ngram_buckets = {}: expected 1..=16777216",
                self.ngram_buckets
            ));
        }
        if self.kind == TextEncoderKind::Cnn && self.kernel_size.is_multiple_of(2) {
            return Err(format!(
                "model.text.kernel_size = {}: expected an odd size",
                self.kernel_size
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "model.text.dropout = {}: expected [0, 1)",
                self.dropout
            ));
        }
        Ok(())
    }

    pub fn init(
        &self,
        vocab_size: usize,
        max_tokens: usize,
        embed_dim: usize,
        device: &Device,
    ) -> TextEncoder {
        let mut enc = TextEncoder {
            transformer: None,
            bag: None,
            cnn: None,
            ngram: None,
            embed_dim,
        };
        match self.kind {
            TextEncoderKind::Transformer => {
                enc.transformer = Some(TransformerTextEncoder::new(
                    self, vocab_size, max_tokens, embed_dim, device,
                ))
            }
            TextEncoderKind::Bag => {
                enc.bag = Some(BagTextEncoder::new(self, vocab_size, embed_dim, device))
            }
            TextEncoderKind::Cnn => {
                enc.cnn = Some(CnnTextEncoder::new(self, vocab_size, embed_dim, device))
            }
            TextEncoderKind::Ngram => {
                enc.ngram = Some(NgramTextEncoder::new(self, vocab_size, embed_dim, device))
            }
            TextEncoderKind::Bert => unreachable!("BERT plots use BertTextEncoder"),
        }
        enc
    }
}

/// Exactly one of the variants is set, chosen by `TextEncoderConfig::kind`.
#[derive(Module, Debug)]
pub struct TextEncoder {
    transformer: Option<TransformerTextEncoder>,
    bag: Option<BagTextEncoder>,
    cnn: Option<CnnTextEncoder>,
    ngram: Option<NgramTextEncoder>,
    #[module(skip)]
    embed_dim: usize,
}

/// `[B, L]` mask with at least the first position kept, so that a movie without a plot never
/// makes attention or pooling divide by zero (its embedding is masked out downstream anyway).
pub fn keep_first(token_mask: Tensor<2>) -> Tensor<2> {
    let [b, _] = token_mask.dims();
    token_mask.slice_fill([0..b, 0..1], 1.0)
}

/// Masked mean over the sequence: `[B, L, D]`, `[B, L]` → `[B, D]`.
pub fn masked_mean(x: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
    let m = mask.unsqueeze_dim::<3>(2);
    let sum = (x * m.clone()).sum_dim(1).squeeze_dim::<2>(1);
    let count = m.sum_dim(1).squeeze_dim::<2>(1).clamp_min(1.0);
    sum / count
}

impl TextEncoder {
    pub fn forward(&self, tokens: Tensor<2, Int>, token_mask: Tensor<2>) -> Tensor<2> {
        let mask = keep_first(token_mask);
        if let Some(t) = &self.transformer {
            t.forward(tokens, mask)
        } else if let Some(b) = &self.bag {
            b.forward(tokens, mask)
        } else if let Some(c) = &self.cnn {
            c.forward(tokens, mask)
        } else if let Some(n) = &self.ngram {
            n.forward(tokens, mask)
        } else {
            unreachable!("TextEncoder is built with one variant")
        }
    }
}

impl ModalityEncoder for TextEncoder {
    fn embed(&self, batch: &MovieBatch) -> Tensor<2> {
        self.forward(batch.tokens.clone(), batch.token_mask.clone())
    }

    fn present(&self, batch: &MovieBatch) -> Tensor<1> {
        batch.plot_present.clone()
    }

    fn embed_dim(&self) -> usize {
        self.embed_dim
    }
}

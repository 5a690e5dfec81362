//! Plot encoder selection (`[model.text]`): a transformer, lighter alternatives for fast CPU
//! runs (embedding bag, 1-D CNN, hashed n-grams), or a pretrained BERT-family checkpoint under
//! a trainable adapter.

pub mod bag;
pub mod cnn;
pub mod ngram;
pub mod transformer;

use std::path::PathBuf;

use burn::config::Config;
use burn::prelude::*;
use cinefuse_data::MovieBatch;
use serde::{Deserialize, Serialize};

use crate::config::ModelShapes;
use crate::encoders::{Encoded, ModalityEncoder};
use crate::pretrained::tuning::{Tuning, validate_tuning};
use crate::pretrained::{Bert, PretrainedEncoder, PretrainedError};
use crate::size_limits::{MAX_LAYERS, MAX_TABLE_ROWS, MAX_WIDTH, check_size, check_table};
pub use bag::BagTextEncoder;
pub use cnn::CnnTextEncoder;
pub use ngram::NgramTextEncoder;
pub use transformer::TransformerTextEncoder;

/// The widest kernel of the plot CNN (plots are at most `data.preprocess.max_tokens` long).
const MAX_KERNEL: usize = 63;

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
    /// Pretrained kinds, fine-tuning: layer-wise learning-rate decay. The top layer steps at
    /// `lr × lr_scale`, each layer below at `layer_decay` times the one above, the embeddings
    /// (stem) last; 1 gives every layer the same rate.
    #[config(default = 1.0)]
    pub layer_decay: f64,
    /// `kind = "bert"`: dropout on the pooled embedding before the adapter.
    #[config(default = 0.1)]
    pub feature_dropout: f64,
    /// `kind = "bert"`, fine-tuning the last `trainable_layers`: the frozen layers below them
    /// run once per movie at the start of training (in inference mode: no dropout there) and
    /// every step starts from their cached output, so a step runs only the layers that learn.
    /// Prediction is unchanged (it runs the whole backbone).
    #[config(default = false)]
    pub cache_frozen_layers: bool,
    /// `kind = "bert"`: layers whose mean-pooled token states are appended to the pooled
    /// output (0: the embeddings, k: the output of layer k), strictly increasing. MiniLM's
    /// last layer is trained for sentence similarity; its middle layers keep the words that
    /// tell genres apart.
    #[config(default = "Vec::new()")]
    pub concat_layers: Vec<usize>,
}

impl TextEncoderConfig {
    pub fn tuning(&self) -> Tuning {
        Tuning {
            freeze: self.freeze,
            lr_scale: self.lr_scale,
            trainable_layers: self.trainable_layers,
            layer_decay: self.layer_decay,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.cache_frozen_layers
            && (self.kind != TextEncoderKind::Bert
                || self.freeze
                || self.trainable_layers.is_none())
        {
            return Err(
                "model.text.cache_frozen_layers: needs kind = \"bert\", freeze = false \
                 and trainable_layers (the layers below those are the ones cached)"
                    .into(),
            );
        }
        self.validate_concat_layers()?;
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
        self.validate_from_scratch()
    }

    /// The sizes of an encoder trained from scratch (transformer, n-gram, CNN, …).
    fn validate_from_scratch(&self) -> Result<(), String> {
        check_size("model.text.d_model", self.d_model, MAX_WIDTH)?;
        if self.kind == TextEncoderKind::Transformer {
            check_size("model.text.d_ff", self.d_ff, MAX_WIDTH)?;
            if self.n_heads == 0 || !self.d_model.is_multiple_of(self.n_heads) {
                return Err(format!(
                    "model.text.n_heads = {}: must divide model.text.d_model = {}",
                    self.n_heads, self.d_model
                ));
            }
            check_size("model.text.n_layers", self.n_layers, MAX_LAYERS)?;
        }
        if self.kind == TextEncoderKind::Ngram {
            check_size(
                "model.text.ngram_buckets",
                self.ngram_buckets,
                MAX_TABLE_ROWS,
            )?;
            check_table(
                "model.text.ngram_buckets × model.text.d_model",
                self.ngram_buckets,
                self.d_model,
            )?;
        }
        if self.kind == TextEncoderKind::Cnn {
            check_size("model.text.kernel_size", self.kernel_size, MAX_KERNEL)?;
            if self.kernel_size.is_multiple_of(2) {
                return Err(format!(
                    "model.text.kernel_size = {}: expected an odd size",
                    self.kernel_size
                ));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "model.text.dropout = {}: expected [0, 1)",
                self.dropout
            ));
        }
        Ok(())
    }

    fn validate_concat_layers(&self) -> Result<(), String> {
        let key = "model.text.concat_layers";
        if self.concat_layers.is_empty() {
            return Ok(());
        }
        if self.kind != TextEncoderKind::Bert {
            return Err(format!("{key}: needs kind = \"bert\""));
        }
        if !self.concat_layers.windows(2).all(|w| w[0] < w[1]) {
            return Err(format!(
                "{key} = {:?}: expected strictly increasing layer numbers",
                self.concat_layers
            ));
        }
        if self.cache_frozen_layers {
            return Err(format!(
                "{key}: not with cache_frozen_layers (the layers below the trainable ones are \
                 cached as their output only)"
            ));
        }
        Ok(())
    }

    /// The encoder this section describes, for the data's `shapes`. A pretrained backbone
    /// starts from random weights here: `init_pretrained` reads its checkpoint, and a saved
    /// model carries them.
    pub fn init(&self, shapes: &ModelShapes, embed_dim: usize, device: &Device) -> TextEncoder {
        let (vocab, max_tokens) = (shapes.vocab_size, shapes.max_tokens);
        match self.kind {
            TextEncoderKind::Transformer => TextEncoder::Transformer(TransformerTextEncoder::new(
                self, vocab, max_tokens, embed_dim, device,
            )),
            TextEncoderKind::Bag => {
                TextEncoder::Bag(BagTextEncoder::new(self, vocab, embed_dim, device))
            }
            TextEncoderKind::Cnn => {
                TextEncoder::Cnn(CnnTextEncoder::new(self, vocab, embed_dim, device))
            }
            TextEncoderKind::Ngram => {
                TextEncoder::Ngram(NgramTextEncoder::new(self, vocab, embed_dim, device))
            }
            TextEncoderKind::Bert => {
                let arch = shapes
                    .text_backbone
                    .as_ref()
                    .expect("ModelShapes::text_backbone is set for model.text.kind = \"bert\"");
                let bert = Bert::new(&arch.config, arch.pooling, device)
                    .with_concat_layers(arch.concat_layers.clone());
                self.on_backbone(bert, embed_dim, device)
            }
        }
    }

    /// `init`, with a pretrained backbone's weights read from `pretrained` (a new run).
    pub fn init_pretrained(
        &self,
        shapes: &ModelShapes,
        embed_dim: usize,
        device: &Device,
    ) -> Result<TextEncoder, PretrainedError> {
        match (self.kind, &self.pretrained) {
            (TextEncoderKind::Bert, Some(dir)) => {
                let bert =
                    Bert::from_dir(dir, device)?.with_concat_layers(self.concat_layers.clone());
                Ok(self.on_backbone(bert, embed_dim, device))
            }
            _ => Ok(self.init(shapes, embed_dim, device)),
        }
    }

    fn on_backbone(&self, bert: Bert, embed_dim: usize, device: &Device) -> TextEncoder {
        TextEncoder::Bert(PretrainedEncoder::new(
            bert,
            embed_dim,
            self.feature_dropout,
            &self.tuning(),
            device,
        ))
    }
}

/// The plot encoder `TextEncoderConfig::kind` chose.
// A model holds one encoder per modality, so the variants' size difference costs nothing;
// Burn implements `Module` for no `Box`.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum TextEncoder {
    Transformer(TransformerTextEncoder),
    Bag(BagTextEncoder),
    Cnn(CnnTextEncoder),
    Ngram(NgramTextEncoder),
    Bert(PretrainedEncoder<Bert>),
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
    /// The encoder on the pretrained backbone, when there is one.
    pub fn pretrained(&self) -> Option<&PretrainedEncoder<Bert>> {
        match self {
            TextEncoder::Bert(e) => Some(e),
            _ => None,
        }
    }
}

impl ModalityEncoder for TextEncoder {
    fn encode(&self, batch: &MovieBatch, with_skip: bool) -> Encoded {
        let tokens = || batch.tokens.clone();
        let mask = || keep_first(batch.token_mask.clone());
        let embedding = match self {
            TextEncoder::Transformer(e) => e.forward(tokens(), mask()),
            TextEncoder::Bag(e) => e.forward(tokens(), mask()),
            TextEncoder::Cnn(e) => e.forward(tokens(), mask()),
            TextEncoder::Ngram(e) => e.forward(tokens(), mask()),
            TextEncoder::Bert(e) => return e.encode(batch, with_skip),
        };
        Encoded {
            embedding,
            skip: None,
        }
    }

    fn skip_dim(&self) -> usize {
        self.pretrained().map_or(0, |e| e.skip_dim())
    }

    fn present(&self, batch: &MovieBatch) -> Tensor<1> {
        batch.plot_present.clone()
    }
}

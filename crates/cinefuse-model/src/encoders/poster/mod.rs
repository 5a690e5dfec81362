//! Poster encoder selection (`[model.poster]`): a ResNet-style CNN trained from scratch, or
//! pretrained EfficientNet-Lite0 under a trainable adapter.

pub mod resnet;

use std::path::PathBuf;

use burn::config::Config;
use burn::prelude::*;
use cinefuse_data::MovieBatch;
use serde::{Deserialize, Serialize};

use crate::encoders::{Encoded, ModalityEncoder};
use crate::pretrained::tuning::{Tuning, validate_tuning};
use crate::pretrained::{EfficientNetLite, PretrainedEncoder, PretrainedError};
use crate::size_limits::{MAX_LAYERS, MAX_WIDTH, check_size};
pub use resnet::ResnetPosterEncoder;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PosterEncoderKind {
    /// The ResNet-style CNN below, trained from scratch.
    #[serde(rename = "resnet")]
    Resnet,
    /// Pretrained EfficientNet-Lite0 (ImageNet) from `pretrained = "DIR"`.
    #[serde(rename = "efficientnet-lite0")]
    EfficientnetLite0,
}

#[derive(Config, Debug)]
pub struct PosterEncoderConfig {
    #[config(default = "PosterEncoderKind::Resnet")]
    pub kind: PosterEncoderKind,
    /// Checkpoint folder of a pretrained kind (`model.pth` or `model.safetensors`).
    #[config(default = "None")]
    pub pretrained: Option<PathBuf>,
    /// Pretrained kinds: keep the backbone frozen (features computed once and cached).
    #[config(default = true)]
    pub freeze: bool,
    /// Pretrained kinds, fine-tuning: backbone learning rate relative to the head's.
    #[config(default = 0.1)]
    pub lr_scale: f64,
    /// Pretrained kinds, fine-tuning: train only the last N blocks (all when unset).
    #[config(default = "None")]
    pub trainable_layers: Option<usize>,
    /// Pretrained kinds, fine-tuning: layer-wise learning-rate decay. The top layer steps at
    /// `lr × lr_scale`, each layer below at `layer_decay` times the one above, the embeddings
    /// (stem) last; 1 gives every layer the same rate.
    #[config(default = 1.0)]
    pub layer_decay: f64,
    /// Pretrained kinds: dropout on the backbone features before the adapter.
    #[config(default = 0.1)]
    pub feature_dropout: f64,
    /// `kind = "efficientnet-lite0"`, fine-tuning the last `trainable_layers` blocks: the stem
    /// and the blocks below them run once per poster (in inference mode: their BatchNorm uses
    /// its running statistics) and every step starts from their cached output, so a step runs
    /// only the blocks that learn. Prediction is unchanged (it runs the whole backbone).
    #[config(default = false)]
    pub cache_frozen_layers: bool,
    /// Channels of each stage; every stage after the first halves the resolution.
    #[config(default = "vec![16, 32, 64]")]
    pub widths: Vec<usize>,
    /// Residual blocks per stage.
    #[config(default = 1)]
    pub blocks_per_stage: usize,
    /// Stride of the stem convolution (2 halves the input once more, for speed).
    #[config(default = 2)]
    pub stem_stride: usize,
}

impl PosterEncoderConfig {
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
            && (self.kind != PosterEncoderKind::EfficientnetLite0
                || self.freeze
                || self.trainable_layers.is_none())
        {
            return Err(
                "model.poster.cache_frozen_layers: needs kind = \"efficientnet-lite0\", \
                 freeze = false and trainable_layers (the blocks below those are the ones cached)"
                    .into(),
            );
        }
        if self.kind != PosterEncoderKind::Resnet {
            return validate_tuning(
                "poster",
                self.pretrained.as_deref(),
                &self.tuning(),
                self.feature_dropout,
            );
        }
        if self.pretrained.is_some() {
            return Err(
                "model.poster.pretrained is set but model.poster.kind = \"resnet\" trains from \
                 scratch; use kind = \"efficientnet-lite0\""
                    .into(),
            );
        }
        if self.widths.is_empty() || self.widths.len() > MAX_LAYERS {
            return Err(format!(
                "model.poster.widths = {:?}: expected 1..={MAX_LAYERS} stages",
                self.widths
            ));
        }
        for (k, w) in self.widths.iter().enumerate() {
            check_size(&format!("model.poster.widths[{k}]"), *w, MAX_WIDTH)?;
        }
        check_size(
            "model.poster.blocks_per_stage",
            self.blocks_per_stage,
            MAX_LAYERS,
        )?;
        if !(1..=4).contains(&self.stem_stride) {
            return Err(format!(
                "model.poster.stem_stride = {}: expected 1..=4",
                self.stem_stride
            ));
        }
        Ok(())
    }

    /// The encoder this section describes. A pretrained backbone starts from random
    /// weights here: `init_pretrained` reads its checkpoint, and a saved model carries them.
    pub fn init(&self, embed_dim: usize, device: &Device) -> PosterEncoder {
        match self.kind {
            PosterEncoderKind::Resnet => {
                PosterEncoder::Resnet(ResnetPosterEncoder::new(self, embed_dim, device))
            }
            PosterEncoderKind::EfficientnetLite0 => {
                self.on_backbone(EfficientNetLite::lite0(device), embed_dim, device)
            }
        }
    }

    /// `init`, with a pretrained backbone's weights read from `pretrained` (a new run).
    pub fn init_pretrained(
        &self,
        embed_dim: usize,
        device: &Device,
    ) -> Result<PosterEncoder, PretrainedError> {
        match (self.kind, &self.pretrained) {
            (PosterEncoderKind::EfficientnetLite0, Some(dir)) => {
                Ok(self.on_backbone(EfficientNetLite::from_dir(dir, device)?, embed_dim, device))
            }
            _ => Ok(self.init(embed_dim, device)),
        }
    }

    fn on_backbone(
        &self,
        net: EfficientNetLite,
        embed_dim: usize,
        device: &Device,
    ) -> PosterEncoder {
        PosterEncoder::EfficientNet(PretrainedEncoder::new(
            net,
            embed_dim,
            self.feature_dropout,
            &self.tuning(),
            device,
        ))
    }
}

/// The poster encoder `PosterEncoderConfig::kind` chose.
// A model holds one encoder per modality, so the variants' size difference costs nothing;
// Burn implements `Module` for no `Box`.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum PosterEncoder {
    Resnet(ResnetPosterEncoder),
    EfficientNet(PretrainedEncoder<EfficientNetLite>),
}

impl PosterEncoder {
    /// The encoder on the pretrained backbone, when there is one.
    pub fn pretrained(&self) -> Option<&PretrainedEncoder<EfficientNetLite>> {
        match self {
            PosterEncoder::EfficientNet(e) => Some(e),
            PosterEncoder::Resnet(_) => None,
        }
    }
}

impl ModalityEncoder for PosterEncoder {
    fn encode(&self, batch: &MovieBatch, with_skip: bool) -> Encoded {
        match self {
            PosterEncoder::Resnet(e) => Encoded {
                embedding: e.forward(batch.posters.clone()),
                skip: None,
            },
            PosterEncoder::EfficientNet(e) => e.encode(batch, with_skip),
        }
    }

    fn skip_dim(&self) -> usize {
        self.pretrained().map_or(0, |e| e.skip_dim())
    }

    fn present(&self, batch: &MovieBatch) -> Tensor<1> {
        batch.poster_present.clone()
    }
}

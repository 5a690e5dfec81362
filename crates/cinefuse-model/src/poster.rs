//! Poster encoder: a ResNet-style CNN trained from scratch (residual blocks with batch norm,
//! configurable widths and depth, global average pooling). On the flex backend its convolutions
//! and batch norms run on `cinefuse-kernels` (see `cpu_kernels`).

use burn::config::Config;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use cinefuse_data::MovieBatch;

use crate::cpu_kernels::{batch_norm, conv2d};
use crate::encoder::ModalityEncoder;
use crate::pretrained_config::{Tuning, validate_tuning};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
    /// Pretrained kinds: dropout on the backbone features before the adapter.
    #[config(default = 0.1)]
    pub feature_dropout: f64,
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
        }
    }

    pub fn validate(&self) -> Result<(), String> {
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
        if self.widths.is_empty() || self.widths.contains(&0) {
            return Err(format!(
                "model.poster.widths = {:?}: expected a non-empty list of positive channel counts",
                self.widths
            ));
        }
        if self.blocks_per_stage == 0 {
            return Err("model.poster.blocks_per_stage = 0: expected at least 1".into());
        }
        if !(1..=4).contains(&self.stem_stride) {
            return Err(format!(
                "model.poster.stem_stride = {}: expected 1..=4",
                self.stem_stride
            ));
        }
        Ok(())
    }

    pub fn init(&self, embed_dim: usize, device: &Device) -> PosterEncoder {
        let w0 = self.widths[0];
        let mut blocks = Vec::new();
        let mut c_in = w0;
        for (stage, &c_out) in self.widths.iter().enumerate() {
            for b in 0..self.blocks_per_stage {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                blocks.push(ResidualBlock::new(c_in, c_out, stride, device));
                c_in = c_out;
            }
        }
        PosterEncoder {
            stem: Conv2dConfig::new([3, w0], [3, 3])
                .with_stride([self.stem_stride, self.stem_stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device),
            stem_norm: BatchNormConfig::new(w0).init(device),
            blocks,
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            proj: LinearConfig::new(c_in, embed_dim).init(device),
            embed_dim,
        }
    }
}

/// conv3×3 → BN → ReLU → conv3×3 → BN, plus an identity or 1×1 projection shortcut.
#[derive(Module, Debug)]
pub struct ResidualBlock {
    conv1: Conv2d,
    norm1: BatchNorm,
    conv2: Conv2d,
    norm2: BatchNorm,
    shortcut: Option<(Conv2d, BatchNorm)>,
}

impl ResidualBlock {
    pub fn new(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Self {
        let conv = |a: usize, b: usize, s: usize| {
            Conv2dConfig::new([a, b], [3, 3])
                .with_stride([s, s])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device)
        };
        let shortcut = (c_in != c_out || stride != 1).then(|| {
            (
                Conv2dConfig::new([c_in, c_out], [1, 1])
                    .with_stride([stride, stride])
                    .with_bias(false)
                    .init(device),
                BatchNormConfig::new(c_out).init(device),
            )
        });
        Self {
            conv1: conv(c_in, c_out, stride),
            norm1: BatchNormConfig::new(c_out).init(device),
            conv2: conv(c_out, c_out, 1),
            norm2: BatchNormConfig::new(c_out).init(device),
            shortcut,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = relu(batch_norm(&self.norm1, conv2d(&self.conv1, x.clone())));
        let y = batch_norm(&self.norm2, conv2d(&self.conv2, y));
        let skip = match &self.shortcut {
            Some((conv, norm)) => batch_norm(norm, conv2d(conv, x)),
            None => x,
        };
        relu(y + skip)
    }
}

#[derive(Module, Debug)]
pub struct PosterEncoder {
    stem: Conv2d,
    stem_norm: BatchNorm,
    blocks: Vec<ResidualBlock>,
    pool: AdaptiveAvgPool2d,
    proj: Linear,
    #[module(skip)]
    embed_dim: usize,
}

impl PosterEncoder {
    /// `[B, 3, H, W]` → `[B, embed_dim]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = relu(batch_norm(&self.stem_norm, conv2d(&self.stem, images)));
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x: Tensor<2> = self.pool.forward(x).flatten(1, 3);
        relu(self.proj.forward(x))
    }
}

impl ModalityEncoder for PosterEncoder {
    fn embed(&self, batch: &MovieBatch) -> Tensor<2> {
        self.forward(batch.posters.clone())
    }

    fn present(&self, batch: &MovieBatch) -> Tensor<1> {
        batch.poster_present.clone()
    }

    fn embed_dim(&self) -> usize {
        self.embed_dim
    }
}

//! The poster encoder trained from scratch: a ResNet-style CNN (residual blocks with batch
//! norm, configurable widths and depth, global average pooling). On the flex backend its
//! convolutions and batch norms run on `cinefuse-kernels` (see `cpu_kernels`).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::PosterEncoderConfig;
use crate::cpu_kernels::{batch_norm, conv2d};

#[derive(Module, Debug)]
pub struct ResnetPosterEncoder {
    stem: Conv2d,
    stem_norm: BatchNorm,
    blocks: Vec<ResidualBlock>,
    pool: AdaptiveAvgPool2d,
    proj: Linear,
}

impl ResnetPosterEncoder {
    pub fn new(c: &PosterEncoderConfig, embed_dim: usize, device: &Device) -> Self {
        let w0 = c.widths[0];
        let mut blocks = Vec::new();
        let mut c_in = w0;
        for (stage, &c_out) in c.widths.iter().enumerate() {
            for b in 0..c.blocks_per_stage {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                blocks.push(ResidualBlock::new(c_in, c_out, stride, device));
                c_in = c_out;
            }
        }
        Self {
            stem: Conv2dConfig::new([3, w0], [3, 3])
                .with_stride([c.stem_stride, c.stem_stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device),
            stem_norm: BatchNormConfig::new(w0).init(device),
            blocks,
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            proj: LinearConfig::new(c_in, embed_dim).init(device),
        }
    }

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

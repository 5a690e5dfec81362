//! EfficientNet-Lite0 (ImageNet) as a poster encoder: a 3×3 stem, sixteen inverted-residual
//! blocks (1×1 expansion, depthwise k×k, 1×1 projection, no squeeze-excite, ReLU6), a 1×1 head
//! to 1280 channels and global average pooling. Convolutions pad like TensorFlow's "SAME"
//! (asymmetric on stride 2), as the checkpoint was trained. Tensor names follow the common
//! `efficientnet_pytorch` port: `_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, …, `_fc`.

use std::path::{Path, PathBuf};

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu6;
use burn::tensor::ops::PadMode;

use crate::cpu_kernels::{batch_norm, conv2d};
use crate::pretrained::frozen_part::param_ids;
use crate::pretrained::load::{PretrainedError, load_pytorch, load_safetensors};
use crate::pretrained::portable_file::{
    POSTER_BACKBONE_PREFIX, is_portable, load_portable, weights_or_portable,
};

/// (kernel, first stride, output channels, blocks, expansion) of each stage of Lite0.
const LITE0_STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (3, 1, 16, 1, 1),
    (3, 2, 24, 2, 6),
    (5, 2, 40, 2, 6),
    (3, 2, 80, 3, 6),
    (5, 1, 112, 3, 6),
    (5, 2, 192, 4, 6),
    (3, 1, 320, 1, 6),
];
/// How many inverted-residual blocks Lite0 has (16).
pub const LITE0_BLOCKS: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < LITE0_STAGES.len() {
        n += LITE0_STAGES[i].3;
        i += 1;
    }
    n
};
const STEM_CHANNELS: usize = 32;
pub const HEAD_CHANNELS: usize = 1280;
/// BatchNorm epsilon of the TensorFlow original.
const BN_EPS: f64 = 1e-3;
/// The checkpoint's input scaling: `(pixel − 127) / 128` on 0–255 values.
pub const INPUT_MEAN: f32 = 127.0;
pub const INPUT_STD: f32 = 128.0;

/// Checkpoint names → field paths.
pub const EFFICIENTNET_KEY_MAP: &[(&str, &str)] = &[
    (r"^_conv_stem\.", "stem.conv."),
    (r"^_bn0\.", "stem_norm."),
    (r"^_blocks\.(\d+)\._expand_conv\.", "blocks.$1.expand.conv."),
    (r"^_blocks\.(\d+)\._bn0\.", "blocks.$1.expand_norm."),
    (
        r"^_blocks\.(\d+)\._depthwise_conv\.",
        "blocks.$1.depthwise.conv.",
    ),
    (r"^_blocks\.(\d+)\._bn1\.", "blocks.$1.depthwise_norm."),
    (
        r"^_blocks\.(\d+)\._project_conv\.",
        "blocks.$1.project.conv.",
    ),
    (r"^_blocks\.(\d+)\._bn2\.", "blocks.$1.project_norm."),
    (r"^_conv_head\.", "head.conv."),
    (r"^_bn1\.", "head_norm."),
];

/// The ImageNet classifier and BatchNorm's step counters are not used.
pub const EFFICIENTNET_IGNORED: &[&str] = &[r"^_fc\.", r"num_batches_tracked$"];

/// A convolution without bias; stride-2 ones pad "SAME" at run time (it depends on the size).
#[derive(Module, Debug)]
pub struct SameConv {
    conv: Conv2d,
    #[module(skip)]
    kernel: usize,
    #[module(skip)]
    stride: usize,
}

impl SameConv {
    fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        device: &Device,
    ) -> Self {
        // Stride 1 with an odd kernel: "SAME" is symmetric, so the convolution pads itself.
        let padding = if stride == 1 {
            let p = (kernel - 1) / 2;
            PaddingConfig2d::Explicit(p, p, p, p)
        } else {
            PaddingConfig2d::Valid
        };
        let conv = Conv2dConfig::new([c_in, c_out], [kernel, kernel])
            .with_stride([stride, stride])
            .with_groups(groups)
            .with_padding(padding)
            .with_bias(false)
            .init(device);
        Self {
            conv,
            kernel,
            stride,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if self.stride == 1 {
            return conv2d(&self.conv, x);
        }
        let [_, _, h, w] = x.dims();
        let (top, bottom) = same_padding(h, self.kernel, self.stride);
        let (left, right) = same_padding(w, self.kernel, self.stride);
        let x = x.pad((left, right, top, bottom), PadMode::Constant(0.0));
        conv2d(&self.conv, x)
    }
}

/// TensorFlow's "SAME" padding of one axis: the output has `ceil(size / stride)` positions;
/// the extra row or column, when the total is odd, goes after.
pub fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

fn bn(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels)
        .with_epsilon(BN_EPS)
        .init(device)
}

#[derive(Module, Debug)]
pub struct InvertedResidual {
    expand: Option<SameConv>,
    expand_norm: Option<BatchNorm>,
    depthwise: SameConv,
    depthwise_norm: BatchNorm,
    project: SameConv,
    project_norm: BatchNorm,
    #[module(skip)]
    residual: bool,
}

impl InvertedResidual {
    fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        expansion: usize,
        device: &Device,
    ) -> Self {
        let mid = c_in * expansion;
        let expands = expansion != 1;
        Self {
            expand: expands.then(|| SameConv::new(c_in, mid, 1, 1, 1, device)),
            expand_norm: expands.then(|| bn(mid, device)),
            depthwise: SameConv::new(mid, mid, kernel, stride, mid, device),
            depthwise_norm: bn(mid, device),
            project: SameConv::new(mid, c_out, 1, 1, 1, device),
            project_norm: bn(c_out, device),
            residual: stride == 1 && c_in == c_out,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = x.clone();
        if let (Some(conv), Some(norm)) = (&self.expand, &self.expand_norm) {
            h = relu6(batch_norm(norm, conv.forward(h)));
        }
        h = relu6(batch_norm(&self.depthwise_norm, self.depthwise.forward(h)));
        h = batch_norm(&self.project_norm, self.project.forward(h));
        if self.residual { h + x } else { h }
    }
}

#[derive(Module, Debug)]
pub struct EfficientNetLite {
    stem: SameConv,
    stem_norm: BatchNorm,
    pub blocks: Vec<InvertedResidual>,
    head: SameConv,
    head_norm: BatchNorm,
    pool: AdaptiveAvgPool2d,
}

impl EfficientNetLite {
    /// EfficientNet-Lite0 with random weights.
    pub fn lite0(device: &Device) -> Self {
        let mut blocks = Vec::new();
        let mut c_in = STEM_CHANNELS;
        for (kernel, stride, c_out, n, expansion) in LITE0_STAGES {
            for i in 0..n {
                let s = if i == 0 { stride } else { 1 };
                blocks.push(InvertedResidual::new(
                    c_in, c_out, kernel, s, expansion, device,
                ));
                c_in = c_out;
            }
        }
        Self {
            stem: SameConv::new(3, STEM_CHANNELS, 3, 2, 1, device),
            stem_norm: bn(STEM_CHANNELS, device),
            blocks,
            head: SameConv::new(c_in, HEAD_CHANNELS, 1, 1, 1, device),
            head_norm: bn(HEAD_CHANNELS, device),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
        }
    }

    /// Lite0 with the weights of `DIR/model.pth` (PyTorch state dict) or, when that is
    /// absent, `DIR/model.safetensors` (same tensor names).
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, PretrainedError> {
        let model = Self::lite0(device);
        let file = Self::weights_file(dir);
        if is_portable(&file) {
            load_portable(model, &file, POSTER_BACKBONE_PREFIX)
        } else if file.extension().is_some_and(|e| e == "pth") {
            load_pytorch(model, &file, EFFICIENTNET_KEY_MAP, EFFICIENTNET_IGNORED)
        } else {
            load_safetensors(model, &file, EFFICIENTNET_KEY_MAP, EFFICIENTNET_IGNORED)
        }
    }

    /// The weights file of a checkpoint folder: `model.pth` when present, else
    /// `model.safetensors`, or an export's portable file when only that is there.
    pub fn weights_file(dir: &Path) -> PathBuf {
        let pth = dir.join("model.pth");
        if pth.exists() {
            pth
        } else {
            weights_or_portable(dir, "model.safetensors")
        }
    }

    /// `[B, 3, H, W]` images already scaled as `(pixel − 127) / 128` → pooled `[B, 1280]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_from(0, self.states_before(0, x))
    }

    /// The feature maps entering block `block` (`0..=blocks.len()`): the stem and the blocks
    /// below it, on images scaled as for `forward`.
    pub fn states_before(&self, block: usize, x: Tensor<4>) -> Tensor<4> {
        let h = relu6(batch_norm(&self.stem_norm, self.stem.forward(x)));
        self.blocks[..block].iter().fold(h, |h, b| b.forward(h))
    }

    /// The pooled features from the maps entering block `block`: the blocks from there on,
    /// the head and the pooling. `forward_from(k, states_before(k, x)) == forward(x)`.
    pub fn forward_from(&self, block: usize, states: Tensor<4>) -> Tensor<2> {
        let h = self.blocks[block..]
            .iter()
            .fold(states, |h, b| b.forward(h));
        let h = relu6(batch_norm(&self.head_norm, self.head.forward(h)));
        let [b, c, _, _] = h.dims();
        self.pool.forward(h).reshape([b, c])
    }

    /// `[C, H, W]` of the maps entering block `block` for `height × width` images.
    pub fn states_shape(block: usize, height: usize, width: usize) -> [usize; 3] {
        let (mut c, mut h, mut w) = (STEM_CHANNELS, height.div_ceil(2), width.div_ceil(2));
        let strides = LITE0_STAGES.iter().flat_map(|&(_, stride, c_out, n, _)| {
            (0..n).map(move |i| (if i == 0 { stride } else { 1 }, c_out))
        });
        for (stride, c_out) in strides.take(block) {
            (c, h, w) = (c_out, h.div_ceil(stride), w.div_ceil(stride));
        }
        [c, h, w]
    }

    /// How many inverted-residual blocks the network has.
    pub fn n_blocks(&self) -> usize {
        self.blocks.len()
    }
}

impl EfficientNetLite {
    /// Freezes the stem and all but the last `n` blocks (the 1×1 head stays trainable).
    /// Frozen means no gradient *and* BatchNorm on its running statistics (`freeze`, not
    /// `no_grad`): a frozen block on the training device would otherwise normalise by each
    /// batch's statistics and rewrite its running ones, drifting from the pretrained network.
    pub fn freeze_all_but_last_blocks(mut self, n: usize) -> Self {
        // The same blocks as `ids_below_last_blocks` names.
        let below = self.blocks.len().saturating_sub(n);
        self.stem = self.stem.freeze();
        self.stem_norm = self.stem_norm.freeze();
        self.blocks = self
            .blocks
            .into_iter()
            .enumerate()
            .map(|(i, b)| if i < below { b.freeze() } else { b })
            .collect();
        self
    }

    /// The ids of what `freeze_all_but_last_blocks(n)` freezes (batch-norm statistics too).
    pub fn ids_below_last_blocks(&self, n: usize) -> Vec<burn::module::ParamId> {
        let below = self.blocks.len().saturating_sub(n);
        let mut ids = param_ids(&self.stem);
        ids.extend(param_ids(&self.stem_norm));
        self.blocks[..below]
            .iter()
            .for_each(|b| ids.extend(param_ids(b)));
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// A wholly frozen backbone run in a training pass (not from cached features) leaves
    /// every running statistic as loaded.
    #[test]
    fn a_frozen_backbone_keeps_its_batch_norm_statistics() {
        let device = Device::flex().autodiff();
        let tuning = crate::pretrained::Tuning {
            freeze: true,
            lr_scale: 0.1,
            trainable_layers: None,
            layer_decay: 1.0,
        };
        let encoder = crate::pretrained::encoder::PretrainedEncoder::new(
            EfficientNetLite::lite0(&device),
            8,
            0.0,
            &tuning,
            &device,
        );
        let net = &encoder.backbone;
        let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Default, &device);
        let _ = net.forward(x);
        for norm in [
            &net.stem_norm,
            &net.blocks[15].depthwise_norm,
            &net.head_norm,
        ] {
            let moved: f32 = norm.running_mean.value_sync().abs().sum().into_scalar();
            assert_eq!(moved, 0.0, "still the initial zeros");
        }
    }

    /// A fine-tuning pass from the pixels leaves the frozen blocks' running statistics as
    /// loaded and updates the trainable blocks' ones.
    #[test]
    fn frozen_blocks_keep_their_batch_norm_statistics() {
        let device = Device::flex().autodiff();
        let net = EfficientNetLite::lite0(&device).freeze_all_but_last_blocks(2);
        let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Default, &device);
        let _ = net.forward(x).sum().backward();
        let moved = |b: &InvertedResidual| -> f32 {
            let mean = b.depthwise_norm.running_mean.value_sync();
            mean.abs().sum().into_scalar()
        };
        assert_eq!(
            moved(&net.blocks[13]),
            0.0,
            "frozen: still the initial zeros"
        );
        assert!(moved(&net.blocks[15]) > 0.0, "trainable: updated");
        assert_eq!(
            net.stem_norm
                .running_mean
                .value_sync()
                .abs()
                .sum()
                .into_scalar::<f32>(),
            0.0
        );
    }
}

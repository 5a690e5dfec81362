//! What a pretrained network offers the encoder built on it: pooled features of a batch, the
//! batch's cached features when the backbone is frozen, and freezing of its early layers.

use burn::prelude::*;
use cinefuse_data::MovieBatch;
use cinefuse_data::batch::{POSTER_MEAN, POSTER_STD};

use super::efficientnet::{HEAD_CHANNELS, INPUT_MEAN, INPUT_STD};
use super::{Bert, EfficientNetLite};
use crate::encoders::text::keep_first;

pub trait Backbone: Module {
    /// Width of the pooled features.
    fn feature_dim(&self) -> usize;
    /// Pooled features `[B, feature_dim]` of the batch's raw inputs.
    fn features(&self, batch: &MovieBatch) -> Tensor<2>;
    /// The batch's precomputed features (the frozen backbone's cache), when it has them.
    fn cached(batch: &MovieBatch) -> Option<&Tensor<2>>;
    /// Which movies of the batch have this backbone's modality.
    fn present(batch: &MovieBatch) -> Tensor<1>;
    /// Keeps only the last `n` layers (BERT layers, EfficientNet blocks) trainable.
    fn freeze_all_but_last(self, n: usize) -> Self;
    /// The ids of the tensors `freeze_all_but_last(n)` freezes (running statistics included).
    fn frozen_below_last(&self, n: usize) -> Vec<burn::module::ParamId>;
    /// How many layers deep the top of the backbone is.
    fn depth(&self) -> usize;
    /// The depth of the parameter at module path `path` (its names from the backbone down):
    /// 0 for the embeddings (stem), `i + 1` inside layer (block) `i`, `depth()` above them.
    fn depth_of(&self, path: &[String]) -> usize;
}

impl Backbone for Bert {
    fn feature_dim(&self) -> usize {
        self.pooled_width()
    }

    /// From the cached output of the frozen layers when the batch carries it (a fine-tuning
    /// run with `cache_frozen_layers`), else from the tokens.
    fn features(&self, batch: &MovieBatch) -> Tensor<2> {
        let mask = keep_first(batch.token_mask.clone());
        match &batch.plot_states {
            Some(s) => self.forward_from(s.from_layer, s.states.clone(), mask),
            None => self.forward(batch.tokens.clone(), mask),
        }
    }

    fn cached(batch: &MovieBatch) -> Option<&Tensor<2>> {
        batch.plot_features.as_ref()
    }

    fn present(batch: &MovieBatch) -> Tensor<1> {
        batch.plot_present.clone()
    }

    fn freeze_all_but_last(self, n: usize) -> Self {
        self.freeze_all_but_last_layers(n)
    }

    fn frozen_below_last(&self, n: usize) -> Vec<burn::module::ParamId> {
        self.ids_below_last_layers(n)
    }

    fn depth(&self) -> usize {
        self.layers.len()
    }

    fn depth_of(&self, path: &[String]) -> usize {
        layer_depth(path, "layers", "embeddings", self.depth())
    }
}

impl Backbone for EfficientNetLite {
    fn feature_dim(&self) -> usize {
        HEAD_CHANNELS
    }

    /// From the cached output of the frozen blocks when the batch carries it (a fine-tuning
    /// run with `cache_frozen_layers`), else from the pixels.
    fn features(&self, batch: &MovieBatch) -> Tensor<2> {
        match &batch.poster_states {
            Some(s) => self.forward_from(s.from_block, s.maps.clone()),
            None => self.forward(to_checkpoint_scale(batch.posters.clone())),
        }
    }

    fn cached(batch: &MovieBatch) -> Option<&Tensor<2>> {
        batch.poster_features.as_ref()
    }

    fn present(batch: &MovieBatch) -> Tensor<1> {
        batch.poster_present.clone()
    }

    fn freeze_all_but_last(self, n: usize) -> Self {
        self.freeze_all_but_last_blocks(n)
    }

    fn frozen_below_last(&self, n: usize) -> Vec<burn::module::ParamId> {
        self.ids_below_last_blocks(n)
    }

    fn depth(&self) -> usize {
        self.blocks.len() + 1
    }

    fn depth_of(&self, path: &[String]) -> usize {
        layer_depth(path, "blocks", "stem", self.depth())
    }
}

/// `path`'s depth in a backbone whose layers are the list `layers` and whose input layers'
/// names start with `input`: `layers.i.…` is `i + 1`, the input 0, anything else the top.
fn layer_depth(path: &[String], layers: &str, input: &str, top: usize) -> usize {
    match path {
        [first, index, ..] if first == layers => index.parse::<usize>().map_or(top, |i| i + 1),
        [first, ..] if first.starts_with(input) => 0,
        _ => top,
    }
}

/// Batches hold posters normalized as `(p/255 − mean_c) / std_c`; the checkpoint expects
/// `(p − 127) / 128` on 0–255 values: one affine map per channel.
pub fn to_checkpoint_scale(posters: Tensor<4>) -> Tensor<4> {
    let device = posters.device();
    let scale: Vec<f32> = POSTER_STD.iter().map(|s| s * 255.0 / INPUT_STD).collect();
    let shift: Vec<f32> = POSTER_MEAN
        .iter()
        .map(|m| (m * 255.0 - INPUT_MEAN) / INPUT_STD)
        .collect();
    let per_channel =
        |v: Vec<f32>| Tensor::<1>::from_floats(v.as_slice(), &device).reshape([1, 3, 1, 1]);
    posters * per_channel(scale) + per_channel(shift)
}

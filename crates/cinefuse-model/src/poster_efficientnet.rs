//! Poster encoder on pretrained EfficientNet-Lite0: the pooled 1280-d ImageNet features,
//! precomputed (frozen backbone, features from the embedding cache in the batch) or computed
//! here, then the trainable `FeatureAdapter`.

use burn::prelude::*;
use cinefuse_data::MovieBatch;
use cinefuse_data::batch::{POSTER_MEAN, POSTER_STD};

use crate::adapter::FeatureAdapter;
use crate::encoder::ModalityEncoder;
use crate::pretrained::EfficientNetLite;
use crate::pretrained::efficientnet::{HEAD_CHANNELS, INPUT_MEAN, INPUT_STD};
use crate::pretrained_config::Tuning;

#[derive(Module, Debug)]
pub struct EfficientNetPosterEncoder {
    pub net: EfficientNetLite,
    adapter: FeatureAdapter,
    #[module(skip)]
    embed_dim: usize,
}

impl EfficientNetPosterEncoder {
    pub fn new(
        net: EfficientNetLite,
        embed_dim: usize,
        feature_dropout: f64,
        tuning: &Tuning,
        device: &Device,
    ) -> Self {
        let adapter = FeatureAdapter::new(HEAD_CHANNELS, embed_dim, feature_dropout, device);
        Self {
            net: set_trainable(net, tuning),
            adapter,
            embed_dim,
        }
    }

    /// The backbone's pooled features `[B, 1280]` of the batch's posters.
    pub fn backbone_features(&self, batch: &MovieBatch) -> Tensor<2> {
        self.net.forward(to_checkpoint_scale(batch.posters.clone()))
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

fn set_trainable(net: EfficientNetLite, tuning: &Tuning) -> EfficientNetLite {
    if tuning.freeze {
        return net.no_grad();
    }
    match tuning.trainable_layers {
        Some(n) => net.freeze_all_but_last_blocks(n),
        None => net,
    }
}

impl ModalityEncoder for EfficientNetPosterEncoder {
    fn embed(&self, batch: &MovieBatch) -> Tensor<2> {
        let features = match &batch.poster_features {
            Some(f) => f.clone(),
            None => self.backbone_features(batch),
        };
        self.adapter.forward(features)
    }

    fn present(&self, batch: &MovieBatch) -> Tensor<1> {
        batch.poster_present.clone()
    }

    fn embed_dim(&self) -> usize {
        self.embed_dim
    }
}

//! A modality encoder on a pretrained backbone: the backbone's pooled features, either
//! precomputed (frozen backbone: features from the embedding cache in the batch) or computed
//! here (prediction, or fine-tuning), then the trainable `FeatureAdapter`.

use burn::prelude::*;
use cinefuse_data::MovieBatch;

use super::adapter::FeatureAdapter;
use super::backbone::Backbone;
use super::tuning::Tuning;
use crate::encoders::{Encoded, ModalityEncoder};
use crate::linear_skip::{skip_block, standardize_rows};

#[derive(Module, Debug)]
pub struct PretrainedEncoder<B: Module + Backbone> {
    pub backbone: B,
    adapter: FeatureAdapter,
}

impl<B: Module + Backbone> PretrainedEncoder<B> {
    pub fn new(
        backbone: B,
        embed_dim: usize,
        feature_dropout: f64,
        tuning: &Tuning,
        device: &Device,
    ) -> Self {
        let adapter =
            FeatureAdapter::new(backbone.feature_dim(), embed_dim, feature_dropout, device);
        Self {
            backbone: set_trainable(backbone, tuning),
            adapter,
        }
    }

    /// The backbone's pooled features `[B, feature_dim]` of the batch's raw inputs.
    pub fn backbone_features(&self, batch: &MovieBatch) -> Tensor<2> {
        self.backbone.features(batch)
    }

    pub fn feature_dim(&self) -> usize {
        self.backbone.feature_dim()
    }

    /// The trainable layer on the backbone's features.
    pub fn adapter(&self) -> &FeatureAdapter {
        &self.adapter
    }
}

/// Frozen: no parameter takes gradients, and batch norm keeps to its running statistics
/// (`freeze`, not `no_grad`, should the backbone ever run in a training step rather than from
/// cached features). Fine-tuned: all but the last `trainable_layers` layers stay frozen (all
/// train when unset).
fn set_trainable<B: Backbone>(backbone: B, tuning: &Tuning) -> B {
    if tuning.freeze {
        return backbone.freeze();
    }
    match tuning.trainable_layers {
        Some(n) => backbone.freeze_all_but_last(n),
        None => backbone,
    }
}

impl<B: Module + Backbone> ModalityEncoder for PretrainedEncoder<B> {
    /// The adapter's embedding; the skip features are the backbone's own, each row
    /// standardized (the backbones' scales differ by 10x) then scaled like every skip block.
    fn encode(&self, batch: &MovieBatch, with_skip: bool) -> Encoded {
        let features = match B::cached(batch) {
            Some(f) => f.clone(),
            None => self.backbone.features(batch),
        };
        Encoded {
            skip: with_skip.then(|| skip_block(standardize_rows(features.clone()))),
            embedding: self.adapter.forward(features),
        }
    }

    fn skip_dim(&self) -> usize {
        self.feature_dim()
    }

    fn present(&self, batch: &MovieBatch) -> Tensor<1> {
        B::present(batch)
    }
}

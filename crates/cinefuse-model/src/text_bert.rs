//! Plot encoder on a pretrained BERT-family checkpoint: the pooled sentence embedding, either
//! precomputed (frozen backbone, features from the embedding cache in the batch) or computed
//! here (prediction, or fine-tuning), then the trainable `FeatureAdapter`.

use burn::prelude::*;
use cinefuse_data::MovieBatch;

use crate::adapter::FeatureAdapter;
use crate::encoder::ModalityEncoder;
use crate::pretrained::Bert;
use crate::pretrained_config::Tuning;
use crate::text::keep_first;

#[derive(Module, Debug)]
pub struct BertTextEncoder {
    pub bert: Bert,
    adapter: FeatureAdapter,
    #[module(skip)]
    embed_dim: usize,
}

impl BertTextEncoder {
    pub fn new(
        bert: Bert,
        embed_dim: usize,
        feature_dropout: f64,
        tuning: &Tuning,
        device: &Device,
    ) -> Self {
        let adapter = FeatureAdapter::new(bert.hidden_size(), embed_dim, feature_dropout, device);
        Self {
            bert: set_trainable(bert, tuning),
            adapter,
            embed_dim,
        }
    }

    /// The backbone's pooled embedding `[B, hidden]` of the batch's tokens.
    pub fn backbone_features(&self, batch: &MovieBatch) -> Tensor<2> {
        self.bert
            .forward(batch.tokens.clone(), keep_first(batch.token_mask.clone()))
    }

    pub fn feature_dim(&self) -> usize {
        self.bert.hidden_size()
    }
}

/// Frozen: no parameter takes gradients. Fine-tuned: the embeddings and all but the last
/// `trainable_layers` layers stay frozen.
fn set_trainable(bert: Bert, tuning: &Tuning) -> Bert {
    if tuning.freeze {
        return bert.no_grad();
    }
    match tuning.trainable_layers {
        Some(n) => bert.freeze_all_but_last_layers(n),
        None => bert,
    }
}

impl ModalityEncoder for BertTextEncoder {
    fn embed(&self, batch: &MovieBatch) -> Tensor<2> {
        let features = match &batch.plot_features {
            Some(f) => f.clone(),
            None => self.backbone_features(batch),
        };
        self.adapter.forward(features)
    }

    fn present(&self, batch: &MovieBatch) -> Tensor<1> {
        batch.plot_present.clone()
    }

    fn embed_dim(&self) -> usize {
        self.embed_dim
    }
}

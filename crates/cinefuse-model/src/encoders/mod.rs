//! The modality encoders trained from scratch, and the seam every encoder implements (the
//! pretrained ones live in `crate::pretrained`).
//!
//! - `poster`: `PosterEncoder::{Resnet, EfficientNet}`
//! - `text`: `TextEncoder::{Transformer, Bag, Cnn, Ngram, Bert}`
//! - `meta`: one MLP over scaled numbers and categorical embeddings

pub mod meta;
pub mod poster;
pub mod text;

use burn::prelude::*;
use cinefuse_data::MovieBatch;

/// What an encoder computes for a batch: one `embed_dim` vector per movie, and the features
/// the model's linear skip reads (`model.linear_skip`; `None` for encoders without any).
pub struct Encoded {
    pub embedding: Tensor<2>,
    pub skip: Option<Tensor<2>>,
}

/// A modality encoder maps a batch to one `embed_dim` vector per movie (and, for some, skip
/// features), plus which movies actually have this modality (`1.0` present, `0.0` missing).
pub trait ModalityEncoder {
    /// `with_skip`: also compute the skip features (only a model with a linear skip reads
    /// them; the others should not pay for them).
    fn encode(&self, batch: &MovieBatch, with_skip: bool) -> Encoded;
    fn present(&self, batch: &MovieBatch) -> Tensor<1>;

    /// Width of `Encoded::skip` (0: the encoder has no skip features).
    fn skip_dim(&self) -> usize {
        0
    }

    fn embed(&self, batch: &MovieBatch) -> Tensor<2> {
        self.encode(batch, false).embedding
    }
}

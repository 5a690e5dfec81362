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

/// A modality encoder maps a batch to one `embed_dim` vector per movie, plus which movies
/// actually have this modality (`1.0` present, `0.0` missing).
pub trait ModalityEncoder {
    fn embed(&self, batch: &MovieBatch) -> Tensor<2>;
    fn present(&self, batch: &MovieBatch) -> Tensor<1>;
}

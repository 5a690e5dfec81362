//! One modality's part of the model: its encoder and its own output head, so that each
//! modality trains and evaluates alone as well as through the fusion.

use burn::prelude::*;
use cinefuse_data::MovieBatch;

use crate::encoders::ModalityEncoder;
use crate::head::OutputHead;

#[derive(Module, Debug)]
pub struct Branch<E: Module> {
    pub encoder: E,
    pub head: OutputHead,
}

impl<E: Module> Branch<E> {
    pub fn new(encoder: E, head: OutputHead) -> Self {
        Self { encoder, head }
    }
}

/// What one branch computes for a batch: the (masked) embedding and skip features, and the
/// head's outputs.
pub struct BranchOutput {
    pub embedding: Tensor<2>,
    pub skip: Option<Tensor<2>>,
    pub genre_logits: Tensor<2>,
    pub rating: Tensor<1>,
}

/// A branch whatever its encoder, so that the model walks its branches in one loop.
pub trait ModalityBranch {
    /// Which movies have this modality.
    fn present(&self, batch: &MovieBatch) -> Tensor<1>;
    /// The branch on `batch`, where `present` says which movies have the modality: a missing
    /// modality contributes nothing, its embedding is zeroed before the head.
    /// `with_skip`: also compute its skip features (see `ModalityEncoder::encode`).
    fn forward(&self, batch: &MovieBatch, present: Tensor<1>, with_skip: bool) -> BranchOutput;
    /// Width of the branch's skip features (0: none).
    fn skip_dim(&self) -> usize;
}

impl<E: Module + ModalityEncoder> ModalityBranch for Branch<E> {
    fn present(&self, batch: &MovieBatch) -> Tensor<1> {
        self.encoder.present(batch)
    }

    fn forward(&self, batch: &MovieBatch, present: Tensor<1>, with_skip: bool) -> BranchOutput {
        let encoded = self.encoder.encode(batch, with_skip);
        let mask = present.unsqueeze_dim::<2>(1);
        let embedding = encoded.embedding * mask.clone();
        let (genre_logits, rating) = self.head.forward(embedding.clone());
        BranchOutput {
            embedding,
            skip: encoded.skip.map(|s| s * mask),
            genre_logits,
            rating,
        }
    }

    fn skip_dim(&self) -> usize {
        self.encoder.skip_dim()
    }
}

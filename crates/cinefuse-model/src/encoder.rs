//! The seam every modality encoder implements, and pretrained-weight loading.

use std::path::Path;

use burn::prelude::*;
use cinefuse_data::MovieBatch;

/// A modality encoder maps a batch to one `embed_dim` vector per movie, plus which movies
/// actually have this modality (`1.0` present, `0.0` missing).
pub trait ModalityEncoder {
    fn embed(&self, batch: &MovieBatch) -> Tensor<2>;
    fn present(&self, batch: &MovieBatch) -> Tensor<1>;
    fn embed_dim(&self) -> usize;
}

/// Loads weights saved with `Module::save_file` (burnpack) into an encoder of the same
/// architecture: the seam for pretrained encoders. Nothing is ever downloaded.
pub fn load_pretrained<M: Module>(module: M, path: &Path) -> Result<M, String> {
    module
        .try_load_file(path)
        .map_err(|e| format!("{}: cannot load pretrained weights: {e}", path.display()))
}

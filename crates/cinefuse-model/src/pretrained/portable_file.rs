//! A backbone's weights as an export stores them: `portable.safetensors` in the backbone's
//! folder, beside the checkpoint's small files (`config.json`, the pooling config), with the
//! published tensor names of docs/PORTABLE.md in PyTorch's layouts. The portable reference
//! reads this file; cinefuse reads it too when the folder has no checkpoint weights, so an
//! export holds each backbone's weights once, not once per format.

use std::path::{Path, PathBuf};

use burn::store::ModuleSnapshot;
use regex::escape;

use crate::pretrained::load::{PretrainedError, load_safetensors};

/// The file name of a backbone's weights with published names.
pub const PORTABLE_BACKBONE_FILE: &str = "portable.safetensors";
/// The published prefix of the plot encoder's backbone tensors.
pub const TEXT_BACKBONE_PREFIX: &str = "text_pretrained.bert.";
/// The published prefix of the poster encoder's backbone tensors.
pub const POSTER_BACKBONE_PREFIX: &str = "poster_pretrained.net.";

/// The weights file a loader reads in `dir`: `checkpoint` when it exists, or the portable
/// file when only that exists (an export's copy). A folder with neither names `checkpoint`,
/// so the error says which file the checkpoint lacks.
pub fn weights_or_portable(dir: &Path, checkpoint: &str) -> PathBuf {
    let own = dir.join(checkpoint);
    let portable = dir.join(PORTABLE_BACKBONE_FILE);
    if !own.exists() && portable.exists() {
        portable
    } else {
        own
    }
}

/// Whether `file` is a backbone's portable weights file.
pub fn is_portable(file: &Path) -> bool {
    file.file_name()
        .is_some_and(|n| n == PORTABLE_BACKBONE_FILE)
}

/// Loads the portable file `path`, whose tensors all start with `prefix`, into `module`:
/// every tensor must match, as for any checkpoint, so another backbone's file is refused.
pub fn load_portable<M: ModuleSnapshot>(
    module: M,
    path: &Path,
    prefix: &str,
) -> Result<M, PretrainedError> {
    let strip = format!("^{}", escape(prefix));
    load_safetensors(module, path, &[(strip.as_str(), "")], &[])
}

//! The names of the model's tensors in files. Inside Burn a tensor's name is its module path,
//! which follows the struct layout (`text.encoder.Bert.backbone.…`). The portable safetensors
//! files (docs/PORTABLE.md) keep one published flat naming (`text_pretrained.bert.…`), the
//! layout of the first model, which is also how checkpoints and exports written before the
//! `Branch` layout (2026-12-02) name their tensors: those still load through the same table.

use std::path::Path;

use burn::store::{
    BurnToPyTorchAdapter, BurnpackStore, KeyRemapper, ModuleAdapter, ModuleSnapshot,
};
use burn::tensor::Bytes;
use regex::escape;

use crate::pretrained::PretrainedError;
use crate::pretrained::load::apply_checked;
use crate::pretrained::portable_file::{POSTER_BACKBONE_PREFIX, TEXT_BACKBONE_PREFIX};

/// (internal prefix, published prefix), first match wins.
const PREFIXES: [(&str, &str); 13] = [
    ("poster.encoder.Resnet.", "poster."),
    (
        "poster.encoder.EfficientNet.backbone.",
        POSTER_BACKBONE_PREFIX,
    ),
    (
        "poster.encoder.EfficientNet.adapter.",
        "poster_pretrained.adapter.",
    ),
    ("poster.head.", "poster_head."),
    ("text.encoder.Transformer.", "text.transformer."),
    ("text.encoder.Bag.", "text.bag."),
    ("text.encoder.Cnn.", "text.cnn."),
    ("text.encoder.Ngram.", "text.ngram."),
    ("text.encoder.Bert.backbone.", TEXT_BACKBONE_PREFIX),
    ("text.encoder.Bert.adapter.", "text_pretrained.adapter."),
    ("text.head.", "text_head."),
    ("meta.encoder.", "meta."),
    ("meta.head.", "meta_head."),
];

/// The published (portable, and pre-`Branch` checkpoint) name of the internal tensor name
/// `internal`. Fusion tensors keep their names.
pub fn published_name(internal: &str) -> String {
    PREFIXES
        .iter()
        .find_map(|(inner, published)| {
            internal
                .strip_prefix(inner)
                .map(|rest| format!("{published}{rest}"))
        })
        .unwrap_or_else(|| internal.to_string())
}

/// Every tensor name of `module`, as Burn paths, after `adapter`'s renames if given.
pub fn internal_names<M: ModuleSnapshot>(
    module: &M,
    adapter: Option<Box<dyn ModuleAdapter>>,
) -> Vec<String> {
    module
        .collect(None, adapter, false)
        .into_iter()
        .map(|t| t.name)
        .collect()
}

/// Renames `module`'s tensors to their published names when saving the portable safetensors
/// file (whose store renames Burn's norm parameters to PyTorch's first).
pub fn to_published<M: ModuleSnapshot>(module: &M) -> KeyRemapper {
    exact_renames(
        internal_names(module, Some(Box::new(BurnToPyTorchAdapter)))
            .into_iter()
            .map(|n| (n.clone(), published_name(&n))),
    )
}

/// Renames published tensor names to `module`'s when loading.
pub fn from_published<M: ModuleSnapshot>(module: &M) -> KeyRemapper {
    exact_renames(
        internal_names(module, None)
            .into_iter()
            .map(|n| (published_name(&n), n)),
    )
}

/// One whole-name pattern per tensor, so that no rename can apply twice.
fn exact_renames(pairs: impl Iterator<Item = (String, String)>) -> KeyRemapper {
    let patterns = pairs
        .filter(|(from, to)| from != to)
        .map(|(from, to)| (format!("^{}$", escape(&from)), to));
    KeyRemapper::from_pattern_iter(patterns).expect("escaped names are valid regexes")
}

/// Loads a Burn file whose tensors carry their published names (one written before the
/// `Branch` layout) into `module`; every tensor must match, as for any checkpoint. `bytes` are
/// the file's content, read by the caller; `path` names it in errors.
pub fn load_published_burnpack<M: ModuleSnapshot>(
    module: M,
    bytes: Bytes,
    path: &Path,
) -> Result<M, PretrainedError> {
    let store = BurnpackStore::from_bytes(Some(bytes)).remap(from_published(&module));
    apply_checked(module, store, path, (&[], &[]), "Burn")
}

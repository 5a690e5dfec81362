//! The portable half of an export: every weight file again as `.safetensors` with PyTorch's
//! names and layouts, and a `config.json` that describes the architecture, the preprocessing
//! and the decisions completely, so that a model can be rebuilt outside cinefuse
//! (`scripts/cinefuse_torch.py` does it with standard PyTorch modules; docs/PORTABLE.md
//! documents both files).

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use burn::prelude::*;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use cinefuse_data::batch::{POSTER_MEAN, POSTER_STD};
use cinefuse_data::prepared::{Preprocessor, TOKENIZER_FILE};
use cinefuse_data::tokenizer::{CLS, MAX_PLOT_BYTES, PAD_ID};
use cinefuse_model::pretrained::efficientnet::{INPUT_MEAN, INPUT_STD};
use cinefuse_model::tensor_names;
use serde_json::{Value, json};

use crate::config::TrainConfig;
use crate::export::Manifest;
use crate::run_dir::{CONFIG_FILE, MODEL_FILE, load_model, write_json};

pub const PORTABLE_CONFIG_FILE: &str = "config.json";
/// Bumped whenever a field's meaning or a tensor's name changes.
pub const PORTABLE_FORMAT_VERSION: u32 = 8;

/// The `.safetensors` name of a Burn weight file (`model-3.bpk` → `model-3.safetensors`).
pub fn safetensors_name(bpk: &str) -> String {
    let stem = bpk.strip_suffix(".bpk").unwrap_or(bpk);
    format!("{stem}.safetensors")
}

/// Writes the portable files of the export in `dir`, whose manifest is `manifest`: for a
/// blend, only `config.json` with its parts (each part folder has its own files).
pub fn write_portable(dir: &Path, manifest: &Manifest) -> Result<()> {
    if !manifest.parts.is_empty() {
        return write_json(&dir.join(PORTABLE_CONFIG_FILE), &blend_config(manifest));
    }
    let config = TrainConfig::load(&dir.join(CONFIG_FILE), &[])?;
    let preprocessor = Preprocessor::load(dir)?;
    let files = if manifest.members.is_empty() {
        vec![MODEL_FILE.to_string()]
    } else {
        manifest.members.clone()
    };
    let device = Device::flex();
    let mut weights = Vec::new();
    for file in &files {
        let model = load_model(&config.model, &manifest.shapes, &dir.join(file), &device)?;
        let name = safetensors_name(file);
        let mut store = SafetensorsStore::from_file(dir.join(&name))
            .with_to_adapter(BurnToPyTorchAdapter)
            .remap(tensor_names::to_published(&model))
            .metadata("format", "cinefuse-portable")
            .metadata("format_version", PORTABLE_FORMAT_VERSION.to_string());
        model.save_into(&mut store).map_err(|e| {
            anyhow!(
                "{}: cannot write safetensors: {e}",
                dir.join(&name).display()
            )
        })?;
        // The store writes through a private temporary file: give it the export's permissions.
        let permissions = std::fs::metadata(dir.join(file))?.permissions();
        std::fs::set_permissions(dir.join(&name), permissions)?;
        weights.push(name);
    }
    let value = model_config(manifest, &config, &preprocessor, weights)?;
    write_json(&dir.join(PORTABLE_CONFIG_FILE), &value)
}

/// What every portable config starts with.
fn header(manifest: &Manifest) -> Value {
    json!({
        "format": "cinefuse-portable",
        "format_version": PORTABLE_FORMAT_VERSION,
        "cinefuse_version": manifest.cinefuse_version,
        "genres": manifest.genres,
        "thresholds": manifest.thresholds,
        "genre_logit_shift": manifest.genre_logit_shift,
        "rating_scale": manifest.rating_scale,
        "interval": interval(manifest),
    })
}

fn blend_config(manifest: &Manifest) -> Value {
    let mut v = header(manifest);
    v["parts"] = json!(manifest.parts);
    if let Some(t) = &manifest.rating_trees {
        v["rating_trees"] = json!(t);
    }
    if let Some(n) = &manifest.plot_neighbours {
        v["plot_neighbours"] = json!(n);
    }
    if let Some(n) = &manifest.metadata_neighbours {
        v["metadata_neighbours"] = json!(n);
    }
    if let Some(n) = &manifest.credit_neighbours {
        v["credit_neighbours"] = json!(n);
    }
    if let Some(s) = &manifest.genre_stacking {
        v["genre_stacking"] = json!(s);
    }
    v
}

/// The rating interval: a bag's CV+ bins, or one half-width, or none.
fn interval(manifest: &Manifest) -> Value {
    match (&manifest.interval, manifest.interval_half_width) {
        (Some(cal), _) => json!({
            "kind": "cv_plus_by_votes",
            "coverage": cal.coverage,
            "votes_column": crate::interval::VOTES_COLUMN,
            "edges": cal.edges,
            "bins": cal.bins,
        }),
        (None, Some(w)) => json!({
            "kind": "half_width",
            "coverage": manifest.interval_coverage,
            "half_width": w,
        }),
        (None, None) => Value::Null,
    }
}

fn model_config(
    manifest: &Manifest,
    config: &TrainConfig,
    pre: &Preprocessor,
    weights: Vec<String>,
) -> Result<Value> {
    let mut v = header(manifest);
    v["weights"] = json!(weights);
    v["bag_sets"] = json!(manifest.bag_sets);
    v["rating_over_sets"] = json!(manifest.rating_over_sets);
    v["architecture"] = json!({
        "modalities": manifest.modalities,
        "model": serde_json::to_value(&config.model).context("model config")?,
        "shapes": manifest.shapes,
    });
    v["preprocess"] = preprocess(pre);
    Ok(v)
}

/// Everything that turns a movie record into the model's input tensors.
fn preprocess(pre: &Preprocessor) -> Value {
    let c = &pre.state.config;
    json!({
        "plot": {
            "tokenizer_file": TOKENIZER_FILE,
            "max_tokens": c.max_tokens,
            "title_in_text": c.title_in_text,
            "max_plot_bytes": MAX_PLOT_BYTES,
            "pad_id": PAD_ID,
            "cls_token": CLS,
            "cls_fallback_id": 2,
        },
        "poster": {
            "width": c.image_width,
            "height": c.image_height,
            "fit": c.poster_fit,
            "filter": "triangle",
            "pad_value": 127,
            "mean": POSTER_MEAN,
            "std": POSTER_STD,
            "efficientnet_input_mean": INPUT_MEAN,
            "efficientnet_input_std": INPUT_STD,
        },
        "numeric": pre.state.numeric,
        "categorical": pre.state.categorical,
        "extras": pre.state.extras,
    })
}

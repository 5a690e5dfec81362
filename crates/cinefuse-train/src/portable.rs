//! The portable half of an export: every weight file again as `.safetensors` with PyTorch's
//! names and layouts, and a `config.json` that describes the architecture, the preprocessing
//! and the decisions completely, so that a model can be rebuilt outside cinefuse
//! (`scripts/cinefuse_torch.py` does it with standard PyTorch modules; docs/PORTABLE.md
//! documents both files). A frozen pretrained backbone is written once, beside its checkpoint
//! copy (`backbones/NAME/portable.safetensors`), and left out of the member files that share
//! it, as the Burn files leave it out.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use burn::prelude::*;
use burn::store::{
    BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, PathFilter, SafetensorsStore,
};
use cinefuse_data::batch::{POSTER_MEAN, POSTER_STD};
use cinefuse_data::prepared::{Preprocessor, TOKENIZER_FILE};
use cinefuse_data::tokenizer::{CLS, MAX_PLOT_BYTES, PAD_ID};
use cinefuse_model::pretrained::efficientnet::{INPUT_MEAN, INPUT_STD};
use cinefuse_model::pretrained::portable_file::{
    PORTABLE_BACKBONE_FILE, POSTER_BACKBONE_PREFIX, TEXT_BACKBONE_PREFIX,
};
use cinefuse_model::pretrained::{Bert, EfficientNetLite};
use cinefuse_model::{CinefuseModel, ModelConfig, tensor_names};
use serde_json::{Value, json};

use crate::config::TrainConfig;
use crate::export::Manifest;
use crate::export_backbones::ExportBackbones;
use crate::run_dir::{
    CONFIG_FILE, MODEL_FILE, PretrainedBase, frozen_parts, load_model_over, write_json,
};

pub const PORTABLE_CONFIG_FILE: &str = "config.json";
/// Bumped whenever a field's meaning or a tensor's name changes (9: `shared_weights`; 10: a
/// blend's `genre_prompts`; 11: `genre_stacking_without_plot`; 12: a blend's `content_rating`
/// and the interval's `content` bin; 13: `genre_stacking_without_metadata`; 14: a blend's
/// `rating_without_votes` and the interval's bins for it; 15: `preprocess.absent_as_unknown`;
/// 16: sets of `rating_without_votes` that keep the vote count, and the interval's
/// `lacking_columns` and `lacking` bins; 17: the interval's `extras` vote bins for the movies of
/// the set that keeps the vote count; 18: the interval's `input_scales` for movies given
/// without their plot or poster; docs/PORTABLE.md lists them all).
pub const PORTABLE_FORMAT_VERSION: u32 = 18;

/// The `.safetensors` name of a Burn weight file (`model-3.bpk` → `model-3.safetensors`).
pub fn safetensors_name(bpk: &str) -> String {
    let stem = bpk.strip_suffix(".bpk").unwrap_or(bpk);
    format!("{stem}.safetensors")
}

/// Writes the portable files of the export in `dir`, whose manifest is `manifest` and whose
/// backbone copies are `backbones`: for a blend, only `config.json` with its parts (each part
/// folder has its own files).
pub fn write_portable(dir: &Path, manifest: &Manifest, backbones: &ExportBackbones) -> Result<()> {
    if !manifest.parts.is_empty() {
        return write_json(&dir.join(PORTABLE_CONFIG_FILE), &blend_config(manifest));
    }
    let config = TrainConfig::load(&dir.join(CONFIG_FILE), &[])?;
    let model_config = backbones.staged(&config.model, &manifest.backbones);
    let preprocessor = Preprocessor::load(dir)?;
    let files = if manifest.members.is_empty() {
        vec![MODEL_FILE.to_string()]
    } else {
        manifest.members.clone()
    };
    let device = Device::flex();
    let shared = shared_backbones(manifest);
    let mut weights = Vec::new();
    let mut base = PretrainedBase::default();
    for file in &files {
        // Loaded from the export's own files, which checks them as `predict` will.
        let bpk = dir.join(file);
        let model = load_model_over(&model_config, &manifest.shapes, &bpk, &device, &mut base)?;
        let name = safetensors_name(file);
        let trained = trained_tensors(&model, &model_config)?;
        let names = tensor_names::to_published(&model);
        let permissions = std::fs::metadata(&bpk)?.permissions();
        write_safetensors(&model, names, trained, &dir.join(&name), permissions)?;
        weights.push(name);
    }
    let value = model_config_json(manifest, &config, &preprocessor, weights, shared)?;
    write_json(&dir.join(PORTABLE_CONFIG_FILE), &value)
}

/// Writes the tensors of `module` that `filter` selects (an empty filter: all), renamed by
/// `names` after PyTorch's layouts, as `path` with `permissions`: the store writes through a
/// private temporary file, which would leave it readable by its owner only. Its header keys
/// are sorted, so that two exports of one run are byte-identical.
fn write_safetensors<M: ModuleSnapshot>(
    module: &M,
    names: KeyRemapper,
    filter: PathFilter,
    path: &Path,
    permissions: std::fs::Permissions,
) -> Result<()> {
    let mut store = SafetensorsStore::from_file(path)
        .with_to_adapter(BurnToPyTorchAdapter)
        .remap(names)
        .filter(filter)
        .metadata("format", "cinefuse-portable")
        .metadata("format_version", PORTABLE_FORMAT_VERSION.to_string());
    module
        .save_into(&mut store)
        .map_err(|e| anyhow!("{}: cannot write safetensors: {e}", path.display()))?;
    crate::safetensors_order::sort_header(path)?;
    std::fs::set_permissions(path, permissions)?;
    Ok(())
}

/// Writes the backbone that the checkpoint folder `source` holds for `section` (`model.text`
/// or `model.poster`) as the portable file `target`, with the published names its tensors
/// have in a whole model's file, readable as any file the export creates.
pub(crate) fn write_backbone(section: &str, source: &Path, target: &Path) -> Result<()> {
    // The mode a new file gets here (the umask's); the store refuses to replace a file.
    let permissions = std::fs::File::create_new(target)
        .and_then(|f| f.metadata())
        .with_context(|| format!("cannot create {}", target.display()))?
        .permissions();
    std::fs::remove_file(target).with_context(|| format!("cannot remove {}", target.display()))?;
    let device = Device::flex();
    let prefixed = |prefix: &str| {
        KeyRemapper::from_patterns(vec![("^(.+)$", format!("{prefix}${{1}}"))])
            .expect("a valid pattern")
    };
    let all = PathFilter::new();
    match section {
        "model.text" => {
            let bert = Bert::from_dir(source, &device)?;
            write_safetensors(
                &bert,
                prefixed(TEXT_BACKBONE_PREFIX),
                all,
                target,
                permissions,
            )
        }
        _ => {
            let net = EfficientNetLite::from_dir(source, &device)?;
            let names = prefixed(POSTER_BACKBONE_PREFIX);
            write_safetensors(&net, names, all, target, permissions)
        }
    }
}

/// The tensors of `model` that training changed, by their adapted (unpublished) names: all
/// but its frozen backbone tensors (an empty filter, which selects all, when none is frozen).
fn trained_tensors(model: &CinefuseModel, config: &ModelConfig) -> Result<PathFilter> {
    let (frozen, _) = frozen_parts(model, config)?;
    if frozen.is_empty() {
        return Ok(PathFilter::new());
    }
    let frozen: HashSet<u64> = frozen.iter().map(|id| id.val()).collect();
    let names = model
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), false)
        .into_iter()
        .filter(|t| !t.param_id.is_some_and(|id| frozen.contains(&id)))
        .map(|t| t.name);
    Ok(PathFilter::new().with_full_paths(names))
}

/// The backbone copies' portable files (written when the copies were made), as
/// `config.json` names them.
fn shared_backbones(manifest: &Manifest) -> Vec<String> {
    (manifest.backbones.iter())
        .map(|b| format!("{}/{PORTABLE_BACKBONE_FILE}", b.dir))
        .collect()
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
        "interval": interval_json(manifest),
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
    if let Some(n) = &manifest.genre_prompts {
        v["genre_prompts"] = json!(n);
    }
    if let Some(s) = &manifest.genre_stacking {
        v["genre_stacking"] = json!(s);
    }
    if let Some(s) = &manifest.genre_stacking_without_plot {
        v["genre_stacking_without_plot"] = json!(s);
    }
    if let Some(s) = &manifest.genre_stacking_without_metadata {
        v["genre_stacking_without_metadata"] = json!(s);
    }
    if let Some(c) = &manifest.content_rating {
        v["content_rating"] = json!(c);
    }
    if let Some(r) = &manifest.rating_without_votes {
        v["rating_without_votes"] = json!(r);
    }
    v
}

/// The rating interval: a bag's CV+ bins, or one half-width, or none.
pub fn interval_json(manifest: &Manifest) -> Value {
    match (&manifest.interval, manifest.interval_half_width) {
        (Some(cal), _) => json!({
            "kind": "cv_plus_by_votes",
            "coverage": cal.coverage,
            "votes_column": crate::interval::VOTES_COLUMN,
            "edges": cal.edges,
            "bins": cal.bins,
            "content": cal.content,
            "without_votes": cal.without_votes,
            "voteless_key_scale": crate::interval::VOTELESS_KEY_SCALE,
            "lacking_columns": cal.lacking_columns,
            "lacking": cal.lacking.as_ref().map(|l| json!({"edges": l.edges, "bins": l.bins})),
            "lacking_key_offset": crate::interval::LACKING_KEY_OFFSET,
            "extras": cal.extras.as_ref().map(|e| json!({"edges": e.edges, "bins": e.bins})),
            "extras_key_offset": crate::interval::EXTRAS_KEY_OFFSET,
            "extras_sets": cal.extras_sets,
            "input_scales": cal.input_scales,
        }),
        (None, Some(w)) => json!({
            "kind": "half_width",
            "coverage": manifest.interval_coverage,
            "half_width": w,
        }),
        (None, None) => Value::Null,
    }
}

fn model_config_json(
    manifest: &Manifest,
    config: &TrainConfig,
    pre: &Preprocessor,
    weights: Vec<String>,
    shared: Vec<String>,
) -> Result<Value> {
    let mut v = header(manifest);
    v["weights"] = json!(weights);
    v["shared_weights"] = json!(shared);
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
            // The limits `predict` reads a poster under, so the reference refuses what it does.
            "max_bytes": c.max_poster_bytes,
            "max_pixels": c.max_poster_pixels,
            "mean": POSTER_MEAN,
            "std": POSTER_STD,
            "efficientnet_input_mean": INPUT_MEAN,
            "efficientnet_input_std": INPUT_STD,
        },
        "numeric": pre.state.numeric,
        "categorical": pre.state.categorical,
        "extras": pre.state.extras,
        "absent_as_unknown": pre.state.absent_as_unknown,
    })
}

#[cfg(test)]
mod tests {
    use cinefuse_model::pretrained::testing::{TinyBert, module_values, write_random_efficientnet};

    use super::*;

    /// A folder as an export's copy is: the checkpoint's config, the weights as the portable
    /// file only.
    fn copy_of(section: &str, checkpoint: &Path, copy: &Path) {
        std::fs::create_dir_all(copy).unwrap();
        if checkpoint.join("config.json").exists() {
            std::fs::copy(checkpoint.join("config.json"), copy.join("config.json")).unwrap();
        }
        write_backbone(section, checkpoint, &copy.join(PORTABLE_BACKBONE_FILE)).unwrap();
    }

    #[test]
    fn a_backbone_loads_from_its_portable_file_alone_with_the_same_values() {
        let device = Device::flex();
        let root = tempfile::tempdir().unwrap();
        let [bert, mpnet, net] = ["bert", "mpnet", "net"].map(|n| root.path().join(n));
        let tiny = TinyBert::TWO_LAYERS;
        let tensors = tiny.tensors(3);
        tiny.write(&bert, &tensors).unwrap();
        tiny.write_mpnet(&mpnet, &tiny.mpnet_tensors(&tensors, 4))
            .unwrap();
        write_random_efficientnet(&net).unwrap();
        for dir in [&bert, &mpnet] {
            let copy = root.path().join("copy").join(dir.file_name().unwrap());
            copy_of("model.text", dir, &copy);
            assert_eq!(Bert::weights_file(&copy), copy.join(PORTABLE_BACKBONE_FILE));
            let want = module_values(&Bert::from_dir(dir, &device).unwrap());
            let got = module_values(&Bert::from_dir(&copy, &device).unwrap());
            assert_eq!(got, want, "{}", dir.display());
        }
        let copy = root.path().join("copy/net");
        copy_of("model.poster", &net, &copy);
        let want = module_values(&EfficientNetLite::from_dir(&net, &device).unwrap());
        let got = module_values(&EfficientNetLite::from_dir(&copy, &device).unwrap());
        assert_eq!(got, want);

        // Another backbone's portable file is refused by name, not read as this one.
        let swapped = root.path().join("swapped");
        copy_of("model.text", &bert, &swapped);
        std::fs::copy(
            copy.join(PORTABLE_BACKBONE_FILE),
            swapped.join(PORTABLE_BACKBONE_FILE),
        )
        .unwrap();
        let e = Bert::from_dir(&swapped, &device).unwrap_err().to_string();
        assert!(e.contains(PORTABLE_BACKBONE_FILE), "{e}");
        // A checkpoint's own weights beside it win (an export of format 2).
        std::fs::copy(
            bert.join("model.safetensors"),
            swapped.join("model.safetensors"),
        )
        .unwrap();
        assert_eq!(
            module_values(&Bert::from_dir(&swapped, &device).unwrap()),
            module_values(&Bert::from_dir(&bert, &device).unwrap())
        );
    }
}

//! The embedding cache of frozen pretrained encoders: each movie's poster and plot features
//! are computed once, in batches, and stored in `PREPARED/features/`, keyed by a fingerprint
//! of the backbone's weights, the architecture and the prepared inputs (tokens and poster
//! pixels). Later runs and sweeps on the same prepared data reuse them; any change makes a new
//! file. Training a head on cached features never runs the backbone.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use cinefuse_data::feature_cache::{CachedFeatures, FeatureTable, cache_path};
use cinefuse_data::prepared::POSTERS_FILE;
use cinefuse_data::{MovieBatch, MovieItem, Prepared};
use cinefuse_model::ModelConfig;
use cinefuse_model::encoders::poster::PosterEncoderKind;
use cinefuse_model::encoders::text::TextEncoderKind;
use cinefuse_model::pretrained::load::file_sha256;
use cinefuse_model::pretrained::{Backbone, Bert, EfficientNetLite};
use cinefuse_model::{Modality, TextBackbone};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

/// Movies per forward pass of a frozen pretrained backbone: when caching its features, when
/// predicting and in `bench --backbones` (one size, so the benchmark times what runs).
pub const BACKBONE_BATCH: usize = 32;

/// Hands `prepared` whatever the frozen pretrained parts of `model` read instead of running
/// their backbones each step: cached features, or cached inner states. What `train` does, and
/// `bench` so that it times the same step.
pub fn attach_frozen_inputs(
    model: &ModelConfig,
    prepared: &mut Prepared,
    device: &Device,
) -> Result<()> {
    attach_cached_features(model, prepared, device)?;
    crate::frozen_layer_states::attach_frozen_layer_states(model, prepared, device)?;
    crate::frozen_poster_states::attach_frozen_poster_states(model, prepared, device)
}

/// Builds (or reuses) the caches of every frozen pretrained encoder of `model` and hands them
/// to `prepared`, whose datasets then carry the features. Does nothing for other encoders.
pub fn attach_cached_features(
    model: &ModelConfig,
    prepared: &mut Prepared,
    device: &Device,
) -> Result<()> {
    let uses = |m| model.modalities.contains(&m);
    let mut features = CachedFeatures::default();
    if uses(Modality::Poster)
        && model.poster.kind == PosterEncoderKind::EfficientnetLite0
        && model.poster.freeze
    {
        let dir = model
            .poster
            .pretrained
            .as_deref()
            .context("model.poster.pretrained")?;
        features.poster = Some(poster_features(dir, prepared, device)?);
    }
    if uses(Modality::Text) && model.text.kind == TextEncoderKind::Bert && model.text.freeze {
        let dir = model
            .text
            .pretrained
            .as_deref()
            .context("model.text.pretrained")?;
        let layers = &model.text.concat_layers;
        let table = plot_features(dir, layers, prepared, device)?;
        features.plot_sentence_dim = table.dim / (1 + layers.len());
        features.plot = Some(table);
    }
    if features.poster.is_some() || features.plot.is_some() {
        prepared.features = Some(Arc::new(features));
    }
    Ok(())
}

/// Refuses plots (`data.preprocess.max_tokens`) longer than the pretrained plot encoder's
/// position table (they would index past it), naming the config key; nothing for other
/// encoders.
pub fn check_plot_length(model: &ModelConfig, max_tokens: usize) -> Result<()> {
    let Some(dir) = pretrained_text_dir(model)? else {
        return Ok(());
    };
    let positions = cinefuse_model::pretrained::BertConfig::from_dir(dir)?.max_tokens();
    if max_tokens > positions {
        anyhow::bail!(
            "data.preprocess.max_tokens = {max_tokens}: the plot encoder {} reads at most \
             {positions} tokens (its max_position_embeddings)",
            dir.display()
        );
    }
    Ok(())
}

/// The checkpoint folder of the model's pretrained plot encoder (`None` unless the model reads
/// plots with `kind = "bert"`).
fn pretrained_text_dir(model: &ModelConfig) -> Result<Option<&Path>> {
    if model.text.kind != TextEncoderKind::Bert || !model.modalities.contains(&Modality::Text) {
        return Ok(None);
    }
    let dir = model.text.pretrained.as_deref();
    dir.context("model.text.pretrained").map(Some)
}

/// The text backbone's architecture for `ModelShapes` (`None` unless `kind = "bert"`).
pub fn text_backbone_of(model: &ModelConfig) -> Result<Option<TextBackbone>> {
    let Some(dir) = pretrained_text_dir(model)? else {
        return Ok(None);
    };
    let layers = &model.text.concat_layers;
    Ok(Some(TextBackbone {
        config: checked_text_config(dir, layers)?,
        pooling: cinefuse_model::pretrained::bert::pooling_from_dir(dir)?,
        concat_layers: layers.clone(),
    }))
}

/// The checkpoint's config, once every concatenated layer is known to exist in it.
fn checked_text_config(
    dir: &Path,
    concat_layers: &[usize],
) -> Result<cinefuse_model::pretrained::BertConfig> {
    let config = cinefuse_model::pretrained::BertConfig::from_dir(dir)?;
    if let Some(k) = concat_layers
        .iter()
        .find(|&&k| k > config.num_hidden_layers)
    {
        anyhow::bail!(
            "model.text.concat_layers: layer {k} does not exist ({} has {} layers; 0 is the \
             embeddings)",
            dir.display(),
            config.num_hidden_layers
        );
    }
    Ok(config)
}

/// The plot backbone of a checkpoint folder, frozen (its features are cached or timed).
pub fn frozen_text_backbone(dir: &Path, device: &Device) -> Result<Bert> {
    Ok(Bert::from_dir(dir, device)?.no_grad())
}

/// The poster backbone of a checkpoint folder, frozen.
pub fn frozen_poster_backbone(dir: &Path, device: &Device) -> Result<EfficientNetLite> {
    Ok(EfficientNetLite::from_dir(dir, device)?.no_grad())
}

pub(crate) fn fingerprint(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    format!("{:x}", h.finalize())
}

/// What a backbone reads of each movie, in sample order: its id and `part` (tokens or the
/// poster's cache slot). Metadata, labels and splits are left out, so changing them (declaring
/// an extra feature, say) keeps the cached features valid.
pub(crate) fn inputs_of<T: serde::Serialize>(
    prepared: &Prepared,
    part: impl Fn(&cinefuse_data::prepared::EncodedSample) -> T,
) -> Vec<u8> {
    let rows: Vec<(&str, T)> = prepared
        .samples
        .iter()
        .map(|s| (s.id.as_str(), part(s)))
        .collect();
    serde_json::to_vec(&rows).expect("inputs serialize")
}

fn plot_features(
    dir: &Path,
    concat_layers: &[usize],
    prepared: &Prepared,
    device: &Device,
) -> Result<Arc<FeatureTable>> {
    checked_text_config(dir, concat_layers)?;
    let weights = file_sha256(&Bert::weights_file(dir))?;
    let config = cinefuse_model::pretrained::load::read_config_bytes(&dir.join("config.json"))?;
    // Everything the computation reads: the pooling (1_Pooling/config.json) decides the
    // features as much as the weights do.
    let pooling = serde_json::to_vec(&cinefuse_model::pretrained::bert::pooling_from_dir(dir)?)?;
    let tokens = inputs_of(prepared, |s| s.tokens.clone());
    let mut parts: Vec<&[u8]> = vec![b"bert-v3", weights.as_bytes(), &config, &pooling, &tokens];
    // Only when set, so the caches of runs without concatenated layers keep their keys.
    let layers = serde_json::to_vec(concat_layers)?;
    if !concat_layers.is_empty() {
        parts.push(&layers);
    }
    let key = fingerprint(&parts);
    let path = cache_path(&prepared.dir, "plot", &key);
    if let Some(t) = crate::shared_features::load("plot", &path, &key)? {
        return Ok(t);
    }
    let enc = frozen_text_backbone(dir, device)?.with_concat_layers(concat_layers.to_vec());
    let has_plot = |it: &MovieItem| it.plot_present && !it.tokens.is_empty();
    let table = compute(
        prepared,
        device,
        "plot",
        enc.feature_dim(),
        key,
        has_plot,
        |b| enc.features(b),
    )?;
    table.save(&path)?;
    Ok(crate::shared_features::remember(&path, table))
}

fn poster_features(dir: &Path, prepared: &Prepared, device: &Device) -> Result<Arc<FeatureTable>> {
    let weights = file_sha256(&EfficientNetLite::weights_file(dir))?;
    let posters = file_sha256(&prepared.dir.join(POSTERS_FILE))?;
    let slots = inputs_of(prepared, |s| s.poster_slot);
    let key = fingerprint(&[
        b"efficientnet-lite0-v2",
        weights.as_bytes(),
        posters.as_bytes(),
        &slots,
    ]);
    let path = cache_path(&prepared.dir, "poster", &key);
    if let Some(t) = crate::shared_features::load("poster", &path, &key)? {
        return Ok(t);
    }
    let enc = frozen_poster_backbone(dir, device)?;
    let dim = cinefuse_model::pretrained::efficientnet::HEAD_CHANNELS;
    let has_poster = |it: &MovieItem| it.poster.is_some();
    let table = compute(prepared, device, "poster", dim, key, has_poster, |b| {
        enc.features(b)
    })?;
    table.save(&path)?;
    Ok(crate::shared_features::remember(&path, table))
}

/// Runs `features` over every prepared movie that `has` the modality, in batches; rows of the
/// others are left at zero (the model masks them out).
pub(crate) fn compute(
    prepared: &Prepared,
    device: &Device,
    what: &str,
    dim: usize,
    key: String,
    has: impl Fn(&MovieItem) -> bool,
    features: impl Fn(&MovieBatch) -> Tensor<2>,
) -> Result<FeatureTable> {
    let all = prepared.dataset_all();
    let n = all.len();
    let batcher = prepared.preprocessor.batcher();
    let mut values = vec![0f32; n * dim];
    let pb = ProgressBar::new(n as u64);
    pb.set_style(
        ProgressStyle::with_template("{prefix} [{bar:28}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_prefix(format!("{what} features"));
    let started = Instant::now();
    let mut computed = 0usize;
    for start in (0..n).step_by(BACKBONE_BATCH) {
        let (rows, items): (Vec<usize>, Vec<_>) = (start..(start + BACKBONE_BATCH).min(n))
            .map(|i| (i, all.item(i)))
            .filter(|(_, item)| has(item))
            .unzip();
        if !rows.is_empty() {
            let batch = batcher.batch(items, device);
            let out: Vec<f32> = features(&batch)
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            for (k, &row) in rows.iter().enumerate() {
                values[row * dim..(row + 1) * dim].copy_from_slice(&out[k * dim..(k + 1) * dim]);
            }
            computed += rows.len();
        }
        pb.set_position((start + BACKBONE_BATCH).min(n) as u64);
    }
    pb.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{what} features: computed for {computed} movies in {secs:.1}s ({:.1}/s)",
        computed as f64 / secs.max(1e-9)
    );
    Ok(FeatureTable::new(dim, key, values))
}

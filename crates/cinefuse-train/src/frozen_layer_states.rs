//! `model.text.cache_frozen_layers`: when only the last layers of the plot backbone are
//! fine-tuned, the layers below them never change, so their output for each movie is computed
//! once (in inference mode) and every training step starts from it. On MiniLM-L6 with two
//! trainable layers that takes the four frozen layers' forward pass out of every step.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use cinefuse_data::dataset::MovieItem;
use cinefuse_data::token_states::TokenStates;
use cinefuse_data::{MovieBatcher, Prepared};
use cinefuse_model::encoders::text::{TextEncoderKind, keep_first};
use cinefuse_model::pretrained::load::{file_sha256, read_config_bytes};
use cinefuse_model::pretrained::{Bert, BertConfig};
use cinefuse_model::{Modality, ModelConfig};

use crate::backbone_features::{BACKBONE_BATCH, fingerprint, frozen_text_backbone, inputs_of};

/// Computes the frozen layers' output for every prepared movie and hands it to `prepared`,
/// whose datasets then carry it; does nothing unless the config asks for it.
pub fn attach_frozen_layer_states(
    model: &ModelConfig,
    prepared: &mut Prepared,
    device: &Device,
) -> Result<()> {
    let text = &model.text;
    if !text.cache_frozen_layers
        || text.kind != TextEncoderKind::Bert
        || !model.modalities.contains(&Modality::Text)
    {
        return Ok(());
    }
    let dir = text
        .pretrained
        .as_deref()
        .context("model.text.pretrained")?;
    let trainable = text
        .trainable_layers
        .context("model.text.cache_frozen_layers needs model.text.trainable_layers")?;
    // The embeddings stay frozen whatever trains above them, so there is always something
    // to cache: with every layer trainable, the embeddings' output.
    let layers = BertConfig::from_dir(dir)?.num_hidden_layers;
    let frozen = layers.saturating_sub(trainable);
    let max_tokens = prepared.preprocessor.batcher().max_tokens as u64;
    let key = fingerprint(&[
        b"frozen-states-v1",
        file_sha256(&Bert::weights_file(dir))?.as_bytes(),
        &read_config_bytes(&dir.join("config.json")).context("model.text.pretrained")?,
        &inputs_of(prepared, |s| s.tokens.clone()),
        &(frozen as u64).to_le_bytes(),
        &max_tokens.to_le_bytes(),
    ]);
    let states = remembered(&key, || {
        states_of_all(
            &frozen_text_backbone(dir, device)?,
            frozen,
            prepared,
            device,
        )
    })?;
    let mut features = prepared.features.as_deref().cloned().unwrap_or_default();
    features.plot_states = Some(states);
    prepared.features = Some(Arc::new(features));
    Ok(())
}

/// The states last computed in this process, with the fingerprint of what they came from:
/// the members of a bag, and the bags of a blend, train one after another on the same movies
/// and backbone, and each would compute them again.
static LAST: Mutex<Option<(String, Arc<TokenStates>)>> = Mutex::new(None);

fn remembered(
    key: &str,
    compute: impl FnOnce() -> Result<TokenStates>,
) -> Result<Arc<TokenStates>> {
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((k, states)) = last.as_ref()
        && k == key
    {
        println!("plot backbone: its frozen part's output computed earlier in this run, reused");
        return Ok(states.clone());
    }
    *last = None; // free the old states before computing new ones
    let states = Arc::new(compute()?);
    *last = Some((key.to_string(), states.clone()));
    Ok(states)
}

/// The states entering layer `layer` for every prepared movie, each movie's token rows laid
/// out as the batcher lays them out (so a batch of them matches its tokens row for row).
fn states_of_all(
    bert: &Bert,
    layer: usize,
    prepared: &Prepared,
    device: &Device,
) -> Result<TokenStates> {
    let started = Instant::now();
    let all = prepared.dataset_all();
    let batcher = prepared.preprocessor.batcher();
    let mut states = TokenStates::new(layer, bert.hidden_size());
    for start in (0..all.len()).step_by(BACKBONE_BATCH) {
        let items: Vec<_> = (start..(start + BACKBONE_BATCH).min(all.len()))
            .map(|i| all.item(i))
            .collect();
        for block in states_of_batch(bert, layer, items, &batcher, device)? {
            states.push(&block);
        }
    }
    println!(
        "plot backbone: its frozen part (the embeddings and the first {layer} layers) ran once \
         for {} movies in {:.1}s ({:.0} MB in memory); training runs the {} layers above it",
        states.samples(),
        started.elapsed().as_secs_f64(),
        states.bytes() as f64 / 1e6,
        bert.n_layers() - layer
    );
    Ok(states)
}

/// The states entering layer `layer` of each of `items` (one batch), each movie's token rows
/// only, as `MovieBatcher::token_rows` counts them.
pub(crate) fn states_of_batch(
    bert: &Bert,
    layer: usize,
    items: Vec<MovieItem>,
    batcher: &MovieBatcher,
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let rows: Vec<usize> = items.iter().map(|it| batcher.token_rows(it)).collect();
    let batch = batcher.batch(items, device);
    let out = bert.states_before(layer, batch.tokens, keep_first(batch.token_mask));
    let [_, len, dim] = out.dims();
    let values = out
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(rows
        .iter()
        .enumerate()
        .map(|(k, r)| values[k * len * dim..(k * len + r) * dim].to_vec())
        .collect())
}

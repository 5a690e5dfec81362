//! Validation of a run that fine-tunes only the last layers of its plot backbone (the shipped
//! fine-tuned bag: MiniLM's top two of six). The layers below never train, so the states they
//! hand to the first trained layer are the same for a validation movie after every epoch:
//! they run once per run here, and each epoch's validation runs only the layers above.
//! Training steps still run the whole backbone (its dropout draws anew each step).

use std::time::Instant;

use anyhow::{Context, Result};
use burn::data::dataset::Dataset;
use burn::prelude::*;
use cinefuse_data::dataset::MovieItem;
use cinefuse_data::{MovieBatcher, MovieDataset, Prepared};
use cinefuse_model::CinefuseModel;

use crate::config::{Precision, TrainConfig};
use crate::shared_passes::{SharedItems, attach_frozen_states, shared_frozen_layers};

/// The most memory the validation movies may hold with their states (and the poster pixels
/// of a run whose posters are not cached); past it, each epoch's validation runs the whole
/// backbone as before (about 100 MB for 500 movies of MiniLM at 128 tokens).
const MAX_STATES_BYTES: usize = 512 << 20;

/// The validation movies `val` with the states entering the first trained layer of `model`'s
/// plot backbone (`model` in inference mode), or `None` where nothing can be shared: no
/// pretrained plot backbone, every layer trained, a concatenated layer below the trained ones,
/// states already cached for every movie, or a half-precision run (whose validation pass
/// does not start from f32 states).
pub(crate) fn validation_items(
    config: &TrainConfig,
    model: &CinefuseModel,
    (prepared, val): (&Prepared, &MovieDataset),
    batcher: &MovieBatcher,
    device: &Device,
) -> Result<Option<SharedItems>> {
    let cached = prepared
        .features
        .as_ref()
        .is_some_and(|f| f.plot_states.is_some());
    if cached || config.train.precision != Precision::F32 {
        return Ok(None);
    }
    let Some(layer) = shared_frozen_layers(&config.model, &[model]) else {
        return Ok(None);
    };
    let bert = &model
        .pretrained_text()
        .context("a fine-tuned plot backbone")?
        .backbone;
    let row_bytes = bert.hidden_size() * std::mem::size_of::<f32>();
    let Some((mut items, bytes)) = held_within_budget(val, |it| batcher.token_rows(it) * row_bytes)
    else {
        return Ok(None);
    };
    let started = Instant::now();
    attach_frozen_states(bert, layer, &mut items, batcher, device)
        .context("the plot backbone's frozen layers for validation")?;
    println!(
        "validation: the plot backbone's frozen part (below layer {layer}) ran once for {} \
         movies in {:.1}s ({:.0} MB); each epoch validates with the layers above",
        items.len(),
        started.elapsed().as_secs_f64(),
        bytes as f64 / 1e6
    );
    Ok(Some(SharedItems::new(items)))
}

/// Every movie of `val` with what it will hold: itself (its poster pixels or features) and
/// `states` bytes of states; `None` as soon as the total passes `MAX_STATES_BYTES`, so that a
/// large validation set is never read into memory whole.
fn held_within_budget(
    val: &MovieDataset,
    states: impl Fn(&MovieItem) -> usize,
) -> Option<(Vec<MovieItem>, usize)> {
    let mut items = Vec::with_capacity(val.len());
    let mut bytes = 0usize;
    for i in 0..val.len() {
        let item = val.item(i);
        let own = item.poster.as_ref().map_or(0, Vec::len)
            + item.poster_features.as_ref().map_or(0, |f| f.len() * 4);
        bytes += states(&item) + own;
        if bytes > MAX_STATES_BYTES {
            return None;
        }
        items.push(item);
    }
    Some((items, bytes))
}

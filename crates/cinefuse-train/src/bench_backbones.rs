//! Benchmark (not a test): forward throughput of the pretrained backbones a config names, on
//! batches of real prepared movies — what building the embedding cache costs per movie.
//! `scripts/torch_reference.py --backbones` times PyTorch on the same batches.

use std::time::Instant;

use anyhow::{Context, Result};
use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use cinefuse_data::split::Split;
use cinefuse_data::{MovieBatch, MovieItem, Prepared};

use crate::backbone_features::{BACKBONE_BATCH, frozen_poster_backbone, frozen_text_backbone};
use crate::bench::Throughput;
use crate::config::TrainConfig;
use cinefuse_model::pretrained::Backbone;

/// The first `n` training movies that have the modality, in sample order.
fn first_items(prepared: &Prepared, n: usize, keep: impl Fn(&MovieItem) -> bool) -> Vec<MovieItem> {
    let ds = prepared.dataset(Split::Train);
    (0..burn::data::dataset::Dataset::len(&ds))
        .map(|i| ds.item(i))
        .filter(|it| keep(it))
        .take(n)
        .collect()
}

fn time_batches(
    what: String,
    unit: &str,
    batches: &[MovieBatch],
    reps: usize,
    forward: impl Fn(&MovieBatch) -> Tensor<2>,
) -> Throughput {
    // One warm-up pass over every batch: each padded length is its own shape, and a GPU backend
    // compiles and autotunes kernels per shape, which must stay out of the timed passes.
    for b in batches {
        let _ = forward(b).into_data();
    }
    let movies: usize = batches.iter().map(MovieBatch::len).sum();
    let values = (0..reps.max(1))
        .map(|_| {
            let started = Instant::now();
            for b in batches {
                let _ = forward(b).into_data();
            }
            movies as f64 / started.elapsed().as_secs_f64()
        })
        .collect();
    Throughput {
        what,
        unit: unit.into(),
        values,
    }
}

/// Times the config's frozen-able backbones (those with `pretrained` set) on `n_batches`
/// batches of training movies each.
pub fn bench_backbones(
    config: &TrainConfig,
    prepared: &Prepared,
    device: &Device,
    n_batches: usize,
    reps: usize,
) -> Result<Vec<Throughput>> {
    let batcher = crate::backend::config_batcher(&config.backend, prepared);
    let n = n_batches.max(1) * BACKBONE_BATCH;
    let make = |items: Vec<MovieItem>| -> Vec<MovieBatch> {
        items
            .chunks(BACKBONE_BATCH)
            .map(|c| batcher.batch(c.to_vec(), device))
            .collect()
    };
    let mut out = Vec::new();
    if let Some(dir) = &config.model.text.pretrained {
        let enc = frozen_text_backbone(dir, device)
            .with_context(|| format!("model.text.pretrained = {}", dir.display()))?;
        let batches = make(first_items(prepared, n, |it| it.plot_present));
        anyhow::ensure!(!batches.is_empty(), "no training movie has a plot");
        let tokens: usize = batches
            .iter()
            .map(|b| b.token_mask.clone().sum().into_scalar::<f32>() as usize)
            .sum();
        out.push(time_batches(
            format!(
                "plot backbone {} forward, batch {BACKBONE_BATCH} ({} plots, {tokens} tokens)",
                dir.display(),
                batches.iter().map(MovieBatch::len).sum::<usize>()
            ),
            "plots/s",
            &batches,
            reps,
            |b| enc.features(b),
        ));
    }
    if let Some(dir) = &config.model.poster.pretrained {
        let enc = frozen_poster_backbone(dir, device)
            .with_context(|| format!("model.poster.pretrained = {}", dir.display()))?;
        let batches = make(first_items(prepared, n, |it| it.poster.is_some()));
        anyhow::ensure!(!batches.is_empty(), "no training movie has a poster");
        let [_, _, h, w] = batches[0].posters.dims();
        out.push(time_batches(
            format!(
                "poster backbone {} forward, batch {BACKBONE_BATCH}, {h}x{w}",
                dir.display()
            ),
            "posters/s",
            &batches,
            reps,
            |b| enc.features(b),
        ));
    }
    Ok(out)
}

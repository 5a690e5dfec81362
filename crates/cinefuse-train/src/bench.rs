//! Benchmarks (not tests): training-step throughput of a config on a backend, and batching
//! throughput from the poster cache. Warm-up steps are excluded; several repetitions give a
//! median and a spread.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use cinefuse_data::Prepared;
use cinefuse_data::split::Split;
use serde::Serialize;

use crate::backend::{check_precision, config_batcher, describe, select_devices};
use crate::config::{BackendKind, Precision, TrainConfig};
use crate::schedule::learning_rate;
use crate::trainer::learner::Learner;
use crate::trainer::precision::LossScale;
use crate::trainer::shards::{ShardBatcher, ShardedBatch};
use cinefuse_model::ModelShapes;
use cinefuse_model::head::RatingScale;

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub what: String,
    pub unit: String,
    /// One value per repetition.
    pub values: Vec<f64>,
}

impl Throughput {
    pub fn median(&self) -> f64 {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        let m = v.len() / 2;
        if v.len() % 2 == 1 {
            v[m]
        } else {
            (v[m - 1] + v[m]) / 2.0
        }
    }

    pub fn spread(&self) -> (f64, f64) {
        let min = self.values.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = self
            .values
            .iter()
            .cloned()
            .fold(f64::NEG_INFINITY, f64::max);
        (min, max)
    }
}

impl std::fmt::Display for Throughput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (lo, hi) = self.spread();
        write!(
            f,
            "{}: median {:.1} {} (min {:.1}, max {:.1}, {} reps)",
            self.what,
            self.median(),
            self.unit,
            lo,
            hi,
            self.values.len()
        )
    }
}

fn sync(device: &Device) {
    let _ = device.sync();
}

/// Optimizer steps per second × batch size, on batches already on the device(s): the
/// training step of `train` (data parallel over `backend.devices`, in `train.precision`).
pub fn bench_train(
    config: &TrainConfig,
    prepared: &Prepared,
    backend: BackendKind,
    steps: usize,
    warmup: usize,
    reps: usize,
) -> Result<Throughput> {
    let selected = select_devices(&config.backend.with_kind(Some(backend)))?;
    for s in &selected {
        check_precision(s, config.train.precision)?;
    }
    let devices: Vec<Device> = selected.iter().map(|s| s.device.clone()).collect();
    let device = devices[0].clone();
    let ds = prepared.dataset(Split::Train);
    let bs = config.train.batch_size;
    if ds.len() < bs {
        bail!("the training split has fewer than {bs} movies");
    }
    let batches = device_batches(prepared, config, &devices, steps);
    let mut shapes = ModelShapes::of(&prepared.preprocessor);
    shapes.text_backbone = crate::backbone_features::text_backbone_of(&config.model)?;
    let train_counts = &prepared.preprocessor.state.genres.train_counts;
    let pos_weight = config.loss.pos_weights(train_counts, ds.len());
    let mut values = Vec::new();
    for _ in 0..reps.max(1) {
        device.seed(config.seed);
        let model = config.model.init(&shapes, &device.clone().autodiff());
        let scale = RatingScale::of(&prepared.preprocessor.state);
        let learner = Learner::new(
            config,
            model,
            devices.clone(),
            scale,
            (pos_weight.clone(), Vec::new()),
        );
        let seconds = timed_steps(config, learner, &batches, (warmup, steps), &device)?;
        values.push((steps * bs) as f64 / seconds);
    }
    let precision = match config.train.precision {
        Precision::F32 => String::new(),
        p => format!(", {}", p.name()),
    };
    Ok(Throughput {
        what: format!(
            "training {} on {}{precision}",
            config.name,
            describe(&selected)
        ),
        unit: "samples/s".into(),
        values,
    })
}

/// Up to `steps` training batches of `train.batch_size` movies, sharded over `devices` ahead
/// of time and padded as `train` pads them (`backend.token_bucket`).
fn device_batches(
    prepared: &Prepared,
    config: &TrainConfig,
    devices: &[Device],
    steps: usize,
) -> Vec<ShardedBatch> {
    let ds = prepared.dataset(Split::Train);
    let bs = config.train.batch_size;
    let batcher = config_batcher(&config.backend, prepared);
    let sharder = ShardBatcher::new(batcher, devices.to_vec());
    let n_batches = (ds.len() / bs).min(steps.max(1));
    (0..n_batches)
        .map(|k| {
            sharder.batch(
                (k * bs..(k + 1) * bs)
                    .map(|i| ds.get(i).expect("in memory"))
                    .collect(),
                &devices[0],
            )
        })
        .collect()
}

/// Seconds `learner` takes for `steps` steps over `batches` after `warmup` untimed ones
/// (`device`: the lead, synchronised around the timed part).
fn timed_steps(
    config: &TrainConfig,
    mut learner: Learner,
    batches: &[ShardedBatch],
    (warmup, steps): (usize, usize),
    device: &Device,
) -> Result<f64> {
    let mut loss_scale = (config.train.precision == Precision::F16).then(LossScale::new);
    let total = warmup + steps;
    let mut started = Instant::now();
    for s in 0..total {
        if s == warmup {
            sync(device);
            started = Instant::now();
        }
        // The step `train` takes after pre-training, on the config's schedule.
        let lr = learning_rate(&config.schedule, config.optim.lr, s, total, batches.len());
        let batch = batches[s % batches.len()].clone();
        learner.step(batch, lr, false, config.seed ^ s as u64, &mut loss_scale)?;
    }
    sync(device);
    Ok(started.elapsed().as_secs_f64())
}

/// Items fetched from the memory-mapped cache and batched into tensors per second.
pub fn bench_batching(prepared: &Prepared, batch_size: usize, reps: usize) -> Result<Throughput> {
    let device = Device::flex();
    let ds = prepared.dataset_all();
    let batcher = prepared.preprocessor.batcher();
    let mut values = Vec::new();
    for _ in 0..reps.max(1) {
        let started = Instant::now();
        let mut n = 0;
        for chunk in (0..ds.len()).collect::<Vec<_>>().chunks(batch_size) {
            let items = chunk
                .iter()
                .map(|i| ds.get(*i).expect("in memory"))
                .collect::<Vec<_>>();
            n += items.len();
            let batch = batcher.batch(items, &device);
            std::hint::black_box(&batch);
        }
        values.push(n as f64 / started.elapsed().as_secs_f64());
    }
    Ok(Throughput {
        what: "batching from the poster cache (flex tensors)".into(),
        unit: "samples/s".into(),
        values,
    })
}

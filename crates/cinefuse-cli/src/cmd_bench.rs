//! `bench`: throughput numbers for BENCHMARKS.md (never run as timed tests).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use cinefuse_train::TrainConfig;
use cinefuse_train::bench::{Throughput, bench_batching, bench_train};
use cinefuse_train::bench_backbones::bench_backbones;
use cinefuse_train::data_setup::ensure_prepared;
use clap::Args;

#[derive(Args)]
pub struct BenchArgs {
    /// The config whose model, data and batch size are timed.
    #[arg(long, default_value = "configs/quickstart.toml")]
    config: PathBuf,
    /// Config overrides with dotted keys, e.g. --set train.batch_size=64 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Backends to time, comma-separated (flex, wgpu, lavapipe, cuda).
    #[arg(long, default_value = "flex")]
    backends: String,
    /// Timed training steps per repetition (1 to 100000).
    #[arg(long, default_value_t = 20, value_parser = count(1, MAX_STEPS))]
    steps: usize,
    /// Untimed steps before the first repetition (0 to 100000).
    #[arg(long, default_value_t = 3, value_parser = count(0, MAX_STEPS))]
    warmup: usize,
    /// Repetitions (1 to 1000).
    #[arg(long, default_value_t = 3, value_parser = count(1, 1000))]
    reps: usize,
    /// Also time `prepare` (posters/s) by preparing the dataset again into a temporary directory.
    #[arg(long)]
    prepare: bool,
    /// A directory of cached HTML title pages to time parsing on.
    #[arg(long)]
    pages: Option<PathBuf>,
    /// Also time the forward passes of the config's pretrained backbones (batches of 32
    /// training movies; this many batches).
    #[arg(long, value_name = "BATCHES", value_parser = count(1, MAX_STEPS))]
    backbones: Option<usize>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The most steps (or backbone batches) one benchmark runs: a mistyped count would otherwise
/// keep the machine busy for days.
const MAX_STEPS: u64 = 100_000;

/// A count within `lo..=hi` (0 steps or repetitions would time nothing).
fn count(lo: u64, hi: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(lo..=hi)
}

fn parse_pages(dir: &PathBuf, reps: usize) -> Result<Throughput> {
    let mut pages = Vec::new();
    for e in std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "html") {
            // 16 MiB, far above any title page: a huge file or a FIFO named .html is refused.
            pages.push(cinefuse_data::user_file::read_text_capped(
                &e.path(),
                cinefuse_data::user_file::MAX_MOVIE_JSON_BYTES,
            )?);
        }
    }
    anyhow::ensure!(!pages.is_empty(), "{}: no .html pages", dir.display());
    let mut values = Vec::new();
    for _ in 0..reps.max(1) {
        let started = Instant::now();
        let mut n = 0;
        while started.elapsed().as_secs_f64() < 1.0 {
            for p in &pages {
                std::hint::black_box(cinefuse_scrape::parse_title_page(p, "tt0000000").ok());
                n += 1;
            }
        }
        values.push(n as f64 / started.elapsed().as_secs_f64());
    }
    Ok(Throughput {
        what: format!("parsing cached title pages ({} distinct)", pages.len()),
        unit: "pages/s".into(),
        values,
    })
}

pub fn run(a: BenchArgs) -> Result<()> {
    let config = TrainConfig::load(&a.config, &a.set)?;
    let (dataset, mut prepared) = ensure_prepared(&config, None)?;
    let mut results: Vec<Throughput> = Vec::new();
    let device = &cinefuse_train::backend::select_device(&config.backend)?.device;
    if let Some(n) = a.backbones {
        for r in bench_backbones(&config, &prepared, device, n, a.reps)? {
            println!("{r}");
            results.push(r);
        }
    }
    // Frozen pretrained encoders train on cached features, as `train` does.
    cinefuse_train::backbone_features::attach_frozen_inputs(&config.model, &mut prepared, device)?;
    for b in a
        .backends
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
    {
        let kind = cinefuse_train::backend::parse_backend(b)?;
        let r = bench_train(&config, &prepared, kind, a.steps, a.warmup, a.reps)?;
        println!(
            "{r}  (batch {}, {} steps after {} warm-up)",
            config.train.batch_size, a.steps, a.warmup
        );
        results.push(r);
    }
    let r = bench_batching(&prepared, config.train.batch_size, a.reps)?;
    println!("{r}");
    results.push(r);
    if a.prepare {
        let r = bench_prepare(&dataset, &config, a.reps)?;
        println!("{r}");
        results.push(r);
    }
    if let Some(dir) = &a.pages {
        let r = parse_pages(dir, a.reps)?;
        println!("{r}");
        results.push(r);
    }
    if let Some(path) = &a.json {
        write_results(path, &results)?;
    }
    Ok(())
}

/// Posters decoded, resized and cached per second by `prepare`, into a folder inside a new
/// temporary directory of its own (an unpredictable name, so no other process can place a
/// link where it writes), removed with everything in it after each repetition.
fn bench_prepare(dataset: &Path, config: &TrainConfig, reps: usize) -> Result<Throughput> {
    let mut values = Vec::new();
    for _ in 0..reps.max(1) {
        let tmp = tempfile::Builder::new()
            .prefix("cinefuse-bench-prepare-")
            .tempdir()
            .context("cannot make a temporary folder for the prepare benchmark")?;
        let out = tmp.path().join("prepared");
        let s = cinefuse_data::prepare_dataset(dataset, &out, &config.data.preprocess)?;
        values.push(s.posters_per_second);
    }
    Ok(Throughput {
        what: "prepare: poster decode + resize + cache".into(),
        unit: "posters/s".into(),
        values,
    })
}

/// The results as a JSON list, each with its median.
fn write_results(path: &Path, results: &[Throughput]) -> Result<()> {
    let rows: Vec<serde_json::Value> = results
        .iter()
        .map(|r| serde_json::json!({"what": r.what, "unit": r.unit, "values": r.values, "median": r.median()}))
        .collect();
    cinefuse_data::atomic::write_atomic(path, &serde_json::to_vec_pretty(&rows)?)?;
    Ok(())
}

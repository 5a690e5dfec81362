//! `cinefuse`: the whole pipeline in one tool.

mod cmd_bench;
mod cmd_calibrate;
mod cmd_data;
mod cmd_import;
mod cmd_report;
mod cmd_scrape;
mod cmd_serve;
mod cmd_sweep;
mod cmd_train;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A training step allocates and frees tensors of a few megabytes hundreds of times. With
/// glibc's default thresholds most of them are fresh mmaps, or heap memory trimmed back to the
/// OS on free, whose pages then fault in again: a fifth of the quickstart step on 2 cores.
/// Serving them from the heap and not trimming it keeps the pages mapped for reuse.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // 32 MiB is the largest mmap threshold glibc accepts on 64-bit; the trim threshold only
    // bounds how much freed memory stays mapped.
    const MMAP_THRESHOLD: libc::c_int = 32 << 20;
    const TRIM_THRESHOLD: libc::c_int = 1 << 30;
    // SAFETY: mallopt only changes allocator parameters; called before any threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

#[derive(Parser)]
#[command(
    name = "cinefuse",
    version,
    about = "Multimodal deep learning on movies: posters, plots and metadata → genres and rating"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate the synthetic demo dataset (deterministic: same seed, same bytes).
    Synth(cmd_data::SynthArgs),
    /// Collect movie pages and posters from IMDb's HTML (polite, resumable).
    Scrape(cmd_scrape::ScrapeArgs),
    /// Import MM-IMDb, a JSONL/CSV table or IMDb's TSV tables into the dataset format.
    Import {
        #[command(subcommand)]
        kind: cmd_import::ImportKind,
    },
    /// Train every combination of a grid of config overrides and compare them.
    Sweep(cmd_sweep::SweepArgs),
    /// Validate, split and preprocess a dataset (fitted on train only).
    Prepare(cmd_data::PrepareArgs),
    /// Exploratory data analysis: an HTML report with charts of a dataset.
    Eda(cmd_report::EdaArgs),
    /// Training report of a run: learning curves, per-genre F1, rating scatter, confusion.
    Report(cmd_report::ReportArgs),
    /// Train a model from a TOML config.
    Train(cmd_train::TrainArgs),
    /// Evaluate a trained run.
    Eval(cmd_train::EvalArgs),
    /// Blend bags of different configs trained on the same folds, with weights, thresholds
    /// and a rating interval learned on their out-of-fold predictions.
    Ensemble(cmd_train::EnsembleArgs),
    /// Export a trained run as a self-contained model directory.
    Export(cmd_train::ExportArgs),
    /// Predict genres and rating for new movies with an exported model.
    Predict(cmd_train::PredictArgs),
    /// Fit an exported model's rating interval again on rated movies of your own source (split
    /// conformal), into a new export.
    Calibrate(cmd_calibrate::CalibrateArgs),
    /// Throughput benchmarks: training samples/s per backend, batching, prepare, page parsing.
    Bench(cmd_bench::BenchArgs),
    /// A local web app for runs and predictions, and a JSON prediction API.
    Serve(cmd_serve::ServeArgs),
    /// Config file tools.
    Config {
        #[command(subcommand)]
        action: cmd_train::ConfigAction,
    },
    /// Generate the demo data if absent, prepare, train, evaluate and export, in one go.
    Quickstart {
        /// The config to train (its dataset is generated when absent).
        #[arg(long, default_value = "configs/quickstart.toml")]
        config: PathBuf,
        /// Backend override: auto, flex, wgpu, lavapipe, cuda.
        #[arg(long)]
        backend: Option<String>,
        /// Config overrides, e.g. --set train.epochs=2
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}

fn main() -> ExitCode {
    tune_allocator();
    // Subnormal floats slowed fine-tuning on padded batches 6-10x (BENCHMARKS.md).
    cinefuse_model::cpu_kernels::flush_denormals();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Synth(a) => cmd_data::synth(a),
        Command::Scrape(a) => cmd_scrape::run(a),
        Command::Prepare(a) => cmd_data::prepare(a),
        Command::Import { kind } => cmd_import::import(kind),
        Command::Sweep(a) => cmd_sweep::run_sweep(a),
        Command::Eda(a) => cmd_report::eda(a),
        Command::Report(a) => cmd_report::report(a),
        Command::Train(a) => cmd_train::train(a).map(|_| ()),
        Command::Eval(a) => cmd_train::eval(a),
        Command::Ensemble(a) => cmd_train::ensemble(a),
        Command::Export(a) => cmd_train::export(a),
        Command::Predict(a) => cmd_train::predict(a),
        Command::Calibrate(a) => cmd_calibrate::calibrate(a),
        Command::Bench(a) => cmd_bench::run(a),
        Command::Serve(a) => cmd_serve::run(a),
        Command::Config { action } => cmd_train::config(action),
        Command::Quickstart {
            config,
            backend,
            set,
        } => cmd_train::quickstart(config, backend, set),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.is::<cmd_train::Interrupted>() {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

//! `sweep`: one run per combination of a grid of config overrides, and the results table.

use std::path::PathBuf;

use anyhow::Result;
use cinefuse_train::sweep::{SweepSpec, parse_grid, sweep};
use clap::Args;

#[derive(Args)]
pub struct SweepArgs {
    /// The config every run starts from.
    #[arg(long)]
    config: PathBuf,
    /// KEY=V1,V2,… (repeatable; the sweep runs every combination).
    #[arg(long = "grid", value_name = "KEY=V1,V2")]
    grid: Vec<String>,
    /// Overrides applied to every run.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Train every combination once per seed (e.g. 7,11,12); the table shows each score's
    /// mean and range over them.
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<u64>,
    /// Also score the test split: once the choice is made on the validation columns.
    #[arg(long)]
    test: bool,
    /// Train every run on another dataset directory.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Directory for the runs and the results table (default runs/sweep-<config>-<timestamp>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// auto, flex, wgpu, lavapipe or cuda (default: the config's `backend.kind`).
    #[arg(long)]
    backend: Option<String>,
}

pub fn run_sweep(a: SweepArgs) -> Result<()> {
    let grid = a
        .grid
        .iter()
        .map(|g| parse_grid(g))
        .collect::<Result<Vec<_>>>()?;
    let stem = a
        .config
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let out = a.out.unwrap_or_else(|| {
        PathBuf::from("runs").join(format!(
            "sweep-{stem}-{}",
            cinefuse_train::run_dir::timestamp()
        ))
    });
    let rows = sweep(&SweepSpec {
        config: &a.config,
        base_overrides: a.set,
        grid,
        seeds: a.seeds,
        test: a.test,
        out: out.clone(),
        data: a.data,
        backend: a
            .backend
            .as_deref()
            .map(cinefuse_train::backend::parse_backend)
            .transpose()?,
    })?;
    print!("{}", std::fs::read_to_string(out.join("results.md"))?);
    println!("{} runs; tables in {}", rows.len(), out.display());
    Ok(())
}

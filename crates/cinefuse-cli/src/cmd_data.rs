//! `synth` and `prepare`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use cinefuse_data::PrepareConfig;
use clap::Args;

#[derive(Args)]
pub struct SynthArgs {
    /// The dataset folder to write (movies.jsonl and posters/).
    #[arg(long, default_value = "datasets/demo")]
    out: PathBuf,
    /// How many movies (at most 100,000: they are generated in memory).
    #[arg(long, default_value_t = 2000, value_parser = synth_count())]
    n: usize,
    /// Seed of the generator: the same seed writes the same bytes.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// `--n`, bounded by the generator's own limit so that the flag is named when it is exceeded.
fn synth_count() -> clap::builder::RangedU64ValueParser<usize> {
    let max = cinefuse_data::synth::MAX_SYNTH_MOVIES as u64;
    clap::builder::RangedU64ValueParser::new().range(1..=max)
}

pub fn synth(a: SynthArgs) -> Result<()> {
    let n = cinefuse_data::synth::write_synthetic(&a.out, a.n, a.seed)?;
    println!("wrote {n} movies to {}", a.out.display());
    Ok(())
}

#[derive(Args)]
pub struct PrepareArgs {
    /// Dataset directory (movies.jsonl + posters/).
    #[arg(long)]
    data: PathBuf,
    /// Output directory for the prepared data.
    #[arg(long)]
    out: PathBuf,
    /// A training config (its [data.preprocess] section is used) or a file with only
    /// preprocessing keys.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Skip bad records (listed in bad_records.json) instead of aborting.
    #[arg(long)]
    skip_bad: bool,
}

/// Reads preprocessing settings from a full training config or a bare preprocessing table.
fn load_prepare_config(path: &Path) -> Result<PrepareConfig> {
    let text = cinefuse_data::user_file::read_text_capped(
        path,
        cinefuse_data::user_file::MAX_CONFIG_BYTES,
    )?;
    let table = cinefuse_train::toml_text::parse_table(&text, &path.display().to_string())?;
    if table.contains_key("name") {
        let full =
            cinefuse_train::TrainConfig::from_toml_str(&text, &path.display().to_string(), &[])?;
        return Ok(full.data.preprocess);
    }
    let c: PrepareConfig =
        toml::Table::try_into(table).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    c.validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(c)
}

pub fn prepare(a: PrepareArgs) -> Result<()> {
    let mut config = match &a.config {
        Some(p) => load_prepare_config(p)?,
        None => PrepareConfig::default(),
    };
    config.skip_bad |= a.skip_bad;
    let summary = cinefuse_data::prepare_dataset(&a.data, &a.out, &config)?;
    println!("{summary}");
    println!("prepared data written to {}", a.out.display());
    Ok(())
}

//! Getting prepared data for a config: generate the demo dataset when asked, and prepare the
//! dataset unless an up-to-date prepared copy (same preprocessing config, same data hash) exists.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cinefuse_data::movie::MOVIES_FILE;
use cinefuse_data::prepared::{PREPROCESS_FILE, PreprocessState};
use cinefuse_data::{PrepareConfig, Prepared, prepare_dataset};
use sha2::{Digest, Sha256};

use crate::config::TrainConfig;

/// Whether `prepared_dir` holds data prepared from exactly this dataset with this config.
pub fn is_up_to_date(dataset: &Path, prepared_dir: &Path, config: &PrepareConfig) -> bool {
    let Ok(state) =
        cinefuse_data::atomic::read_json::<PreprocessState>(&prepared_dir.join(PREPROCESS_FILE))
    else {
        return false;
    };
    let Ok(bytes) = std::fs::read(dataset.join(MOVIES_FILE)) else {
        return false;
    };
    state.config == *config && state.dataset_hash == format!("{:x}", Sha256::digest(&bytes))
}

/// Resolves the dataset (optionally `--data`), generates or prepares it as needed, and opens it.
pub fn ensure_prepared(
    config: &TrainConfig,
    data_override: Option<&Path>,
) -> Result<(PathBuf, Prepared)> {
    let (dataset, prepared_dir) = match data_override {
        Some(d) => {
            let name = d
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "dataset".into());
            (d.to_path_buf(), PathBuf::from("prepared").join(name))
        }
        None => (config.data.dataset.clone(), config.prepared_dir()),
    };
    if !dataset.join(MOVIES_FILE).exists() {
        if config.data.synth_if_missing > 0 && data_override.is_none() {
            eprintln!(
                "generating the synthetic demo dataset: {} movies into {} (seed {})",
                config.data.synth_if_missing,
                dataset.display(),
                config.data.synth_seed
            );
            cinefuse_data::synth::write_synthetic(
                &dataset,
                config.data.synth_if_missing,
                config.data.synth_seed,
            )?;
        } else {
            bail!(
                "{}: no {MOVIES_FILE} here; pass a dataset directory (see `cinefuse synth` or `cinefuse scrape`)",
                dataset.display()
            );
        }
    }
    if is_up_to_date(&dataset, &prepared_dir, &config.data.preprocess) {
        eprintln!("reusing prepared data in {}", prepared_dir.display());
    } else {
        eprintln!(
            "preparing {} → {}",
            dataset.display(),
            prepared_dir.display()
        );
        let summary = prepare_dataset(&dataset, &prepared_dir, &config.data.preprocess)?;
        eprintln!("{summary}");
    }
    let prepared = Prepared::open(&prepared_dir)
        .with_context(|| format!("opening {}", prepared_dir.display()))?;
    Ok((dataset, prepared))
}

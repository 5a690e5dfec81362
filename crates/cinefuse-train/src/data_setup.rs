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

/// Where `--data DIR` puts its prepared copy: `prepared/<dir name>-<hash of the preprocessing
/// config>`, so two configs never overwrite each other's prepared data.
pub fn prepared_dir_for(dataset: &Path, config: &PrepareConfig) -> PathBuf {
    let name = dataset
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into());
    let digest = Sha256::digest(serde_json::to_vec(config).expect("config serializes"));
    let hex = format!("{digest:x}");
    PathBuf::from("prepared").join(format!("{name}-{}", &hex[..8]))
}

/// SHA-256 over the fitted state and the tokenizer: identifies exactly what a model was trained on.
pub fn prepared_fingerprint(prepared_dir: &Path) -> Result<String> {
    let mut h = Sha256::new();
    for f in [PREPROCESS_FILE, cinefuse_data::prepared::TOKENIZER_FILE] {
        let path = prepared_dir.join(f);
        h.update(std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Resolves the dataset (optionally `--data`), generates or prepares it as needed, and opens it.
pub fn ensure_prepared(
    config: &TrainConfig,
    data_override: Option<&Path>,
) -> Result<(PathBuf, Prepared)> {
    let (dataset, prepared_dir) = match data_override {
        Some(d) => (
            d.to_path_buf(),
            prepared_dir_for(d, &config.data.preprocess),
        ),
        None => (config.data.dataset.clone(), config.prepared_dir()),
    };
    ensure_prepared_in(config, &dataset, &prepared_dir, data_override.is_none())
}

/// Like `ensure_prepared` with explicit directories (a resumed run reuses its own).
pub fn ensure_prepared_in(
    config: &TrainConfig,
    dataset: &Path,
    prepared_dir: &Path,
    may_synthesize: bool,
) -> Result<(PathBuf, Prepared)> {
    let (dataset, prepared_dir) = (dataset.to_path_buf(), prepared_dir.to_path_buf());
    if !dataset.join(MOVIES_FILE).exists() {
        if config.data.synth_if_missing > 0 && may_synthesize {
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

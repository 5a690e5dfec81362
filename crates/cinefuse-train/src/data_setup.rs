//! Getting prepared data for a config: generate the demo dataset when asked, and prepare the
//! dataset unless an up-to-date prepared copy (same preprocessing config, same data hash) exists.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cinefuse_data::movie::MOVIES_FILE;
use cinefuse_data::prepared::{ENCODING_VERSION, PREPROCESS_FILE, PreprocessState};
use cinefuse_data::{PrepareConfig, Prepared, prepare_dataset};
use sha2::{Digest, Sha256};

use crate::config::TrainConfig;
use crate::run_dir::RunInfo;

/// SHA-256 of the dataset's movie records, or `None` when they cannot be read.
fn dataset_hash(dataset: &Path) -> Option<String> {
    // A FIFO or an oversized file is refused here (no hash), and again with its reason when
    // `prepare` parses it.
    let bytes = cinefuse_data::user_file::read_capped(
        &dataset.join(MOVIES_FILE),
        cinefuse_data::user_file::MAX_JSONL_BYTES,
    )
    .ok()?;
    Some(format!("{:x}", Sha256::digest(&bytes)))
}

/// Whether `prepared_dir` holds data prepared from exactly this dataset with this config.
pub fn is_up_to_date(dataset: &Path, prepared_dir: &Path, config: &PrepareConfig) -> bool {
    prepared_with(dataset, prepared_dir, config, Path::to_path_buf)
}

/// `is_up_to_date` for a config whose paths a resumed run pointed at what training read: the
/// tokenizer path recorded with the data goes through the same `locate` before comparing.
fn prepared_with(
    dataset: &Path,
    prepared_dir: &Path,
    config: &PrepareConfig,
    locate: impl Fn(&Path) -> PathBuf,
) -> bool {
    why_not_current(dataset, prepared_dir, config, locate).is_none()
}

/// Why `prepared_dir` does not hold this dataset prepared with this config (`None`: it does):
/// what `train` says before it prepares again.
fn why_not_current(
    dataset: &Path,
    prepared_dir: &Path,
    config: &PrepareConfig,
    locate: impl Fn(&Path) -> PathBuf,
) -> Option<String> {
    let file = prepared_dir.join(PREPROCESS_FILE);
    if !file.exists() {
        return Some("not prepared yet".into());
    }
    let mut state = match cinefuse_data::atomic::read_json::<PreprocessState>(&file) {
        Ok(state) => state,
        Err(e) => return Some(format!("{} cannot be read ({e:#})", file.display())),
    };
    if let Some(p) = state.config.tokenizer_path.as_mut() {
        *p = locate(p);
    }
    if state.config != *config {
        return Some("prepared with other data.preprocess settings".into());
    }
    match dataset_hash(dataset) {
        Some(h) if h == state.dataset_hash => None,
        _ => Some(format!(
            "{} changed since",
            dataset.join(MOVIES_FILE).display()
        )),
    }
}

/// Where `--data DIR` puts its prepared copy: `prepared/<dir name>-<hash>`, the hash over the
/// preprocessing config, the dataset's resolved path and its records. Two configs, two
/// datasets of the same folder name, or one dataset before and after an edit never share a
/// folder, so preparing never replaces the prepared data an earlier run trained on.
pub fn prepared_dir_for(dataset: &Path, config: &PrepareConfig) -> PathBuf {
    let name = dataset
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into());
    let resolved =
        cinefuse_data::paths::absolute_resolved(dataset).unwrap_or_else(|_| dataset.to_path_buf());
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(config).expect("config serializes"));
    h.update([0]);
    h.update(resolved.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update(dataset_hash(dataset).unwrap_or_default());
    let hex = format!("{:x}", h.finalize());
    PathBuf::from("prepared").join(format!("{name}-{}", &hex[..8]))
}

/// SHA-256 over the fitted state and the tokenizer: identifies exactly what a model was trained on.
pub fn prepared_fingerprint(prepared_dir: &Path) -> Result<String> {
    let mut h = Sha256::new();
    for f in [PREPROCESS_FILE, cinefuse_data::prepared::TOKENIZER_FILE] {
        let path = prepared_dir.join(f);
        // The tokenizer's cap, the larger of the two files' (preprocess.json is far smaller).
        let cap = cinefuse_data::user_file::MAX_TOKENIZER_BYTES;
        h.update(cinefuse_data::user_file::read_capped(&path, cap)?);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Resolves the dataset (optionally `--data`), generates or prepares it as needed, and opens it.
pub fn ensure_prepared(
    config: &TrainConfig,
    data_override: Option<&Path>,
) -> Result<(PathBuf, Prepared)> {
    let dataset = data_override.unwrap_or(&config.data.dataset);
    ensure_dataset(config, dataset, data_override.is_none())?;
    // After the dataset exists: the auto-prepared folder is keyed on its records.
    let prepared_dir = prepared_dir_of(config, data_override);
    prepare_unless_current(config, dataset, &prepared_dir)?;
    open_prepared(dataset, &prepared_dir)
}

/// Where the config's dataset (or `--data`) is prepared.
fn prepared_dir_of(config: &TrainConfig, data_override: Option<&Path>) -> PathBuf {
    match data_override {
        Some(d) => prepared_dir_for(d, &config.data.preprocess),
        None => config.prepared_dir(),
    }
}

/// The prepared folder `ensure_prepared` would use, opened only when it is already current;
/// `None` when it is missing or stale (the first run would prepare it afresh). Reads, never
/// writes: for checks that must come before the run folder exists.
pub fn open_current_prepared(
    config: &TrainConfig,
    data_override: Option<&Path>,
) -> Result<Option<Prepared>> {
    let dataset = data_override.unwrap_or(&config.data.dataset);
    let prepared_dir = prepared_dir_of(config, data_override);
    let current = is_up_to_date(dataset, &prepared_dir, &config.data.preprocess);
    if !current || older_encoding(&prepared_dir).is_some() {
        return Ok(None);
    }
    let (_, prepared) = open_prepared(dataset, &prepared_dir)?;
    Ok(Some(prepared))
}

/// The prepared data a resumed run trained on. It is prepared again only when it is gone
/// (preparing is deterministic; the caller checks the fingerprint); prepared data that no
/// longer matches the dataset is refused, never replaced.
pub fn reopen_prepared(config: &TrainConfig, info: &RunInfo) -> Result<(PathBuf, Prepared)> {
    let (dataset, prepared_dir) = (info.dataset_dir.as_path(), info.prepared_dir.as_path());
    ensure_dataset(config, dataset, false)?;
    if !prepared_dir.exists() {
        prepare_unless_current(config, dataset, prepared_dir)?;
    } else if !prepared_with(dataset, prepared_dir, &config.data.preprocess, |p| {
        info.locate(p)
    }) {
        bail!(
            "{}: this run's prepared data no longer matches its dataset {} (the dataset or the \
             preprocessing changed since the run started); it is left as it is. Resume needs the \
             run's own data: restore the dataset, or start a new run",
            prepared_dir.display(),
            dataset.display()
        );
    }
    open_prepared(dataset, prepared_dir)
}

fn open_prepared(dataset: &Path, prepared_dir: &Path) -> Result<(PathBuf, Prepared)> {
    let prepared = Prepared::open(prepared_dir)
        .with_context(|| format!("opening {}", prepared_dir.display()))?;
    Ok((dataset.to_path_buf(), prepared))
}

/// Generates the demo dataset into `dataset` when the config asks for it and it is absent.
fn ensure_dataset(config: &TrainConfig, dataset: &Path, may_synthesize: bool) -> Result<()> {
    if !dataset.join(MOVIES_FILE).exists() {
        if config.data.synth_if_missing > 0 && may_synthesize {
            eprintln!(
                "generating the synthetic demo dataset: {} movies into {} (seed {})",
                config.data.synth_if_missing,
                dataset.display(),
                config.data.synth_seed
            );
            // The folder comes from the config, not a flag: the error names the key.
            cinefuse_data::synth::write_synthetic(
                dataset,
                config.data.synth_if_missing,
                config.data.synth_seed,
            )
            .with_context(|| format!("data.dataset = {:?}", dataset.display().to_string()))?;
        } else {
            bail!(
                "{}: no {MOVIES_FILE} here; pass a dataset directory (see `cinefuse synth` or `cinefuse scrape`)",
                dataset.display()
            );
        }
    }
    Ok(())
}

/// Why `prepared_dir`'s samples, though prepared from this dataset and config, are read the
/// way an earlier cinefuse read absent fields (`ENCODING_VERSION`); `None` when they are not,
/// or when there is no readable state. A run resumes on such data as it is; a new one
/// prepares it again.
fn older_encoding(prepared_dir: &Path) -> Option<String> {
    let file = prepared_dir.join(PREPROCESS_FILE);
    let state = cinefuse_data::atomic::read_json::<PreprocessState>(&file).ok()?;
    (state.encoding < ENCODING_VERSION).then(|| {
        format!(
            "prepared by an earlier cinefuse, which read absent fields another way (encoding {}, \
             now {ENCODING_VERSION})",
            state.encoding
        )
    })
}

fn prepare_unless_current(config: &TrainConfig, dataset: &Path, prepared_dir: &Path) -> Result<()> {
    let why = why_not_current(
        dataset,
        prepared_dir,
        &config.data.preprocess,
        Path::to_path_buf,
    )
    .or_else(|| older_encoding(prepared_dir));
    if let Some(why) = why {
        eprintln!(
            "preparing {} → {} ({why})",
            dataset.display(),
            prepared_dir.display()
        );
        let summary = prepare_dataset(dataset, prepared_dir, &config.data.preprocess)
            .with_context(|| {
                format!(
                    "preparing into {} (the config's data.prepared, or prepared/<name>-<hash> \
                     with --data)",
                    prepared_dir.display()
                )
            })?;
        eprintln!("{summary}");
    } else {
        eprintln!("reusing prepared data in {}", prepared_dir.display());
    }
    Ok(())
}

/// Refuses to use prepared data that changed since the run trained on it.
pub fn check_fingerprint(info: &RunInfo, prepared_dir: &Path) -> Result<()> {
    let now = prepared_fingerprint(prepared_dir)?;
    if !info.prepared_fingerprint.is_empty() && info.prepared_fingerprint != now {
        bail!(
            "{} was prepared again since this run trained on it (different preprocessing or tokenizer); \
             export runs to keep them self-contained, or retrain",
            prepared_dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_says_why_it_prepares_again() {
        let dir = tempfile::tempdir().unwrap();
        let (dataset, prepared) = (dir.path().join("data"), dir.path().join("prepared"));
        let config = PrepareConfig::default();
        let why = |d: &Path| why_not_current(d, &prepared, &config, Path::to_path_buf).unwrap();
        assert_eq!(why(&dataset), "not prepared yet");
        std::fs::create_dir_all(&prepared).unwrap();
        std::fs::write(prepared.join(PREPROCESS_FILE), "{\"config\": ").unwrap();
        let damaged = why(&dataset);
        assert!(
            damaged.contains("preprocess.json cannot be read"),
            "{damaged}"
        );
        // A state from an earlier cinefuse loads, but a new run prepares it again.
        let mut state = cinefuse_data::prepared::fit_state(&[], &config, "h".into(), "s".into(), 0);
        let write = |state: &PreprocessState| {
            cinefuse_data::atomic::write_json_atomic(&prepared.join(PREPROCESS_FILE), state)
                .unwrap()
        };
        write(&state);
        assert_eq!(older_encoding(&prepared), None);
        state.encoding = 0;
        write(&state);
        let older = older_encoding(&prepared).unwrap();
        assert!(older.contains("encoding 0, now 2"), "{older}");
    }
}

//! The run directory: resolved config, run facts, metrics log, checkpoints and the best model.
//! Multi-file checkpoints are staged in a hidden directory and renamed into place, so a crash
//! at any moment leaves either the previous or the new checkpoint, never half of one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::prelude::*;
use cinefuse_model::head::RatingScale;
use cinefuse_model::{CinefuseModel, ModelConfig, ModelShapes};
use serde::{Deserialize, Serialize};

pub const CONFIG_FILE: &str = "config.toml";
pub const RUN_FILE: &str = "run.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const MODEL_FILE: &str = "model.bpk";
pub const OPTIM_FILE: &str = "optim.bpk";
pub const STATE_FILE: &str = "state.json";
pub const BEST_DIR: &str = "best";
pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const LOCK_FILE: &str = ".lock";

/// An OS lock on a run directory, held while a process trains in it. The OS releases it when
/// the process ends, however it ends, so a crash never leaves a stale lock behind.
#[derive(Debug)]
pub struct RunLock {
    _file: fs::File,
}

impl RunLock {
    /// Takes the lock on `run_dir`, or says which process holds it.
    pub fn acquire(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(LOCK_FILE);
        let locked = cinefuse_data::output_lock::try_lock_file(&path)
            .with_context(|| format!("cannot lock {}", path.display()))?;
        let mut file = match locked {
            Ok(file) => file,
            Err(holder) => anyhow::bail!(
                "{}: another process is training in this run folder ({holder}); wait for it to \
                 finish or choose another --out",
                run_dir.display()
            ),
        };
        file.set_len(0)?;
        writeln!(file, "pid {} since {}", std::process::id(), timestamp())?;
        file.sync_data()?;
        Ok(Self { _file: file })
    }
}

/// Facts about a run that eval/export need besides the config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub name: String,
    pub dataset_dir: PathBuf,
    pub prepared_dir: PathBuf,
    pub backend: String,
    pub shapes: ModelShapes,
    pub rating_scale: RatingScale,
    pub genres: Vec<String>,
    pub param_counts: Vec<(String, usize)>,
    pub started_unix: u64,
    /// `data_setup::prepared_fingerprint` of the prepared data the run trained on.
    #[serde(default)]
    pub prepared_fingerprint: String,
    /// Which movies it trained and validated on (a bag member's fold).
    #[serde(default)]
    pub rows: TrainRows,
}

/// Which labelled movies a run trains and validates on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TrainRows {
    /// The prepared train split; validation on the validation split.
    #[default]
    Splits,
    /// Train + validation except fold `index` of `count` (seeded by `seed`); validation on
    /// that fold. A member of a bag.
    Fold {
        index: usize,
        count: usize,
        seed: u64,
    },
    /// All of train + validation for a fixed number of epochs; the last epoch is the model
    /// (there is no held-out movie to choose one). A bag's refit.
    All { epochs: usize },
}

/// Where training stands; saved with every checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// Epochs fully completed.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: usize,
    /// Batches of the epoch in progress already taken (after an interruption).
    pub batches_into_epoch: usize,
    /// Running loss sums of the epoch in progress: (total, genre, rating, samples).
    pub partial_sums: (f64, f64, f64, usize),
    pub best_value: Option<f64>,
    pub best_epoch: usize,
    pub epochs_without_improvement: usize,
    /// The f16 loss scale (`train.precision = "f16"` only), so a resume continues with it.
    #[serde(default)]
    pub loss_scale: Option<crate::trainer::LossScale>,
    /// Steps whose f16 gradients overflowed and were skipped.
    #[serde(default)]
    pub skipped_steps: usize,
}

/// UTC `YYYYmmdd-HHMMSS` without a date-time dependency.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    timestamp_of(secs)
}

/// UTC `YYYYmmdd-HHMMSS` of a Unix time.
pub fn timestamp_of(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// `model` with the weights of the Burn file `file` (written by a model of the same shapes);
/// errors name the file.
pub fn load_weights(model: CinefuseModel, file: &Path) -> Result<CinefuseModel> {
    model
        .try_load_file(file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

/// The model that `config` and `shapes` describe, on `device`, with the weights of `file`:
/// how a run's best model, a checkpoint and every export member are read.
pub fn load_model(
    config: &ModelConfig,
    shapes: &ModelShapes,
    file: &Path,
    device: &Device,
) -> Result<CinefuseModel> {
    load_weights(config.init(shapes, device), file)
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    cinefuse_data::atomic::write_json_atomic(path, value).map_err(Into::into)
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    cinefuse_data::atomic::read_json(path).map_err(Into::into)
}

/// Appends one JSON line to `metrics.jsonl` (flushed and synced: a line is whole or absent).
pub fn append_metrics(run_dir: &Path, line: &serde_json::Value) -> Result<()> {
    let path = run_dir.join(METRICS_FILE);
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    writeln!(f, "{line}")?;
    f.sync_data()?;
    Ok(())
}

pub fn read_metrics(run_dir: &Path) -> Result<Vec<serde_json::Value>> {
    let path = run_dir.join(METRICS_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = fs::read_to_string(&path)?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: bad JSON", path.display(), i + 1))
        })
        .collect()
}

/// Drops metric lines of epochs after `epoch` (written after the checkpoint a run resumes from).
pub fn truncate_metrics(run_dir: &Path, epoch: usize) -> Result<()> {
    let kept: Vec<String> = read_metrics(run_dir)?
        .into_iter()
        .filter(|v| v["epoch"].as_u64().is_some_and(|e| e as usize <= epoch))
        .map(|v| v.to_string() + "\n")
        .collect();
    cinefuse_data::atomic::write_atomic(&run_dir.join(METRICS_FILE), kept.concat().as_bytes())?;
    Ok(())
}

/// Stages a checkpoint directory; `commit` renames it into place.
pub struct CheckpointWriter {
    pub staging: PathBuf,
    target: PathBuf,
}

impl CheckpointWriter {
    pub fn new(target: &Path) -> Result<Self> {
        let name = target
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let staging = target.with_file_name(format!(".{name}.partial"));
        if staging.exists() {
            fs::remove_dir_all(&staging)?;
        }
        fs::create_dir_all(&staging)?;
        Ok(Self {
            staging,
            target: target.to_path_buf(),
        })
    }

    pub fn commit(self) -> Result<()> {
        let old = self.target.with_file_name(format!(
            ".{}.old",
            self.target
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
        ));
        if old.exists() {
            fs::remove_dir_all(&old)?;
        }
        if self.target.exists() {
            fs::rename(&self.target, &old)?;
        }
        fs::rename(&self.staging, &self.target)?;
        if old.exists() {
            fs::remove_dir_all(&old)?;
        }
        Ok(())
    }
}

/// The best-model directory, falling back to the previous one if a swap was interrupted.
pub fn best_dir(run_dir: &Path) -> Option<PathBuf> {
    let best = run_dir.join(BEST_DIR);
    if best.join(MODEL_FILE).exists() {
        return Some(best);
    }
    let old = run_dir.join(format!(".{BEST_DIR}.old"));
    old.join(MODEL_FILE).exists().then_some(old)
}

/// Complete periodic checkpoints (those with a state file), oldest first.
fn complete_checkpoints(run_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(run_dir.join(CHECKPOINTS_DIR)) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("epoch-"))
                && p.join(STATE_FILE).exists()
        })
        .collect();
    found.sort();
    found
}

/// The newest complete periodic checkpoint.
pub fn latest_checkpoint(run_dir: &Path) -> Option<PathBuf> {
    complete_checkpoints(run_dir).pop()
}

/// Removes all but the newest `keep` complete periodic checkpoints.
pub fn prune_checkpoints(run_dir: &Path, keep: usize) -> Result<()> {
    let found = complete_checkpoints(run_dir);
    let excess = found.len().saturating_sub(keep.max(1));
    for p in found.into_iter().take(excess) {
        fs::remove_dir_all(&p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_run_names_the_holder_and_a_released_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let e = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains("another process is training"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(first);
        RunLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn timestamp_has_the_expected_shape() {
        let t = timestamp();
        assert_eq!(t.len(), 15, "{t}");
        assert_eq!(&t[8..9], "-");
        assert!(t[..4].parse::<u32>().unwrap() >= 2024);
        // Known instants, leap days and the turn of a century included.
        for (secs, want) in [
            (0, "19700101-000000"),
            (951_782_400, "20000229-000000"),
            (951_868_799, "20000229-235959"),
            (1_709_251_199, "20240229-235959"),
            (4_102_444_800, "21000101-000000"),
        ] {
            assert_eq!(timestamp_of(secs), want, "{secs}");
        }
    }

    #[test]
    fn checkpoint_swap_and_pruning() {
        let dir = tempfile::tempdir().unwrap();
        for e in 1..=3 {
            let w = CheckpointWriter::new(
                &dir.path()
                    .join(CHECKPOINTS_DIR)
                    .join(format!("epoch-{e:04}")),
            )
            .unwrap();
            fs::write(w.staging.join(STATE_FILE), "{}").unwrap();
            w.commit().unwrap();
        }
        // A half-written checkpoint (no state.json) is ignored.
        fs::create_dir_all(dir.path().join(CHECKPOINTS_DIR).join("epoch-0009")).unwrap();
        assert!(
            latest_checkpoint(dir.path())
                .unwrap()
                .ends_with("epoch-0003")
        );
        prune_checkpoints(dir.path(), 2).unwrap();
        assert!(!dir.path().join(CHECKPOINTS_DIR).join("epoch-0001").exists());
        assert!(dir.path().join(CHECKPOINTS_DIR).join("epoch-0002").exists());
    }

    #[test]
    fn metrics_truncation_drops_later_epochs() {
        let dir = tempfile::tempdir().unwrap();
        for e in 1..=3 {
            append_metrics(dir.path(), &serde_json::json!({"epoch": e})).unwrap();
        }
        truncate_metrics(dir.path(), 2).unwrap();
        let m = read_metrics(dir.path()).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1]["epoch"], 2);
    }
}

//! Checkpoint folders: staged in a hidden folder and renamed into place, the best model, and
//! the periodic checkpoints a run resumes from.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;
use cinefuse_model::{CinefuseModel, ModelConfig};

use super::{
    BEST_DIR, CHECKPOINTS_DIR, MODEL_FILE, OPTIM_FILE, STATE_FILE, TrainState, model_record,
    read_json, save_record, write_json,
};

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

/// Every complete periodic checkpoint, newest first: where a resume tries to continue from.
pub fn checkpoints_newest_first(run_dir: &Path) -> Vec<PathBuf> {
    let mut found = complete_checkpoints(run_dir);
    found.reverse();
    found
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

/// The loop state of the newest complete periodic checkpoint: where a resume would continue.
pub fn latest_state(run_dir: &Path) -> Option<TrainState> {
    read_json(&latest_checkpoint(run_dir)?.join(STATE_FILE)).ok()
}

/// Saves what training can change of `model` (`saved_weights`).
pub fn save_model(model: &CinefuseModel, config: &ModelConfig, path: &Path) -> Result<()> {
    save_record(model_record(model, config)?, path)
}

/// Model, optimizer and loop state as checkpoint `name` of the run (staged, then renamed).
pub fn save_checkpoint(
    run_dir: &Path,
    (model, config): (&CinefuseModel, &ModelConfig),
    optim: &burn::optim::ModuleOptimizer,
    state: &TrainState,
    name: &str,
) -> Result<()> {
    let w = CheckpointWriter::new(&run_dir.join(CHECKPOINTS_DIR).join(name))?;
    save_model(model, config, &w.staging.join(MODEL_FILE))?;
    optim
        .save(w.staging.join(OPTIM_FILE))
        .map_err(|e| anyhow::anyhow!("cannot save optimizer state: {e}"))?;
    write_json(&w.staging.join(STATE_FILE), state)?;
    w.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

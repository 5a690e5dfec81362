//! The run directory: resolved config, run facts, metrics log, checkpoints and the best model.
//! Multi-file checkpoints are staged in a hidden directory and renamed into place, so a crash
//! at any moment leaves either the previous or the new checkpoint, never half of one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::prelude::*;
use burn::tensor::Bytes;
use cinefuse_model::head::RatingScale;
use cinefuse_model::tensor_names;
use cinefuse_model::{CinefuseModel, ModelConfig, ModelShapes};
use serde::{Deserialize, Serialize};

use crate::bag::{BAG_FILE, BagInfo};
use crate::blend::{BLEND_FILE, BlendInfo};
use crate::config::{LoopConfig, TrainConfig};
use crate::evaluate::{EVAL_FILE, EvalReport};

pub const CONFIG_FILE: &str = "config.toml";
pub const RUN_FILE: &str = "run.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const MODEL_FILE: &str = "model.bpk";
pub const OPTIM_FILE: &str = "optim.bpk";
pub const STATE_FILE: &str = "state.json";
pub const BEST_DIR: &str = "best";
pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const LOCK_FILE: &str = ".lock";

mod checkpoints;
mod lock;
mod metrics;

mod saved_weights;
mod unstarted;

pub use checkpoints::{
    CheckpointWriter, best_dir, checkpoints_newest_first, latest_checkpoint, latest_state,
    prune_checkpoints, save_checkpoint, save_model,
};
pub use lock::{RunLock, clear_unstarted, is_locked};
pub use metrics::{
    EpochMetrics, Phase, append_metrics, best_epoch, read_metrics, truncate_metrics,
};
pub(crate) use saved_weights::frozen_parts;
pub use saved_weights::{
    BackboneFile, FrozenBackbones, SavedModel, frozen_file, model_record, read_frozen, save_record,
};
pub use unstarted::UnstartedFolder;

/// A run folder and the files `train`, `eval` and `export` keep in it, read typed: the one
/// place that knows the folder's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The resolved config the run trained with.
    pub fn config(&self) -> Result<TrainConfig> {
        TrainConfig::load(&self.path.join(CONFIG_FILE), &[])
    }

    pub fn info(&self) -> Result<RunInfo> {
        read_json(&self.path.join(RUN_FILE))
    }

    pub fn metrics(&self) -> Result<Vec<EpochMetrics>> {
        read_metrics(&self.path)
    }

    /// The loop state a resume would continue from.
    pub fn latest_state(&self) -> Option<TrainState> {
        latest_state(&self.path)
    }

    /// `eval`'s report on the test split: `None` when it was never evaluated, an error naming the file
    /// when `eval.json` is there but cannot be read.
    pub fn test_evaluation(&self) -> Result<Option<EvalReport>> {
        let path = self.path.join(EVAL_FILE);
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    /// For a folder of several runs — a blend of bags or a bag of fold models, finished or
    /// not — "blend" or "bag" and the folder of its first member; `None` for a single run.
    pub fn group(&self) -> Option<(&'static str, PathBuf)> {
        let has = |name: &str| self.path.join(name).exists();
        if has(crate::blend::BLEND_FILE) || has("bag-0") {
            Some(("blend", self.path.join("bag-0").join("fold-0")))
        } else if has(crate::bag::BAG_FILE) || has("fold-0") {
            Some(("bag", self.path.join("fold-0")))
        } else {
            None
        }
    }

    pub fn is_training(&self) -> bool {
        is_locked(&self.path)
    }

    /// Where the run stands: training, finished, stopped early, interrupted or new (against
    /// the epochs and patience of `train`, the run's `[train]` section); a bag or blend says
    /// so.
    pub fn status(&self, train: &LoopConfig) -> String {
        let blend = read_json::<BlendInfo>(&self.path.join(BLEND_FILE)).ok();
        self.status_given(train, blend.as_ref())
    }

    /// `status`, with the run's `blend.json` already read (`None`: none, or unreadable).
    pub fn status_given(&self, train: &LoopConfig, blend: Option<&BlendInfo>) -> String {
        if self.is_training() {
            return "training".into();
        }
        if let Some(blend) = blend {
            return format!("finished (blend of {})", blend.runs.len());
        }
        if self.path.join("bag-0").is_dir() {
            // A `train.blend_with` run whose bags are not all done.
            return "interrupted (blend)".into();
        }
        if let Ok(bag) = read_json::<BagInfo>(&self.path.join(BAG_FILE)) {
            let size = match bag.sets {
                1 => bag.folds.to_string(),
                sets => format!("{} × {sets} sets", bag.folds),
            };
            return match bag.calibration {
                Some(_) => format!("finished (bag of {size})"),
                None => format!("interrupted (bag of {size})"),
            };
        }
        let Some(state) = self.latest_state() else {
            return "new".into();
        };
        let patience = train.early_stopping_patience;
        if state.epoch >= train.epochs {
            "finished".into()
        } else if patience > 0 && state.epochs_without_improvement >= patience {
            "stopped early".into()
        } else {
            "interrupted".into()
        }
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
    /// Subtracted from the genre logits before the sigmoid: `pos_weight`'s ln w, which
    /// training adds to them (`LossConfig::genre_logit_shift`). Empty for runs without
    /// `pos_weight` and for runs from before the shift, whose thresholds were tuned on the
    /// unshifted probabilities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub genre_logit_shift: Vec<f32>,
    /// The working directory training ran in: the run's relative paths (the two above and
    /// its config's) are relative to it. Absent in runs from before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<PathBuf>,
}

/// Refuses a folder that cinefuse marked as another kind of output (an export, a dataset, …)
/// where a run is expected, saying what it holds; an unmarked folder passes (runs from before
/// the marker have none).
pub fn refuse_other_outputs(dir: &Path) -> Result<()> {
    use cinefuse_data::output_dir::{OutputKind, marked_kind};
    match marked_kind(dir).filter(|k| k != OutputKind::Run.name()) {
        Some(kind) => anyhow::bail!(
            "{}: holds {} written by cinefuse, not a run",
            dir.display(),
            OutputKind::describe_marker(&kind)
        ),
        None => Ok(()),
    }
}

impl RunInfo {
    /// `DIR/run.json`, checked: its rating scale maps every predicted rating back to 0–10.
    pub fn read(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(RUN_FILE);
        let info: RunInfo = read_json(&path)?;
        info.rating_scale
            .check()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(info)
    }

    /// `path` as training saw it: a relative path that does not exist from here is taken
    /// relative to the directory training ran in, so a run opens from any directory.
    pub fn locate(&self, path: &Path) -> PathBuf {
        match &self.workdir {
            Some(w) if path.is_relative() && !path.exists() => w.join(path),
            _ => path.to_path_buf(),
        }
    }

    /// Points the run's data paths, and the checkpoint and tokenizer paths of its config, at
    /// what training read (`locate`).
    pub fn locate_paths(&mut self, config: &mut TrainConfig) {
        self.dataset_dir = self.locate(&self.dataset_dir);
        self.prepared_dir = self.locate(&self.prepared_dir);
        let model = &mut config.model;
        let paths = [
            model.poster.pretrained.as_mut(),
            model.text.pretrained.as_mut(),
            config.data.preprocess.tokenizer_path.as_mut(),
        ];
        for p in paths.into_iter().flatten() {
            *p = self.locate(p);
        }
    }
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
    /// Running loss sums of the epoch in progress.
    pub partial_sums: LossSums,
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

/// An epoch's running loss sums: each loss summed over the samples seen so far. Stored as
/// `[total, genre, rating, samples]`, as state files always had it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "(f64, f64, f64, usize)", into = "(f64, f64, f64, usize)")]
pub struct LossSums {
    pub total: f64,
    pub genre: f64,
    pub rating: f64,
    pub samples: usize,
}

impl From<(f64, f64, f64, usize)> for LossSums {
    fn from((total, genre, rating, samples): (f64, f64, f64, usize)) -> Self {
        Self {
            total,
            genre,
            rating,
            samples,
        }
    }
}

impl From<LossSums> for (f64, f64, f64, usize) {
    fn from(s: LossSums) -> Self {
        (s.total, s.genre, s.rating, s.samples)
    }
}

impl LossSums {
    /// The mean total loss per sample so far.
    pub fn mean(&self) -> f64 {
        self.total / self.samples.max(1) as f64
    }
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
/// errors name the file. Weights saved without their frozen backbones
/// (`saved_weights`) load over the tensors `model` already holds, which must be `config`'s
/// checkpoints as they were. A file written before the `Branch` layout names its tensors the
/// published way (`cinefuse_model::tensor_names`) and loads through that table.
pub fn load_weights(
    model: CinefuseModel,
    file: &Path,
    config: &ModelConfig,
) -> Result<CinefuseModel> {
    // A model folder is the user's: Burn parses bytes from a checked, capped read, so a FIFO
    // named model.bpk (or one swapped in after a check) can never block its loader.
    let read = || cinefuse_data::user_file::read_capped(file, MAX_WEIGHTS_BYTES);
    let record = burn::store::ModuleRecord::from_bytes(Bytes::from_bytes_vec(read()?));
    if let Some(frozen) = read_frozen(file)? {
        let record = record.map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        saved_weights::check_frozen(&model, config, &frozen, &record, file)?;
        return model
            .try_load_record(record.allow_partial(true))
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()));
    }
    let error = match record.and_then(|record| model.clone().try_load_record(record)) {
        Ok(loaded) => return Ok(loaded),
        Err(e) => e,
    };
    // Only a file of the old layout gets here: read it again (checked and capped the same
    // way) rather than copy every file's bytes up front for this rare case.
    tensor_names::load_published_burnpack(model, Bytes::from_bytes_vec(read()?), file)
        .map_err(|_| anyhow::anyhow!("{}: {error}", file.display()))
}

/// The largest weights file read: far above any encoder cinefuse runs (MiniLM with
/// EfficientNet-B0 is about 110 MB), it bounds the read of a file that keeps growing.
pub const MAX_WEIGHTS_BYTES: u64 = 16 << 30;

/// The model that `config` and `shapes` describe, on `device`, with the weights of `file`:
/// how a run's best model, a checkpoint and every export member are read.
pub fn load_model(
    config: &ModelConfig,
    shapes: &ModelShapes,
    file: &Path,
    device: &Device,
) -> Result<CinefuseModel> {
    load_model_over(config, shapes, file, device, &mut PretrainedBase::default())
}

/// `load_model` for each of `files` (a bag's members), over one `PretrainedBase`.
pub fn load_members(
    config: &ModelConfig,
    shapes: &ModelShapes,
    files: &[PathBuf],
    device: &Device,
) -> Result<Vec<CinefuseModel>> {
    let mut base = PretrainedBase::default();
    files
        .iter()
        .map(|file| load_model_over(config, shapes, file, device, &mut base))
        .collect()
}

/// `load_model`, a model saved without its frozen backbones starting from `base`.
pub fn load_model_over(
    config: &ModelConfig,
    shapes: &ModelShapes,
    file: &Path,
    device: &Device,
    base: &mut PretrainedBase,
) -> Result<CinefuseModel> {
    // The shapes come from a file beside the weights and are allocated before those are read.
    shapes
        .check()
        .map_err(|e| anyhow::anyhow!("{}: the sizes saved with it: {e}", file.display()))?;
    // Saved without its frozen backbones: they come from the checkpoints, as when it trained.
    let model = if frozen_file(file).exists() {
        base.copy_for(config, shapes, device)
            .with_context(|| format!("{}: its frozen backbones", file.display()))?
    } else {
        config.init(shapes, device)
    };
    load_weights(model, file, config)
}

/// A model built from the pretrained checkpoints, kept while a bag's members load so that
/// they share its frozen tensors in memory instead of reading the checkpoints again and each
/// holding a copy (twenty members on MiniLM and EfficientNet held 2 GB of identical tensors).
#[derive(Default)]
pub struct PretrainedBase(Option<(String, CinefuseModel)>);

impl PretrainedBase {
    /// A copy of the model for `config` and `shapes` on `device`, built on first use (and
    /// again when those change). `valid()`, not `clone()`: a clone shares each batch norm's
    /// running statistics, which loading a member's own would then overwrite in every other.
    fn copy_for(
        &mut self,
        config: &ModelConfig,
        shapes: &ModelShapes,
        device: &Device,
    ) -> Result<CinefuseModel> {
        let key = format!(
            "{}|{}|{device:?}",
            serde_json::to_string(config)?,
            serde_json::to_string(shapes)?
        );
        if let Some((built_for, model)) = &self.0
            && *built_for == key
        {
            return Ok(model.valid());
        }
        let model = config.init_pretrained(shapes, device)?;
        let copy = model.valid();
        self.0 = Some((key, model));
        Ok(copy)
    }
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    cinefuse_data::atomic::write_json_atomic(path, value).map_err(Into::into)
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    cinefuse_data::atomic::read_json(path).map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

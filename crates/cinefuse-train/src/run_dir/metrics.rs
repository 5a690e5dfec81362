//! `metrics.jsonl`: one `EpochMetrics` line per epoch, appended whole, read back typed.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::METRICS_FILE;
use crate::config::Monitor;
use crate::metrics::nan_if_null;

/// Whether an epoch trained the per-modality heads alone (`train.pretrain_epochs`) or the whole
/// model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Pretrain,
    #[default]
    Train,
}

/// One epoch's line of `metrics.jsonl`: training losses (means over the epoch's samples), the
/// validation metrics at flat 0.5 thresholds, and timing. A value JSON cannot hold (NaN, e.g.
/// R² without rated movies) is written as `null` and read back as NaN.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub step: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub lr: f64,
    pub phase: Phase,
    #[serde(deserialize_with = "nan_if_null")]
    pub train_loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub train_genre_loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub train_rating_loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub val_loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub val_genre_loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub val_rating_loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub val_micro_f1: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub val_macro_f1: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub val_samples_f1: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub val_map: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub val_top1: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub val_mae: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub val_rmse: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub val_r2: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub val_within_10pct: f64,
    /// The whole epoch: the training pass and validation.
    #[serde(deserialize_with = "nan_if_null")]
    pub epoch_seconds: f64,
    /// The training pass alone (absent in lines written before it was recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_seconds: Option<f64>,
    /// Training samples per second of the training pass, comparable with `cinefuse bench`
    /// (lines without `train_seconds` divided by the whole epoch, validation included).
    #[serde(deserialize_with = "nan_if_null")]
    pub samples_per_sec: f64,
    /// The f16 loss scale at the end of the epoch (`train.precision = "f16"` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// f16 steps skipped so far because their gradients overflowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_steps: Option<usize>,
}

impl EpochMetrics {
    /// The value `train.monitor` watches.
    pub fn monitored(&self, monitor: Monitor) -> f64 {
        match monitor {
            Monitor::ValLoss => self.val_loss,
            Monitor::ValMicroF1 => self.val_micro_f1,
            Monitor::ValMacroF1 => self.val_macro_f1,
            Monitor::ValTop1 => self.val_top1,
            Monitor::ValMae => self.val_mae,
        }
    }

    /// Whether this epoch is better than `other` by `monitor` (ties keep the earlier one).
    pub fn better_than(&self, other: &Self, monitor: Monitor) -> bool {
        let (a, b) = (self.monitored(monitor), other.monitored(monitor));
        if monitor.higher_is_better() {
            a > b
        } else {
            a < b
        }
    }

    /// Every number of the line but the epoch and step counters, by its name in the file (what
    /// TensorBoard gets).
    pub fn scalars(&self) -> Vec<(String, f64)> {
        let value = serde_json::to_value(self).unwrap_or_default();
        value
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| !matches!(k.as_str(), "epoch" | "step"))
            .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
            .collect()
    }
}

/// The best epoch of `history` by `monitor`, skipping epochs whose value is NaN.
pub fn best_epoch(history: &[EpochMetrics], monitor: Monitor) -> Option<&EpochMetrics> {
    history
        .iter()
        .filter(|m| !m.monitored(monitor).is_nan())
        .fold(None, |best: Option<&EpochMetrics>, m| match best {
            Some(b) if !m.better_than(b, monitor) => Some(b),
            _ => Some(m),
        })
}

/// Appends one line to `metrics.jsonl` (flushed and synced: a line is whole or absent).
pub fn append_metrics(run_dir: &Path, line: &EpochMetrics) -> Result<()> {
    let path = run_dir.join(METRICS_FILE);
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // One write of the whole line: `writeln!` may write the text and the newline apart, and a
    // kill in between would join this line to the next.
    let mut text = serde_json::to_string(line)?;
    text.push('\n');
    f.write_all(text.as_bytes())?;
    f.sync_data()?;
    Ok(())
}

/// Every line of a run's `metrics.jsonl` (none when it has no file yet); a line that is not
/// an epoch's metrics is an error naming the file and line, except a last line without its
/// newline: one being written (a live run) or cut short by a kill, left out.
pub fn read_metrics(run_dir: &Path) -> Result<Vec<EpochMetrics>> {
    let path = run_dir.join(METRICS_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = cinefuse_data::user_file::read_text_capped(
        &path,
        cinefuse_data::user_file::MAX_JSONL_BYTES,
    )?;
    let unfinished = (!text.ends_with('\n')).then(|| text.lines().count());
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .filter_map(|(i, l)| match serde_json::from_str(l) {
            Ok(m) => Some(Ok(m)),
            Err(_) if unfinished == Some(i + 1) => None,
            Err(e) => Some(Err(anyhow::anyhow!(
                "{}:{}: not an epoch's metrics: {e}",
                path.display(),
                i + 1
            ))),
        })
        .collect()
}

/// Drops metric lines of epochs after `epoch` (written after the checkpoint a run resumes from).
pub fn truncate_metrics(run_dir: &Path, epoch: usize) -> Result<()> {
    let mut kept = String::new();
    for line in read_metrics(run_dir)?.iter().filter(|m| m.epoch <= epoch) {
        kept.push_str(&serde_json::to_string(line)?);
        kept.push('\n');
    }
    cinefuse_data::atomic::write_atomic(&run_dir.join(METRICS_FILE), kept.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(e: usize, val_loss: f64) -> EpochMetrics {
        EpochMetrics {
            epoch: e,
            val_loss,
            val_r2: f64::NAN,
            ..Default::default()
        }
    }

    #[test]
    fn lines_round_trip_with_nan_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        for e in 1..=3 {
            append_metrics(dir.path(), &epoch(e, 1.0 / e as f64)).unwrap();
        }
        let text = fs::read_to_string(dir.path().join(METRICS_FILE)).unwrap();
        assert!(text.contains("\"val_r2\":null"), "{text}");
        assert!(!text.contains("loss_scale"), "absent outside f16: {text}");
        let back = read_metrics(dir.path()).unwrap();
        assert_eq!(back.len(), 3);
        assert!(back[2].val_r2.is_nan() && back[2].val_loss == 1.0 / 3.0);
        truncate_metrics(dir.path(), 2).unwrap();
        let m = read_metrics(dir.path()).unwrap();
        assert_eq!(m.iter().map(|m| m.epoch).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn the_training_time_round_trips_and_older_lines_lack_it() {
        let dir = tempfile::tempdir().unwrap();
        let timed = EpochMetrics {
            train_seconds: Some(2.5),
            ..epoch(1, 0.5)
        };
        append_metrics(dir.path(), &timed).unwrap();
        let older = r#"{"epoch":2,"step":4,"epoch_seconds":3.0,"samples_per_sec":10.0}"#;
        let path = dir.path().join(METRICS_FILE);
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, format!("{text}{older}\n")).unwrap();
        let back = read_metrics(dir.path()).unwrap();
        assert_eq!(back[0].train_seconds, Some(2.5));
        assert_eq!(back[1].train_seconds, None);
        assert!(!back[1].scalars().iter().any(|(k, _)| k == "train_seconds"));
        assert!(back[0].scalars().contains(&("train_seconds".into(), 2.5)));
    }

    #[test]
    fn the_best_epoch_follows_the_monitor_and_a_bad_line_is_named() {
        let history = [
            epoch(1, 0.9),
            epoch(2, 0.5),
            epoch(3, f64::NAN),
            epoch(4, 0.5),
        ];
        assert_eq!(best_epoch(&history, Monitor::ValLoss).unwrap().epoch, 2);
        let mut f1 = history.clone();
        f1[0].val_micro_f1 = 0.7;
        assert_eq!(best_epoch(&f1, Monitor::ValMicroF1).unwrap().epoch, 1);
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(METRICS_FILE),
            "{\"epoch\": 1}\n{\"epoch\": \"two\"}\n",
        )
        .unwrap();
        let e = format!("{:#}", read_metrics(dir.path()).unwrap_err());
        assert!(e.contains("metrics.jsonl:2"), "{e}");
    }

    #[test]
    fn a_last_line_without_its_newline_is_left_out_only_when_it_does_not_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        append_metrics(dir.path(), &epoch(1, 0.5)).unwrap();
        let whole = fs::read_to_string(&path).unwrap();
        // Being written (or cut short by a kill): left out, the rest read.
        fs::write(&path, format!("{whole}{{\"epoch\": 2, \"val_lo")).unwrap();
        assert_eq!(read_metrics(dir.path()).unwrap().len(), 1);
        // Complete but for its newline: read.
        fs::write(&path, format!("{whole}{}", whole.trim_end())).unwrap();
        assert_eq!(read_metrics(dir.path()).unwrap().len(), 2);
        // The same broken text with its newline is damage, and named.
        fs::write(&path, format!("{whole}{{\"epoch\": 2, \"val_lo\n")).unwrap();
        let e = format!("{:#}", read_metrics(dir.path()).unwrap_err());
        assert!(e.contains("metrics.jsonl:2"), "{e}");
    }
}

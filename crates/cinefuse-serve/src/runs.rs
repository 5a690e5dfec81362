//! The runs under a runs folder: what each is (status, start, backend, best and test metrics),
//! its learning curves and its config, read from the files `train` and `eval` write.

use std::path::{Path, PathBuf};

use cinefuse_train::run_dir::{
    CHECKPOINTS_DIR, CONFIG_FILE, LOCK_FILE, METRICS_FILE, RUN_FILE, RunInfo, TrainState,
};
use serde::Serialize;
use serde_json::Value;

/// One run, as the runs page and `GET /api/runs` show it.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub id: String,
    pub name: String,
    /// training, finished, stopped early, interrupted, or new (nothing trained yet).
    pub status: String,
    pub started_unix: u64,
    pub backend: String,
    pub epochs: usize,
    pub best_epoch: Option<usize>,
    /// Validation metrics of the best epoch (from `metrics.jsonl`).
    pub best: Value,
    /// Test metrics, when the run was evaluated (`eval.json`).
    pub test: Value,
}

/// A run id is one folder name under the runs folder: no separators, no `..`, nothing hidden.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && !id.starts_with('.') && id.len() <= 200 && !id.contains(['/', '\\', '\0'])
}

/// The folder of run `id`, when it is one (a symbolic link leaving `runs` is not).
pub fn run_dir(runs: &Path, id: &str) -> Option<PathBuf> {
    if !valid_id(id) {
        return None;
    }
    let dir = cinefuse_data::paths::resolve_inside(runs, id).ok()?;
    dir.join(CONFIG_FILE).is_file().then_some(dir)
}

/// Every line of a run's `metrics.jsonl` (unreadable lines are left out).
pub fn metrics(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join(METRICS_FILE))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Whether a process holds the run's lock right now.
fn is_training(dir: &Path) -> bool {
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join(LOCK_FILE))
    else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(_) => true,
    }
}

fn latest_state(dir: &Path) -> Option<TrainState> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir.join(CHECKPOINTS_DIR))
        .ok()?
        .flatten()
        .map(|e| e.path().join("state.json"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    read_json(found.last()?)
}

fn status(dir: &Path, configured_epochs: usize, patience: usize) -> String {
    if is_training(dir) {
        return "training".into();
    }
    if let Some(blend) =
        read_json::<cinefuse_train::blend::BlendInfo>(&dir.join(cinefuse_train::blend::BLEND_FILE))
    {
        return format!("finished (blend of {})", blend.runs.len());
    }
    if dir.join("bag-0").is_dir() {
        // A `train.blend_with` run whose bags are not all done.
        return "interrupted (blend)".into();
    }
    if let Some(bag) =
        read_json::<cinefuse_train::bag::BagInfo>(&dir.join(cinefuse_train::bag::BAG_FILE))
    {
        return match bag.calibration {
            Some(_) => format!("finished (bag of {})", bag.folds),
            None => format!("interrupted (bag of {})", bag.folds),
        };
    }
    let Some(state) = latest_state(dir) else {
        return "new".into();
    };
    if state.epoch >= configured_epochs {
        "finished".into()
    } else if patience > 0 && state.epochs_without_improvement >= patience {
        "stopped early".into()
    } else {
        "interrupted".into()
    }
}

/// The summary of the run in `dir`.
pub fn summarize(id: &str, dir: &Path) -> RunSummary {
    let config: toml::Table = std::fs::read_to_string(dir.join(CONFIG_FILE))
        .ok()
        .and_then(|t| toml::from_str(&t).ok())
        .unwrap_or_default();
    let setting = |section: &str, key: &str| {
        config
            .get(section)
            .and_then(|s| s.get(key))
            .and_then(toml::Value::as_integer)
            .unwrap_or(0) as usize
    };
    let (epochs, patience) = (
        setting("train", "epochs"),
        setting("train", "early_stopping_patience"),
    );
    let info: Option<RunInfo> = read_json(&dir.join(RUN_FILE));
    let history = metrics(dir);
    let monitor = config
        .get("train")
        .and_then(|t| t.get("monitor"))
        .and_then(toml::Value::as_str)
        .unwrap_or("val_loss")
        .to_string();
    let lower_is_better = monitor.ends_with("loss") || monitor.ends_with("mae");
    let best = history
        .iter()
        .filter(|h| h[&monitor].is_number())
        .min_by(|a, b| {
            let (x, y) = (
                a[&monitor].as_f64().unwrap_or(0.0),
                b[&monitor].as_f64().unwrap_or(0.0),
            );
            if lower_is_better {
                x.total_cmp(&y)
            } else {
                y.total_cmp(&x)
            }
        })
        .cloned();
    let eval: Option<Value> = read_json(&dir.join("eval.json"));
    let test = eval.map_or(Value::Null, |e| {
        serde_json::json!({
            "micro_f1": e["genres"]["micro_f1"], "macro_f1": e["genres"]["macro_f1"],
            "top1": e["genres"]["top1"], "map": e["genres"]["map"], "mae": e["rating"]["mae"],
            "within_10pct": e["rating"]["within_10pct"],
        })
    });
    RunSummary {
        id: id.to_string(),
        name: info
            .as_ref()
            .map_or_else(|| id.to_string(), |i| i.name.clone()),
        status: status(dir, epochs, patience),
        started_unix: info.as_ref().map_or(0, |i| i.started_unix),
        backend: info.map(|i| i.backend).unwrap_or_default(),
        epochs: history.len(),
        best_epoch: best
            .as_ref()
            .and_then(|b| b["epoch"].as_u64())
            .map(|e| e as usize),
        best: best.unwrap_or(Value::Null),
        test,
    }
}

/// Every run under `runs`, newest first.
pub fn list(runs: &Path) -> Vec<RunSummary> {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return Vec::new();
    };
    let mut out: Vec<RunSummary> = entries
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().to_string_lossy().into_owned();
            run_dir(runs, &id).map(|dir| summarize(&id, &dir))
        })
        .collect();
    out.sort_by(|a, b| {
        b.started_unix
            .cmp(&a.started_unix)
            .then_with(|| a.id.cmp(&b.id))
    });
    out
}

/// The keys (dotted) whose values differ between the configs of several runs, with each run's
/// value (missing keys shown as "–").
pub fn config_diff(dirs: &[PathBuf]) -> Vec<(String, Vec<String>)> {
    let flat: Vec<Vec<(String, String)>> = dirs
        .iter()
        .map(|d| {
            let table: toml::Table = std::fs::read_to_string(d.join(CONFIG_FILE))
                .ok()
                .and_then(|t| toml::from_str(&t).ok())
                .unwrap_or_default();
            let mut out = Vec::new();
            flatten("", &toml::Value::Table(table), &mut out);
            out
        })
        .collect();
    let mut keys: Vec<&String> = flat.iter().flatten().map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let values: Vec<String> = flat
                .iter()
                .map(|f| {
                    f.iter()
                        .find(|(key, _)| key == k)
                        .map_or("–".into(), |(_, v)| v.clone())
                })
                .collect();
            values
                .windows(2)
                .any(|w| w[0] != w[1])
                .then(|| (k.clone(), values))
        })
        .collect()
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut Vec<(String, String)>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

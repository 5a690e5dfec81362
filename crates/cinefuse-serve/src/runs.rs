//! The runs under a runs folder: what each is (status, start, backend, best and test metrics),
//! its learning curves and its config, read from the files `train` and `eval` write.

use std::path::{Path, PathBuf};

use cinefuse_train::bag::read_bag;
use cinefuse_train::blend::{BLEND_FILE, BlendInfo};
use cinefuse_train::bootstrap::Confidence;
use cinefuse_train::metrics::SplitScores;
use cinefuse_train::run_dir::{CONFIG_FILE, EpochMetrics, RunDir, best_epoch, read_json};
use serde::Serialize;

/// One run, as the runs page and `GET /api/runs` show it.
#[derive(Debug, Clone, Serialize)]
pub struct RunOverview {
    pub id: String,
    pub name: String,
    /// training, finished, stopped early, interrupted, or new (nothing trained yet); a bag or
    /// blend says so ("finished (blend of 3)").
    pub status: String,
    /// The status's first word, for the page's style (`status-finished`).
    pub status_kind: String,
    /// A bag's or blend's member whose start, backend and learning curves are shown (the group
    /// itself has none), relative to the run; `None` for a single run.
    pub curves_of: Option<String>,
    pub started_unix: u64,
    pub backend: String,
    pub epochs: usize,
    pub best_epoch: Option<usize>,
    /// Validation metrics of the best epoch by the run's `train.monitor`.
    pub best: Option<EpochMetrics>,
    /// A bag's or blend's out-of-fold scores (every train + validation movie, scored by the
    /// member that did not train on it): what the runs table shows as its validation scores.
    pub out_of_fold: Option<SplitScores>,
    /// Test metrics, when the run was evaluated (`eval.json`).
    pub test: Option<SplitScores>,
    /// Their 95 % bootstrap intervals, when that evaluation drew them.
    pub test_confidence: Option<Confidence>,
    /// Why `eval.json` could not be read, when it is there but damaged.
    pub test_error: Option<String>,
}

/// A run id is one folder name under the runs folder: no separators, no `..`, nothing hidden.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && !id.starts_with('.') && id.len() <= 200 && !id.contains(['/', '\\', '\0'])
}

/// The folder of run `id`, when it is one (a symbolic link leaving `runs` is not): a run
/// `train` wrote has its config, a blend `cinefuse ensemble` wrote has its blend.json.
pub fn run_dir(runs: &Path, id: &str) -> Option<RunDir> {
    if !valid_id(id) {
        return None;
    }
    let dir = cinefuse_data::paths::resolve_inside(runs, id).ok()?;
    let is_run = dir.join(CONFIG_FILE).is_file() || dir.join(BLEND_FILE).is_file();
    is_run.then(|| RunDir::new(dir))
}

/// Every epoch of a run's `metrics.jsonl` (a bag's or blend's first member's), or why it
/// cannot be read (the file and line).
pub fn metrics(run: &RunDir) -> Result<Vec<EpochMetrics>, String> {
    // Only a blend without its bags inside needs its blend.json to find them.
    let elsewhere = run.group().is_some_and(|(_, member)| !member.exists());
    let blend = elsewhere.then(|| blend_of(run)).flatten();
    let member = trained(run, blend.as_ref()).0;
    member.metrics().map_err(|e| format!("{e:#}"))
}

/// The run's `blend.json`, when it is a blend (read at most once per run and request: a
/// blend's is large).
fn blend_of(run: &RunDir) -> Option<BlendInfo> {
    read_json::<BlendInfo>(&run.path().join(BLEND_FILE)).ok()
}

/// The folder whose `run.json` and curves stand for `run`: itself, or a bag's or blend's first
/// member, with its path relative to the run (to the runs folder for a blend's bag outside it).
fn trained(run: &RunDir, blend: Option<&BlendInfo>) -> (RunDir, Option<String>) {
    match run.group() {
        Some((_, member))
            if !member.exists()
                && let Some((bag, shown)) = blend.and_then(|b| first_bag_beside(run, b)) =>
        {
            (RunDir::new(bag), Some(shown))
        }
        // A member that a symbolic link takes out of the runs folder is not read.
        Some((_, member)) if stays_inside(&member, run.path().parent().unwrap_or(run.path())) => {
            let shown = member.strip_prefix(run.path()).unwrap_or(&member);
            let shown = shown.display().to_string();
            (RunDir::new(member), Some(shown))
        }
        _ => (RunDir::new(run.path()), None),
    }
}

/// Whether `path` is missing or resolves inside `root` (symbolic links followed).
fn stays_inside(path: &Path, root: &Path) -> bool {
    match (path.canonicalize(), root.canonicalize()) {
        (Ok(p), Ok(r)) => p.starts_with(r),
        (Err(_), _) => true,
        _ => false,
    }
}

/// A blend `cinefuse ensemble` wrote holds no bags: they stay where they were trained. Its
/// first bag's first member and that path relative to the runs folder, when the bag lies in
/// the same runs folder as the blend (the server reads nothing outside it).
fn first_bag_beside(run: &RunDir, info: &BlendInfo) -> Option<(PathBuf, String)> {
    let root = run.path().parent()?.canonicalize().ok()?;
    let member = info.runs.first()?.join("fold-0").canonicalize().ok()?;
    let shown = member.strip_prefix(&root).ok()?.display().to_string();
    Some((member, shown))
}

/// The overview of `run`.
pub fn summarize(id: &str, run: &RunDir) -> RunOverview {
    // Read once; a config that no longer loads shows the defaults.
    let train = run.config().map(|c| c.train).unwrap_or_default();
    let blend = blend_of(run);
    let (member, curves_of) = trained(run, blend.as_ref());
    let info = member.info().ok();
    // The overview shows what it can; the run's page names a damaged metrics file.
    let history = member.metrics().unwrap_or_default();
    let best = best_epoch(&history, train.monitor).cloned();
    let (evaluation, test_error) = match run.test_evaluation() {
        Ok(e) => (e, None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let test = evaluation
        .as_ref()
        .map(|e| SplitScores::of(&e.genres, &e.rating));
    let status = run.status_given(&train, blend.as_ref());
    RunOverview {
        id: id.to_string(),
        name: info
            .as_ref()
            .map_or_else(|| id.to_string(), |i| i.name.clone()),
        status_kind: status_kind(&status),
        status,
        curves_of,
        started_unix: info.as_ref().map_or(0, |i| i.started_unix),
        backend: info.map(|i| i.backend).unwrap_or_default(),
        epochs: history.len(),
        best_epoch: best.as_ref().map(|b| b.epoch),
        best,
        out_of_fold: out_of_fold(run, blend.as_ref()),
        test,
        test_confidence: evaluation.and_then(|e| e.confidence),
        test_error,
    }
}

/// The out-of-fold scores a finished blend or calibrated bag records; `None` otherwise.
fn out_of_fold(run: &RunDir, blend: Option<&BlendInfo>) -> Option<SplitScores> {
    let oof = match blend {
        Some(b) => b.calibration.out_of_fold.clone(),
        None => read_bag(run.path()).ok()?.calibration?.out_of_fold,
    };
    Some(SplitScores::of(&oof.genres, &oof.rating))
}

/// "finished (blend of 3)" → "finished": a class name the page can style.
fn status_kind(status: &str) -> String {
    status.split_whitespace().next().unwrap_or("").to_string()
}

/// Every run under `runs`, newest first.
pub fn list(runs: &Path) -> Vec<RunOverview> {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return Vec::new();
    };
    let mut out: Vec<RunOverview> = entries
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
pub fn config_diff(dirs: &[RunDir]) -> Vec<(String, Vec<String>)> {
    let flat: Vec<Vec<(String, String)>> = dirs
        .iter()
        .map(|d| {
            let table: toml::Table = read_run_file(&d.path().join(CONFIG_FILE))
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

/// A text file of a run folder for a page: `None` unless it is a regular file within the size
/// cap (a FIFO in a runs folder must not hang the request), else its text.
pub fn read_run_file(path: &Path) -> Option<String> {
    let cap = cinefuse_data::user_file::MAX_STATE_JSON_BYTES;
    cinefuse_data::user_file::read_text_capped(path, cap).ok()
}

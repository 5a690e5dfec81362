//! The exported models under a models folder, each loaded once (at start-up in the
//! background, or on first use), warmed up with one prediction, and served by its own batching
//! worker (`batcher.rs`). Loading never runs on an async thread and never holds the lock that
//! lookups and `/health` take.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use cinefuse_train::config::BackendKind;
use cinefuse_train::export::MANIFEST_FILE;
use cinefuse_train::predictor::{Predictor, movie_from_json};
use serde::Serialize;

use crate::batcher::{BatchLimits, BatchQueue};

/// A loaded model and the queue of its worker.
pub struct Served {
    pub predictor: Arc<Predictor>,
    pub queue: BatchQueue,
}

/// What `/health` says of one model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelHealth {
    pub id: String,
    /// "ready", "loading", "not loaded" or "failed: …".
    pub state: String,
}

pub struct Models {
    dir: PathBuf,
    limits: BatchLimits,
    loaded: Mutex<HashMap<String, Arc<Served>>>,
    failed: Mutex<HashMap<String, String>>,
    /// The model being loaded now (loads run one at a time, outside `loaded`'s lock).
    loading: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Models {
    pub fn new(dir: &Path, limits: BatchLimits) -> Self {
        Self {
            dir: dir.to_path_buf(),
            limits,
            loaded: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            loading: Mutex::new(None),
        }
    }

    /// Every model's state, for `/health`.
    pub fn health(&self) -> Vec<ModelHealth> {
        let loading = lock(&self.loading).clone();
        self.list()
            .into_iter()
            .map(|id| {
                let state = if lock(&self.loaded).contains_key(&id) {
                    "ready".to_string()
                } else if let Some(e) = lock(&self.failed).get(&id) {
                    format!("failed: {e}")
                } else if loading.as_deref() == Some(id.as_str()) {
                    "loading".to_string()
                } else {
                    "not loaded".to_string()
                };
                ModelHealth { id, state }
            })
            .collect()
    }

    /// Model `id` (or the only one) if it is loaded already; never loads (so never blocks).
    pub fn ready(&self, id: Option<&str>) -> Option<Arc<Served>> {
        let id = self.resolve(id).ok()?;
        lock(&self.loaded).get(&id).cloned()
    }

    /// `id`, or the only model's id when `id` is `None` and there is exactly one.
    fn resolve(&self, id: Option<&str>) -> Result<String, String> {
        match id {
            Some(id) => Ok(id.to_string()),
            None => match self.list().as_slice() {
                [only] => Ok(only.clone()),
                [] => Err(format!("no exported models in {}", self.dir.display())),
                many => Err(format!("several models; name one of: {}", many.join(", "))),
            },
        }
    }

    /// The entries of the models folder that are not served, each with why: a model linked in
    /// from elsewhere or a folder without a manifest is said, not silently missing. Hidden
    /// entries (an export being written) are left out.
    pub fn skipped(&self) -> Vec<(String, String)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<(String, String)> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|id| !id.starts_with('.'))
            .filter_map(|id| self.model_dir_or_why(&id).err().map(|why| (id, why)))
            .collect();
        out.sort();
        out
    }

    /// Loads every model (call on a thread of its own: it blocks).
    pub fn load_all(&self) {
        for (id, why) in self.skipped() {
            eprintln!("{}: skipped: {why}", self.dir.join(id).display());
        }
        for id in self.list() {
            if let Err(e) = self.get(Some(&id)) {
                eprintln!("model {id}: {e}");
            }
        }
    }

    /// The folder of model `id`, when it is an export inside the models folder.
    fn model_dir(&self, id: &str) -> Option<PathBuf> {
        self.model_dir_or_why(id).ok()
    }

    /// The folder of model `id`, or why that entry of the models folder is not served.
    fn model_dir_or_why(&self, id: &str) -> Result<PathBuf, String> {
        if !crate::runs::valid_id(id) {
            return Err("not a name a model can have".into());
        }
        let dir = cinefuse_data::paths::resolve_inside(&self.dir, id).map_err(|_| {
            "a symbolic link out of the models folder (serve reads only what is inside it: \
             copy the export in)"
                .to_string()
        })?;
        match dir.join(MANIFEST_FILE).is_file() {
            true => Ok(dir),
            false => Err(format!("no {MANIFEST_FILE}: not an exported model")),
        }
    }

    /// The ids of every exported model, sorted.
    pub fn list(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|id| self.model_dir(id).is_some())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Model `id` (or the only model, when `id` is `None` and there is exactly one), loaded
    /// and warmed up on first use. Blocks while loading: call it off the async threads.
    pub fn get(&self, id: Option<&str>) -> Result<(String, Arc<Served>), String> {
        let id = self.resolve(id)?;
        if let Some(s) = lock(&self.loaded).get(&id) {
            return Ok((id, s.clone()));
        }
        let dir = self.model_dir(&id).ok_or_else(|| {
            format!(
                "no model {id:?} (the models are: {})",
                self.list().join(", ")
            )
        })?;
        let mut loading = lock(&self.loading);
        // Another request may have loaded it while this one waited.
        if let Some(s) = lock(&self.loaded).get(&id) {
            return Ok((id, s.clone()));
        }
        *loading = Some(id.clone());
        let served = self.load(&dir);
        *loading = None;
        match served {
            Ok(s) => {
                let s = Arc::new(s);
                lock(&self.failed).remove(&id);
                lock(&self.loaded).insert(id.clone(), s.clone());
                Ok((id, s))
            }
            Err(e) => {
                lock(&self.failed).insert(id.clone(), e.clone());
                Err(e)
            }
        }
    }

    fn load(&self, dir: &Path) -> Result<Served, String> {
        let predictor =
            Arc::new(Predictor::load(dir, Some(BackendKind::Flex)).map_err(|e| format!("{e:#}"))?);
        warm_up(&predictor)?;
        let queue = BatchQueue::start(predictor.clone(), self.limits)
            .map_err(|e| format!("cannot start the model's worker: {e}"))?;
        Ok(Served { predictor, queue })
    }
}

/// One prediction before the first request: the first pass allocates and tunes what later
/// ones reuse.
fn warm_up(p: &Predictor) -> Result<(), String> {
    let movie = movie_from_json(
        r#"{"title": "warm-up", "plot": "warm-up", "year": 2000}"#,
        "warm-up",
    )
    .map_err(|e| format!("{e:#}"))?;
    let input = p
        .item_with_poster_bytes(&movie, None)
        .map_err(|e| format!("warm-up: {e:#}"))?;
    p.predict(&[input]);
    Ok(())
}

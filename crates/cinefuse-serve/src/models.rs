//! The exported models under a models folder, each loaded once, on first use, and shared by
//! every request; predictions on one model run concurrently (a forward pass borrows it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cinefuse_train::config::BackendKind;
use cinefuse_train::export::MANIFEST_FILE;
use cinefuse_train::predict::Predictor;

pub struct Models {
    dir: PathBuf,
    loaded: Mutex<HashMap<String, Arc<Predictor>>>,
}

impl Models {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The folder of model `id`, when it is an export inside the models folder.
    fn model_dir(&self, id: &str) -> Option<PathBuf> {
        if !crate::runs::valid_id(id) {
            return None;
        }
        let dir = cinefuse_data::paths::resolve_inside(&self.dir, id).ok()?;
        dir.join(MANIFEST_FILE).is_file().then_some(dir)
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

    /// Model `id` (or the only model, when `id` is `None` and there is exactly one).
    pub fn get(&self, id: Option<&str>) -> Result<(String, Arc<Predictor>), String> {
        let id = match id {
            Some(id) => id.to_string(),
            None => match self.list().as_slice() {
                [only] => only.clone(),
                [] => return Err(format!("no exported models in {}", self.dir.display())),
                many => return Err(format!("several models; name one of: {}", many.join(", "))),
            },
        };
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = loaded.get(&id) {
            return Ok((id, p.clone()));
        }
        let dir = self.model_dir(&id).ok_or_else(|| {
            format!(
                "no model {id:?} (the models are: {})",
                self.list().join(", ")
            )
        })?;
        let predictor =
            Predictor::load(&dir, Some(BackendKind::Flex)).map_err(|e| format!("{e:#}"))?;
        let shared = Arc::new(predictor);
        loaded.insert(id.clone(), shared.clone());
        Ok((id, shared))
    }
}

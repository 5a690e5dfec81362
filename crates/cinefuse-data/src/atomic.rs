//! Atomic file writes: write to a temporary sibling, fsync, then rename over the target,
//! so a crash or Ctrl-C never leaves a half-written file behind.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::DataError;
use crate::output_dir::{OutputKind, check_output, write_marker};

fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to `path` atomically, creating parent directories.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    }
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(DataError::io(path, e));
    }
    Ok(())
}

/// Serializes `value` as pretty JSON and writes it atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), DataError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| DataError::file(path, format!("cannot serialize: {e}")))?;
    write_atomic(path, &bytes)
}

/// Reads and parses a JSON file, naming the file in the error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, DataError> {
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| DataError::file(path, format!("line {}: {}", e.line(), e)))
}

/// A directory that is built under a temporary name and renamed into place when complete.
/// Dropping it without `commit` removes the partial directory. `new` refuses targets that
/// `check_output` refuses, so only new, empty or cinefuse's own folders are ever replaced.
pub struct StagingDir {
    tmp: PathBuf,
    target: PathBuf,
    committed: bool,
}

fn hidden_sibling(target: &Path, suffix: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    target.with_file_name(format!(".{name}.{suffix}-{}", std::process::id()))
}

impl StagingDir {
    pub fn new(target: &Path, kind: OutputKind, inputs: &[&Path]) -> Result<Self, DataError> {
        check_output(target, kind, inputs)?;
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
        }
        let tmp = hidden_sibling(target, "partial");
        if tmp.exists() {
            // Left by an earlier process with our pid that was killed: ours by its name.
            fs::remove_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        }
        fs::create_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        write_marker(&tmp, kind)?;
        Ok(Self {
            tmp,
            target: target.to_path_buf(),
            committed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Replaces the target with the staged directory. The old target is moved aside first and
    /// removed only once the new one is in place, so a crash leaves one of them whole.
    pub fn commit(mut self) -> Result<(), DataError> {
        let aside = hidden_sibling(&self.target, "old");
        let had_target = self.target.exists();
        if had_target {
            fs::rename(&self.target, &aside).map_err(|e| DataError::io(&self.target, e))?;
        }
        if let Err(e) = fs::rename(&self.tmp, &self.target) {
            if had_target {
                let _ = fs::rename(&aside, &self.target);
            }
            return Err(DataError::io(&self.target, e));
        }
        self.committed = true;
        if had_target {
            fs::remove_dir_all(&aside).map_err(|e| DataError::io(&aside, e))?;
        }
        Ok(())
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

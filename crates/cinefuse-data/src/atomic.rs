//! Atomic file writes: write to a temporary sibling, fsync, then rename over the target,
//! so a crash or Ctrl-C never leaves a half-written file behind.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::DataError;

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

/// Reads and parses a JSON file, naming the file in the error. Run and prepared folders are
/// named by users, so the file must be regular (a FIFO would block) and bounded.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, DataError> {
    let bytes = crate::user_file::read_capped(path, crate::user_file::MAX_STATE_JSON_BYTES)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| DataError::file(path, format!("line {}: {}", e.line(), e)))
}

pub use crate::staging::StagingDir;

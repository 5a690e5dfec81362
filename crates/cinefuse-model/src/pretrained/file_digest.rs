//! SHA-256 of the files an embedding-cache fingerprint covers (checkpoint weights, the prepared
//! posters), remembered per process: a blend opens the same files once per member, and the
//! posters of 2,959 movies alone are 445 MB.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::load::{PretrainedError, user_file_error};

/// What identifies a file's content without reading it: length, modification time and, on
/// Unix, device and inode (a file replaced by a rename is another inode).
type Stamp = (u64, Option<SystemTime>, u64, u64);

static DIGESTS: Mutex<Option<HashMap<PathBuf, (Stamp, String)>>> = Mutex::new(None);

/// SHA-256 of a file's bytes, hex. Hashed again whenever its stamp changes.
pub fn file_sha256(path: &Path) -> Result<String, PretrainedError> {
    // Regular files only: hashing a FIFO would block, a device would never end.
    let file =
        cinefuse_data::user_file::open_regular(path).map_err(|e| user_file_error(path, e))?;
    let key = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let stamp = file.metadata().ok().map(|m| stamp_of(&m));
    if let Some(s) = stamp
        && let Some((seen, digest)) = lock().get_or_insert_with(HashMap::new).get(&key)
        && *seen == s
    {
        return Ok(digest.clone());
    }
    let digest = hash(file, path)?;
    if let Some(s) = stamp {
        lock()
            .get_or_insert_with(HashMap::new)
            .insert(key, (s, digest.clone()));
    }
    Ok(digest)
}

fn hash(mut file: std::fs::File, path: &Path) -> Result<String, PretrainedError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| PretrainedError::Io {
            path: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?;
        if n == 0 {
            return Ok(format!("{:x}", hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

#[cfg(unix)]
fn stamp_of(m: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    (m.len(), m.modified().ok(), m.dev(), m.ino())
}

#[cfg(not(unix))]
fn stamp_of(m: &std::fs::Metadata) -> Stamp {
    (m.len(), m.modified().ok(), 0, 0)
}

/// A poisoned lock only means another thread panicked mid-insert; the map is still usable.
fn lock() -> std::sync::MutexGuard<'static, Option<HashMap<PathBuf, (Stamp, String)>>> {
    DIGESTS.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.bin");
        std::fs::write(&path, b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(file_sha256(&path).unwrap(), abc);
        assert_eq!(file_sha256(&path).unwrap(), abc);
        // Replaced by a rename (as atomic writes do): another inode, so hashed again even
        // when length and modification time could match.
        let tmp = dir.path().join("w.tmp");
        std::fs::write(&tmp, b"abd").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_ne!(file_sha256(&path).unwrap(), abc);
    }
}

//! Opening the files a user names: only regular files, and never more than a stated size.
//!
//! A FIFO blocks its reader until a writer appears, and `/dev/zero` never ends; both must be
//! refused before a single byte is read. The file is opened without blocking and its type is
//! checked on the open handle, so it cannot be swapped for a FIFO between a check and the
//! open.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::DataError;

/// Size caps for the files cinefuse reads whole.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
pub const MAX_MOVIE_JSON_BYTES: u64 = 16 << 20;
pub const MAX_JSONL_BYTES: u64 = 1 << 30;
/// The JSON files of run, bag and prepared folders (the largest, `eval_predictions.json`, holds
/// one row per movie).
pub const MAX_STATE_JSON_BYTES: u64 = 256 << 20;
/// Hugging Face tokenizers run from under 1 MB (MiniLM) to about 20 MB (large multilingual
/// vocabularies).
pub const MAX_TOKENIZER_BYTES: u64 = 64 << 20;

/// Opens `path` for reading if it is a regular file (after following links).
pub fn open_regular(path: &Path) -> Result<File, DataError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Opening a FIFO for reading would block until a writer came; non-blocking, it
        // opens at once and is refused below. Regular files ignore the flag.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| DataError::io(path, e))?;
    let meta = file.metadata().map_err(|e| DataError::io(path, e))?;
    if !meta.is_file() {
        return Err(DataError::file(
            path,
            "is not a regular file (a folder, FIFO, socket or device); give a file",
        ));
    }
    Ok(file)
}

/// Reads a regular file whole, refusing one larger than `max_bytes` (checked while reading,
/// so a file that grows is bounded too).
pub fn read_capped(path: &Path, max_bytes: u64) -> Result<Vec<u8>, DataError> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| DataError::io(path, e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(DataError::file(
            path,
            format!("is larger than the limit of {max_bytes} bytes"),
        ));
    }
    Ok(bytes)
}

/// Like `read_capped`, as UTF-8 text.
pub fn read_text_capped(path: &Path, max_bytes: u64) -> Result<String, DataError> {
    String::from_utf8(read_capped(path, max_bytes)?)
        .map_err(|e| DataError::file(path, format!("is not UTF-8 text: {e}")))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn fifos_devices_and_folders_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for p in [fifo.as_path(), Path::new("/dev/zero"), dir.path()] {
            let e = read_capped(p, 10).unwrap_err().to_string();
            assert!(e.contains("not a regular file"), "{}: {e}", p.display());
        }
    }

    #[test]
    fn files_over_the_cap_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(read_capped(&f, 10).unwrap(), b"0123456789");
        let e = read_capped(&f, 9).unwrap_err().to_string();
        assert!(e.contains("larger than the limit of 9 bytes"), "{e}");
    }
}

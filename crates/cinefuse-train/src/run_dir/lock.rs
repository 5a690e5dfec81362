//! The run lock: one training process per run folder.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use super::{LOCK_FILE, timestamp};

/// An OS lock on a run directory, held while a process trains in it. The OS releases it when
/// the process ends, however it ends, so a crash never leaves a stale lock behind.
#[derive(Debug)]
pub struct RunLock {
    _file: fs::File,
}

impl RunLock {
    /// Takes the lock on `run_dir`, or says which process holds it.
    pub fn acquire(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(LOCK_FILE);
        let locked = cinefuse_data::output_lock::try_lock_file(&path)
            .with_context(|| format!("cannot lock {}", path.display()))?;
        let mut file = match locked {
            Ok(file) => file,
            Err(holder) => anyhow::bail!(
                "{}: another process is training in this run folder ({holder}); wait for it to \
                 finish or choose another --out",
                run_dir.display()
            ),
        };
        file.set_len(0)?;
        writeln!(file, "pid {} since {}", std::process::id(), timestamp())?;
        file.sync_data()?;
        Ok(Self { _file: file })
    }
}

/// Whether a process holds the lock on `run_dir` right now (taking it for a moment when free).
pub fn is_locked(run_dir: &Path) -> bool {
    let Ok(file) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(run_dir.join(LOCK_FILE))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_run_names_the_holder_and_a_released_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let e = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains("another process is training"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(is_locked(dir.path()));
        drop(first);
        assert!(!is_locked(dir.path()));
        RunLock::acquire(dir.path()).unwrap();
    }
}

//! The run lock: one training process per run folder.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use cinefuse_data::output_dir::MARKER_FILE;

use super::{CONFIG_FILE, LOCK_FILE, timestamp};

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

/// Readies a child run folder (a bag's member, a blend's bag) that its parent created and a
/// kill stopped during setup, before `done_file` was written: the files setup writes first (the
/// marker and the config) are removed, under the folder's lock, so the child can start anew in
/// it. Anything else in the folder stays, and the new run's output check refuses it.
pub fn clear_unstarted(dir: &Path, done_file: &str) -> Result<()> {
    if !dir.is_dir() || dir.join(done_file).exists() {
        return Ok(());
    }
    let lock = RunLock::acquire(dir)?;
    // Checked again under the lock: a process that held it may have finished its setup since.
    if dir.join(done_file).exists() {
        return Ok(());
    }
    for f in [MARKER_FILE, CONFIG_FILE] {
        remove_if_present(&dir.join(f))?;
    }
    drop(lock);
    remove_if_present(&dir.join(LOCK_FILE))
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
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

    #[test]
    fn an_unstarted_child_is_cleared_and_a_started_or_foreign_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let child = dir.path().join("fold-1");
        fs::create_dir(&child).unwrap();
        cinefuse_data::output_dir::write_marker(&child, cinefuse_data::output_dir::OutputKind::Run)
            .unwrap();
        fs::write(child.join(CONFIG_FILE), "seed = 7").unwrap();
        drop(RunLock::acquire(&child).unwrap());
        fs::write(child.join("notes.txt"), "mine").unwrap();
        // Started: nothing is touched.
        fs::write(child.join("run.json"), "{}").unwrap();
        clear_unstarted(&child, "run.json").unwrap();
        assert!(child.join(MARKER_FILE).exists() && child.join(CONFIG_FILE).exists());
        // Held by another training process: refused, nothing removed.
        fs::remove_file(child.join("run.json")).unwrap();
        let held = RunLock::acquire(&child).unwrap();
        assert!(clear_unstarted(&child, "run.json").is_err());
        assert!(child.join(MARKER_FILE).exists());
        drop(held);
        // Unstarted: setup's files go, a file someone else put there stays.
        clear_unstarted(&child, "run.json").unwrap();
        let left: Vec<_> = fs::read_dir(&child)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["notes.txt"]);
    }
}

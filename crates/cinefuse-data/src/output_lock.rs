//! One writer per output folder.
//!
//! A folder that a command replaces as a whole (prepared data, a dataset, an export, a report)
//! cannot hold its own lock: the lock would be replaced with it. So the lock is a hidden
//! sibling, `.NAME.lock`, held with an OS lock (released however the process ends) and removed
//! when the writer is done. Holding it also makes the hidden `.NAME.partial-PID` /
//! `.NAME.old-PID` folders of killed writers safe to clean up: no live writer owns them.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::DataError;

/// The held lock on one output folder.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    file: Option<fs::File>,
}

/// `.NAME.SUFFIX` beside `target`.
pub(crate) fn sibling(target: &Path, suffix: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    target.with_file_name(format!(".{name}.{suffix}"))
}

#[cfg(unix)]
pub(crate) fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
pub(crate) fn same_file(_: &fs::Metadata, _: &fs::Metadata) -> bool {
    true
}

/// How long a lock that names this very process as its holder is tried again. A lock this
/// process has released stays held while a child that one of its threads is spawning still has
/// a copy of the descriptor: until the child's exec closes it. (Seen once in the test suite,
/// where test threads spawn Python while others train: a resume right after its run stopped
/// found its own released lock still held.)
const OWN_LOCK_GRACE: Duration = Duration::from_secs(2);

/// Opens (creating) the lock file at `path` and tries to take its OS lock: the locked file,
/// or, when another process holds it, what that process wrote into it (its pid).
pub fn try_lock_file(path: &Path) -> std::io::Result<Result<fs::File, String>> {
    let started = Instant::now();
    loop {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => return Ok(Ok(file)),
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(path).unwrap_or_default();
                if names_this_process(&holder) && started.elapsed() < OWN_LOCK_GRACE {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                return Ok(Err(holder.trim().to_string()));
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Whether a lock file's text ("pid N …") names this process.
fn names_this_process(holder: &str) -> bool {
    let mut words = holder.split_whitespace();
    words.next() == Some("pid") && words.next() == Some(std::process::id().to_string().as_str())
}

impl OutputLock {
    /// Takes the lock on `target` (whose parent must exist), or says that another process
    /// is writing it.
    pub fn acquire(target: &Path) -> Result<Self, DataError> {
        let path = sibling(target, "lock");
        // The lock file is removed on release; a process that opened it just before then
        // holds a lock on a deleted file. Re-checking that the path still names the locked
        // file closes that race.
        for _ in 0..16 {
            let mut file = match try_lock_file(&path).map_err(|e| DataError::io(&path, e))? {
                Ok(file) => file,
                Err(holder) => {
                    return Err(DataError::file(
                        target,
                        format!(
                            "another cinefuse process is writing this folder ({holder}); wait \
                             for it to finish or choose another output folder"
                        ),
                    ));
                }
            };
            let still_there = match (file.metadata(), fs::metadata(&path)) {
                (Ok(held), Ok(named)) => same_file(&held, &named),
                _ => false,
            };
            if !still_there {
                continue;
            }
            let _ = file.set_len(0);
            let _ = writeln!(file, "pid {}", std::process::id());
            return Ok(Self {
                path,
                file: Some(file),
            });
        }
        Err(DataError::file(
            &path,
            "the lock file keeps being replaced; is another process removing it?",
        ))
    }

    /// Removes what killed writers of `target` left behind. A `.old` folder is the previous
    /// output moved aside during a commit: when the target is missing it is the only copy,
    /// so it is moved back instead of removed.
    pub fn clean_leftovers(&self, target: &Path) -> Result<(), DataError> {
        let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            return Ok(());
        };
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let Ok(entries) = fs::read_dir(parent) else {
            return Ok(());
        };
        let (partial, old) = (format!(".{name}.partial-"), format!(".{name}.old-"));
        let mut leftovers: Vec<(PathBuf, bool)> = entries
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                let is_old = n.starts_with(&old);
                let ours = (is_old || n.starts_with(&partial))
                    && n.rsplit('-')
                        .next()
                        .is_some_and(|pid| pid.parse::<u32>().is_ok());
                ours.then(|| (e.path(), is_old))
            })
            .collect();
        leftovers.sort();
        for (path, is_old) in leftovers {
            if is_old && fs::symlink_metadata(target).is_err() {
                fs::rename(&path, target).map_err(|e| DataError::io(&path, e))?;
                eprintln!(
                    "{}: restored from {} (left by an interrupted command)",
                    target.display(),
                    path.display()
                );
                continue;
            }
            fs::remove_dir_all(&path).map_err(|e| DataError::io(&path, e))?;
        }
        Ok(())
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Unlink first, then unlock (by closing): a waiter that opened the old file sees the
        // path no longer names it and retries.
        let _ = fs::remove_file(&self.path);
        self.file.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_until_the_first_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        let first = OutputLock::acquire(&target).unwrap();
        let e = OutputLock::acquire(&target).unwrap_err().to_string();
        assert!(e.contains("another cinefuse process is writing"), "{e}");
        drop(first);
        assert!(
            !sibling(&target, "lock").exists(),
            "the lock file is removed"
        );
        OutputLock::acquire(&target).unwrap();
    }

    #[test]
    fn a_released_lock_still_held_by_a_copy_of_its_descriptor_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".out.lock");
        let mut held = try_lock_file(&path).unwrap().unwrap();
        writeln!(held, "pid {}", std::process::id()).unwrap();
        // What a child being spawned holds until its exec closes it: a copy of the descriptor.
        let copy = held.try_clone().unwrap();
        drop(held);
        let child = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(copy);
        });
        assert!(
            try_lock_file(&path).unwrap().is_ok(),
            "taken once the copy closes"
        );
        child.join().unwrap();

        // Another process's lock is reported with what it wrote.
        let mut other = try_lock_file(&path).unwrap().unwrap();
        other.set_len(0).unwrap();
        writeln!(other, "pid 1 since then").unwrap();
        assert_eq!(
            try_lock_file(&path).unwrap().unwrap_err(),
            "pid 1 since then"
        );
    }

    #[test]
    fn leftovers_are_removed_and_a_lone_old_copy_is_restored() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        let lock = OutputLock::acquire(&target).unwrap();
        fs::create_dir(dir.path().join(".out.old-123")).unwrap();
        fs::write(dir.path().join(".out.old-123/keep.txt"), b"x").unwrap();
        fs::create_dir(dir.path().join(".out.partial-456")).unwrap();
        fs::create_dir(dir.path().join(".out.partial-mine")).unwrap();
        lock.clean_leftovers(&target).unwrap();
        assert!(target.join("keep.txt").exists(), "the old copy is back");
        assert!(!dir.path().join(".out.partial-456").exists());
        assert!(
            dir.path().join(".out.partial-mine").exists(),
            "only pid-named folders are cinefuse's"
        );
        fs::create_dir(dir.path().join(".out.old-9")).unwrap();
        lock.clean_leftovers(&target).unwrap();
        assert!(
            !dir.path().join(".out.old-9").exists(),
            "stale once the target exists"
        );
        assert!(target.join("keep.txt").exists());
    }
}

//! Output folders built under a temporary name and renamed into place when complete.
//!
//! The checks `check_output` makes when a command starts are made again at commit: a folder
//! that appeared at `--out` while the command ran (a user's notes, a run another command
//! started) is refused and left untouched, never moved or removed. The final rename cannot
//! replace anything (`RENAME_NOREPLACE`), so the window between that check and the rename
//! cannot lose a folder either.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::DataError;
use crate::output_dir::{OutputKind, check_output, write_marker};
use crate::output_lock::{OutputLock, same_file, sibling};

/// A directory staged beside its target. Dropping it without `commit` removes the staged
/// directory; the target is never touched unless `commit` succeeds.
pub struct StagingDir {
    tmp: PathBuf,
    target: PathBuf,
    kind: OutputKind,
    inputs: Vec<PathBuf>,
    /// The target as it was checked when the command started (`None`: absent).
    seen: Option<fs::Metadata>,
    committed: bool,
    _lock: OutputLock,
}

/// Renames `from` to `to` unless `to` exists (then `AlreadyExists`).
#[cfg(target_os = "linux")]
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let from_c = CString::new(from.as_os_str().as_bytes())?;
    let to_c = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated paths that live across the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINVAL) {
        // A filesystem without RENAME_NOREPLACE.
        return rename_checked(from, to);
    }
    Err(e)
}

#[cfg(not(target_os = "linux"))]
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    rename_checked(from, to)
}

fn rename_checked(from: &Path, to: &Path) -> io::Result<()> {
    if fs::symlink_metadata(to).is_ok() {
        return Err(io::ErrorKind::AlreadyExists.into());
    }
    fs::rename(from, to)
}

impl StagingDir {
    /// Locks `target`, checks it may be written (see `check_output`) and creates the staged
    /// directory with the marker of `kind`.
    pub fn new(target: &Path, kind: OutputKind, inputs: &[&Path]) -> Result<Self, DataError> {
        check_output(target, kind, inputs)?;
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
        }
        let lock = OutputLock::acquire(target)?;
        lock.clean_leftovers(target)?;
        // Again under the lock: a restored leftover or another writer may have changed it.
        check_output(target, kind, inputs)?;
        let seen = fs::symlink_metadata(target).ok();
        let tmp = sibling(target, &format!("partial-{}", std::process::id()));
        fs::create_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        write_marker(&tmp, kind)?;
        Ok(Self {
            tmp,
            target: target.to_path_buf(),
            kind,
            inputs: inputs.iter().map(|p| p.to_path_buf()).collect(),
            seen,
            committed: false,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.tmp
    }

    fn changed_error(&self) -> DataError {
        DataError::file(
            &self.target,
            "appeared or changed while this command ran; it was left untouched and this \
             command's output was discarded (choose another output folder, or run it again)",
        )
    }

    /// Whether the target is still the folder checked at the start, and still writable.
    fn unchanged(&self, before: &fs::Metadata) -> Result<(), DataError> {
        let inputs: Vec<&Path> = self.inputs.iter().map(PathBuf::as_path).collect();
        check_output(&self.target, self.kind, &inputs)?;
        match fs::symlink_metadata(&self.target) {
            Ok(now) if same_file(&now, before) => Ok(()),
            _ => Err(self.changed_error()),
        }
    }

    /// Puts the staged directory in place of the target. An existing target (checked again
    /// now) is moved aside first and removed only once the new one is in place, so a crash
    /// leaves one of them whole; the next writer restores or removes what is left.
    pub fn commit(mut self) -> Result<(), DataError> {
        let Some(before) = self.seen.clone() else {
            return match rename_noreplace(&self.tmp, &self.target) {
                Ok(()) => {
                    self.committed = true;
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists || is_not_empty(&e) => {
                    Err(self.changed_error())
                }
                Err(e) => Err(DataError::io(&self.target, e)),
            };
        };
        self.unchanged(&before)?;
        let aside = sibling(&self.target, &format!("old-{}", std::process::id()));
        fs::rename(&self.target, &aside).map_err(|e| DataError::io(&self.target, e))?;
        let moved_ours = fs::symlink_metadata(&aside).is_ok_and(|m| same_file(&m, &before));
        if !moved_ours {
            let _ = rename_noreplace(&aside, &self.target);
            return Err(self.changed_error());
        }
        if let Err(e) = rename_noreplace(&self.tmp, &self.target) {
            let _ = rename_noreplace(&aside, &self.target);
            return Err(DataError::io(&self.target, e));
        }
        self.committed = true;
        fs::remove_dir_all(&aside).map_err(|e| DataError::io(&aside, e))
    }
}

fn is_not_empty(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::DirectoryNotEmpty
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(target: &Path) -> StagingDir {
        let s = StagingDir::new(target, OutputKind::Prepared, &[]).unwrap();
        fs::write(s.path().join("new.bin"), b"new").unwrap();
        s
    }

    #[test]
    fn a_folder_that_appears_during_the_command_is_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("P");
        let s = staged(&target);
        fs::create_dir(&target).unwrap();
        fs::write(target.join("thesis.txt"), b"draft").unwrap();
        let e = s.commit().unwrap_err().to_string();
        assert!(e.contains("appeared or changed"), "{e}");
        assert_eq!(fs::read(target.join("thesis.txt")).unwrap(), b"draft");
        assert!(!target.join("new.bin").exists());
    }

    #[test]
    fn a_run_started_in_the_folder_during_the_command_is_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("X");
        fs::create_dir(&target).unwrap();
        write_marker(&target, OutputKind::Prepared).unwrap();
        let s = staged(&target);
        // Another command replaced the prepared folder with a run of its own.
        fs::remove_dir_all(&target).unwrap();
        fs::create_dir(&target).unwrap();
        write_marker(&target, OutputKind::Run).unwrap();
        fs::write(target.join("metrics.jsonl"), b"{}\n").unwrap();
        assert!(s.commit().is_err());
        assert!(target.join("metrics.jsonl").exists());
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(
            left.len(),
            1,
            "no staged or moved-aside folder is left: {left:?}"
        );
    }

    #[test]
    fn an_own_folder_is_replaced_and_a_second_writer_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("X");
        staged(&target).commit().unwrap();
        let first = staged(&target);
        let e = StagingDir::new(&target, OutputKind::Prepared, &[])
            .err()
            .expect("a second writer is refused")
            .to_string();
        assert!(e.contains("another cinefuse process"), "{e}");
        first.commit().unwrap();
        assert_eq!(fs::read(target.join("new.bin")).unwrap(), b"new");
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["X"], "no lock, staged or old folder is left");
    }
}

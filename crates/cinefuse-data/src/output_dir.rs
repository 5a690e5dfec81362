//! Which folders a command may replace.
//!
//! Every folder cinefuse writes as a whole (a dataset, prepared data, an export, a report, a
//! sweep, a run) carries a marker file naming its kind. A command writes to `--out` only
//! when it is new, empty, or marked as cinefuse's own of the same kind; never when it is one
//! of the command's inputs or a folder that contains one.

use std::path::{Path, PathBuf};

use crate::DataError;
use crate::paths::absolute_resolved;

/// The marker file in every folder cinefuse made.
pub const MARKER_FILE: &str = ".cinefuse-output";

/// What a folder written by cinefuse holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Dataset,
    Prepared,
    Export,
    Eda,
    Sweep,
    Run,
    /// A blend of bags (`cinefuse ensemble`).
    Blend,
}

impl OutputKind {
    pub fn name(self) -> &'static str {
        match self {
            OutputKind::Dataset => "dataset",
            OutputKind::Prepared => "prepared",
            OutputKind::Export => "export",
            OutputKind::Eda => "eda",
            OutputKind::Sweep => "sweep",
            OutputKind::Run => "run",
            OutputKind::Blend => "blend",
        }
    }

    const ALL: [OutputKind; 7] = [
        OutputKind::Dataset,
        OutputKind::Prepared,
        OutputKind::Export,
        OutputKind::Eda,
        OutputKind::Sweep,
        OutputKind::Run,
        OutputKind::Blend,
    ];

    /// What the folder holds, for messages ("an exported model", "prepared data").
    fn described(self) -> &'static str {
        match self {
            OutputKind::Dataset => "a dataset",
            OutputKind::Prepared => "prepared data",
            OutputKind::Export => "an exported model",
            OutputKind::Eda => "an EDA report",
            OutputKind::Sweep => "a sweep",
            OutputKind::Run => "a run",
            OutputKind::Blend => "a blend",
        }
    }

    /// `described` of the kind a marker names; a marker of a later version, as it reads.
    pub fn describe_marker(marker: &str) -> String {
        match Self::ALL.into_iter().find(|k| k.name() == marker) {
            Some(k) => k.described().to_string(),
            None => format!("a {marker:?}"),
        }
    }

    /// Whether a finished folder of this kind may be replaced by a new one. A run is never
    /// replaced: it is resumed or a new one is started elsewhere.
    fn replaceable(self) -> bool {
        self != OutputKind::Run
    }
}

/// The kind recorded in `dir`'s marker, if it has one.
pub fn marked_kind(dir: &Path) -> Option<String> {
    // A user-named folder: its marker must be a small regular file (a FIFO would block).
    let text = crate::user_file::read_text_capped(&dir.join(MARKER_FILE), 1024).ok()?;
    Some(text.trim().to_string())
}

/// Writes the marker of `kind` into `dir`.
pub fn write_marker(dir: &Path, kind: OutputKind) -> Result<(), DataError> {
    crate::atomic::write_atomic(
        &dir.join(MARKER_FILE),
        format!("{}\n", kind.name()).as_bytes(),
    )
}

fn resolved(path: &Path) -> Result<PathBuf, DataError> {
    absolute_resolved(path).map_err(|e| DataError::io(path, e))
}

/// Checks that `out` may be written as a folder of `kind`, given the command's `inputs`
/// (files or folders it reads). Errors name the folder and say what to do instead.
pub fn check_output(out: &Path, kind: OutputKind, inputs: &[&Path]) -> Result<(), DataError> {
    refuse_inputs_inside(out, inputs)?;
    if std::fs::symlink_metadata(out).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(DataError::file(
            out,
            "is a symbolic link; cinefuse does not write through or replace links: give the \
             folder it points to instead",
        ));
    }
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(DataError::file(
            out,
            "exists and is not a folder; choose another output folder",
        ));
    }
    let empty = std::fs::read_dir(out)
        .map_err(|e| DataError::io(out, e))?
        .next()
        .is_none();
    if empty {
        return Ok(());
    }
    check_marker(out, kind)
}

/// Refuses an output folder that is, or holds, one of the command's inputs.
fn refuse_inputs_inside(out: &Path, inputs: &[&Path]) -> Result<(), DataError> {
    let out_abs = resolved(out)?;
    for input in inputs {
        let input_abs = resolved(input)?;
        if input_abs.starts_with(&out_abs) {
            let what = if input_abs == out_abs {
                "is"
            } else {
                "contains"
            };
            return Err(DataError::file(
                out,
                format!(
                    "this output folder {what} the input {}; choose another output folder",
                    input.display()
                ),
            ));
        }
    }
    Ok(())
}

/// A folder that is not empty may be written only when cinefuse marked it as an output of
/// this `kind`, and only if that kind may be replaced.
fn check_marker(out: &Path, kind: OutputKind) -> Result<(), DataError> {
    match marked_kind(out) {
        Some(k) if k == kind.name() && kind.replaceable() => Ok(()),
        Some(k) if k == kind.name() => Err(DataError::file(
            out,
            format!(
                "already holds {}; choose another output folder",
                kind.described()
            ),
        )),
        Some(k) => Err(DataError::file(
            out,
            format!(
                "holds {} written by cinefuse, not {}; choose another output folder",
                OutputKind::describe_marker(&k),
                kind.described()
            ),
        )),
        None => Err(DataError::file(
            out,
            format!(
                "exists, is not empty and was not written by cinefuse as {} (no {MARKER_FILE}); \
                 choose a new output folder, or remove the folder yourself",
                kind.described()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_empty_and_own_folders_may_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        check_output(&out, OutputKind::Prepared, &[]).unwrap();
        std::fs::create_dir(&out).unwrap();
        check_output(&out, OutputKind::Prepared, &[]).unwrap();
        std::fs::write(out.join("x.bin"), b"x").unwrap();
        write_marker(&out, OutputKind::Prepared).unwrap();
        check_output(&out, OutputKind::Prepared, &[]).unwrap();
    }

    #[test]
    fn foreign_other_kind_and_run_folders_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        let e = check_output(dir.path(), OutputKind::Dataset, &[]).unwrap_err();
        assert!(e.to_string().contains("was not written by cinefuse"), "{e}");
        let marked = dir.path().join("marked");
        std::fs::create_dir(&marked).unwrap();
        write_marker(&marked, OutputKind::Run).unwrap();
        let e = check_output(&marked, OutputKind::Export, &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains("holds a run written by cinefuse, not an exported model"),
            "{e}"
        );
        let e = check_output(&marked, OutputKind::Run, &[]).unwrap_err();
        assert!(e.to_string().contains("already holds a run"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_output_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        for out in [&link, &dangling] {
            let e = check_output(out, OutputKind::Prepared, &[]).unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{e}");
            assert!(
                std::fs::symlink_metadata(out)
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
        }
        check_output(&real, OutputKind::Prepared, &[]).unwrap();
    }

    #[test]
    fn the_input_and_its_parents_are_refused_even_when_marked() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        write_marker(&data, OutputKind::Dataset).unwrap();
        for out in [data.clone(), dir.path().to_path_buf(), data.join(".")] {
            let e = check_output(&out, OutputKind::Dataset, &[&data]).unwrap_err();
            assert!(e.to_string().contains("the input"), "{e}");
        }
        check_output(&data.join("prepared"), OutputKind::Prepared, &[&data]).unwrap();
    }
}

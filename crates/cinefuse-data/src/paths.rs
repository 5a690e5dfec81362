//! Keeping a dataset's files inside its folder, and output folders away from inputs.
//!
//! A movie record names its poster with a path relative to the dataset folder. Such a path
//! must never reach outside that folder: not by being absolute, not with `..`, and not
//! through a symbolic link. The checks are made before anything outside is opened, and the
//! error for an escaping link is the same whether its target exists or not, so a message
//! never tells whether some outside file exists.

use std::path::{Component, Path, PathBuf};

/// Resolves `rel` against `root`, refusing any path that leaves `root`. A path that simply
/// does not exist is returned as is: opening it gives the usual "not found" error.
pub fn resolve_inside(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let root = folder(root);
    let rel_path = Path::new(rel);
    let lexically_inside = rel_path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !lexically_inside {
        return Err(format!(
            "{rel:?} leaves the dataset folder (absolute paths and `..` are refused)"
        ));
    }
    let joined = root.join(rel_path);
    if std::fs::symlink_metadata(&joined).is_err() {
        return Ok(joined);
    }
    let escapes =
        || format!("{rel:?} is a symbolic link that leaves the dataset folder or points nowhere");
    let canonical_root = canonical(root)?;
    match joined.canonicalize() {
        Ok(target) if target.starts_with(&canonical_root) => Ok(joined),
        _ => Err(escapes()),
    }
}

/// `root`, with the empty path (a file name's parent) read as the current folder.
fn folder(root: &Path) -> &Path {
    if root.as_os_str().is_empty() {
        Path::new(".")
    } else {
        root
    }
}

/// `root` with every link resolved, or an error naming it.
fn canonical(root: &Path) -> Result<PathBuf, String> {
    root.canonicalize()
        .map_err(|e| format!("{}: {e}", root.display()))
}

/// Whether the file just opened from `path` is inside `root`. `resolve_inside` looks before the
/// open; a process that swaps a link in between would still get an outside file read, so the
/// file actually opened is checked too, by what the kernel says it is (Linux: its
/// `/proc/self/fd` entry; elsewhere only the check before the open stands).
pub fn check_opened_inside(file: &std::fs::File, path: &Path, root: &Path) -> Result<(), String> {
    let Some(opened) = opened_path(file) else {
        return Ok(());
    };
    if opened.starts_with(canonical(folder(root))?) {
        return Ok(());
    }
    Err(format!(
        "{}: left the dataset folder while it was opened (a symbolic link swapped in)",
        path.display()
    ))
}

#[cfg(target_os = "linux")]
fn opened_path(file: &std::fs::File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

#[cfg(not(target_os = "linux"))]
fn opened_path(_: &std::fs::File) -> Option<PathBuf> {
    None
}

/// `path` made absolute with every existing ancestor's symbolic links resolved, so two
/// spellings of one folder compare equal even when the folder does not exist yet.
pub fn absolute_resolved(path: &Path) -> std::io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(c) => {
                let mut out = c;
                out.extend(rest.iter().rev());
                return Ok(out);
            }
            Err(_) => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_os_string());
                    existing = parent;
                }
                _ => return Ok(absolute),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_relative_paths_resolve_inside() {
        let dir = tempfile::tempdir().unwrap();
        let p = resolve_inside(dir.path(), "posters/a.png").unwrap();
        assert_eq!(p, dir.path().join("posters/a.png"));
        assert!(resolve_inside(dir.path(), "./posters/a.png").is_ok());
    }

    #[test]
    fn absolute_and_parent_paths_are_refused_without_looking() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "/etc/passwd",
            "../outside/secret.png",
            "posters/../../x.png",
        ] {
            let e = resolve_inside(dir.path(), bad).unwrap_err();
            assert!(e.contains("leaves the dataset folder"), "{bad}: {e}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn links_that_leave_are_refused_alike_whether_or_not_the_target_exists() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.png"), b"x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let link = |name: &str, target: PathBuf| {
            std::os::unix::fs::symlink(target, dir.path().join(name)).unwrap()
        };
        link("exists.png", outside.path().join("secret.png"));
        link("missing.png", outside.path().join("nothing.png"));
        link("outdir", outside.path().to_path_buf());
        let a = resolve_inside(dir.path(), "exists.png").unwrap_err();
        let b = resolve_inside(dir.path(), "missing.png").unwrap_err();
        assert_eq!(a.replace("exists", "X"), b.replace("missing", "X"));
        assert!(resolve_inside(dir.path(), "outdir/secret.png").is_err());
        std::fs::write(dir.path().join("real.png"), b"x").unwrap();
        link("inside.png", dir.path().join("real.png"));
        assert!(resolve_inside(dir.path(), "inside.png").is_ok());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_opened_through_a_link_that_leaves_is_caught_after_the_open() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.png"), b"x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("real.png"), b"x").unwrap();
        // What a swap after `resolve_inside` looked would leave: a link opened as if checked.
        let link = dir.path().join("swapped.png");
        std::os::unix::fs::symlink(outside.path().join("secret.png"), &link).unwrap();
        let opened = std::fs::File::open(&link).unwrap();
        let e = check_opened_inside(&opened, &link, dir.path()).unwrap_err();
        assert!(
            e.contains("swapped.png") && e.contains("left the dataset folder"),
            "{e}"
        );
        let real = dir.path().join("real.png");
        let opened = std::fs::File::open(&real).unwrap();
        check_opened_inside(&opened, &real, dir.path()).unwrap();
    }

    #[test]
    fn absolute_resolved_handles_missing_tails() {
        let dir = tempfile::tempdir().unwrap();
        let p = absolute_resolved(&dir.path().join("a/b")).unwrap();
        assert_eq!(p, dir.path().canonicalize().unwrap().join("a/b"));
    }
}

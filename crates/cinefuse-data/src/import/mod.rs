//! Importers from other movie-data layouts into the cinefuse dataset format.

pub mod imdb_tsv;
pub mod mmimdb;
pub mod table;
pub mod values;

use std::path::Path;

use serde::Serialize;

use crate::DataError;
use crate::atomic::write_json_atomic;
use crate::movie::{BadRecord, Movie, write_movies};
use crate::output_dir::OutputKind;

/// The result of an import.
#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub imported: usize,
    pub skipped: Vec<BadRecord>,
    pub posters_copied: usize,
    pub posters_missing: usize,
    /// What the import changed or left out that the user should know (printed after the counts).
    pub notes: Vec<String>,
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} movies imported, {} skipped, {} posters copied, {} posters missing",
            self.imported,
            self.skipped.len(),
            self.posters_copied,
            self.posters_missing
        )
    }
}

/// Runs an importer into a staging directory and moves it to `out` only when it succeeded,
/// with `movies.jsonl` and, when rows were skipped, `import_skipped.json`. The `sources`
/// (files or folders imported) can never be `out` or inside it.
pub fn run_import(
    out: &Path,
    sources: &[&Path],
    importer: impl FnOnce(&Path) -> Result<(Vec<Movie>, ImportReport), DataError>,
) -> Result<ImportReport, DataError> {
    let staging = crate::atomic::StagingDir::new(out, OutputKind::Dataset, sources)?;
    let (movies, report) = importer(staging.path())?;
    if movies.is_empty() {
        // An empty dataset would only fail later, in `prepare`, far from its cause.
        let src = sources.first().copied().unwrap_or(out);
        return Err(DataError::file(src, nothing_imported(&report)));
    }
    write_movies(staging.path(), &movies)?;
    if !report.skipped.is_empty() {
        write_json_atomic(&staging.path().join("import_skipped.json"), &report.skipped)?;
    }
    staging.commit()?;
    Ok(report)
}

/// Why an import that kept no movie is refused: every row was bad, or there was none.
fn nothing_imported(report: &ImportReport) -> String {
    match report.skipped.first() {
        Some(first) => {
            let field = first
                .field
                .as_ref()
                .map_or(String::new(), |f| format!("field `{f}`: "));
            format!(
                "nothing imported: all {} rows are bad (the first, line {}: {field}{}); \
                 check the file and --map",
                report.skipped.len(),
                first.line,
                first.reason
            )
        }
        None => "nothing imported: no movie rows (or none the import keeps)".to_string(),
    }
}

/// The largest poster file an import copies.
pub const MAX_POSTER_FILE_BYTES: u64 = 64 << 20;

/// The poster's file name for movie `id`: the id itself when it is a safe file name, else
/// the id with unsafe characters replaced and a hash of the id appended, so that two ids
/// (`a.b`, `a_b`) never share a poster file.
fn poster_stem(id: &str) -> String {
    use sha2::{Digest, Sha256};
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe == id && !id.is_empty() {
        return safe;
    }
    let digest = format!("{:x}", Sha256::digest(id.as_bytes()));
    format!("{safe}~{}", &digest[..10])
}

/// Copies a poster into `out/posters/<id>.<ext>` and returns the dataset-relative path.
/// The source must be a regular file no larger than `MAX_POSTER_FILE_BYTES`, and an existing
/// poster file is never overwritten.
pub fn copy_poster(src: &Path, out: &Path, id: &str) -> Result<String, DataError> {
    let ext = src
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_else(|| "img".into());
    let rel = format!("{}/{}.{ext}", crate::movie::POSTERS_DIR, poster_stem(id));
    let dst = out.join(&rel);
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    }
    let bytes = crate::user_file::read_capped(src, MAX_POSTER_FILE_BYTES)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&dst)
        .map_err(|e| DataError::io(&dst, e))?;
    std::io::Write::write_all(&mut file, &bytes).map_err(|e| DataError::io(&dst, e))?;
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_differ_only_in_unsafe_characters_get_different_posters() {
        assert_eq!(poster_stem("tt0111161"), "tt0111161");
        let (a, b) = (poster_stem("a.b"), poster_stem("a_b"));
        assert_ne!(a, b);
        assert!(a.starts_with("a_b~"), "{a}");
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("p.png");
        std::fs::write(&src, b"png").unwrap();
        let out = dir.path().join("out");
        let ra = copy_poster(&src, &out, "a.b").unwrap();
        let rb = copy_poster(&src, &out, "a_b").unwrap();
        assert_ne!(ra, rb);
        let e = copy_poster(&src, &out, "a_b").unwrap_err().to_string();
        assert!(e.contains("exists"), "never overwritten: {e}");
    }
}

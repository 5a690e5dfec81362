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
    write_movies(staging.path(), &movies)?;
    if !report.skipped.is_empty() {
        write_json_atomic(&staging.path().join("import_skipped.json"), &report.skipped)?;
    }
    staging.commit()?;
    Ok(report)
}

/// Copies a poster into `out/posters/<id>.<ext>` and returns the dataset-relative path.
pub fn copy_poster(src: &Path, out: &Path, id: &str) -> Result<String, DataError> {
    let ext = src
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_else(|| "img".into());
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
    let rel = format!("{}/{safe}.{ext}", crate::movie::POSTERS_DIR);
    let dst = out.join(&rel);
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    }
    std::fs::copy(src, &dst).map_err(|e| DataError::io(src, e))?;
    Ok(rel)
}

//! Importers from other movie-data layouts into the cinefuse dataset format.

pub mod imdb_tsv;
pub mod mmimdb;
pub mod table;
pub mod values;

use std::path::{Path, PathBuf};

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
    /// Posters that could not be read (with `--skip-bad`): their movies are kept without one.
    pub posters_dropped: Vec<BadRecord>,
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
        )?;
        match self.posters_dropped.len() {
            0 => Ok(()),
            n => write!(f, ", {n} unreadable posters dropped"),
        }
    }
}

impl ImportReport {
    /// The skipped rows and the dropped posters, for `import_skipped.json`.
    pub fn problems(&self) -> Vec<&BadRecord> {
        self.skipped.iter().chain(&self.posters_dropped).collect()
    }
}

/// Runs an importer into a staging directory and moves it to `out` only when it succeeded,
/// with `movies.jsonl` and, when rows were skipped or posters dropped, `import_skipped.json`.
/// The `sources` (files or folders imported) can never be `out` or inside it.
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
    let problems = report.problems();
    if !problems.is_empty() {
        write_json_atomic(&staging.path().join(SKIPPED_FILE), &problems)?;
    }
    staging.commit()?;
    Ok(report)
}

/// Where an import lists its skipped rows and dropped posters.
pub const SKIPPED_FILE: &str = "import_skipped.json";

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

/// Movie `id`'s poster `bytes` (read from `src`, which names its extension) written into
/// `out/posters/<id>.<ext>`; returns the dataset-relative path. An existing poster file is
/// never overwritten.
fn write_poster(bytes: &[u8], src: &Path, out: &Path, id: &str) -> Result<String, DataError> {
    let ext = src
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_else(|| "img".into());
    let rel = format!("{}/{}.{ext}", crate::movie::POSTERS_DIR, poster_stem(id));
    let dst = out.join(&rel);
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&dst)
        .map_err(|e| DataError::io(&dst, e))?;
    std::io::Write::write_all(&mut file, bytes).map_err(|e| DataError::io(&dst, e))?;
    Ok(rel)
}

/// Where an imported movie's poster comes from: its file found inside the source folder
/// (`Ok(None)`: it has none), or why the file it names is refused.
pub(crate) type FoundPoster = Result<Option<PathBuf>, String>;

/// Copies `movie`'s poster `found` into `out` and points the movie at the copy. A poster that
/// is refused or cannot be read (outside the folder, a FIFO, too large) fails the import with
/// `refused(reason)`, or with `skip_bad` is dropped: the movie is kept without it and the
/// report lists it (line `line` of the source). Writing into `out` always fails the import.
pub(crate) fn import_poster(
    movie: &mut Movie,
    found: FoundPoster,
    (out, line, skip_bad): (&Path, usize, bool),
    report: &mut ImportReport,
    refused: impl FnOnce(String) -> DataError,
) -> Result<(), DataError> {
    let read = found.and_then(|path| match path.filter(|p| p.exists()) {
        None => Ok(None),
        Some(p) => crate::user_file::read_capped(&p, MAX_POSTER_FILE_BYTES)
            .map(|bytes| Some((p, bytes)))
            .map_err(|e| e.to_string()),
    });
    match read {
        Ok(None) => report.posters_missing += 1,
        Ok(Some((path, bytes))) => {
            movie.poster = Some(write_poster(&bytes, &path, out, &movie.id)?);
            report.posters_copied += 1;
        }
        Err(reason) if skip_bad => report.posters_dropped.push(BadRecord {
            line,
            id: Some(movie.id.clone()),
            field: Some("poster".into()),
            reason: format!("{reason}; the movie is kept without a poster"),
        }),
        Err(reason) => return Err(refused(reason)),
    }
    Ok(())
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
        let out = dir.path().join("out");
        let ra = write_poster(b"png", &src, &out, "a.b").unwrap();
        let rb = write_poster(b"png", &src, &out, "a_b").unwrap();
        assert_ne!(ra, rb);
        let e = write_poster(b"png", &src, &out, "a_b")
            .unwrap_err()
            .to_string();
        assert!(e.contains("exists"), "never overwritten: {e}");
    }
}

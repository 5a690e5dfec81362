//! `cinefuse import mmimdb`: the MM-IMDb layout (one JSON per movie next to a JPEG poster, and
//! `split.json` with the official train/dev/test ids) → the dataset format, keeping the split.
//!
//! MM-IMDb's JSON comes from IMDbPY: `plot` is a list of several plots (some suffixed with
//! `::author`), people are strings or `{"name": …}` objects, `runtimes` and `certificates` may
//! carry a country prefix (`"USA:142"`, `"USA:R"`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::values::{
    NumberFormat, as_count, as_f32, as_list, as_number, as_text, as_year, decode_text,
};
use super::{ImportReport, import_poster};
use crate::DataError;
use crate::movie::{BadRecord, Movie, SPLIT_FILE};
use crate::validate::check_movie;

fn strip_country(s: &str) -> String {
    match s.split_once(':') {
        Some((_, v)) if !v.trim().is_empty() => v.trim().to_string(),
        _ => s.trim().to_string(),
    }
}

fn first_plot(v: &Value) -> Option<String> {
    let plots: Vec<String> = match v {
        Value::Array(a) => a
            .iter()
            .filter_map(|p| p.as_str().map(String::from))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    };
    plots
        .into_iter()
        .map(|p| {
            p.split("::")
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .find(|p| !p.is_empty())
}

/// Prefers the US certificate, else the first one.
fn certificate(v: &Value) -> Option<String> {
    let list = as_list(v)?;
    list.iter()
        .find(|c| c.starts_with("USA:"))
        .or_else(|| list.first())
        .map(|c| strip_country(c))
        .filter(|c| !c.is_empty())
}

pub fn movie_from_mmimdb(id: &str, v: &Value) -> Result<Movie, (Option<String>, String)> {
    let value = |key: &str| v.get(key).unwrap_or(&Value::Null);
    let count = |key: &str| as_count(value(key)).map_err(|m| (Some(key.to_string()), m));
    let runtime = v
        .get("runtimes")
        .and_then(as_list)
        .and_then(|l| l.first().map(|r| strip_country(r)))
        .and_then(|r| {
            r.split_whitespace()
                .next()
                .and_then(|x| x.parse::<f32>().ok())
        });
    let movie = Movie {
        title: v.get("title").and_then(as_text),
        year: as_year(value("year")).map_err(|m| (Some("year".to_string()), m))?,
        runtime_min: runtime,
        genres: v.get("genres").and_then(as_list),
        rating: as_number(value("rating"), NumberFormat::Plain)
            .and_then(as_f32)
            .map_err(|m| (Some("rating".to_string()), m))?,
        votes: count("votes")?,
        certificate: v.get("certificates").and_then(certificate),
        languages: v.get("languages").and_then(as_list),
        countries: v.get("countries").and_then(as_list),
        directors: v
            .get("director")
            .or_else(|| v.get("directors"))
            .and_then(as_list),
        cast: v
            .get("cast")
            .and_then(as_list)
            .map(|c| c.into_iter().take(10).collect()),
        plot: v
            .get("plot")
            .and_then(first_plot)
            .or_else(|| v.get("plot outline").and_then(as_text)),
        ..Movie::new(id)
    };
    check_movie(&movie).map_err(|(f, m)| (Some(f), m))?;
    Ok(movie)
}

/// Finds the folder with the per-movie JSON files (`DIR` itself or `DIR/dataset`).
fn movie_dir(src: &Path) -> PathBuf {
    let nested = src.join("dataset");
    if nested.is_dir() {
        nested
    } else {
        src.to_path_buf()
    }
}

pub fn import_mmimdb(
    src: &Path,
    out: &Path,
    skip_bad: bool,
) -> Result<(Vec<Movie>, ImportReport), DataError> {
    let dir = movie_dir(src);
    let files = movie_files(&dir)?;
    let mut report = ImportReport::default();
    let mut movies = Vec::new();
    for path in files {
        let id = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        // A movie's file that is a link out of the folder is not read (as a poster's is not).
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let parsed = crate::paths::resolve_inside(&dir, &name)
            .map_err(|e| (None, format!("movie file {e}")))
            .and_then(|inside| {
                crate::user_file::read_capped(&inside, crate::user_file::MAX_MOVIE_JSON_BYTES)
                    .map_err(|e| (None, format!("unreadable: {e}")))
            })
            .and_then(|b| {
                serde_json::from_str::<Value>(&decode_text(&b))
                    .map_err(|e| (None, format!("malformed JSON at line {}: {e}", e.line())))
            })
            .and_then(|v| movie_from_mmimdb(&id, &v));
        match parsed {
            Ok(mut movie) => {
                let found = find_poster(&dir, &id);
                let refused = |e| DataError::file(&path, e);
                import_poster(&mut movie, found, (out, 0, skip_bad), &mut report, refused)?;
                movies.push(movie);
            }
            Err((field, reason)) => {
                if !skip_bad {
                    return Err(DataError::file(
                        &path,
                        match &field {
                            Some(f) => format!("field `{f}`: {reason}"),
                            None => reason,
                        },
                    ));
                }
                report.skipped.push(BadRecord {
                    line: 0,
                    id: Some(id),
                    field,
                    reason,
                });
            }
        }
    }
    copy_split(src, &dir, out, &movies)?;
    report.imported = movies.len();
    Ok((movies, report))
}

/// The per-movie JSON files in `dir`, sorted; none is an error.
fn movie_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && p.file_name().is_some_and(|n| n != SPLIT_FILE)
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(DataError::file(
            dir,
            "no per-movie JSON files found (expected DIR/dataset/<id>.json)",
        ));
    }
    Ok(files)
}

/// Movie `id`'s poster in `dir` (JPEG or PNG), if there is one inside it.
fn find_poster(dir: &Path, id: &str) -> Result<Option<PathBuf>, String> {
    ["jpeg", "jpg", "png"]
        .iter()
        .map(|e| crate::paths::resolve_inside(dir, &format!("{id}.{e}")))
        .find(|p| !matches!(p, Ok(p) if !p.exists()))
        .transpose()
        .map_err(|e| format!("poster {e}"))
}

/// The official split, renamed to our split file ("dev" is read as validation), keeping only
/// the imported movies.
fn copy_split(src: &Path, dir: &Path, out: &Path, movies: &[Movie]) -> Result<(), DataError> {
    for folder in [src, dir] {
        let candidate = crate::paths::resolve_inside(folder, SPLIT_FILE)
            .map_err(|e| DataError::file(folder, format!("split file {e}")))?;
        if candidate.exists() {
            let split: HashMap<String, Vec<String>> = crate::atomic::read_json(&candidate)?;
            let known: std::collections::HashSet<&str> =
                movies.iter().map(|m| m.id.as_str()).collect();
            let kept: HashMap<String, Vec<String>> = split
                .into_iter()
                .map(|(k, ids)| {
                    (
                        k,
                        ids.into_iter()
                            .filter(|i| known.contains(i.as_str()))
                            .collect(),
                    )
                })
                .collect();
            crate::atomic::write_json_atomic(&out.join(SPLIT_FILE), &kept)?;
            break;
        }
    }
    Ok(())
}

//! The cinefuse dataset format: a directory with `movies.jsonl` (one movie per line) and
//! `posters/`. Every field but `id` may be missing.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::DataError;

pub const MOVIES_FILE: &str = "movies.jsonl";
pub const POSTERS_DIR: &str = "posters";
pub const SPLIT_FILE: &str = "split.json";

/// One movie record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Movie {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_min: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genres: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub votes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub languages: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countries: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directors: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cast: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plot: Option<String>,
    /// Poster path relative to the dataset directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gross: Option<f64>,
    /// Any other named values (numbers, strings, lists of strings), used as features only when
    /// declared in `[[data.features]]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Value>,
}

/// Names of every field of the format, in file order.
pub const FIELDS: [&str; 17] = [
    "id",
    "title",
    "year",
    "runtime_min",
    "genres",
    "rating",
    "votes",
    "certificate",
    "languages",
    "countries",
    "directors",
    "cast",
    "plot",
    "poster",
    "budget",
    "gross",
    "extra",
];

impl Movie {
    pub fn new(id: impl Into<String>) -> Self {
        Movie {
            id: id.into(),
            ..Default::default()
        }
    }

    /// Whether a field (by format name) holds a value; empty strings and lists count as missing.
    pub fn has(&self, field: &str) -> bool {
        fn s(v: &Option<String>) -> bool {
            v.as_deref().is_some_and(|s| !s.trim().is_empty())
        }
        fn l(v: &Option<Vec<String>>) -> bool {
            v.as_ref().is_some_and(|l| !l.is_empty())
        }
        match field {
            "id" => !self.id.is_empty(),
            "title" => s(&self.title),
            "year" => self.year.is_some(),
            "runtime_min" => self.runtime_min.is_some(),
            "genres" => l(&self.genres),
            "rating" => self.rating.is_some(),
            "votes" => self.votes.is_some(),
            "certificate" => s(&self.certificate),
            "languages" => l(&self.languages),
            "countries" => l(&self.countries),
            "directors" => l(&self.directors),
            "cast" => l(&self.cast),
            "plot" => s(&self.plot),
            "poster" => s(&self.poster),
            "budget" => self.budget.is_some(),
            "gross" => self.gross.is_some(),
            "extra" => !self.extra.is_empty(),
            _ => false,
        }
    }
}

/// A record that failed to parse, with its location.
#[derive(Debug, Clone, Serialize)]
pub struct BadRecord {
    pub line: usize,
    pub id: Option<String>,
    pub field: Option<String>,
    pub reason: String,
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("string {s:?}"),
        Value::Number(n) => format!("number {n}"),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
        Value::Null => "null".into(),
    }
}

type FieldResult<T> = Result<Option<T>, (String, String)>;

fn opt_string(obj: &Map<String, Value>, key: &str) -> FieldResult<String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err((
            key.into(),
            format!("expected a string, got {}", describe(other)),
        )),
    }
}

fn opt_f64(obj: &Map<String, Value>, key: &str) -> FieldResult<f64> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| (key.into(), format!("expected a finite number, got {n}"))),
        Some(other) => Err((
            key.into(),
            format!("expected a number, got {}", describe(other)),
        )),
    }
}

/// A number stored as `f32`: one past its range is refused with the value as written, not
/// reported later as infinity.
fn opt_f32(obj: &Map<String, Value>, key: &str) -> FieldResult<f32> {
    match opt_f64(obj, key)? {
        Some(v) if v.abs() > f64::from(f32::MAX) => {
            Err((key.into(), format!("out of range, got {v:e}")))
        }
        v => Ok(v.map(|v| v as f32)),
    }
}

fn opt_int(obj: &Map<String, Value>, key: &str) -> FieldResult<i64> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
            _ => Err((key.into(), format!("expected an integer, got {n}"))),
        },
        Some(other) => Err((
            key.into(),
            format!("expected an integer, got {}", describe(other)),
        )),
    }
}

fn opt_list(obj: &Map<String, Value>, key: &str) -> FieldResult<Vec<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.trim().to_string()),
                other => Err((
                    format!("{key}[{i}]"),
                    format!("expected a string, got {}", describe(other)),
                )),
            })
            .filter(|r| r.as_ref().map_or(true, |s| !s.is_empty()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err((
            key.into(),
            format!("expected a list of strings, got {}", describe(other)),
        )),
    }
}

/// The `extra` object: named numbers, strings or lists of strings (nulls are dropped).
fn opt_extra(obj: &Map<String, Value>) -> Result<BTreeMap<String, Value>, (String, String)> {
    let items = match obj.get("extra") {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(items)) => items,
        Some(other) => {
            return Err((
                "extra".into(),
                format!(
                    "expected an object of named values, got {}",
                    describe(other)
                ),
            ));
        }
    };
    let mut out = BTreeMap::new();
    for (name, v) in items {
        let ok = match v {
            Value::Null => continue,
            Value::Number(n) => n.as_f64().is_some_and(f64::is_finite),
            Value::String(_) => true,
            Value::Array(list) => list.iter().all(Value::is_string),
            _ => false,
        };
        if !ok {
            return Err((
                format!("extra.{name}"),
                format!(
                    "expected a number, a string or a list of strings, got {}",
                    describe(v)
                ),
            ));
        }
        out.insert(name.clone(), v.clone());
    }
    Ok(out)
}

/// Parses one JSON object into a movie, reporting the first bad field by name.
pub fn movie_from_value(value: &Value) -> Result<Movie, (Option<String>, String)> {
    let obj = value.as_object().ok_or((
        None,
        format!("expected a JSON object, got {}", describe(value)),
    ))?;
    let id = match obj.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::String(_)) => return Err((Some("id".into()), "must not be empty".into())),
        Some(other) => {
            return Err((
                Some("id".into()),
                format!("expected a string, got {}", describe(other)),
            ));
        }
        None => {
            return Err((
                Some("id".into()),
                "missing (every record needs an id)".into(),
            ));
        }
    };
    let build = || -> Result<Movie, (String, String)> {
        let year = opt_int(obj, "year")?
            .map(|y| {
                // `check_movie` asks for 1870–2100; a year past i32 is refused here, as written.
                i32::try_from(y).map_err(|_| {
                    (
                        "year".to_string(),
                        format!("must be within 1870–2100, got {y}"),
                    )
                })
            })
            .transpose()?;
        let votes = opt_int(obj, "votes")?;
        if let Some(v) = votes.filter(|v| *v < 0) {
            return Err(("votes".into(), format!("must be >= 0, got {v}")));
        }
        Ok(Movie {
            id: id.clone(),
            title: opt_string(obj, "title")?,
            year,
            runtime_min: opt_f32(obj, "runtime_min")?,
            genres: opt_list(obj, "genres")?,
            rating: opt_f32(obj, "rating")?,
            votes: votes.map(|v| v as u64),
            certificate: opt_string(obj, "certificate")?,
            languages: opt_list(obj, "languages")?,
            countries: opt_list(obj, "countries")?,
            directors: opt_list(obj, "directors")?,
            cast: opt_list(obj, "cast")?,
            plot: opt_string(obj, "plot")?,
            poster: opt_string(obj, "poster")?,
            budget: opt_f64(obj, "budget")?,
            gross: opt_f64(obj, "gross")?,
            extra: opt_extra(obj)?,
        })
    };
    build().map_err(|(f, m)| (Some(f), m))
}

/// Parsed content of a `movies.jsonl`: good records with their line numbers, and bad lines.
#[derive(Debug, Default)]
pub struct ParsedMovies {
    pub movies: Vec<(usize, Movie)>,
    pub bad: Vec<BadRecord>,
}

/// Reads a JSONL file of movies (a regular file, at most `MAX_JSONL_BYTES`) and parses it
/// with `parse_movies_bytes`.
pub fn parse_movies_file(path: &Path) -> Result<ParsedMovies, DataError> {
    let bytes = crate::user_file::read_capped(path, crate::user_file::MAX_JSONL_BYTES)?;
    Ok(parse_movies_bytes(&bytes))
}

/// Parses the bytes of a JSONL file of movies. Malformed lines (bad JSON, invalid UTF-8) are
/// collected, not fatal, so that the caller decides between aborting and skipping; blank lines
/// are ignored and a UTF-8 byte-order mark at the start is dropped.
pub fn parse_movies_bytes(content: &[u8]) -> ParsedMovies {
    let mut out = ParsedMovies::default();
    for (i, bytes) in content.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let bytes = match line_no {
            1 => bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes),
            _ => bytes,
        };
        let line = match std::str::from_utf8(bytes) {
            Ok(l) => l,
            Err(e) => {
                out.bad.push(BadRecord {
                    line: line_no,
                    id: None,
                    field: None,
                    reason: format!("invalid UTF-8 at byte {}", e.valid_up_to() + 1),
                });
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                out.bad.push(BadRecord {
                    line: line_no,
                    id: None,
                    field: None,
                    reason: format!("malformed JSON at column {}: {e}", e.column()),
                });
                continue;
            }
        };
        match movie_from_value(&value) {
            Ok(m) => out.movies.push((line_no, m)),
            Err((field, reason)) => out.bad.push(BadRecord {
                line: line_no,
                id: value.get("id").and_then(|v| v.as_str()).map(String::from),
                field,
                reason,
            }),
        }
    }
    out
}

/// Reads a dataset strictly: the first bad record is an error naming file, line and field.
pub fn read_movies(dataset_dir: &Path) -> Result<Vec<Movie>, DataError> {
    let path = dataset_dir.join(MOVIES_FILE);
    let parsed = parse_movies_file(&path)?;
    if let Some(bad) = parsed.bad.first() {
        return Err(DataError::Record {
            path,
            line: bad.line,
            message: match &bad.field {
                Some(f) => format!("field `{f}`: {}", bad.reason),
                None => bad.reason.clone(),
            },
        });
    }
    let mut seen = HashSet::new();
    for (line, m) in &parsed.movies {
        if !seen.insert(m.id.clone()) {
            return Err(DataError::Record {
                path,
                line: *line,
                message: format!("field `id`: duplicate id {:?}", m.id),
            });
        }
    }
    Ok(parsed.movies.into_iter().map(|(_, m)| m).collect())
}

/// Serializes movies as JSONL (one compact object per line).
pub fn movies_to_jsonl(movies: &[Movie]) -> String {
    let mut out = String::new();
    for m in movies {
        out.push_str(&serde_json::to_string(m).expect("movie serializes"));
        out.push('\n');
    }
    out
}

/// Writes `movies.jsonl` atomically into `dataset_dir`.
pub fn write_movies(dataset_dir: &Path, movies: &[Movie]) -> Result<(), DataError> {
    crate::atomic::write_atomic(
        &dataset_dir.join(MOVIES_FILE),
        movies_to_jsonl(movies).as_bytes(),
    )
}

/// Resolves a movie's poster path inside the dataset directory: `None` when the movie has no
/// poster, an error when the path would leave the folder (see `paths::resolve_inside`).
pub fn poster_path(dataset_dir: &Path, movie: &Movie) -> Option<Result<PathBuf, DataError>> {
    movie
        .poster
        .as_deref()
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            crate::paths::resolve_inside(dataset_dir, p)
                .map_err(|e| DataError::Invalid(format!("poster {e}")))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(json: &str) -> (Option<String>, String) {
        movie_from_value(&serde_json::from_str(json).unwrap()).unwrap_err()
    }

    #[test]
    fn values_past_the_stored_type_are_refused_as_written() {
        let (field, why) = refusal(r#"{"id": "a", "year": 99999999999}"#);
        assert_eq!(field.as_deref(), Some("year"));
        assert!(why.contains("got 99999999999"), "{why}");
        let (field, why) = refusal(r#"{"id": "a", "runtime_min": -1e39}"#);
        assert_eq!(field.as_deref(), Some("runtime_min"));
        assert!(why.contains("-1e39"), "{why}");
        let (field, why) = refusal(r#"{"id": "a", "rating": 1e300}"#);
        assert_eq!(
            (field.as_deref(), why.as_str()),
            (Some("rating"), "out of range, got 1e300")
        );
        let m =
            movie_from_value(&serde_json::json!({"id": "a", "year": 1999, "rating": 7.5})).unwrap();
        assert_eq!((m.year, m.rating), (Some(1999), Some(7.5)));
    }
}

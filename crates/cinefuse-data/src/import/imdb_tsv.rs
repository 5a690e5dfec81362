//! `cinefuse import imdb-tsv`: IMDb's non-commercial TSV tables (`title.basics`,
//! `title.ratings`, optionally `title.crew` and `name.basics`; `.gz` or plain; `\N` = missing),
//! joined on the title id.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::ImportReport;
use crate::DataError;
use crate::movie::{BadRecord, Movie};

fn open(path: &Path) -> Result<Box<dyn BufRead>, DataError> {
    let file = crate::user_file::open_regular(path)?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(Box::new(BufReader::new(reader)))
}

fn cell(v: &str) -> Option<&str> {
    let v = v.trim();
    (v != "\\N" && !v.is_empty()).then_some(v)
}

/// A table row with its line number.
type Row = (usize, HashMap<String, String>);

/// Reads a TSV table as (line, header→value) rows, checking the required columns.
fn read_table(path: &Path, required: &[&str]) -> Result<Vec<Row>, DataError> {
    let mut lines = open(path)?.lines();
    let header: Vec<String> = match lines.next() {
        Some(h) => h
            .map_err(|e| DataError::io(path, e))?
            .split('\t')
            .map(|s| s.trim().to_string())
            .collect(),
        None => return Err(DataError::file(path, "empty file")),
    };
    for r in required {
        if !header.iter().any(|h| h == r) {
            return Err(DataError::file(
                path,
                format!("missing column `{r}` (header: {})", header.join(", ")),
            ));
        }
    }
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let line = line.map_err(|e| DataError::io(path, e))?;
        if line.is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split('\t').collect();
        if cells.len() != header.len() {
            return Err(DataError::Record {
                path: path.into(),
                line: i + 2,
                message: format!(
                    "expected {} tab-separated columns, found {}",
                    header.len(),
                    cells.len()
                ),
            });
        }
        rows.push((
            i + 2,
            header
                .iter()
                .cloned()
                .zip(cells.iter().map(|c| c.to_string()))
                .collect(),
        ));
    }
    Ok(rows)
}

pub struct TsvSources<'a> {
    pub basics: &'a Path,
    pub ratings: &'a Path,
    pub crew: Option<&'a Path>,
    pub names: Option<&'a Path>,
    /// `titleType`s to keep (e.g. "movie"); empty keeps all.
    pub types: Vec<String>,
}

pub fn import_imdb_tsv(
    src: &TsvSources,
    skip_bad: bool,
) -> Result<(Vec<Movie>, ImportReport), DataError> {
    let mut report = ImportReport::default();
    let ratings = read_ratings(src.ratings, skip_bad, &mut report)?;
    let directors = read_directors(src)?;
    let mut movies = Vec::new();
    for (line, row) in read_table(
        src.basics,
        &[
            "tconst",
            "titleType",
            "primaryTitle",
            "startYear",
            "runtimeMinutes",
            "genres",
        ],
    )? {
        if !src.types.is_empty() && !src.types.iter().any(|t| t == &row["titleType"]) {
            continue;
        }
        let id = row["tconst"].clone();
        match title_movie(&row, &ratings, &directors) {
            Ok(m) => movies.push(m),
            Err(reason) if skip_bad => report.skipped.push(BadRecord {
                line,
                id: Some(id),
                field: None,
                reason,
            }),
            Err(reason) => {
                return Err(DataError::Record {
                    path: src.basics.into(),
                    line,
                    message: reason,
                });
            }
        }
    }
    report.imported = movies.len();
    Ok((movies, report))
}

/// `title.ratings.tsv`: (rating, votes) by title id. A bad row is an error, or skipped and
/// reported with `skip_bad`.
fn read_ratings(
    path: &Path,
    skip_bad: bool,
    report: &mut ImportReport,
) -> Result<HashMap<String, (f32, u64)>, DataError> {
    let mut ratings: HashMap<String, (f32, u64)> = HashMap::new();
    for (line, row) in read_table(path, &["tconst", "averageRating", "numVotes"])? {
        let parsed = (|| {
            let r: f32 = cell(&row["averageRating"])
                .ok_or("averageRating is missing")?
                .parse()
                .map_err(|_| "averageRating is not a number")?;
            let v: u64 = cell(&row["numVotes"])
                .ok_or("numVotes is missing")?
                .parse()
                .map_err(|_| "numVotes is not an integer")?;
            Ok::<_, &str>((r, v))
        })();
        match parsed {
            Ok(x) => {
                ratings.insert(row["tconst"].clone(), x);
            }
            Err(m) if skip_bad => report.skipped.push(BadRecord {
                line,
                id: Some(row["tconst"].clone()),
                field: Some("rating".into()),
                reason: format!("{}: {m}", path.display()),
            }),
            Err(m) => {
                return Err(DataError::Record {
                    path: path.into(),
                    line,
                    message: m.into(),
                });
            }
        }
    }
    Ok(ratings)
}

/// Directors by title id, with their names when `name.basics.tsv` is given (else their ids).
fn read_directors(src: &TsvSources) -> Result<HashMap<String, Vec<String>>, DataError> {
    let names: HashMap<String, String> = match src.names {
        Some(p) => read_table(p, &["nconst", "primaryName"])?
            .into_iter()
            .map(|(_, r)| (r["nconst"].clone(), r["primaryName"].clone()))
            .collect(),
        None => HashMap::new(),
    };
    Ok(match src.crew {
        Some(p) => read_table(p, &["tconst", "directors"])?
            .into_iter()
            .filter_map(|(_, r)| {
                let ids = cell(&r["directors"])?;
                Some((
                    r["tconst"].clone(),
                    ids.split(',')
                        .map(|n| names.get(n).cloned().unwrap_or_else(|| n.to_string()))
                        .collect(),
                ))
            })
            .collect(),
        None => HashMap::new(),
    })
}

/// One `title.basics.tsv` row as a movie, with its rating and directors.
fn title_movie(
    row: &HashMap<String, String>,
    ratings: &HashMap<String, (f32, u64)>,
    directors: &HashMap<String, Vec<String>>,
) -> Result<Movie, String> {
    let id = row["tconst"].clone();
    let parse_num = |col: &str| -> Result<Option<f64>, String> {
        cell(&row[col])
            .map(|v| {
                v.parse::<f64>()
                    .map_err(|_| format!("column `{col}`: expected a number, got {v:?}"))
            })
            .transpose()
    };
    let (rating, votes) = ratings
        .get(&id)
        .map_or((None, None), |(r, v)| (Some(*r), Some(*v)));
    Ok(Movie {
        title: cell(&row["primaryTitle"]).map(String::from),
        year: parse_num("startYear")?.map(|y| y as i32),
        runtime_min: parse_num("runtimeMinutes")?.map(|r| r as f32),
        genres: cell(&row["genres"]).map(|g| g.split(',').map(String::from).collect()),
        rating,
        votes,
        directors: directors.get(&id).cloned(),
        ..Movie::new(id.clone())
    })
}

//! `cinefuse import imdb-tsv`: IMDb's non-commercial TSV tables (`title.basics`,
//! `title.ratings`, optionally `title.crew` and `name.basics`; `.gz` or plain; `\N` = missing),
//! joined on the title id.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::ImportReport;
use crate::DataError;
use crate::movie::{BadRecord, Movie};

/// The most a table may hold once decompressed (IMDb's largest, `title.principals`, is about
/// 4 GB; the tables this import reads are under 1 GB): a small `.gz` can expand without end.
pub const MAX_TSV_BYTES: u64 = 8 << 30;
/// The longest line read; IMDb's lines are under 1 KiB.
pub const MAX_TSV_LINE_BYTES: usize = 1 << 20;

fn open(path: &Path) -> Result<Box<dyn BufRead>, DataError> {
    let file = crate::user_file::open_regular(path)?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(Box::new(BufReader::new(reader.take(MAX_TSV_BYTES + 1))))
}

/// The lines of `reader`, each at most `max_line` bytes (a longer one is an error naming its
/// line; `lines()` would read it whole, however long), all of them within `max_total`.
fn bounded_lines(
    path: &Path,
    mut reader: Box<dyn BufRead>,
    (max_line, max_total): (usize, u64),
) -> impl Iterator<Item = Result<String, DataError>> {
    let (mut line_no, mut total, mut failed) = (0usize, 0u64, false);
    std::iter::from_fn(move || {
        if failed {
            return None;
        }
        line_no += 1;
        let mut buf = Vec::new();
        let limit = max_line as u64 + 1;
        let read = (&mut reader).take(limit).read_until(b'\n', &mut buf);
        let refuse = |message: String| DataError::Record {
            path: path.into(),
            line: line_no,
            message,
        };
        let result = match read {
            Ok(0) => return None,
            Err(e) => Err(DataError::io(path, e)),
            Ok(_) if buf.len() > max_line => {
                Err(refuse(format!("a line longer than {max_line} bytes")))
            }
            Ok(n) => {
                total += n as u64;
                if total > max_total {
                    Err(DataError::file(
                        path,
                        format!("holds more than {max_total} bytes (decompressed)"),
                    ))
                } else {
                    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        buf.pop();
                    }
                    String::from_utf8(buf).map_err(|_| refuse("not UTF-8 text".into()))
                }
            }
        };
        failed = result.is_err();
        Some(result)
    })
}

fn cell(v: &str) -> Option<&str> {
    let v = v.trim();
    (v != "\\N" && !v.is_empty()).then_some(v)
}

/// A table row with its line number.
type Row = (usize, HashMap<String, String>);

/// Reads a TSV table as (line, header→value) rows, checking the required columns.
fn read_table(path: &Path, required: &[&str]) -> Result<Vec<Row>, DataError> {
    let limits = (MAX_TSV_LINE_BYTES, MAX_TSV_BYTES);
    let mut lines = bounded_lines(path, open(path)?, limits);
    let header: Vec<String> = match lines.next() {
        Some(h) => h?.split('\t').map(|s| s.trim().to_string()).collect(),
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
        let line = line?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(text: &'static str, limits: (usize, u64)) -> Vec<Result<String, String>> {
        let reader: Box<dyn BufRead> = Box::new(text.as_bytes());
        bounded_lines(Path::new("t.tsv"), reader, limits)
            .map(|l| l.map_err(|e| e.to_string()))
            .collect()
    }

    #[test]
    fn lines_are_read_as_lines_does_them() {
        let got = lines_of("a\tb\r\nc\td\n\nlast", (16, 1 << 20));
        let want = ["a\tb", "c\td", "", "last"].map(|s| Ok(s.to_string()));
        assert_eq!(got, want);
    }

    #[test]
    fn a_line_past_the_limit_is_refused_by_number_and_reading_stops() {
        let got = lines_of("short\nfar too long a line\nnever read\n", (8, 1 << 20));
        assert_eq!(got.len(), 2, "{got:?}");
        let e = got[1].as_ref().unwrap_err();
        assert!(
            e.contains("t.tsv") && e.contains(":2") && e.contains("longer than 8"),
            "{e}"
        );
    }

    #[test]
    fn a_table_past_the_total_limit_is_refused() {
        let got = lines_of("aaaa\nbbbb\ncccc\n", (16, 12));
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(
            got[2].as_ref().unwrap_err().contains("more than 12 bytes"),
            "{got:?}"
        );
    }
}

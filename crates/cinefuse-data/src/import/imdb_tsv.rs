//! `cinefuse import imdb-tsv`: IMDb's non-commercial TSV tables (`title.basics`,
//! `title.ratings`, optionally `title.crew` and `name.basics`; `.gz` or plain; `\N` = missing),
//! joined on the title id.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::ImportReport;
use super::values::{NumberFormat, as_f32, as_number, as_year};
use crate::DataError;
use crate::movie::{BadRecord, Movie};
use crate::validate::check_movie;
use serde_json::Value;

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

/// Streams a TSV table's rows: `each(line, cells)` gets the cells of the `columns`, in that
/// order, one row at a time (IMDb's tables hold millions of rows; collecting them first took
/// gigabytes). A missing column or a row with the wrong number of cells is an error naming
/// the file (and line).
fn for_each_row(
    path: &Path,
    columns: &[&str],
    mut each: impl FnMut(usize, &[&str]) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let limits = (MAX_TSV_LINE_BYTES, MAX_TSV_BYTES);
    let mut lines = bounded_lines(path, open(path)?, limits);
    let header: Vec<String> = match lines.next() {
        Some(h) => h?.split('\t').map(|s| s.trim().to_string()).collect(),
        None => return Err(DataError::file(path, "empty file")),
    };
    let at = columns
        .iter()
        .map(|c| {
            header.iter().position(|h| h == c).ok_or_else(|| {
                DataError::file(
                    path,
                    format!("missing column `{c}` (header: {})", header.join(", ")),
                )
            })
        })
        .collect::<Result<Vec<usize>, _>>()?;
    for (i, line) in lines.enumerate() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        let all: Vec<&str> = line.split('\t').collect();
        if all.len() != header.len() {
            return Err(DataError::Record {
                path: path.into(),
                line: i + 2,
                message: format!(
                    "expected {} tab-separated columns, found {}",
                    header.len(),
                    all.len()
                ),
            });
        }
        let cells: Vec<&str> = at.iter().map(|&j| all[j]).collect();
        each(i + 2, &cells)?;
    }
    Ok(())
}

pub struct TsvSources<'a> {
    pub basics: &'a Path,
    pub ratings: &'a Path,
    pub crew: Option<&'a Path>,
    pub names: Option<&'a Path>,
    /// `titleType`s to keep (e.g. "movie"); empty keeps all.
    pub types: Vec<String>,
}

/// The `title.basics` columns a movie is read from, in the order `title_movie` takes them.
const BASICS_COLUMNS: [&str; 6] = [
    "tconst",
    "titleType",
    "primaryTitle",
    "startYear",
    "runtimeMinutes",
    "genres",
];

/// Joins the tables one streamed pass each, keeping only what the kept titles need: the
/// ratings, then the titles of the kept types, then their directors' ids, then those
/// directors' names.
pub fn import_imdb_tsv(
    src: &TsvSources,
    skip_bad: bool,
) -> Result<(Vec<Movie>, ImportReport), DataError> {
    let mut report = ImportReport::default();
    let ratings = read_ratings(src.ratings, skip_bad, &mut report)?;
    let mut movies = Vec::new();
    for_each_row(src.basics, &BASICS_COLUMNS, |line, row| {
        if !src.types.is_empty() && !src.types.iter().any(|t| t == row[1]) {
            return Ok(());
        }
        match title_movie(row, &ratings) {
            Ok(m) => movies.push(m),
            Err(reason) if skip_bad => report.skipped.push(BadRecord {
                line,
                id: Some(row[0].to_string()),
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
        Ok(())
    })?;
    add_directors(src, &mut movies)?;
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
    for_each_row(
        path,
        &["tconst", "averageRating", "numVotes"],
        |line, row| {
            let parsed = (|| {
                let r: f32 = cell(row[1])
                    .ok_or("averageRating is missing")?
                    .parse()
                    .ok()
                    .filter(|r| (0.0..=10.0).contains(r))
                    .ok_or("averageRating is not a number within 0–10")?;
                let v: u64 = cell(row[2])
                    .ok_or("numVotes is missing")?
                    .parse()
                    .map_err(|_| "numVotes is not an integer")?;
                Ok::<_, &str>((r, v))
            })();
            match parsed {
                Ok(x) => {
                    ratings.insert(row[0].to_string(), x);
                }
                Err(m) if skip_bad => report.skipped.push(BadRecord {
                    line,
                    id: Some(row[0].to_string()),
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
            Ok(())
        },
    )?;
    Ok(ratings)
}

/// Fills in the directors of `movies` from `title.crew.tsv`: their names where
/// `name.basics.tsv` is given and names them, else their ids. Only the kept titles' rows and
/// their directors' names are held.
fn add_directors(src: &TsvSources, movies: &mut [Movie]) -> Result<(), DataError> {
    let Some(crew) = src.crew else {
        return Ok(());
    };
    let index: HashMap<&str, usize> = movies
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.as_str(), i))
        .collect();
    let mut found: Vec<(usize, Vec<String>)> = Vec::new();
    for_each_row(crew, &["tconst", "directors"], |_, row| {
        if let (Some(&i), Some(ids)) = (index.get(row[0]), cell(row[1])) {
            found.push((i, ids.split(',').map(String::from).collect()));
        }
        Ok(())
    })?;
    let mut names: HashMap<String, String> = found
        .iter()
        .flat_map(|(_, ids)| ids.iter().map(|id| (id.clone(), id.clone())))
        .collect();
    if let Some(path) = src.names {
        for_each_row(path, &["nconst", "primaryName"], |_, row| {
            if let Some(name) = names.get_mut(row[0]) {
                *name = row[1].to_string();
            }
            Ok(())
        })?;
    }
    for (i, ids) in found {
        movies[i].directors = Some(ids.iter().map(|id| names[id].clone()).collect());
    }
    Ok(())
}

/// One `title.basics.tsv` row (the cells of `BASICS_COLUMNS`) as a movie, with its rating,
/// checked as every importer checks its movies.
fn title_movie(row: &[&str], ratings: &HashMap<String, (f32, u64)>) -> Result<Movie, String> {
    let id = row[0];
    let in_column = |at: usize, m: String| format!("column `{}`: {m}", BASICS_COLUMNS[at]);
    let value = |at: usize| cell(row[at]).map_or(Value::Null, |v| Value::String(v.into()));
    let year = as_year(&value(3)).map_err(|m| in_column(3, m))?;
    let runtime = as_number(&value(4), NumberFormat::Plain)
        .and_then(as_f32)
        .map_err(|m| in_column(4, m))?;
    let (rating, votes) = ratings
        .get(id)
        .map_or((None, None), |(r, v)| (Some(*r), Some(*v)));
    let movie = Movie {
        title: cell(row[2]).map(String::from),
        year,
        runtime_min: runtime,
        genres: cell(row[5]).map(|g| g.split(',').map(String::from).collect()),
        rating,
        votes,
        ..Movie::new(id.to_string())
    };
    check_movie(&movie).map_err(|(field, m)| format!("field `{field}`: {m}"))?;
    Ok(movie)
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
    fn only_kept_titles_get_directors_named_where_names_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let write = |name: &str, text: &str| {
            std::fs::write(d.join(name), text).unwrap();
            d.join(name)
        };
        let crew = write(
            "crew.tsv",
            "tconst\tdirectors\twriters\ntt1\tnm1,nm2\t\\N\ntt2\tnm3\t\\N\ntt3\t\\N\t\\N\n",
        );
        let names = write(
            "names.tsv",
            "nconst\tprimaryName\nnm1\tAda Berg\nnm3\tNot Kept\n",
        );
        let (basics, ratings) = (d.join("unused"), d.join("unused"));
        let src = TsvSources {
            basics: &basics,
            ratings: &ratings,
            crew: Some(&crew),
            names: Some(&names),
            types: Vec::new(),
        };
        let mut movies = vec![Movie::new("tt1"), Movie::new("tt3")];
        add_directors(&src, &mut movies).unwrap();
        let want = vec!["Ada Berg".to_string(), "nm2".to_string()];
        assert_eq!(movies[0].directors, Some(want));
        assert_eq!(movies[1].directors, None);
        // Every row is still checked, kept or not.
        let names = write("names.tsv", "nconst\tprimaryName\nnm9\n");
        let src = TsvSources {
            names: Some(&names),
            ..src
        };
        let e = add_directors(&src, &mut movies).unwrap_err().to_string();
        assert!(e.contains("names.tsv:2") && e.contains("columns"), "{e}");
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

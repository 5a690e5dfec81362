//! `cinefuse import table`: any JSONL or CSV table of movies → the dataset format, with
//! `--map TARGET=SOURCE` naming which source column fills which field.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde_json::{Map, Value};

use super::values::{
    NumberFormat, as_count, as_f32, as_list, as_number, as_text, as_year, decode_text,
    is_missing_text,
};
use super::{ImportReport, import_poster};
use crate::DataError;
use crate::extra::{feature_name_of, is_feature_name};
use crate::movie::{BadRecord, FIELDS, Movie};
use crate::validate::check_movie;

/// Parses `TARGET=SOURCE` pairs, checking that every target is a dataset field.
pub fn parse_mapping(pairs: &[String]) -> Result<BTreeMap<String, String>, DataError> {
    let mut map = BTreeMap::new();
    for p in pairs {
        let (t, s) = p.split_once('=').ok_or_else(|| {
            DataError::Invalid(format!(
                "--map {p:?}: expected TARGET=SOURCE, e.g. rating=imdb_rating"
            ))
        })?;
        if !FIELDS.contains(&t.trim()) || t.trim() == "extra" {
            return Err(DataError::Invalid(format!(
                "--map {p:?}: unknown target field {t:?}; fields are {}",
                FIELDS.join(", ")
            )));
        }
        map.insert(t.trim().to_string(), s.trim().to_string());
    }
    Ok(map)
}

/// A source row with its line number, or why it could not be read.
type SourceRow = (usize, Result<Map<String, Value>, String>);

fn rows(src: &Path) -> Result<Vec<SourceRow>, DataError> {
    let bytes = crate::user_file::read_capped(src, crate::user_file::MAX_JSONL_BYTES)?;
    let text = decode_text(&bytes);
    let is_csv = src
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv") || e.eq_ignore_ascii_case("tsv"));
    if !is_csv {
        return Ok(text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                let row = serde_json::from_str::<Value>(l)
                    .map_err(|e| format!("malformed JSON: {e}"))
                    .and_then(|v| match v {
                        Value::Object(o) => Ok(o),
                        _ => Err("expected a JSON object".to_string()),
                    });
                (i + 1, row)
            })
            .collect());
    }
    let tsv = src
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("tsv"));
    let delimiter = if tsv { b'\t' } else { csv_delimiter(&text) };
    // The csv reader ends a quoted field that is never closed at the end of the file: the rest
    // of the table would become one value of the row that opened it.
    if let Some(line) = unclosed_quote_line(&text, delimiter) {
        return Err(DataError::file(
            src,
            format!(
                "line {line}: a quoted value is never closed (its `\"` runs to the end of the \
                 file)"
            ),
        ));
    }
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| DataError::file(src, format!("cannot read the header row: {e}")))?
        .clone();
    // Each row becomes a map by column name: a second column of the same name would silently
    // replace the first one's values.
    if let Some((k, name)) = headers
        .iter()
        .enumerate()
        .find(|(k, h)| headers.iter().take(*k).any(|earlier| earlier == *h))
    {
        let first = headers.iter().position(|h| h == name).unwrap_or(0);
        return Err(DataError::file(
            src,
            format!(
                "line 1: the header names column `{name}` twice (columns {} and {})",
                first + 1,
                k + 1
            ),
        ));
    }
    let mut out = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let line = rec
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map_or(i + 2, |p| p.line() as usize);
        out.push((
            line,
            rec.map_err(|e| format!("malformed CSV row: {e}")).map(|r| {
                headers
                    .iter()
                    .zip(r.iter())
                    .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
                    .collect()
            }),
        ));
    }
    Ok(out)
}

/// The line of a quoted CSV value that the file ends inside, if any. A quote is special only
/// at a value's start (as in the csv reader); inside a quoted value `""` is a quote.
fn unclosed_quote_line(text: &str, delimiter: u8) -> Option<usize> {
    let (mut line, mut opened_at) = (1, None);
    let mut at_value_start = true;
    let mut bytes = text.bytes().peekable();
    while let Some(b) = bytes.next() {
        if b == b'\n' {
            line += 1;
        }
        match opened_at {
            Some(_) if b == b'"' && bytes.peek() == Some(&b'"') => {
                bytes.next();
            }
            Some(_) if b == b'"' => opened_at = None,
            Some(_) => {}
            None if b == b'"' && at_value_start => opened_at = Some(line),
            None => {}
        }
        at_value_start = opened_at.is_none() && (b == delimiter || b == b'\n' || b == b'\r');
    }
    opened_at
}

/// A `--map` naming a column the table does not have is a mistake, not a missing value.
fn check_mapped_columns_exist(
    src: &Path,
    mapping: &BTreeMap<String, String>,
    rows: &[SourceRow],
) -> Result<(), DataError> {
    let columns: std::collections::BTreeSet<&str> = rows
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .flat_map(|r| r.keys().map(String::as_str))
        .collect();
    if columns.is_empty() {
        return Ok(());
    }
    for (target, source) in mapping {
        if !columns.contains(source.as_str()) {
            return Err(DataError::file(
                src,
                format!(
                    "--map {target}={source}: no column `{source}`; the columns are {}",
                    columns.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The separator of a `.csv` file: `,` unless its header line has more `;` or tabs (a
/// spreadsheet saved where the decimal mark is a comma writes `;`, which read as `,` made one
/// column of the whole header and every row "without an id").
fn csv_delimiter(text: &str) -> u8 {
    let header = text.lines().next().unwrap_or("");
    let count = |c: char| header.matches(c).count();
    [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|d| (count(*d as char), *d == b','))
        .unwrap_or(b',')
}

/// Which source columns go into each movie's `extra` object (`--extra NAME`, `--extra-all`).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ExtraColumns {
    #[default]
    None,
    Named(Vec<String>),
    /// Every column not read into a dataset field.
    All,
}

/// A source column kept as an `extra` value, and the name it is kept under (the name a config's
/// `[[data.features]]` entry gives).
#[derive(Debug, Clone, PartialEq)]
struct ExtraColumn {
    name: String,
    column: String,
}

/// The `extra` values of a row: numbers, strings and lists of strings pass through (trimmed);
/// missing markers and empty values are left out.
fn extra_of(row: &Map<String, Value>, kept: &[ExtraColumn]) -> BTreeMap<String, Value> {
    kept.iter()
        .filter_map(|ExtraColumn { name, column }| {
            let v = match row.get(column)? {
                Value::String(s) if is_missing_text(s) => return None,
                Value::String(s) => Value::String(s.trim().to_string()),
                Value::Number(n) => Value::Number(n.clone()),
                Value::Array(items) => {
                    let items: Vec<Value> = items
                        .iter()
                        .filter_map(as_text)
                        .map(Value::String)
                        .collect();
                    if items.is_empty() {
                        return None;
                    }
                    Value::Array(items)
                }
                Value::Bool(b) => Value::String(b.to_string()),
                _ => return None,
            };
            Some((name.clone(), v))
        })
        .collect()
}

/// The source columns that become `extra` values, each under a name a config can declare
/// (`--extra NAME=COLUMN` names one; any other column's name has its other characters made
/// `_`), and a note for each column renamed or left out so.
fn extra_columns(
    src: &Path,
    mapping: &BTreeMap<String, String>,
    extra: &ExtraColumns,
    rows: &[SourceRow],
) -> Result<(Vec<ExtraColumn>, Vec<String>), DataError> {
    let columns: std::collections::BTreeSet<String> = rows
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .flat_map(|r| r.keys().cloned())
        .collect();
    let read_as_field = |c: &str| {
        mapping.values().any(|s| s == c) || (FIELDS.contains(&c) && !mapping.contains_key(c))
    };
    let refuse = |m: String| DataError::file(src, m);
    let mut notes = Vec::new();
    let mut kept = Vec::new();
    let chosen: Vec<(Option<String>, String)> = match extra {
        ExtraColumns::None => Vec::new(),
        ExtraColumns::All => columns
            .iter()
            .filter(|c| !read_as_field(c))
            .map(|c| (None, c.clone()))
            .collect(),
        ExtraColumns::Named(entries) => entries
            .iter()
            .map(|e| named_extra(e, &columns).map_err(refuse))
            .collect::<Result<_, _>>()?,
    };
    for (chosen_name, column) in chosen {
        if let Some(name) = chosen_name {
            kept.push(ExtraColumn { name, column });
            continue;
        }
        match feature_name_of(&column) {
            Some(name) => {
                if name != column {
                    notes.push(format!("extra column `{column}` kept as `{name}`"));
                }
                kept.push(ExtraColumn { name, column });
            }
            None => notes.push(format!(
                "extra column `{column}` left out: its name has no letter or digit \
                 (--extra NAME={column} keeps it)"
            )),
        }
    }
    check_distinct_names(&kept).map_err(refuse)?;
    Ok((kept, notes))
}

/// One `--extra` entry: an existing column (named by the import), or `NAME=COLUMN`.
fn named_extra(
    entry: &str,
    columns: &std::collections::BTreeSet<String>,
) -> Result<(Option<String>, String), String> {
    // Without rows there are no columns to check against (an empty table imports nothing).
    if columns.is_empty() || columns.contains(entry) {
        return Ok((None, entry.to_string()));
    }
    let listed = || columns.iter().cloned().collect::<Vec<_>>().join(", ");
    let Some((name, column)) = entry.split_once('=') else {
        return Err(format!(
            "--extra {entry}: no column `{entry}`; the columns are {}",
            listed()
        ));
    };
    let (name, column) = (name.trim(), column.trim());
    if !is_feature_name(name) {
        return Err(format!(
            "--extra {entry}: name {name:?}: expected letters, digits, _ - . (what a config's \
             [[data.features]] name can be)"
        ));
    }
    if !columns.contains(column) {
        return Err(format!(
            "--extra {entry}: no column `{column}`; the columns are {}",
            listed()
        ));
    }
    Ok((Some(name.to_string()), column.to_string()))
}

/// Refuses two columns kept under one name (as "a b" and "a_b" would be).
fn check_distinct_names(kept: &[ExtraColumn]) -> Result<(), String> {
    let mut by_name: BTreeMap<&str, &str> = BTreeMap::new();
    for k in kept {
        if let Some(other) = by_name.insert(&k.name, &k.column) {
            return Err(format!(
                "extra columns `{other}` and `{}` would both be kept as `{}`; name them \
                 with --extra NAME=COLUMN",
                k.column, k.name
            ));
        }
    }
    Ok(())
}

/// Imports `src` into `out` (see module docs). Bad rows are errors unless `skip_bad`.
pub fn import_table(
    src: &Path,
    out: &Path,
    mapping: &BTreeMap<String, String>,
    extra: &ExtraColumns,
    skip_bad: bool,
) -> Result<(Vec<Movie>, ImportReport), DataError> {
    let base = src.parent().unwrap_or(Path::new("."));
    let mut report = ImportReport::default();
    let mut movies = Vec::new();
    let mut seen = HashSet::new();
    let rows = rows(src)?;
    check_mapped_columns_exist(src, mapping, &rows)?;
    let (extra_kept, notes) = extra_columns(src, mapping, extra, &rows)?;
    report.notes = notes;
    for (line, row) in rows {
        let result = row
            .map_err(|m| (None, m))
            .and_then(|row| row_movie(&row, mapping, &extra_kept))
            .and_then(|movie| match seen.insert(movie.id.clone()) {
                true => Ok(movie),
                false => Err((Some("id".into()), format!("duplicate id {:?}", movie.id))),
            });
        match result {
            Ok(mut movie) => {
                let poster = PosterSource { src, line, base };
                copy_poster_of(&mut movie, &poster, (out, skip_bad), &mut report)?;
                movies.push(movie);
            }
            Err((field, reason)) => {
                let bad = BadRecord {
                    line,
                    id: None,
                    field,
                    reason,
                };
                if !skip_bad {
                    return Err(DataError::Record {
                        path: src.into(),
                        line,
                        message: match &bad.field {
                            Some(f) => format!("field `{f}`: {}", bad.reason),
                            None => bad.reason,
                        },
                    });
                }
                report.skipped.push(bad);
            }
        }
    }
    report.imported = movies.len();
    Ok((movies, report))
}

/// The column a dataset field is read from (`mapping`, else the field's own name).
fn source_of(mapping: &BTreeMap<String, String>, field: &str) -> String {
    mapping
        .get(field)
        .cloned()
        .unwrap_or_else(|| field.to_string())
}

/// A row as a movie, checked as `prepare` checks one; errors name the field and its column.
fn row_movie(
    row: &Map<String, Value>,
    mapping: &BTreeMap<String, String>,
    extra_kept: &[ExtraColumn],
) -> Result<Movie, (Option<String>, String)> {
    let get = |field: &str| row.get(&source_of(mapping, field)).unwrap_or(&Value::Null);
    // The error names the field; a mapped one also its column (`rating` read from `imdb_rating`).
    let in_column = |field: &str, m: String| {
        let column = source_of(mapping, field);
        let message = if column == field {
            m
        } else {
            format!("column `{column}`: {m}")
        };
        (Some(field.to_string()), message)
    };
    let num = |field: &str| {
        as_number(get(field), NumberFormat::of_field(field)).map_err(|m| in_column(field, m))
    };
    let num32 = |field: &str| as_f32(num(field)?).map_err(|m| in_column(field, m));
    let id = as_text(get("id")).ok_or((
        Some("id".to_string()),
        format!("column `{}` is empty or missing", source_of(mapping, "id")),
    ))?;
    let movie = Movie {
        title: as_text(get("title")),
        year: as_year(get("year")).map_err(|m| in_column("year", m))?,
        runtime_min: num32("runtime_min")?,
        genres: as_list(get("genres")),
        rating: num32("rating")?,
        votes: as_count(get("votes")).map_err(|m| in_column("votes", m))?,
        certificate: as_text(get("certificate")),
        languages: as_list(get("languages")),
        countries: as_list(get("countries")),
        directors: as_list(get("directors")),
        cast: as_list(get("cast")),
        plot: as_text(get("plot")),
        poster: as_text(get("poster")),
        budget: num("budget")?,
        gross: num("gross")?,
        extra: extra_of(row, extra_kept),
        id,
    };
    check_movie(&movie).map_err(|(f, m)| (Some(f), m))?;
    Ok(movie)
}

/// Where a row's poster path is read: the table file, its line, and the folder paths are
/// relative to (which they must stay inside).
struct PosterSource<'a> {
    src: &'a Path,
    line: usize,
    base: &'a Path,
}

/// Copies the movie's poster into the dataset `out` and points the movie at the copy; a
/// poster file that does not exist is counted and dropped, one that is refused or unreadable
/// too with `skip_bad` (`import_poster`).
fn copy_poster_of(
    movie: &mut Movie,
    from: &PosterSource,
    (out, skip_bad): (&Path, bool),
    report: &mut ImportReport,
) -> Result<(), DataError> {
    let Some(p) = movie.poster.take() else {
        return Ok(());
    };
    let found = crate::paths::resolve_inside(from.base, &p).map(Some);
    let refused = |e| DataError::Record {
        path: from.src.into(),
        line: from.line,
        message: format!("field `poster`: {e}"),
    };
    import_poster(movie, found, (out, from.line, skip_bad), report, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(lines: &[&str]) -> Vec<SourceRow> {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| (i + 1, Ok(serde_json::from_str(l).unwrap())))
            .collect()
    }

    fn kept(
        extra: &ExtraColumns,
        lines: &[&str],
    ) -> Result<(Vec<(String, String)>, usize), String> {
        let mapping = parse_mapping(&["rating=IMDB Rating".into()]).unwrap();
        extra_columns(Path::new("t.jsonl"), &mapping, extra, &rows(lines))
            .map(|(k, notes)| {
                let pairs = k.into_iter().map(|c| (c.name, c.column)).collect();
                (pairs, notes.len())
            })
            .map_err(|e| e.to_string())
    }

    fn pair(name: &str, column: &str) -> (String, String) {
        (name.to_string(), column.to_string())
    }

    #[test]
    fn columns_a_config_cannot_name_are_kept_under_a_name_it_can() {
        let table = [r#"{"id":"a","IMDB Rating":7,"Rotten Tomatoes":80,"studio":"X","?!":1}"#];
        let named = ExtraColumns::Named(vec!["Rotten Tomatoes".into(), "studio".into()]);
        let (k, notes) = kept(&named, &table).unwrap();
        assert_eq!(
            k,
            [
                pair("Rotten_Tomatoes", "Rotten Tomatoes"),
                pair("studio", "studio")
            ]
        );
        assert_eq!(notes, 1);
        // NAME=COLUMN chooses the name, and says nothing.
        let named = ExtraColumns::Named(vec!["rt=Rotten Tomatoes".into()]);
        assert_eq!(
            kept(&named, &table).unwrap(),
            (vec![pair("rt", "Rotten Tomatoes")], 0)
        );
        // Every column: the mapped rating and the id are fields; "?!" has nothing to keep.
        let (k, notes) = kept(&ExtraColumns::All, &table).unwrap();
        assert_eq!(
            k,
            [
                pair("Rotten_Tomatoes", "Rotten Tomatoes"),
                pair("studio", "studio")
            ]
        );
        assert_eq!(notes, 2);
        // The kept value is read from the column, under the name.
        let row = &rows(&table)[0].1.as_ref().unwrap().clone();
        let values = extra_of(
            row,
            &[ExtraColumn {
                name: "rt".into(),
                column: "Rotten Tomatoes".into(),
            }],
        );
        assert_eq!(values.get("rt"), Some(&serde_json::json!(80)));
    }

    #[test]
    fn a_quoted_value_left_open_is_found_at_its_line() {
        let open = |t: &str| unclosed_quote_line(t, b',');
        assert_eq!(
            open("id,plot\nt1,\"closed, with \"\"quotes\"\"\"\nt2,x\n"),
            None
        );
        assert_eq!(open("id,plot\nt1,\"two\nlines\"\nt2,x\n"), None);
        // A quote inside an unquoted value is a literal character.
        assert_eq!(open("id,title\nt1,5\" tall\n"), None);
        assert_eq!(open("id,plot\nt1,x\nt2,\"never closed\nt3,y\n"), Some(3));
        assert_eq!(open("id,plot\r\nt1,\"ends \"\"inside\r\n"), Some(2));
    }

    #[test]
    fn a_csv_header_says_its_separator() {
        assert_eq!(csv_delimiter("id,title;x\nm1,A;b"), b',');
        assert_eq!(csv_delimiter("id;title;rating\nm1;X;8,5"), b';');
        assert_eq!(csv_delimiter("id\ttitle\nm1\tX"), b'\t');
        // One column: nothing to tell, the comma stays.
        assert_eq!(csv_delimiter("id\nm1"), b',');
        assert_eq!(csv_delimiter(""), b',');
    }

    #[test]
    fn bad_extra_names_and_clashes_are_refused() {
        let table = [r#"{"id":"a","a b":1,"a_b":2,"c":3}"#];
        let e = kept(&ExtraColumns::All, &table).unwrap_err();
        assert!(
            e.contains("`a b` and `a_b` would both be kept as `a_b`"),
            "{e}"
        );
        let e = kept(&ExtraColumns::Named(vec!["x y=c".into()]), &table).unwrap_err();
        assert!(e.contains("name \"x y\": expected letters"), "{e}");
        let e = kept(&ExtraColumns::Named(vec!["x=nope".into()]), &table).unwrap_err();
        assert!(e.contains("no column `nope`"), "{e}");
        let e = kept(&ExtraColumns::Named(vec!["nope".into()]), &table).unwrap_err();
        assert!(e.contains("--extra nope: no column `nope`"), "{e}");
        // A column whose own name has '=' in it is a column, not a renaming.
        let table = [r#"{"id":"a","k=v":1}"#];
        let (k, _) = kept(&ExtraColumns::Named(vec!["k=v".into()]), &table).unwrap();
        assert_eq!(k, [pair("k_v", "k=v")]);
    }
}

//! Reading a movie's extra values as their declared kind, strictly: a value of the wrong kind is
//! an error naming `extra.NAME`, never a guess.

use serde_json::Value;

use super::spec::{Extract, FeatureKind, FeatureSpec};
use crate::import::values::{NumberFormat, is_missing_text, parse_number};
use crate::movie::Movie;

/// Why a movie's value cannot be read as its declared kind: (field, message).
pub type ValueError = (String, String);

pub(super) fn field(name: &str) -> String {
    format!("extra.{name}")
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// The numeric value of `name` (a JSON number or a strictly parsed string).
pub fn numeric_value(movie: &Movie, name: &str) -> Result<Option<f64>, ValueError> {
    match movie.extra.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64().filter(|x| x.is_finite())),
        Some(Value::String(s)) if is_missing_text(s) => Ok(None),
        Some(Value::String(s)) => parse_number(s, NumberFormat::Plain)
            .map(Some)
            .map_err(|e| (field(name), e)),
        Some(other) => Err((
            field(name),
            format!("declared numeric, got {}", describe(other)),
        )),
    }
}

/// The text of `name`: a string, or a number written out.
fn text_value<'a>(
    movie: &'a Movie,
    name: &str,
) -> Result<Option<std::borrow::Cow<'a, str>>, ValueError> {
    match movie.extra.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if is_missing_text(s) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().into())),
        Some(Value::Number(n)) => Ok(Some(n.to_string().into())),
        Some(other) => Err((
            field(name),
            format!("expected a string, got {}", describe(other)),
        )),
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// The month (1–12) of "21 Oct 1983", "October 21, 1983" or "1983-10-21".
pub fn month_of(date: &str) -> Option<u32> {
    let words: Vec<String> = date
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    for w in &words {
        if let Some(i) = MONTHS.iter().position(|m| w.starts_with(m)) {
            return Some(i as u32 + 1);
        }
    }
    let parts: Vec<&str> = date.trim().split('-').collect();
    match parts.as_slice() {
        [y, m, ..] if y.len() == 4 => m.parse().ok().filter(|m| (1..=12).contains(m)),
        _ => None,
    }
}

/// The categorical value of a feature, after `extract`.
pub(super) fn categorical_value(
    movie: &Movie,
    name: &str,
    extract: Option<Extract>,
) -> Result<Option<String>, ValueError> {
    let Some(text) = text_value(movie, name)? else {
        return Ok(None);
    };
    match extract {
        None => Ok(Some(text.into_owned())),
        Some(Extract::Month) => month_of(&text)
            .map(|m| Some(MONTHS[m as usize - 1].to_string()))
            .ok_or_else(|| {
                (
                    field(name),
                    format!("expected a date with a month, got {text:?}"),
                )
            }),
    }
}

/// The items of a set feature: a list of strings, or a string separated by commas or `|`.
pub fn set_items(movie: &Movie, name: &str) -> Result<Vec<String>, ValueError> {
    let normalize = |s: &str| s.trim().to_lowercase();
    match movie.extra.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(normalize(s)),
                other => Err((
                    field(name),
                    format!("expected strings in the list, got {}", describe(other)),
                )),
            })
            .filter(|r| r.as_ref().map_or(true, |s| !s.is_empty()))
            .collect(),
        Some(Value::String(s)) => Ok(s
            .split([',', '|'])
            .map(|item| normalize(strip_parenthesis(item)))
            .filter(|s| !s.is_empty() && !is_missing_text(s))
            .collect()),
        Some(other) => Err((
            field(name),
            format!(
                "expected a list or a comma-separated string, got {}",
                describe(other)
            ),
        )),
    }
}

/// "Pat Jordan (article)" → "Pat Jordan": credits often carry a role in parentheses.
fn strip_parenthesis(item: &str) -> &str {
    item.split_once('(').map_or(item, |(head, _)| head)
}

/// The lowercase words of a text feature.
pub fn text_words(movie: &Movie, name: &str) -> Result<Vec<String>, ValueError> {
    Ok(text_value(movie, name)?
        .map(|t| {
            t.split(|c: char| !c.is_alphanumeric())
                .filter(|w| w.len() > 1)
                .map(str::to_lowercase)
                .collect()
        })
        .unwrap_or_default())
}

/// Reads every declared feature of a movie, to find values of the wrong kind early.
pub fn check_movie_extras(movie: &Movie, specs: &[FeatureSpec]) -> Result<(), ValueError> {
    for s in specs {
        match s.kind {
            FeatureKind::Numeric => numeric_value(movie, &s.name).map(|_| ())?,
            FeatureKind::Categorical => categorical_value(movie, &s.name, s.extract).map(|_| ())?,
            FeatureKind::Set => set_items(movie, &s.name).map(|_| ())?,
            FeatureKind::Text => text_words(movie, &s.name).map(|_| ())?,
        }
    }
    Ok(())
}

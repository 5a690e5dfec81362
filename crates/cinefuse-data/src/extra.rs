//! Declared extra features: any value a movie carries in its `extra` object (a Metacritic score,
//! writers, awards, a release date…) used as a metadata feature by declaring it in the config,
//! `[[data.features]] name = "metascore", kind = "numeric"`. Everything is fitted on the
//! training split and saved with the preprocessing state, so export and predict reuse it.
//!
//! Each kind turns into inputs of the metadata encoder:
//! - `numeric`: one scaled value and its missing indicator (`scaling` = standard, log1p, none);
//! - `categorical`: one embedded id (vocabulary of values seen `min_freq` times; `extract =
//!   "month"` reads the month of a date such as "21 Oct 1983" or "1983-10-21");
//! - `set`: a multi-hot over the `max_values` most frequent items of a list (writers, companies);
//! - `text`: a multi-hot bag of the `max_values` most frequent words of a free text (awards).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::features::{NumericScaler, NumericTransform};
use crate::import::values::{NumberFormat, parse_number};
use crate::movie::Movie;
use crate::vocab::Vocab;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureKind {
    Numeric,
    Categorical,
    Set,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scaling {
    /// Subtract the training mean, divide by the training standard deviation.
    #[default]
    Standard,
    /// `ln(1 + x)`, then standardize: for counts and money.
    Log1p,
    /// The raw value.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Extract {
    /// The month of a date ("21 Oct 1983", "October 21, 1983", "1983-10-21").
    Month,
}

/// One `[[data.features]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// The key in each movie's `extra` object.
    pub name: String,
    pub kind: FeatureKind,
    /// `numeric` only (default standard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Scaling>,
    /// `categorical`, `set`, `text`: keep values seen on at least this many training movies
    /// (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_freq: Option<usize>,
    /// `set`, `text`: at most this many items or words, the most frequent (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_values: Option<usize>,
    /// `categorical`: the embedding size (default `model.meta.cat_dim`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_dim: Option<usize>,
    /// `categorical`: read a part of the value instead of the value itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<Extract>,
}

const DEFAULT_MIN_FREQ: usize = 2;
const DEFAULT_MAX_VALUES: usize = 50;

impl FeatureSpec {
    fn key(&self) -> String {
        format!("data.features `{}`", self.name)
    }

    /// Checks the options against the kind; errors name the feature.
    pub fn validate(&self) -> Result<(), String> {
        let key = self.key();
        let valid_name = !self.name.trim().is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid_name {
            return Err(format!(
                "data.features name {:?}: expected letters, digits, _ - .",
                self.name
            ));
        }
        let only = |set: bool, option: &str, kinds: &str| {
            if set {
                Err(format!(
                    "{key}: `{option}` applies to {kinds} features only"
                ))
            } else {
                Ok(())
            }
        };
        use FeatureKind::*;
        only(
            self.scaling.is_some() && self.kind != Numeric,
            "scaling",
            "numeric",
        )?;
        only(
            self.min_freq.is_some() && self.kind == Numeric,
            "min_freq",
            "categorical, set and text",
        )?;
        only(
            self.max_values.is_some() && !matches!(self.kind, Set | Text),
            "max_values",
            "set and text",
        )?;
        only(
            self.embedding_dim.is_some() && self.kind != Categorical,
            "embedding_dim",
            "categorical",
        )?;
        only(
            self.extract.is_some() && self.kind != Categorical,
            "extract",
            "categorical",
        )?;
        if self.min_freq == Some(0) || self.max_values == Some(0) || self.embedding_dim == Some(0) {
            return Err(format!(
                "{key}: min_freq, max_values and embedding_dim must be >= 1"
            ));
        }
        Ok(())
    }
}

/// Checks every spec and that no name is declared twice.
pub fn validate_specs(specs: &[FeatureSpec]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for s in specs {
        s.validate()?;
        if !seen.insert(&s.name) {
            return Err(format!("data.features `{}` is declared twice", s.name));
        }
    }
    Ok(())
}

/// A declared feature fitted on the training split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FittedFeature {
    Numeric {
        scaler: NumericScaler,
    },
    Categorical {
        vocab: Vocab,
        dim: Option<usize>,
        extract: Option<Extract>,
    },
    Set {
        name: String,
        items: Vec<String>,
    },
    Text {
        name: String,
        words: Vec<String>,
    },
}

/// A movie's declared features as model inputs, appended to the built-in ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodedExtras {
    pub numeric: Vec<f32>,
    pub numeric_missing: Vec<f32>,
    pub categorical: Vec<u32>,
}

/// Why a movie's value cannot be read as its declared kind: (field, message).
pub type ValueError = (String, String);

fn field(name: &str) -> String {
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
        Some(Value::String(s)) if crate::import::values::is_missing_text(s) => Ok(None),
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
        Some(Value::String(s)) if crate::import::values::is_missing_text(s) => Ok(None),
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
fn categorical_value(
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
            .filter(|s| !s.is_empty() && !crate::import::values::is_missing_text(s))
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

/// The `max` most frequent items over the training movies seen on at least `min_freq` of them
/// (ties by name: deterministic).
fn frequent(lists: impl Iterator<Item = Vec<String>>, min_freq: usize, max: usize) -> Vec<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for list in lists {
        let unique: std::collections::BTreeSet<String> = list.into_iter().collect();
        for item in unique {
            *counts.entry(item).or_default() += 1;
        }
    }
    let mut kept: Vec<(String, usize)> =
        counts.into_iter().filter(|(_, c)| *c >= min_freq).collect();
    kept.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    kept.into_iter().take(max).map(|(v, _)| v).collect()
}

/// Fits every declared feature on the training movies (which were checked beforehand).
pub fn fit_features(specs: &[FeatureSpec], train: &[&Movie]) -> Vec<FittedFeature> {
    specs
        .iter()
        .map(|s| {
            let min_freq = s.min_freq.unwrap_or(DEFAULT_MIN_FREQ);
            let max = s.max_values.unwrap_or(DEFAULT_MAX_VALUES);
            match s.kind {
                FeatureKind::Numeric => {
                    let values = train
                        .iter()
                        .filter_map(|m| numeric_value(m, &s.name).ok().flatten());
                    let scaling = s.scaling.unwrap_or_default();
                    let transform = match scaling {
                        Scaling::Log1p => NumericTransform::Log1p,
                        _ => NumericTransform::Identity,
                    };
                    let mut scaler = NumericScaler::fit(&field(&s.name), transform, values);
                    if scaling == Scaling::None {
                        (scaler.mean, scaler.std) = (0.0, 1.0);
                    }
                    FittedFeature::Numeric { scaler }
                }
                FeatureKind::Categorical => {
                    let values: Vec<String> = train
                        .iter()
                        .filter_map(|m| categorical_value(m, &s.name, s.extract).ok().flatten())
                        .collect();
                    let vocab =
                        Vocab::fit(&field(&s.name), values.iter().map(String::as_str), min_freq);
                    FittedFeature::Categorical {
                        vocab,
                        dim: s.embedding_dim,
                        extract: s.extract,
                    }
                }
                FeatureKind::Set => FittedFeature::Set {
                    name: s.name.clone(),
                    items: frequent(
                        train
                            .iter()
                            .map(|m| set_items(m, &s.name).unwrap_or_default()),
                        min_freq,
                        max,
                    ),
                },
                FeatureKind::Text => FittedFeature::Text {
                    name: s.name.clone(),
                    words: frequent(
                        train
                            .iter()
                            .map(|m| text_words(m, &s.name).unwrap_or_default()),
                        min_freq,
                        max,
                    ),
                },
            }
        })
        .collect()
}

/// A multi-hot over `known`, and 1 when the movie has no value at all.
fn multi_hot(present: &[String], known: &[String], out: &mut EncodedExtras) {
    let missing = if present.is_empty() { 1.0 } else { 0.0 };
    for k in known {
        out.numeric
            .push(if present.contains(k) { 1.0 } else { 0.0 });
        out.numeric_missing.push(missing);
    }
}

impl FittedFeature {
    /// The extra's key in a movie (`extra.NAME` in messages).
    pub fn name(&self) -> &str {
        match self {
            FittedFeature::Numeric { scaler } => {
                scaler.name.strip_prefix("extra.").unwrap_or(&scaler.name)
            }
            FittedFeature::Categorical { vocab, .. } => {
                vocab.name.strip_prefix("extra.").unwrap_or(&vocab.name)
            }
            FittedFeature::Set { name, .. } | FittedFeature::Text { name, .. } => name,
        }
    }

    /// Appends this feature's inputs for `movie`.
    pub fn encode(&self, movie: &Movie, out: &mut EncodedExtras) -> Result<(), ValueError> {
        let name = self.name();
        match self {
            FittedFeature::Numeric { scaler } => {
                let (v, m) = scaler.apply(numeric_value(movie, name)?);
                out.numeric.push(v);
                out.numeric_missing.push(m);
            }
            FittedFeature::Categorical { vocab, extract, .. } => {
                let value = categorical_value(movie, name, *extract)?;
                out.categorical.push(vocab.id(value.as_deref()));
            }
            FittedFeature::Set { items, .. } => multi_hot(&set_items(movie, name)?, items, out),
            FittedFeature::Text { words, .. } => multi_hot(&text_words(movie, name)?, words, out),
        }
        Ok(())
    }

    /// Numeric inputs (values and missing indicators, one each) this feature adds.
    pub fn numeric_width(&self) -> usize {
        match self {
            FittedFeature::Numeric { .. } => 1,
            FittedFeature::Categorical { .. } => 0,
            FittedFeature::Set { items, .. } => items.len(),
            FittedFeature::Text { words, .. } => words.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn movie(extra: Value) -> Movie {
        Movie {
            extra: serde_json::from_value(extra).unwrap(),
            ..Movie::new("m")
        }
    }

    fn spec(name: &str, kind: FeatureKind) -> FeatureSpec {
        FeatureSpec {
            name: name.into(),
            kind,
            scaling: None,
            min_freq: Some(1),
            max_values: None,
            embedding_dim: None,
            extract: None,
        }
    }

    #[test]
    fn options_must_fit_the_kind() {
        let mut s = spec("x", FeatureKind::Set);
        s.min_freq = None;
        s.scaling = Some(Scaling::Log1p);
        let e = s.validate().unwrap_err();
        assert!(e.contains("`x`") && e.contains("scaling"), "{e}");
        let twice = [spec("a", FeatureKind::Text), spec("a", FeatureKind::Set)];
        assert!(validate_specs(&twice).unwrap_err().contains("twice"));
    }

    #[test]
    fn values_are_read_strictly_by_kind() {
        assert_eq!(
            numeric_value(&movie(serde_json::json!({"s": "74"})), "s"),
            Ok(Some(74.0))
        );
        assert_eq!(
            numeric_value(&movie(serde_json::json!({"s": "N/A"})), "s"),
            Ok(None)
        );
        let e = numeric_value(&movie(serde_json::json!({"s": "74/100"})), "s").unwrap_err();
        assert_eq!(e.0, "extra.s");
        assert_eq!(
            set_items(
                &movie(serde_json::json!({"w": "Pat Jordan (article), Michael Kane"})),
                "w"
            ),
            Ok(vec!["pat jordan".to_string(), "michael kane".to_string()])
        );
        assert_eq!(month_of("21 Oct 1983"), Some(10));
        assert_eq!(month_of("October 21, 1983"), Some(10));
        assert_eq!(month_of("1983-07-02"), Some(7));
        assert_eq!(month_of("someday"), None);
    }

    #[test]
    fn fitting_and_encoding_each_kind() {
        let train = [
            movie(
                serde_json::json!({"score": 80, "w": ["A", "B"], "aw": "Won 2 Oscars", "rel": "1 May 2000"}),
            ),
            movie(
                serde_json::json!({"score": 40, "w": ["A"], "aw": "Nominated for 1 Oscar", "rel": "3 May 2001"}),
            ),
            movie(serde_json::json!({})),
        ];
        let refs: Vec<&Movie> = train.iter().collect();
        let mut rel = spec("rel", FeatureKind::Categorical);
        rel.extract = Some(Extract::Month);
        let mut score = spec("score", FeatureKind::Numeric);
        score.min_freq = None;
        let specs = [
            score,
            spec("w", FeatureKind::Set),
            spec("aw", FeatureKind::Text),
            rel,
        ];
        let fitted = fit_features(&specs, &refs);
        assert_eq!(
            fitted
                .iter()
                .map(FittedFeature::numeric_width)
                .sum::<usize>(),
            1 + 2 + 5
        );
        let mut out = EncodedExtras::default();
        for f in &fitted {
            f.encode(&train[1], &mut out).unwrap();
        }
        // score 40 of mean 60, sd 28.28; writers A (not B); words won/2/oscars/nominated/for/1/oscar
        let z = -std::f32::consts::FRAC_1_SQRT_2; // 40 is one sample sd (28.28) below 60
        assert!((out.numeric[0] - z).abs() < 1e-3, "{:?}", out.numeric);
        assert_eq!(&out.numeric[1..3], &[1.0, 0.0]);
        assert_eq!(
            out.categorical,
            vec![2],
            "may is the first month in the vocabulary"
        );
        let mut empty = EncodedExtras::default();
        for f in &fitted {
            f.encode(&train[2], &mut empty).unwrap();
        }
        assert_eq!(empty.numeric_missing[0], 1.0);
        assert!(empty.numeric_missing[1..].iter().all(|m| *m == 1.0));
        assert_eq!(empty.categorical, vec![crate::vocab::MISSING_ID]);
    }
}

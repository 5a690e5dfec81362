//! `[[data.features]]` entries and their validation.

use serde::{Deserialize, Serialize};

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

pub(super) const DEFAULT_MIN_FREQ: usize = 2;
pub(super) const DEFAULT_MAX_VALUES: usize = 50;

/// Whether `name` can name a `[[data.features]]` entry: letters, digits, `_`, `-` and `.`.
pub fn is_feature_name(name: &str) -> bool {
    !name.trim().is_empty() && name.chars().all(is_feature_name_char)
}

fn is_feature_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// `column` made a feature name: every other character becomes `_` ("Rotten Tomatoes Rating"
/// → "Rotten_Tomatoes_Rating"); `None` when nothing but `_` would be left.
pub fn feature_name_of(column: &str) -> Option<String> {
    let name: String = column
        .trim()
        .chars()
        .map(|c| if is_feature_name_char(c) { c } else { '_' })
        .collect();
    name.chars().any(|c| c != '_').then_some(name)
}

impl FeatureSpec {
    fn key(&self) -> String {
        format!("data.features `{}`", self.name)
    }

    /// Checks the options against the kind; errors name the feature.
    pub fn validate(&self) -> Result<(), String> {
        let key = self.key();
        if !is_feature_name(&self.name) {
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

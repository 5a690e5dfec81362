//! Declared features fitted on the training split, and encoded as metadata-encoder inputs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::spec::{
    DEFAULT_MAX_VALUES, DEFAULT_MIN_FREQ, Extract, FeatureKind, FeatureSpec, Scaling,
};
use super::values::{ValueError, categorical_value, field, numeric_value, set_items, text_words};
use crate::movie::Movie;
use crate::scalers::{NumericScaler, NumericTransform};
use crate::vocab::Vocab;

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

//! Fields whose absence the training movies never taught: a movie given without one is read
//! as having an unknown value.
//!
//! A field absent from (nearly) no training movie has a missing slot or indicator the model
//! learnt from a handful of movies at most, so a movie given without it is read through
//! weights that never learnt anything. Measured on the shipped config's frozen part
//! (docs/RESULTS.md, "Movies given without a field every training movie had"): the 462 test
//! movies without their writers were rated with MAE 0.55 instead of 0.38, and with their
//! writers replaced by a name nobody knows, 0.38 again. So for such a field, absence encodes
//! as an unknown value: the out-of-vocabulary id of a category, no missing indicator on a set
//! or text feature.
//! A movie with no category at all keeps every missing slot, as the blends that rate such a
//! movie from its plot detect it that way.

use crate::extra::{EncodedExtras, FittedFeature};
use crate::movie::Movie;
use crate::scalers::raw_categorical;
use crate::vocab::{MISSING_ID, OOV_ID, Vocab};

/// A field absent from fewer than this share of the training movies is read as unknown when
/// a movie lacks it.
pub const RARELY_ABSENT: f64 = 0.01;

/// The categorical fields (built-in by name, declared extras as `extra.NAME`) and declared set
/// and text extras that fewer than `RARELY_ABSENT` of the `train` movies lack. Numeric fields
/// keep their missing indicators: the vote count's marks a movie for the ratings without it.
pub fn rarely_absent(
    train: &[&Movie],
    categorical: &[Vocab],
    extras: &[FittedFeature],
) -> Vec<String> {
    if train.is_empty() {
        return Vec::new();
    }
    let rare = |absent: usize| (absent as f64) < RARELY_ABSENT * train.len() as f64;
    let builtin = categorical.iter().filter_map(|v| {
        let absent = train
            .iter()
            .filter(|m| v.id(raw_categorical(m, &v.name)) == MISSING_ID)
            .count();
        rare(absent).then(|| v.name.clone())
    });
    let declared = extras
        .iter()
        .filter(|f| !matches!(f, FittedFeature::Numeric { .. }))
        .filter_map(|f| {
            let absent = train.iter().filter(|m| extra_absent(f, m)).count();
            rare(absent).then(|| extra_key(f))
        });
    builtin.chain(declared).collect()
}

/// A declared extra's name in `rarely_absent`'s list.
fn extra_key(f: &FittedFeature) -> String {
    format!("extra.{}", f.name())
}

/// Whether `movie` lacks the declared extra `f` (a value that cannot be read counts as absent).
fn extra_absent(f: &FittedFeature, movie: &Movie) -> bool {
    let mut out = EncodedExtras::default();
    if f.encode(movie, &mut out).is_err() {
        return true;
    }
    out.categorical.first() == Some(&MISSING_ID) || out.numeric_missing.iter().any(|m| *m > 0.5)
}

/// Reads the fields `unknown` names as unknown where a movie's encoding marks them absent
/// (`numeric_missing` and `categorical` as `Preprocessor::encode` builds them, built-in fields
/// first), unless the movie has no category at all.
pub fn read_absent_as_unknown(
    unknown: &[String],
    (builtin, extras): (&[Vocab], &[FittedFeature]),
    n_builtin_numeric: usize,
    (numeric_missing, categorical): (&mut [f32], &mut [u32]),
) {
    if unknown.is_empty() || categorical.iter().all(|c| *c == MISSING_ID) {
        return;
    }
    let listed = |name: &str| unknown.iter().any(|u| u == name);
    // The categorical slots in order: the built-in fields, then the declared categorical extras.
    let declared = extras
        .iter()
        .filter(|f| matches!(f, FittedFeature::Categorical { .. }))
        .map(extra_key);
    let names = builtin.iter().map(|v| v.name.clone()).chain(declared);
    for (name, id) in names.zip(categorical.iter_mut()) {
        if *id == MISSING_ID && listed(&name) {
            *id = OOV_ID;
        }
    }
    let mut column = n_builtin_numeric;
    for f in extras {
        let width = f.numeric_width();
        let multi_hot = matches!(f, FittedFeature::Set { .. } | FittedFeature::Text { .. });
        if multi_hot && listed(&extra_key(f)) {
            let end = (column + width).min(numeric_missing.len());
            numeric_missing[column.min(end)..end].fill(0.0);
        }
        column += width;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extra::{FeatureSpec, fit_features};

    fn movie(id: &str, director: Option<&str>, certificate: Option<&str>, writer: bool) -> Movie {
        let mut json = serde_json::json!({ "id": id });
        if let Some(d) = director {
            json["directors"] = serde_json::json!([d]);
        }
        if let Some(c) = certificate {
            json["certificate"] = serde_json::json!(c);
        }
        if writer {
            json["extra"] = serde_json::json!({ "writer": "Ann Writer" });
        }
        serde_json::from_value(json).unwrap()
    }

    fn writer_spec() -> FeatureSpec {
        serde_json::from_value(
            serde_json::json!({ "name": "writer", "kind": "set", "min_freq": 1 }),
        )
        .unwrap()
    }

    /// Every training movie has a director and a writer; half lack a certificate.
    fn fitted() -> (Vec<Movie>, Vec<Vocab>, Vec<FittedFeature>) {
        let movies: Vec<Movie> = (0..20)
            .map(|i| {
                let cert = (i % 2 == 0).then_some("R");
                movie(&format!("m{i}"), Some("Jo Director"), cert, true)
            })
            .collect();
        let refs: Vec<&Movie> = movies.iter().collect();
        let vocab = |name: &str| {
            let values = refs.iter().filter_map(|m| raw_categorical(m, name));
            Vocab::fit(name, values, 1)
        };
        let categorical = vec![vocab("certificate"), vocab("director")];
        let extras = fit_features(&[writer_spec()], &refs);
        (movies, categorical, extras)
    }

    #[test]
    fn only_fields_nearly_every_training_movie_had_are_listed() {
        let (movies, categorical, extras) = fitted();
        let refs: Vec<&Movie> = movies.iter().collect();
        let listed = rarely_absent(&refs, &categorical, &extras);
        assert_eq!(listed, vec!["director".to_string(), "extra.writer".into()]);
        assert!(rarely_absent(&[], &categorical, &extras).is_empty());
    }

    #[test]
    fn a_listed_field_absent_reads_as_unknown_unless_every_category_is() {
        let (movies, categorical, extras) = fitted();
        let refs: Vec<&Movie> = movies.iter().collect();
        let listed = rarely_absent(&refs, &categorical, &extras);
        let width = extras[0].numeric_width();
        // Certificate missing (not listed), director missing (listed), writer missing (listed).
        let mut missing = vec![1.0; 2 + width];
        let mut cats = vec![MISSING_ID, MISSING_ID];
        let mut with_a_category = cats.clone();
        with_a_category[0] = 2;
        read_absent_as_unknown(
            &listed,
            (&categorical, &extras),
            2,
            (&mut missing, &mut with_a_category),
        );
        assert_eq!(with_a_category, vec![2, OOV_ID]);
        assert_eq!(&missing[..2], &[1.0, 1.0], "built-in numeric flags stay");
        assert!(
            missing[2..].iter().all(|m| *m == 0.0),
            "writer read as unknown"
        );
        // No category at all: the movie stays without metadata.
        let mut missing = vec![1.0; 2 + width];
        read_absent_as_unknown(
            &listed,
            (&categorical, &extras),
            2,
            (&mut missing, &mut cats),
        );
        assert_eq!(cats, vec![MISSING_ID, MISSING_ID]);
        assert!(missing.iter().all(|m| *m == 1.0));
        // A state fitted before the rule lists nothing and reads every absence as before.
        let mut cats = vec![2, MISSING_ID];
        read_absent_as_unknown(&[], (&categorical, &extras), 2, (&mut missing, &mut cats));
        assert_eq!(cats, vec![2, MISSING_ID]);
    }
}

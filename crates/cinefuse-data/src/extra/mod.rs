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

mod fitted;
mod spec;
mod values;

pub use fitted::{EncodedExtras, FittedFeature, fit_features};
pub use spec::{
    Extract, FeatureKind, FeatureSpec, Scaling, feature_name_of, is_feature_name, validate_specs,
};
pub use values::{ValueError, check_movie_extras, month_of, numeric_value, set_items, text_words};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Movie;
    use serde_json::Value;

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

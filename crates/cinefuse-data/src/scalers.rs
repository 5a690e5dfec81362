//! Metadata features: numeric scalers (standardize, log1p for heavy-tailed counts) with
//! missing indicators, and which categorical fields are embedded. Fitted on train only.

use serde::{Deserialize, Serialize};

use crate::movie::Movie;

/// How a raw numeric value is transformed before standardization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NumericTransform {
    Identity,
    /// `ln(1 + max(x, 0))`, for counts and money spanning orders of magnitude.
    Log1p,
}

/// The numeric metadata fields, their transforms and how to read them from a movie.
pub const NUMERIC_FEATURES: [(&str, NumericTransform); 5] = [
    ("year", NumericTransform::Identity),
    ("runtime_min", NumericTransform::Identity),
    ("votes", NumericTransform::Log1p),
    ("budget", NumericTransform::Log1p),
    ("gross", NumericTransform::Log1p),
];

/// The categorical fields (first element of list fields) embedded by the metadata encoder.
pub const CATEGORICAL_FEATURES: [&str; 5] = [
    "certificate",
    "director",
    "language",
    "country",
    "lead_actor",
];

pub fn raw_numeric(movie: &Movie, name: &str) -> Option<f64> {
    let v = match name {
        "year" => movie.year.map(f64::from),
        "runtime_min" => movie.runtime_min.map(f64::from),
        "votes" => movie.votes.map(|v| v as f64),
        "budget" => movie.budget,
        "gross" => movie.gross,
        _ => None,
    };
    v.filter(|x| x.is_finite())
}

pub fn raw_categorical<'a>(movie: &'a Movie, name: &str) -> Option<&'a str> {
    fn first(l: &Option<Vec<String>>) -> Option<&str> {
        l.as_ref().and_then(|l| l.first()).map(String::as_str)
    }
    match name {
        "certificate" => movie.certificate.as_deref(),
        "director" => first(&movie.directors),
        "language" => first(&movie.languages),
        "country" => first(&movie.countries),
        "lead_actor" => first(&movie.cast),
        _ => None,
    }
}

/// A fitted standardizer for one numeric field.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NumericScaler {
    pub name: String,
    pub transform: NumericTransform,
    pub mean: f64,
    pub std: f64,
    /// Number of training values the statistics came from.
    pub fitted_on: usize,
}

impl NumericScaler {
    fn pre(transform: NumericTransform, x: f64) -> f64 {
        match transform {
            NumericTransform::Identity => x,
            NumericTransform::Log1p => x.max(0.0).ln_1p(),
        }
    }

    pub fn fit(name: &str, transform: NumericTransform, values: impl Iterator<Item = f64>) -> Self {
        let xs: Vec<f64> = values.map(|x| Self::pre(transform, x)).collect();
        let n = xs.len();
        let mean = if n == 0 {
            0.0
        } else {
            xs.iter().sum::<f64>() / n as f64
        };
        let var = if n < 2 {
            1.0
        } else {
            xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        };
        let std = if var.sqrt() > 1e-9 { var.sqrt() } else { 1.0 };
        NumericScaler {
            name: name.to_string(),
            transform,
            mean,
            std,
            fitted_on: n,
        }
    }

    /// Scaled value and missing indicator; a missing value becomes (0, 1) — the mean, flagged.
    pub fn apply(&self, x: Option<f64>) -> (f32, f32) {
        match x {
            Some(x) => (
                ((Self::pre(self.transform, x) - self.mean) / self.std) as f32,
                0.0,
            ),
            None => (0.0, 1.0),
        }
    }

    /// Inverse of `apply` for a present value (used by reports and tests).
    pub fn invert(&self, scaled: f32) -> f64 {
        let t = f64::from(scaled) * self.std + self.mean;
        match self.transform {
            NumericTransform::Identity => t,
            NumericTransform::Log1p => t.exp_m1(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaler_standardizes_and_flags_missing() {
        let s = NumericScaler::fit(
            "year",
            NumericTransform::Identity,
            [1990.0, 2000.0, 2010.0].into_iter(),
        );
        assert!((s.mean - 2000.0).abs() < 1e-9);
        assert!((s.std - 10.0).abs() < 1e-9);
        assert_eq!(s.apply(Some(2010.0)), (1.0, 0.0));
        assert_eq!(s.apply(None), (0.0, 1.0));
        assert!((s.invert(1.0) - 2010.0).abs() < 1e-6);
    }

    #[test]
    fn log1p_scaler_round_trips() {
        let s = NumericScaler::fit(
            "votes",
            NumericTransform::Log1p,
            [10.0, 1000.0, 100000.0].into_iter(),
        );
        // ln(1 + x) of 10, 1000, 100000 has mean ln(1001)-ish and the sample standard deviation.
        let logs: Vec<f64> = [10.0f64, 1000.0, 100000.0]
            .iter()
            .map(|x| x.ln_1p())
            .collect();
        let mean = logs.iter().sum::<f64>() / 3.0;
        let std = (logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
        assert!((s.mean - mean).abs() < 1e-12 && (s.std - std).abs() < 1e-12);
        let (v, m) = s.apply(Some(1000.0));
        assert_eq!(m, 0.0);
        assert!(
            (f64::from(v) - (1000f64.ln_1p() - mean) / std).abs() < 1e-6,
            "{v}"
        );
        assert!((s.invert(v) - 1000.0).abs() < 1e-3);
        // Negative counts are clamped to 0 before the log, and a missing value is (0, 1).
        assert!((f64::from(s.apply(Some(-5.0)).0) - (0.0 - mean) / std).abs() < 1e-6);
        assert_eq!(s.apply(None), (0.0, 1.0));
    }

    #[test]
    fn constant_feature_does_not_divide_by_zero() {
        let s = NumericScaler::fit("x", NumericTransform::Identity, [5.0, 5.0].into_iter());
        assert_eq!(s.apply(Some(5.0)).0, 0.0);
    }
}

//! The inputs an exported model reads, as form fields: what the web app's predict form offers
//! for the chosen model (the built-in fields its modalities and metadata encoder use, and its
//! declared extra features with their types), and the conversion of submitted text into a
//! movie in the dataset format.

use cinefuse_data::extra::FittedFeature;
use cinefuse_data::prepared::Preprocessor;
use cinefuse_model::Modality;
use serde::Serialize;
use serde_json::{Value, json};

use crate::predictor::Predictor;

/// How a field's text becomes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    Text,
    LongText,
    Number,
    /// Comma-separated, a list of strings.
    List,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputField {
    /// The movie field (`extra.NAME` for a declared feature).
    pub name: String,
    pub label: String,
    pub kind: FieldKind,
    pub hint: String,
}

/// The movie fields a form may set, with their kinds (a model reads some of them).
const BUILT_IN: [(&str, &str, FieldKind); 12] = [
    ("title", "Title", FieldKind::Text),
    ("plot", "Plot", FieldKind::LongText),
    ("year", "Year", FieldKind::Number),
    ("runtime_min", "Runtime (minutes)", FieldKind::Number),
    ("votes", "IMDb votes", FieldKind::Number),
    ("budget", "Budget", FieldKind::Number),
    ("gross", "Gross", FieldKind::Number),
    ("certificate", "Certificate", FieldKind::Text),
    ("directors", "Directors", FieldKind::List),
    ("cast", "Cast", FieldKind::List),
    ("languages", "Languages", FieldKind::List),
    ("countries", "Countries", FieldKind::List),
];

/// The movie field behind each of the metadata encoder's categorical inputs.
fn categorical_field(input: &str) -> &str {
    match input {
        "director" => "directors",
        "language" => "languages",
        "country" => "countries",
        "lead_actor" => "cast",
        other => other,
    }
}

fn built_in(name: &str) -> Option<InputField> {
    let (name, label, kind) = BUILT_IN.iter().find(|(n, ..)| *n == name)?;
    let hint = match kind {
        FieldKind::List => "comma-separated",
        _ => "",
    };
    Some(InputField {
        name: name.to_string(),
        label: label.to_string(),
        kind: *kind,
        hint: hint.into(),
    })
}

fn extra_field(f: &FittedFeature) -> InputField {
    let (kind, hint) = match f {
        FittedFeature::Numeric { .. } => (FieldKind::Number, "a number"),
        FittedFeature::Categorical {
            extract: Some(_), ..
        } => (FieldKind::Text, "as in the data, e.g. a date"),
        FittedFeature::Categorical { .. } => (FieldKind::Text, "one value"),
        FittedFeature::Set { .. } => (FieldKind::List, "comma-separated"),
        FittedFeature::Text { .. } => (FieldKind::LongText, "words"),
    };
    InputField {
        name: format!("extra.{}", f.name()),
        label: f.name().to_string(),
        kind,
        hint: hint.into(),
    }
}

/// The fields one model's preprocessing and modalities read, in form order.
pub(crate) fn fields_of(pre: &Preprocessor, modalities: &[Modality]) -> Vec<InputField> {
    let state = &pre.state;
    let mut names = vec!["title"];
    if modalities.contains(&Modality::Text) {
        names.push("plot");
    }
    let meta = modalities.contains(&Modality::Meta);
    if meta {
        names.extend(state.numeric.iter().map(|s| s.name.as_str()));
        names.extend(state.categorical.iter().map(|v| categorical_field(&v.name)));
    }
    let mut fields: Vec<InputField> = names.into_iter().filter_map(built_in).collect();
    if meta {
        fields.extend(state.extras.iter().map(extra_field));
    }
    fields
}

impl Predictor {
    /// Every field this model (every bag of a blend) reads, each once.
    pub fn input_fields(&self) -> Vec<InputField> {
        let mut out: Vec<InputField> = Vec::new();
        for f in self
            .parts()
            .flat_map(|p| fields_of(&p.preprocessor, p.model.modalities()))
        {
            if !out.iter().any(|o| o.name == f.name) {
                out.push(f);
            }
        }
        out
    }
}

/// A movie (dataset JSON) from submitted `(field, text)` pairs: built-in fields by their fixed
/// kinds, `extra.NAME` only for extras in `fields`. Empty values are left out; errors name the
/// field.
pub fn movie_from_form(fields: &[InputField], form: &[(String, String)]) -> Result<Value, String> {
    let mut movie = json!({});
    for (name, text) in form {
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let kind = match name.strip_prefix("extra.") {
            Some(_) => fields.iter().find(|f| f.name == *name).map(|f| f.kind),
            None => built_in(name).map(|f| f.kind),
        }
        .ok_or_else(|| format!("unknown form field {name:?}"))?;
        let value = match kind {
            FieldKind::Text | FieldKind::LongText => Value::String(text.into()),
            FieldKind::List => text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.into()))
                .collect(),
            FieldKind::Number => number(name, text)?,
        };
        match name.strip_prefix("extra.") {
            Some(key) => movie["extra"][key] = value,
            None => movie[name.as_str()] = value,
        }
    }
    Ok(movie)
}

/// A finite number; whole numbers as JSON integers (counts and years are integers in the
/// dataset format). `json!` would turn NaN into null, which reads as "missing": refused here.
fn number(name: &str, text: &str) -> Result<Value, String> {
    let n: f64 = text
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite())
        .ok_or_else(|| format!("{name}: {text:?} is not a finite number"))?;
    Ok(if n.fract() == 0.0 && n.abs() < 9e15 {
        json!(n as i64)
    } else {
        json!(n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, kind: FieldKind) -> InputField {
        InputField {
            name: name.into(),
            label: name.into(),
            kind,
            hint: String::new(),
        }
    }

    #[test]
    fn form_text_becomes_typed_movie_fields() {
        let fields = [
            field("extra.metascore", FieldKind::Number),
            field("extra.writer", FieldKind::List),
        ];
        let form: Vec<(String, String)> = [
            ("title", "Heat"),
            ("year", "1995"),
            ("runtime_min", "170.5"),
            ("votes", "700000"),
            ("directors", "Michael Mann"),
            ("cast", " Al Pacino, Robert De Niro ,"),
            ("plot", ""),
            ("extra.metascore", "76"),
            ("extra.writer", "Michael Mann"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let movie = movie_from_form(&fields, &form).unwrap();
        assert_eq!(
            movie,
            json!({"title": "Heat", "year": 1995, "runtime_min": 170.5, "votes": 700000,
                   "directors": ["Michael Mann"], "cast": ["Al Pacino", "Robert De Niro"],
                   "extra": {"metascore": 76, "writer": ["Michael Mann"]}})
        );
    }

    #[test]
    fn unknown_fields_and_non_finite_numbers_are_refused_by_name() {
        let one = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let e = movie_from_form(&[], &one("extra.awards", "x")).unwrap_err();
        assert!(e.contains("extra.awards"), "{e}");
        let e = movie_from_form(&[], &one("ratng", "7")).unwrap_err();
        assert!(e.contains("ratng"), "{e}");
        for bad in ["NaN", "inf", "1e999", "seven"] {
            let e = movie_from_form(&[], &one("votes", bad)).unwrap_err();
            assert!(e.starts_with("votes:"), "{e}");
        }
    }
}

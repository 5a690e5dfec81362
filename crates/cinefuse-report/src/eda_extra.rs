//! The EDA section for a dataset's `extra` values (the columns `[[data.features]]` can
//! declare): how often each is present, what kind of values it holds, and how it relates to
//! the rating and the most common genres.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use cinefuse_data::Movie;
use cinefuse_data::extra::{numeric_value, set_items};
use serde::Serialize;
use serde_json::Value;

use crate::charts;
use crate::html::Page;
use crate::stats::pearson;

/// What the report found about one extra field.
#[derive(Debug, Clone, Serialize)]
pub struct ExtraField {
    pub name: String,
    pub present: usize,
    /// "numeric" when every value reads as a number, "list" when values are lists or
    /// comma-separated, else "text".
    pub kind: String,
    /// Pearson correlation with the rating (numeric fields).
    pub rating_r: Option<f64>,
    /// Pearson correlation with membership of each of the top genres (numeric fields).
    pub genre_r: Vec<(String, f64)>,
    /// Distinct values or items (non-numeric fields).
    pub distinct: usize,
}

fn kind_of(movies: &[Movie], name: &str) -> &'static str {
    let values: Vec<&Value> = movies.iter().filter_map(|m| m.extra.get(name)).collect();
    let numeric = movies
        .iter()
        .filter(|m| m.extra.contains_key(name))
        .all(|m| numeric_value(m, name).is_ok_and(|v| v.is_some()));
    if numeric {
        "numeric"
    } else if values.iter().any(|v| {
        v.is_array()
            || v.as_str()
                .is_some_and(|s| s.contains(',') || s.contains('|'))
    }) {
        "list"
    } else {
        "text"
    }
}

fn describe(movies: &[Movie], name: &str, top_genres: &[String]) -> ExtraField {
    let kind = kind_of(movies, name);
    let present = movies.iter().filter(|m| m.extra.contains_key(name)).count();
    let values: Vec<Option<f64>> = movies
        .iter()
        .map(|m| numeric_value(m, name).ok().flatten())
        .collect();
    let ratings: Vec<Option<f64>> = movies.iter().map(|m| m.rating.map(f64::from)).collect();
    let (rating_r, genre_r) = if kind == "numeric" {
        let r = pearson(&values, &ratings).0;
        let by_genre = top_genres
            .iter()
            .map(|g| {
                let member: Vec<Option<f64>> = movies
                    .iter()
                    .map(|m| {
                        m.genres
                            .as_ref()
                            .map(|gs| f64::from(u8::from(gs.contains(g))))
                    })
                    .collect();
                (g.clone(), pearson(&values, &member).0)
            })
            .collect();
        (Some(r).filter(|r| r.is_finite()), by_genre)
    } else {
        (None, Vec::new())
    };
    let distinct = if kind == "numeric" {
        0
    } else {
        let mut items: Vec<String> = movies
            .iter()
            .flat_map(|m| match kind {
                "list" => set_items(m, name).unwrap_or_default(),
                _ => m
                    .extra
                    .get(name)
                    .and_then(Value::as_str)
                    .map(str::to_lowercase)
                    .into_iter()
                    .collect(),
            })
            .collect();
        items.sort_unstable();
        items.dedup();
        items.len()
    };
    ExtraField {
        name: name.to_string(),
        present,
        kind: kind.into(),
        rating_r,
        genre_r,
        distinct,
    }
}

/// The table of extra fields: header and one row per field (kind, presence, distinct
/// values, correlation with the rating and with the top genres).
fn field_table(
    movies: usize,
    fields: &[ExtraField],
    top_genres: &[String],
) -> (Vec<String>, Vec<Vec<String>>) {
    let n = movies.max(1) as f64;
    let fmt = |r: Option<f64>| r.map_or("–".to_string(), |r| format!("{r:+.2}"));
    let mut header: Vec<String> = ["field", "kind", "present", "distinct", "r with rating"]
        .map(String::from)
        .to_vec();
    header.extend(top_genres.iter().cloned());
    let rows = fields
        .iter()
        .map(|f| {
            let mut row = vec![
                f.name.clone(),
                f.kind.clone(),
                format!("{} ({:.0} %)", f.present, 100.0 * f.present as f64 / n),
                if f.kind == "numeric" {
                    "–".into()
                } else {
                    f.distinct.to_string()
                },
                fmt(f.rating_r),
            ];
            row.extend(top_genres.iter().map(|g| {
                fmt(f
                    .genre_r
                    .iter()
                    .find(|(n, _)| n == g)
                    .map(|(_, r)| *r)
                    .filter(|r| r.is_finite()))
            }));
            row
        })
        .collect();
    (header, rows)
}

/// Writes the section (a table and a histogram per numeric field); nothing when no movie has
/// extra values.
pub fn extra_section(
    page: &mut Page,
    out: &Path,
    movies: &[Movie],
    genre_counts: &[(String, usize)],
    images: &mut Vec<String>,
) -> Result<Vec<ExtraField>> {
    let names: BTreeMap<&str, ()> = movies
        .iter()
        .flat_map(|m| m.extra.keys().map(|k| (k.as_str(), ())))
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let top_genres: Vec<String> = genre_counts
        .iter()
        .take(4)
        .map(|(g, _)| g.clone())
        .collect();
    let fields: Vec<ExtraField> = names
        .keys()
        .map(|n| describe(movies, n, &top_genres))
        .collect();
    page.section(
        "extra",
        "Extra fields",
        "Values movies carry in `extra`, usable as features by declaring them in \
         [[data.features]]. Correlations are Pearson's, over movies that have both values.",
    );
    let (header, rows) = field_table(movies.len(), &fields, &top_genres);
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    page.table(&header, &rows);
    for f in fields.iter().filter(|f| f.kind == "numeric") {
        let values: Vec<f64> = movies
            .iter()
            .filter_map(|m| numeric_value(m, &f.name).ok().flatten())
            .collect();
        let (lo, hi) = values
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        let file = format!(
            "extra-{}.png",
            f.name.replace(|c: char| !c.is_alphanumeric(), "_")
        );
        let hi = if hi > lo { hi } else { lo + 1.0 };
        charts::histogram(
            &out.join(&file),
            &format!("extra.{}", f.name),
            &f.name,
            &values,
            20,
            lo,
            hi,
        )?;
        page.image(&file, &format!("Distribution of extra.{}", f.name));
        images.push(file);
    }
    page.end_section();
    Ok(fields)
}

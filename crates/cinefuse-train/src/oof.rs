//! `oof_predictions.csv`: a bag's (or a blend's) out-of-fold predictions, one line per movie
//! of train + validation, each predicted by the member that did not train on it. What the
//! thresholds and the interval were fitted on, kept for the user's own analysis or stacking.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use crate::predictions::Predictions;

pub const OOF_FILE: &str = "oof_predictions.csv";

/// Writes `dir/oof_predictions.csv` from the predictions on each fold.
pub fn write_oof(dir: &Path, folds: &[Predictions], genres: &[String]) -> Result<()> {
    cinefuse_data::atomic::write_atomic(&dir.join(OOF_FILE), oof_csv(folds, genres).as_bytes())?;
    Ok(())
}

/// Columns: `id`, `fold`, `rating` (predicted, 0–10), `rating_true`, one `p_<genre>` (the
/// probability) and one `y_<genre>` (1 or 0) per genre. Unknown truths are empty cells.
pub fn oof_csv(folds: &[Predictions], genres: &[String]) -> String {
    let mut out = String::from("id,fold,rating,rating_true");
    for prefix in ["p_", "y_"] {
        for g in genres {
            write!(out, ",{prefix}{}", csv_field(g)).expect("writing to a String");
        }
    }
    out.push('\n');
    let truth = |present: bool, v: f32| {
        if present {
            v.to_string()
        } else {
            String::new()
        }
    };
    for (fold, p) in folds.iter().enumerate() {
        let g = p.n_genres;
        for i in 0..p.ids.len() {
            let mut cells = vec![
                csv_field(&p.ids[i]),
                fold.to_string(),
                format!("{:.4}", p.rating[i]),
                truth(p.rating_present[i], p.rating_true[i]),
            ];
            cells.extend(
                p.probs[i * g..(i + 1) * g]
                    .iter()
                    .map(|v| format!("{v:.5}")),
            );
            cells.extend(
                p.targets[i * g..(i + 1) * g]
                    .iter()
                    .map(|&v| truth(p.genres_present[i], v)),
            );
            out.push_str(&cells.join(","));
            out.push('\n');
        }
    }
    out
}

/// Quotes a field that holds a comma, a quote or a line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(ids: &[&str], probs: &[f32], rating: f32, labelled: bool) -> Predictions {
        Predictions {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            n_genres: 2,
            probs: probs.to_vec(),
            targets: [1.0, 0.0].repeat(ids.len()),
            genres_present: vec![labelled; ids.len()],
            rating: vec![rating; ids.len()],
            rating_true: vec![7.0; ids.len()],
            rating_present: vec![labelled; ids.len()],
            ..Predictions::default()
        }
    }

    #[test]
    fn one_line_per_movie_with_its_fold_and_empty_unknown_truths() {
        let folds = [
            fold(&["tt1", "a,b"], &[0.9, 0.1, 0.8, 0.2], 6.5, true),
            fold(&["tt3"], &[0.3, 0.7], 5.0, false),
        ];
        let csv = oof_csv(&folds, &["Drama".into(), "Sci-Fi".into()]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "id,fold,rating,rating_true,p_Drama,p_Sci-Fi,y_Drama,y_Sci-Fi"
        );
        assert_eq!(lines[1], "tt1,0,6.5000,7,0.90000,0.10000,1,0");
        assert_eq!(lines[2], "\"a,b\",0,6.5000,7,0.80000,0.20000,1,0");
        assert_eq!(lines[3], "tt3,1,5.0000,,0.30000,0.70000,,");
        assert_eq!(lines.len(), 4);
    }
}

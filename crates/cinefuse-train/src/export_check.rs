//! An export checked before it is published: loaded from its own files as `predict` loads it,
//! it must predict a few test movies (a final model's, trained without a test split:
//! validation movies) as the run did in memory. A loading bug (weights, backbone copies, state
//! shared between members) then fails the export instead of reaching its users.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use anyhow::{Result, bail};
use cinefuse_data::movie::{MOVIES_FILE, Movie, parse_movies_bytes};
use cinefuse_data::user_file::{MAX_JSONL_BYTES, read_capped};
use sha2::{Digest, Sha256};

use crate::config::BackendKind;
use crate::predictions::Predictions;
use crate::predictor::{MoviePrediction, Predictor};

/// How many movies the check predicts.
const CHECKED_MOVIES: usize = 8;
/// The largest difference allowed in a probability or a rating (the tests' tolerance).
const TOLERANCE: f32 = 1e-4;

/// The run's predictions an export is checked against: its test split's, or, for a final
/// model trained without a test split, its validation split's (`validation`, predicted only
/// then), so that the check never passes on no movies at all.
pub fn checked_predictions(
    test: &Predictions,
    validation: impl FnOnce() -> Result<Predictions>,
) -> Result<Cow<'_, Predictions>> {
    Ok(if test.ids.is_empty() {
        Cow::Owned(validation()?)
    } else {
        Cow::Borrowed(test)
    })
}

/// Loads the staged export `dir` and predicts up to eight of the movies in `test` (the run's
/// own predictions of its test split, or of its validation split when it has none) from the
/// raw records of `dataset`. When those records are gone or are not the ones it trained on
/// (their SHA-256 is not `data_hash`), the check is skipped with a warning: other records
/// would predict otherwise for no fault of the export.
pub fn check_export(
    dir: &Path,
    dataset: &Path,
    data_hash: &str,
    test: &Predictions,
    backend: Option<BackendKind>,
) -> Result<()> {
    let movies = match training_records(dataset, data_hash) {
        Ok(m) => m,
        Err(why) => {
            eprintln!("warning: the export is not checked against the run: {why}");
            return Ok(());
        }
    };
    let by_id: HashMap<&str, &Movie> = movies.iter().map(|m| (m.id.as_str(), m)).collect();
    let rows: Vec<usize> = (0..test.ids.len())
        .filter(|&i| by_id.contains_key(test.ids[i].as_str()))
        .take(CHECKED_MOVIES)
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let predictor = Predictor::load(dir, backend)?;
    // A movie whose poster cannot be read now is left out rather than failing the export.
    let (rows, inputs): (Vec<usize>, Vec<_>) = rows
        .into_iter()
        .filter_map(|i| {
            let item = predictor.item(by_id[test.ids[i].as_str()], None, dataset);
            item.ok().map(|item| (i, item))
        })
        .unzip();
    if inputs.is_empty() {
        return Ok(());
    }
    for (&i, p) in rows.iter().zip(predictor.predict(&inputs)) {
        if let Some((what, exported, run)) = first_difference(&predictor, &p, test, i) {
            bail!(
                "the export predicts movie {} differently from the run it comes from ({what}: \
                 {exported} against {run}); nothing was written. If the dataset's posters \
                 changed since it was prepared, prepare and train again; otherwise this is a \
                 bug in cinefuse, please report it",
                test.ids[i]
            );
        }
    }
    Ok(())
}

/// The first output (a genre's probability, then the rating) in which the export's
/// prediction `p` and the run's prediction of row `i` of `test` differ.
fn first_difference<'a>(
    predictor: &'a Predictor,
    p: &MoviePrediction,
    test: &Predictions,
    i: usize,
) -> Option<(&'a str, f32, f32)> {
    let g = test.n_genres;
    let probabilities = predictor
        .manifest
        .genres
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let exported = p.genres.iter().find(|s| &s.genre == name);
            let probability = exported.map_or(f32::NAN, |s| s.probability);
            (name.as_str(), probability, test.probs[i * g + k])
        });
    let rating = std::iter::once(("the rating", p.rating, test.rating[i]));
    probabilities
        .chain(rating)
        .find(|(_, a, b)| far_apart(*a, *b))
}

/// Whether two outputs differ by more than the tolerance (NaN on either side: they do).
fn far_apart(a: f32, b: f32) -> bool {
    let d = (a - b).abs();
    d.is_nan() || d > TOLERANCE
}

/// The movies of `dataset` if its `movies.jsonl` is still the file the run trained on.
fn training_records(dataset: &Path, data_hash: &str) -> Result<Vec<Movie>, String> {
    let path = dataset.join(MOVIES_FILE);
    let raw = read_capped(&path, MAX_JSONL_BYTES).map_err(|e| e.to_string())?;
    if format!("{:x}", Sha256::digest(&raw)) != data_hash {
        return Err(format!("{} changed since training", path.display()));
    }
    Ok(parse_movies_bytes(&raw)
        .movies
        .into_iter()
        .map(|(_, m)| m)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(ids: &[&str]) -> Predictions {
        Predictions {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_run_without_test_movies_is_checked_on_its_validation_movies() {
        let test = of(&["t1"]);
        let kept = checked_predictions(&test, || panic!("not predicted when test movies exist"));
        assert_eq!(kept.unwrap().ids, ["t1"]);
        let none = of(&[]);
        let val = checked_predictions(&none, || Ok(of(&["v1", "v2"]))).unwrap();
        assert_eq!(val.ids, ["v1", "v2"]);
    }
}

//! Repeated bagging (`train.bag_sets = S`, AutoGluon's `num_bag_sets`): a bag trains S sets of
//! K members, set s on folds drawn with its own seed. Everything keyed by the fold (the CV+
//! interval's member index, the blend's votes, rating trees and cross-fitted stacking) stays on
//! the first set's folds, so a repeated bag still looks like K members to its users: member k
//! is every set's member k averaged (at prediction all of them are unseen movies' predictors,
//! so the grouping only decides which ones share a mean), and out of fold a movie's prediction
//! is the mean over the sets' members that did not train on it. Bags trained before
//! 2026-12-04 averaged only the genres and kept the first set's rating (`SetLayout`).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::predictions::Predictions;

/// Set s draws its folds and initialises its members with `seed + SET_SEED_STRIDE · s`: far
/// apart, so that a bag of seed 7 and one of seed 8 share no set.
pub const SET_SEED_STRIDE: u64 = 1000;

/// How a repeated bag's member predictions combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetLayout {
    /// Sets of folds (1: a plain bag).
    pub sets: usize,
    /// Whether the rating averages over the sets too; false for bags recorded before it did
    /// (their rating and interval stay on the first set, as they were calibrated).
    pub rating_over_sets: bool,
}

impl SetLayout {
    /// One set (a plain bag, a refit model, a blend's top level).
    pub const ONE: SetLayout = SetLayout {
        sets: 1,
        rating_over_sets: true,
    };
}

/// How many sets a record from before `train.bag_sets` has (serde's default for `bag.json`,
/// `eval.json` and `manifest.json`).
pub(crate) fn one_set() -> usize {
    1
}

/// The seed of set `set` of a bag seeded `seed` (the first set keeps `seed`).
pub fn set_seed(seed: u64, set: usize) -> u64 {
    seed.wrapping_add(SET_SEED_STRIDE.wrapping_mul(set as u64))
}

/// A member's folder: `fold-K` for the first set (as a bag of one set has it),
/// `set-S-fold-K` for the others.
pub fn set_member_dir(bag: &Path, set: usize, fold: usize) -> PathBuf {
    match set {
        0 => bag.join(format!("fold-{fold}")),
        _ => bag.join(format!("set-{set}-fold-{fold}")),
    }
}

/// The mean of `each`, which predict the same movies in the same order: the genre side
/// (probabilities, logit shift, modality weights, genre loss) always, the rating too when
/// `rating_over_sets` (else the first prediction's).
pub fn mean_over_sets(each: &[Predictions], rating_over_sets: bool) -> Predictions {
    let even = vec![1.0 / each.len() as f32; each.len()];
    let rating_weights = if rating_over_sets {
        even.clone()
    } else {
        let mut first = vec![0.0; each.len()];
        first[0] = 1.0;
        first
    };
    let mut out = Predictions::weighted(each, &even, &rating_weights);
    if !rating_over_sets {
        out.rating_loss = each[0].rating_loss;
    }
    out
}

/// A repeated bag's member predictions on the same movies (set by set, fold by fold within a
/// set) as K logical members (see the module comment). One set: unchanged.
pub fn group_sets(each: Vec<Predictions>, layout: SetLayout) -> Result<Vec<Predictions>> {
    let sets = layout.sets;
    if sets <= 1 {
        return Ok(each);
    }
    if !each.len().is_multiple_of(sets) {
        bail!(
            "{} member predictions do not divide into {sets} sets",
            each.len()
        );
    }
    let k = each.len() / sets;
    Ok((0..k)
        .map(|fold| {
            let members: Vec<Predictions> = (0..sets).map(|s| each[s * k + fold].clone()).collect();
            mean_over_sets(&members, layout.rating_over_sets)
        })
        .collect())
}

/// Out-of-fold predictions of a repeated bag, one per fold of the first set: `per_set[s]` has
/// set s's members' predictions on their own held-out folds; each movie's prediction is
/// averaged over the sets (its rating only when `rating_over_sets`).
pub fn out_of_fold_over_sets(
    per_set: Vec<Vec<Predictions>>,
    rating_over_sets: bool,
) -> Result<Vec<Predictions>> {
    let mut sets = per_set.into_iter();
    let first = sets.next().unwrap_or_default();
    let others: Vec<Predictions> = sets.map(|s| Predictions::concat(&s)).collect();
    if others.is_empty() {
        return Ok(first);
    }
    first
        .into_iter()
        .map(|fold| {
            let mut each = vec![fold];
            for (s, other) in others.iter().enumerate() {
                let Some(rows) = other.select(&each[0].ids) else {
                    bail!(
                        "set {} of the bag has no out-of-fold prediction for some movies of \
                         the first set (were its members trained on other data?)",
                        s + 1
                    );
                };
                each.push(rows);
            }
            Ok(mean_over_sets(&each, rating_over_sets))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preds(ids: &[&str], probs: &[f32], ratings: &[f32]) -> Predictions {
        Predictions {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            n_genres: 1,
            probs: probs.to_vec(),
            targets: vec![1.0; ids.len()],
            genres_present: vec![true; ids.len()],
            rating: ratings.to_vec(),
            rating_true: vec![5.0; ids.len()],
            rating_present: vec![true; ids.len()],
            votes: vec![f32::NAN; ids.len()],
            ..Predictions::default()
        }
    }

    #[test]
    fn set_seeds_are_far_apart_and_the_first_keeps_the_seed() {
        assert_eq!(set_seed(7, 0), 7);
        assert_eq!(set_seed(7, 2), 2007);
        let dir = Path::new("bag");
        assert_eq!(set_member_dir(dir, 0, 3), dir.join("fold-3"));
        assert_eq!(set_member_dir(dir, 1, 3), dir.join("set-1-fold-3"));
    }

    fn layout(sets: usize, rating_over_sets: bool) -> SetLayout {
        SetLayout {
            sets,
            rating_over_sets,
        }
    }

    #[test]
    fn grouped_members_average_genres_and_the_rating_when_the_bag_says_so() {
        // Two sets of two folds: set 0 = members 0, 1; set 1 = members 2, 3.
        let each = vec![
            preds(&["a"], &[0.2], &[6.0]),
            preds(&["a"], &[0.4], &[7.0]),
            preds(&["a"], &[0.6], &[1.0]),
            preds(&["a"], &[0.8], &[2.0]),
        ];
        let grouped = group_sets(each.clone(), layout(2, true)).unwrap();
        assert_eq!(grouped.len(), 2);
        assert!((grouped[0].probs[0] - 0.4).abs() < 1e-6);
        assert!((grouped[1].probs[0] - 0.6).abs() < 1e-6);
        assert_eq!((grouped[0].rating[0], grouped[1].rating[0]), (3.5, 4.5));
        let mean = Predictions::mean(&grouped);
        assert!((mean.probs[0] - 0.5).abs() < 1e-6);
        assert!((mean.rating[0] - 4.0).abs() < 1e-6);
        // A bag recorded before the rating averaged keeps the first set's ratings.
        let old = group_sets(each.clone(), layout(2, false)).unwrap();
        assert_eq!(old[0].probs, grouped[0].probs);
        assert_eq!((old[0].rating[0], old[1].rating[0]), (6.0, 7.0));
        assert_eq!(group_sets(each.clone(), SetLayout::ONE).unwrap().len(), 4);
        assert!(group_sets(each[..3].to_vec(), layout(2, true)).is_err());
    }

    #[test]
    fn out_of_fold_predictions_are_averaged_per_movie_whatever_the_other_sets_folds() {
        // The first set holds a, b out on fold 0 and c on fold 1; the second set's folds
        // differ (c, a | b), so its rows must be matched by id.
        let first = vec![
            preds(&["a", "b"], &[0.1, 0.2], &[5.0, 6.0]),
            preds(&["c"], &[0.3], &[7.0]),
        ];
        let second = vec![
            preds(&["c", "a"], &[0.5, 0.3], &[1.0, 3.0]),
            preds(&["b"], &[0.4], &[2.0]),
        ];
        let oof = out_of_fold_over_sets(vec![first.clone(), second.clone()], true).unwrap();
        assert_eq!(oof[0].ids, ["a", "b"]);
        assert!((oof[0].probs[0] - 0.2).abs() < 1e-6);
        assert!((oof[0].probs[1] - 0.3).abs() < 1e-6);
        assert!((oof[1].probs[0] - 0.4).abs() < 1e-6);
        assert_eq!(oof[0].rating, [4.0, 4.0]);
        assert_eq!(oof[1].rating, [4.0]);
        let old = out_of_fold_over_sets(vec![first.clone(), second], false).unwrap();
        assert_eq!(old[0].probs, oof[0].probs);
        assert_eq!(
            (old[0].rating.clone(), old[1].rating.clone()),
            (vec![5.0, 6.0], vec![7.0])
        );
        let missing = vec![preds(&["a", "b"], &[0.5, 0.5], &[1.0, 1.0])];
        let e = out_of_fold_over_sets(vec![first.clone(), missing], true).unwrap_err();
        assert!(e.to_string().contains("set 1"), "{e}");
        assert_eq!(out_of_fold_over_sets(vec![first], true).unwrap().len(), 2);
    }
}

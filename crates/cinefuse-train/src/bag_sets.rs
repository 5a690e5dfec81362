//! Repeated bagging (`train.bag_sets = S`, AutoGluon's `num_bag_sets`): a bag trains S sets of
//! K members, set s on folds drawn with its own seed. Everything keyed by the fold (the CV+
//! interval, the blend's votes, rating trees and cross-fitted stacking) stays on the first
//! set's folds; the extra sets only average into the genres. So a repeated bag still looks
//! like K members to its users: member k is the first set's member k with its genre
//! probabilities averaged over every set's member k (at prediction all of them are unseen
//! movies' predictors, so the grouping only decides which ones share a mean), and out of fold
//! a movie's genres are the mean over the sets' members that did not train on it.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::predictions::Predictions;

/// Set s draws its folds and initialises its members with `seed + SET_SEED_STRIDE · s`: far
/// apart, so that a bag of seed 7 and one of seed 8 share no set.
pub const SET_SEED_STRIDE: u64 = 1000;

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

/// The first prediction's movies and rating with the genre side (probabilities, logit shift,
/// modality weights, genre loss) averaged over all of `each`, which predict the same movies
/// in the same order.
pub fn mean_over_sets(each: &[Predictions]) -> Predictions {
    let even = vec![1.0 / each.len() as f32; each.len()];
    let mut first = vec![0.0; each.len()];
    first[0] = 1.0;
    let mut out = Predictions::weighted(each, &even, &first);
    out.rating_loss = each[0].rating_loss;
    out
}

/// A repeated bag's member predictions on the same movies (set by set, fold by fold within a
/// set) as K logical members (see the module comment). One set: unchanged.
pub fn group_sets(each: Vec<Predictions>, sets: usize) -> Result<Vec<Predictions>> {
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
            mean_over_sets(&members)
        })
        .collect())
}

/// Out-of-fold predictions of a repeated bag, one per fold of the first set: `per_set[s]` has
/// set s's members' predictions on their own held-out folds; each movie's genres are averaged
/// over the sets, its rating is the first set's.
pub fn out_of_fold_over_sets(per_set: Vec<Vec<Predictions>>) -> Result<Vec<Predictions>> {
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
            Ok(mean_over_sets(&each))
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

    #[test]
    fn grouped_members_average_genres_and_keep_the_first_sets_rating() {
        // Two sets of two folds: set 0 = members 0, 1; set 1 = members 2, 3.
        let each = vec![
            preds(&["a"], &[0.2], &[6.0]),
            preds(&["a"], &[0.4], &[7.0]),
            preds(&["a"], &[0.6], &[1.0]),
            preds(&["a"], &[0.8], &[2.0]),
        ];
        let grouped = group_sets(each.clone(), 2).unwrap();
        assert_eq!(grouped.len(), 2);
        assert!((grouped[0].probs[0] - 0.4).abs() < 1e-6);
        assert!((grouped[1].probs[0] - 0.6).abs() < 1e-6);
        assert_eq!((grouped[0].rating[0], grouped[1].rating[0]), (6.0, 7.0));
        // Their mean is the mean of every member's genres and of the first set's ratings.
        let mean = Predictions::mean(&grouped);
        assert!((mean.probs[0] - 0.5).abs() < 1e-6);
        assert!((mean.rating[0] - 6.5).abs() < 1e-6);
        assert_eq!(group_sets(each.clone(), 1).unwrap().len(), 4);
        assert!(group_sets(each[..3].to_vec(), 2).is_err());
    }

    #[test]
    fn out_of_fold_genres_are_averaged_per_movie_whatever_the_other_sets_folds() {
        // The first set holds a, b out on fold 0 and c on fold 1; the second set's folds
        // differ (c, a | b), so its rows must be matched by id.
        let first = vec![
            preds(&["a", "b"], &[0.1, 0.2], &[5.0, 6.0]),
            preds(&["c"], &[0.3], &[7.0]),
        ];
        let second = vec![
            preds(&["c", "a"], &[0.5, 0.3], &[1.0, 1.0]),
            preds(&["b"], &[0.4], &[1.0]),
        ];
        let oof = out_of_fold_over_sets(vec![first.clone(), second]).unwrap();
        assert_eq!(oof[0].ids, ["a", "b"]);
        assert!((oof[0].probs[0] - 0.2).abs() < 1e-6);
        assert!((oof[0].probs[1] - 0.3).abs() < 1e-6);
        assert!((oof[1].probs[0] - 0.4).abs() < 1e-6);
        assert_eq!(oof[0].rating, [5.0, 6.0]);
        assert_eq!(oof[1].rating, [7.0]);
        let missing = vec![preds(&["a", "b"], &[0.5, 0.5], &[1.0, 1.0])];
        let e = out_of_fold_over_sets(vec![first.clone(), missing]).unwrap_err();
        assert!(e.to_string().contains("set 1"), "{e}");
        assert_eq!(out_of_fold_over_sets(vec![first.clone()]).unwrap().len(), 2);
    }
}

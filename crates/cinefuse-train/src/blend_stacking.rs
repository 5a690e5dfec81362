//! How a blend with a vote learns its genre stackings (`genre_stacking.rs`) from the parts'
//! out-of-fold predictions: one for the movies with a plot, learnt on those movies; one for
//! the movies without (`plotless_stacking.rs`), learnt on every movie's predictions with the
//! plots taken away; one for the movies given without metadata (`metadataless_stacking.rs`),
//! learnt on every movie's predictions with the metadata taken away; and the blend's
//! out-of-fold members, each fold stacked by stackings fitted on the other folds.

use std::collections::HashSet;

use anyhow::Result;
use burn::prelude::Device;
use cinefuse_data::Prepared;

use crate::blend::{Weights, check_same_movies, combine_one};
use crate::ensemble::Ensemble;
use crate::genre_stacking::{GenreStacking, combine};
use crate::metadataless_stacking::{metadataless_ids, out_of_fold_without_metadata};
use crate::metrics::GenreMetrics;
use crate::neighbour_vote::NeighbourVote;
use crate::plotless_stacking::{out_of_fold_without_plots, plotless_ids};
use crate::predictions::Predictions;

/// A blend's stackings; all `None` without a vote.
pub(crate) struct Stackings {
    pub with_plot: Option<GenreStacking>,
    pub without_plot: Option<GenreStacking>,
    pub without_metadata: Option<GenreStacking>,
    pub cross_fit: Option<CrossFit>,
}

/// The training movies that lack an input, by id.
pub(crate) struct Lacking {
    pub plot: HashSet<String>,
    /// Those with a plot and no category (`metadataless_stacking::given_without_metadata`).
    pub metadata: HashSet<String>,
}

impl Lacking {
    pub fn of(prepared: &Prepared) -> Self {
        Self {
            plot: plotless_ids(prepared),
            metadata: metadataless_ids(prepared),
        }
    }

    /// Whether the movie `id` has a plot: the movies the stacking with a plot, and the one
    /// without metadata, learn from and stack.
    pub fn has_plot(&self, id: &str) -> bool {
        !self.plot.contains(id)
    }
}

/// One fold's stackings, fitted on the other folds as `learn_stackings` fits them on all.
pub(crate) struct FoldStackings {
    pub with_plot: GenreStacking,
    pub without_plot: GenreStacking,
    pub without_metadata: GenreStacking,
}

/// What the blend's out-of-fold members are stacked from.
pub(crate) struct CrossFit {
    /// Every part's out-of-fold predictions with the plots taken away.
    pub plotless_oof: Vec<Vec<Predictions>>,
    /// Every part's out-of-fold predictions with the metadata taken away.
    pub metadataless_oof: Vec<Vec<Predictions>>,
    pub per_fold: Vec<FoldStackings>,
}

/// The stackings of the blend of `bags` and `votes`, whose first `genre_parts` parts of `oof`
/// predict genres; the votes are built on `lead`'s data and run on `device`.
pub(crate) fn learn_stackings(
    (bags, votes): (&[Ensemble], &[NeighbourVote]),
    (lead, device): (&Prepared, &Device),
    oof: &[Vec<Predictions>],
    genre_parts: usize,
    lacking: &Lacking,
) -> Result<Stackings> {
    if votes.is_empty() {
        return Ok(Stackings {
            with_plot: None,
            without_plot: None,
            without_metadata: None,
            cross_fit: None,
        });
    }
    let start = std::time::Instant::now();
    let mut plotless = out_of_fold_without_plots(bags, votes, &oof[..genre_parts])?;
    println!(
        "predicted the held-out folds again without plots in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    // Ctrl-C is honoured between the stages: together they take seconds to tens of seconds.
    crate::trainer::stop_if_interrupted("the held-out folds without metadata")?;
    let start = std::time::Instant::now();
    let mut metadataless =
        out_of_fold_without_metadata((bags, votes), (lead, device), &oof[..genre_parts])?;
    println!(
        "predicted the held-out folds again without metadata in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    // The rating trees predict no genre; they keep their part for the rating weights.
    plotless.extend(oof[genre_parts..].iter().cloned());
    metadataless.extend(oof[genre_parts..].iter().cloned());
    crate::trainer::stop_if_interrupted("the genre stackings")?;
    let with_plot = |id: &str| lacking.has_plot(id);
    Ok(Stackings {
        with_plot: Some(learn_stacking(&oof[..genre_parts], with_plot)),
        without_plot: Some(learn_stacking(&plotless[..genre_parts], |_| true)),
        // It stacks only movies with a plot, so it learns from them alone.
        without_metadata: Some(learn_stacking(&metadataless[..genre_parts], with_plot)),
        cross_fit: Some(cross_fit(
            oof,
            (plotless, metadataless),
            genre_parts,
            lacking,
        )?),
    })
}

/// The per-fold stackings of `oof` and its twins without plots and without metadata
/// (`CrossFit`).
fn cross_fit(
    oof: &[Vec<Predictions>],
    (plotless, metadataless): (Vec<Vec<Predictions>>, Vec<Vec<Predictions>>),
    genre_parts: usize,
    lacking: &Lacking,
) -> Result<CrossFit> {
    let per_fold = (0..oof[0].len())
        .map(|fold| {
            crate::trainer::stop_if_interrupted("the cross-fitted stackings")?;
            Ok(FoldStackings {
                with_plot: learn_stacking(&other_folds(&oof[..genre_parts], fold), |id| {
                    lacking.has_plot(id)
                }),
                without_plot: learn_stacking(&other_folds(&plotless[..genre_parts], fold), |_| {
                    true
                }),
                without_metadata: learn_stacking(
                    &other_folds(&metadataless[..genre_parts], fold),
                    |id| lacking.has_plot(id),
                ),
            })
        })
        .collect::<Result<_>>()?;
    Ok(CrossFit {
        plotless_oof: plotless,
        metadataless_oof: metadataless,
        per_fold,
    })
}

/// The genres' stacking over the parts' out-of-fold probabilities (all folds together), on the
/// movies `keep` takes (on all of them when it takes none).
fn learn_stacking(oof: &[Vec<Predictions>], keep: impl Fn(&str) -> bool) -> GenreStacking {
    let genres: Vec<_> = oof
        .iter()
        .map(|f| {
            let all = Predictions::concat(f);
            let kept: Vec<String> = all.ids.iter().filter(|id| keep(id)).cloned().collect();
            match kept.is_empty() {
                true => all.labelled_genres(),
                false => all.select(&kept).expect("its own ids").labelled_genres(),
            }
        })
        .collect();
    let probs: Vec<&[f32]> = genres.iter().map(|g| g.probs.as_slice()).collect();
    GenreStacking::fit(&probs, &genres[0].targets, genres[0].n_genres)
}

/// Each part's predictions on every fold but `fold`.
fn other_folds(parts: &[Vec<Predictions>], fold: usize) -> Vec<Vec<Predictions>> {
    parts
        .iter()
        .map(|part| {
            let kept = part.iter().enumerate().filter(|(k, _)| *k != fold);
            kept.map(|(_, p)| p.clone()).collect()
        })
        .collect()
}

/// The blend's out-of-fold members with stackings that never saw their fold: member k's genres
/// come from stackings fitted on the other folds' predictions (a movie without a plot, or
/// without metadata, from the one for such movies), so the thresholds and the scores
/// calibrated on them are as honest as a bag's (the stackings that predict are fitted on every
/// fold).
pub(crate) fn cross_fitted_members(
    oof: &[Vec<Predictions>],
    cross: &CrossFit,
    w: &Weights<'_>,
    lacking: &Lacking,
) -> Result<Vec<Predictions>> {
    (0..oof[0].len())
        .map(|fold| {
            let stackings = &cross.per_fold[fold];
            let each: Vec<Predictions> = oof.iter().map(|p| p[fold].clone()).collect();
            check_same_movies(&each, w.runs)?;
            let ids = &each[0].ids;
            let has_plot: Vec<bool> = ids.iter().map(|id| lacking.has_plot(id)).collect();
            let bare: Vec<bool> = ids.iter().map(|id| lacking.metadata.contains(id)).collect();
            let fold_w = Weights {
                stacking: Some(&stackings.with_plot),
                plotless: Some(&stackings.without_plot),
                has_plot: &has_plot,
                metadataless: Some(&stackings.without_metadata),
                bare: &bare,
                ..*w
            };
            Ok(combine_one(&each, &fold_w))
        })
        .collect()
}

/// Prints how the out-of-fold movies fare with their plots taken away, and with their
/// metadata taken away, each stacked by the blend's stacking and by the one for such movies
/// (each fitted on the other folds), at the blend's `thresholds`. The metadata line scores the
/// movies with a plot, the only ones its stacking takes.
pub(crate) fn report_without_inputs(
    cross: &CrossFit,
    w: &Weights<'_>,
    (thresholds, names): (&[f32], &[String]),
    lacking: &Lacking,
) {
    // What was taken away, from what, its own stacking, and whether only movies with a plot count.
    type Own = fn(&FoldStackings) -> &GenreStacking;
    type Stripped<'a> = (&'a str, &'a str, &'a Vec<Vec<Predictions>>, Own, bool);
    let stripped: [Stripped<'_>; 2] = [
        (
            "plots",
            "a plot",
            &cross.plotless_oof,
            |f| &f.without_plot,
            false,
        ),
        (
            "metadata",
            "metadata",
            &cross.metadataless_oof,
            |f| &f.without_metadata,
            true,
        ),
    ];
    for (what, missing, oof, own, plots_only) in stripped {
        let (mut before, mut after) = (Vec::new(), Vec::new());
        for (fold, stackings) in cross.per_fold.iter().enumerate() {
            let each: Vec<Predictions> = oof.iter().map(|p| p[fold].clone()).collect();
            before.push(combine(
                &each,
                (w.genre, w.rating),
                Some(&stackings.with_plot),
            ));
            after.push(combine(&each, (w.genre, w.rating), Some(own(stackings))));
        }
        // `None` when no movie counts (data without plots has none to take metadata from).
        let score = |m: &[Predictions]| -> Option<GenreMetrics> {
            let all = Predictions::concat(m);
            let kept: Vec<String> = all
                .ids
                .iter()
                .filter(|id| !plots_only || lacking.has_plot(id))
                .cloned()
                .collect();
            let scored = all.select(&kept).expect("its own ids");
            (!kept.is_empty()).then(|| scored.genre_metrics(thresholds, names))
        };
        let (Some(before), Some(after)) = (score(&before), score(&after)) else {
            println!("without {what}, out of fold: no movie with a plot to score");
            continue;
        };
        println!(
            "without {what}, out of fold: micro-F1 {:.4} → {:.4}, macro-F1 {:.4} → {:.4}, \
             top-1 {:.4} → {:.4}, micro AP {:.4} → {:.4} (the blend's stacking → its \
             stacking for movies without {missing})",
            before.micro_f1,
            after.micro_f1,
            before.macro_f1,
            after.macro_f1,
            before.top1,
            after.top1,
            before.micro_ap,
            after.micro_ap
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One part's predictions of one genre for movies `ids`, with their labels.
    fn part(ids: &[&str], probs: &[f32], labels: &[f32]) -> Vec<Predictions> {
        vec![Predictions {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            n_genres: 1,
            probs: probs.to_vec(),
            targets: labels.to_vec(),
            genres_present: vec![true; ids.len()],
            rating: vec![5.0; ids.len()],
            rating_true: vec![5.0; ids.len()],
            rating_present: vec![true; ids.len()],
            votes: vec![f32::NAN; ids.len()],
            ..Predictions::default()
        }]
    }

    #[test]
    fn a_training_movie_missing_an_input_is_stacked_out_of_fold_as_prediction_stacks_it() {
        let (fold0, fold1) = (["a", "b", "c", "g"], ["d", "e", "f", "h"]);
        let (y0, y1) = ([1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]);
        let p = |ids: &[&str], probs: &[f32], y: &[f32]| part(ids, probs, y).remove(0);
        // Parts × folds: a bag and a vote; c and f have no plot, g and h no metadata.
        let oof = [
            vec![
                p(&fold0, &[0.8, 0.3, 0.6, 0.4], &y0),
                p(&fold1, &[0.2, 0.7, 0.4, 0.6], &y1),
            ],
            vec![
                p(&fold0, &[0.9, 0.1, 0.5, 0.2], &y0),
                p(&fold1, &[0.1, 0.8, 0.5, 0.9], &y1),
            ],
        ];
        let plotless = vec![
            vec![
                p(&fold0, &[0.6, 0.4, 0.6, 0.4], &y0),
                p(&fold1, &[0.4, 0.6, 0.4, 0.6], &y1),
            ],
            vec![p(&fold0, &[0.5; 4], &y0), p(&fold1, &[0.5; 4], &y1)],
        ];
        let metadataless = vec![
            vec![
                p(&fold0, &[0.7, 0.2, 0.6, 0.1], &y0),
                p(&fold1, &[0.3, 0.9, 0.2, 0.8], &y1),
            ],
            vec![p(&fold0, &[0.4; 4], &y0), p(&fold1, &[0.4; 4], &y1)],
        ];
        let set = |ids: [&str; 2]| ids.iter().map(|s| s.to_string()).collect();
        let lacking = Lacking {
            plot: set(["c", "f"]),
            metadata: set(["g", "h"]),
        };
        let runs = [std::path::PathBuf::from("bag"), "vote".into()];
        let w = Weights {
            genre: &[0.5, 0.5],
            rating: &[1.0, 0.0],
            stacking: None,
            plotless: None,
            has_plot: &[],
            metadataless: None,
            bare: &[],
            runs: &runs,
        };
        let cross = cross_fit(&oof, (plotless, metadataless.clone()), 2, &lacking).unwrap();
        // The stacking without metadata stacks movies with a plot, and learns from them alone.
        let others = other_folds(&metadataless, 0);
        let bare = &cross.per_fold[0].without_metadata;
        assert_eq!(*bare, learn_stacking(&others, |id| id != "c" && id != "f"));
        assert_ne!(*bare, learn_stacking(&others, |_| true));
        let members = cross_fitted_members(&oof, &cross, &w, &lacking).unwrap();
        let fold = &cross.per_fold[0];
        let each = [oof[0][0].clone(), oof[1][0].clone()];
        let by = |s: &GenreStacking| combine(&each, (w.genre, w.rating), Some(s)).probs;
        let (with, no_plot, bare) = (
            by(&fold.with_plot),
            by(&fold.without_plot),
            by(&fold.without_metadata),
        );
        assert_ne!(with[2], no_plot[2]);
        assert_ne!(with[3], bare[3]);
        assert_eq!(members[0].probs, [with[0], with[1], no_plot[2], bare[3]]);
    }

    #[test]
    fn the_stacking_of_movies_with_a_plot_learns_from_them_alone() {
        let ids = ["a", "b", "c", "d", "e", "f"];
        let labels = [1.0, 1.0, 0.0, 0.0, 1.0, 0.0];
        // e and f have no plot: their part says the opposite of their labels.
        let all = part(&ids, &[0.9, 0.8, 0.2, 0.1, 0.3, 0.7], &labels);
        let with_plot = learn_stacking(std::slice::from_ref(&all), |id| id != "e" && id != "f");
        let alone = part(&ids[..4], &[0.9, 0.8, 0.2, 0.1], &labels[..4]);
        assert_eq!(with_plot, learn_stacking(&[alone], |_| true));
        let everyone = learn_stacking(std::slice::from_ref(&all), |_| true);
        assert_ne!(with_plot, everyone);
        // A filter that keeps no movie keeps them all.
        assert_eq!(learn_stacking(&[all], |_| false), everyone);
    }
}

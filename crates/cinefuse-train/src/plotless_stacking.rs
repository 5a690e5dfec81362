//! The genre stacking of a blend for movies without a plot. The blend's stacker is learnt on
//! movies that all have one, and leans hard on the plot-neighbour and genre-prompt votes; a
//! movie without a plot gets the genres' frequencies from the first and each genre's share of
//! the prompts from the second, which that stacker reads as confident evidence against every
//! rare genre. So a second stacker is learnt on the same out-of-fold movies with their plots
//! taken away: the bags predict them from poster and metadata (they were trained with modality
//! dropout), the plot-reading votes give what they give a movie without a plot, and the other
//! votes are unchanged. A movie without a plot is then stacked by it.

use std::collections::HashSet;

use anyhow::Result;
use burn::data::dataset::{Dataset, DatasetError};
use cinefuse_data::{MovieItem, Prepared};

use crate::bag::out_of_fold_with;
use crate::ensemble::Ensemble;
use crate::genre_stacking::{GenreStacking, restack_movies};
use crate::neighbour_vote::{NeighbourVote, VoteSpace};
use crate::predictions::Predictions;

/// A dataset's movies with their plots taken away, as a movie without one is encoded.
pub struct WithoutPlots<D>(pub D);

impl<D: Dataset<MovieItem>> Dataset<MovieItem> for WithoutPlots<D> {
    fn get(&self, index: usize) -> Result<MovieItem, DatasetError> {
        self.0.get(index).map(without_plot)
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// `item` as it would be encoded had it no plot.
pub fn without_plot(mut item: MovieItem) -> MovieItem {
    item.tokens.clear();
    item.plot_present = false;
    item.plot_features = None;
    item.plot_states = None;
    item
}

/// The ids of the movies of `prepared` without a plot.
pub fn plotless_ids(prepared: &Prepared) -> HashSet<String> {
    let samples = prepared.samples.iter();
    let without = samples.filter(|s| !crate::plot_neighbours::has_plot(s));
    without.map(|s| s.id.clone()).collect()
}

/// Whether the vote reads the movie's plot (and gives a movie without one a constant).
pub fn reads_plot(space: VoteSpace) -> bool {
    matches!(space, VoteSpace::Plot | VoteSpace::Prompts)
}

/// The genre parts' out-of-fold predictions with every plot taken away: the bags' members
/// predict their held-out fold without plots, a plot-reading vote gives each movie what it
/// gives one without a plot, and the other votes keep `with_plots`' (the same parts with the
/// plots, bags first, in the blend's order).
pub fn out_of_fold_without_plots(
    bags: &[Ensemble],
    votes: &[NeighbourVote],
    with_plots: &[Vec<Predictions>],
) -> Result<Vec<Vec<Predictions>>> {
    let mut oof: Vec<Vec<Predictions>> = bags
        .iter()
        .map(|e| {
            out_of_fold_with(&e.members, &e.info, |m, rows| {
                m.predict_dataset(WithoutPlots(m.prepared.dataset_of(rows)))
            })
        })
        .collect::<Result<_>>()?;
    for (vote, own) in votes.iter().zip(&with_plots[bags.len()..]) {
        if !reads_plot(vote.space) {
            oof.push(own.clone());
            continue;
        }
        let members = own.iter().enumerate().map(|(k, p)| Predictions {
            probs: vote.member_without_query(k, p.ids.len()),
            ..p.clone()
        });
        oof.push(members.collect());
    }
    Ok(oof)
}

/// Replaces the stacked probabilities of the movies without a plot (`has_plot[i]` false) in
/// `out` by `plotless`'s stacking of the same parts `each`.
pub fn restack_without_plot(
    out: &mut Predictions,
    each: &[Predictions],
    plotless: &GenreStacking,
    has_plot: &[bool],
) {
    restack_movies(out, each, plotless, |i| !has_plot[i]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(probs: &[f32]) -> Predictions {
        Predictions {
            ids: (0..probs.len()).map(|i| format!("m{i}")).collect(),
            n_genres: 1,
            probs: probs.to_vec(),
            ..Predictions::default()
        }
    }

    #[test]
    fn only_the_movies_without_a_plot_are_stacked_again() {
        let each = [part(&[0.9, 0.2, 0.6]), part(&[0.5, 0.5, 0.5])];
        // The plotless stacker reads the first part alone: sigmoid(logit(p)) = p.
        let plotless = GenreStacking {
            coefficients: vec![vec![1.0, 0.0, 0.0]],
        };
        let mut out = part(&[0.1, 0.1, 0.1]);
        restack_without_plot(&mut out, &each, &plotless, &[true, false, true]);
        assert_eq!(out.probs[0], 0.1);
        assert!((out.probs[1] - 0.2).abs() < 1e-6, "{:?}", out.probs);
        assert_eq!(out.probs[2], 0.1);
    }

    #[test]
    fn a_movie_loses_every_trace_of_its_plot() {
        let item = MovieItem {
            tokens: vec![101, 7, 102],
            plot_present: true,
            plot_features: Some(vec![1.0; 4]),
            poster_features: Some(vec![2.0; 4]),
            ..MovieItem::default()
        };
        let bare = without_plot(item.clone());
        assert!(bare.tokens.is_empty() && !bare.plot_present && bare.plot_features.is_none());
        assert_eq!(
            bare.poster_features, item.poster_features,
            "the poster stays"
        );
    }
}

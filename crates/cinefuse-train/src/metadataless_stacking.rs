//! The genre stacking of a blend for movies given without metadata: a title and a plot, no
//! category, perhaps a year, runtime or poster (README's own `predict` line). The blend's
//! stacker is learnt on
//! movies that nearly all have metadata and leans on the metadata and credits votes; a movie
//! without metadata gets from them the votes of whichever movies lack the same fields, or the
//! genres' frequencies, which that stacker reads as evidence. So, as for movies without a plot
//! (`plotless_stacking.rs`), a third stacker is learnt on the same out-of-fold movies with their
//! metadata taken away: the bags predict them from plot and poster (they were trained with
//! modality dropout), the metadata-reading votes vote for the stripped movies, and the other
//! votes are unchanged.

use std::collections::HashSet;

use anyhow::Result;
use burn::prelude::Device;
use cinefuse_data::Prepared;
use cinefuse_data::prepared::EncodedSample;
use cinefuse_data::vocab::MISSING_ID;

use crate::bag::out_of_fold_with;
use crate::content_rating::lacks_metadata;
use crate::ensemble::Ensemble;
use crate::neighbour_vote::{NeighbourVote, VoteSpace};
use crate::plot_neighbours::has_plot;
use crate::predictions::Predictions;

/// `sample` as it would be encoded from its title, plot, poster and year alone: every other
/// numeric field missing (value 0, the mean, flagged), every category missing, no credits.
pub fn without_metadata(mut sample: EncodedSample) -> EncodedSample {
    // Column 0 is the year: a movie given by title and plot often comes with one.
    for v in sample.numeric.iter_mut().skip(1) {
        *v = 0.0;
    }
    for m in sample.numeric_missing.iter_mut().skip(1) {
        *m = 1.0;
    }
    sample.categorical.fill(MISSING_ID);
    sample.credits.clear();
    sample
}

/// Another handle on `prepared` whose movies have their metadata taken away (posters, plots
/// and cached features shared, the samples copied).
pub fn prepared_without_metadata(prepared: &Prepared) -> Prepared {
    prepared.with_samples_edited(without_metadata)
}

/// Whether a movie counts as given without metadata: it has a plot (a movie without one is
/// stacked by the plotless stacking) and no category (`lacks_metadata`): a title and a plot,
/// perhaps with a year, runtime, vote count or poster, as `predict`'s flags give one.
pub fn given_without_metadata(sample: &EncodedSample) -> bool {
    has_plot(sample) && lacks_metadata(&sample.categorical)
}

/// The ids of the movies of `prepared` given without metadata.
pub fn metadataless_ids(prepared: &Prepared) -> HashSet<String> {
    let samples = prepared.samples.iter();
    let bare = samples.filter(|s| given_without_metadata(s));
    bare.map(|s| s.id.clone()).collect()
}

/// Whether the vote reads the movie's metadata.
pub fn reads_metadata(space: VoteSpace) -> bool {
    matches!(space, VoteSpace::Metadata | VoteSpace::Credits)
}

/// The genre parts' out-of-fold predictions with every movie's metadata taken away: the bags'
/// members predict their held-out fold stripped, a metadata-reading vote (built on `lead`'s
/// data) votes for the stripped movies, and the other votes keep `with_metadata`'s (the same
/// parts, bags first, in the blend's order).
pub fn out_of_fold_without_metadata(
    (bags, votes): (&[Ensemble], &[NeighbourVote]),
    (lead, device): (&Prepared, &Device),
    with_metadata: &[Vec<Predictions>],
) -> Result<Vec<Vec<Predictions>>> {
    let mut oof: Vec<Vec<Predictions>> = bags
        .iter()
        .map(|e| {
            out_of_fold_with(&e.members, &e.info, |m, rows| {
                m.predict_dataset(prepared_without_metadata(&m.prepared).dataset_of(rows))
            })
        })
        .collect::<Result<_>>()?;
    let bare_lead = prepared_without_metadata(lead);
    for (vote, own) in votes.iter().zip(&with_metadata[bags.len()..]) {
        if !reads_metadata(vote.space) {
            oof.push(own.clone());
            continue;
        }
        let members = own.iter().enumerate().map(|(k, p)| {
            Ok(Predictions {
                probs: vote.vote_member(k, &bare_lead, &p.ids, device)?,
                ..p.clone()
            })
        });
        oof.push(members.collect::<Result<_>>()?);
    }
    Ok(oof)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EncodedSample {
        EncodedSample {
            id: "m".into(),
            split: cinefuse_data::split::Split::Train,
            tokens: vec![101, 7, 102],
            plot_present: true,
            numeric: vec![0.4, 1.5, -0.3],
            numeric_missing: vec![0.0, 0.0, 0.0],
            categorical: vec![3, 9],
            genres: vec![1.0, 0.0],
            genres_present: true,
            rating: Some(7.0),
            poster_slot: Some(0),
            credits: vec!["director:someone".into()],
            extras_absent: false,
        }
    }

    #[test]
    fn a_movie_keeps_its_plot_poster_and_year_and_loses_the_rest() {
        let s = sample();
        assert!(!given_without_metadata(&s));
        let bare = without_metadata(s.clone());
        assert_eq!(bare.numeric, [0.4, 0.0, 0.0], "the year stays");
        assert_eq!(bare.numeric_missing, [0.0, 1.0, 1.0]);
        assert_eq!(bare.categorical, [MISSING_ID, MISSING_ID]);
        assert!(bare.credits.is_empty());
        assert_eq!(
            (bare.tokens.clone(), bare.poster_slot),
            (s.tokens, s.poster_slot)
        );
        assert!(given_without_metadata(&bare));
        let mut numbers = bare.clone();
        numbers.numeric_missing = vec![0.0; 3];
        assert!(given_without_metadata(&numbers), "a runtime and votes too");
    }

    #[test]
    fn a_movie_without_a_plot_is_not_counted_as_without_metadata() {
        let mut bare = without_metadata(sample());
        bare.plot_present = false;
        bare.tokens.clear();
        assert!(!given_without_metadata(&bare));
    }

    #[test]
    fn only_the_metadata_votes_read_metadata() {
        let read: Vec<bool> = VoteSpace::ALL.iter().map(|s| reads_metadata(*s)).collect();
        assert_eq!(read, [false, true, true, false]);
    }
}

//! The metadata space of a neighbour vote (`neighbour_vote.rs`): the labelled movies with the
//! most alike year, runtime, votes, certificate, director, cast, language, country and declared
//! extras, as cinefuse encodes them (scaled numeric fields, their missing flags, a one-hot
//! column per category), each column standardised over the voters so that a rare director
//! counts as much as the year. Out of fold on four seeds, beside the plot vote, it added 0.006
//! micro-F1, 0.004 macro-F1 and 0.010 top-1 (docs/RESULTS.md): a linear head weighs a
//! director or a cast member once for all movies, a neighbour vote lets the few films that
//! share several of them speak for the genre together.

use anyhow::{Context, Result, bail};
use cinefuse_data::Prepared;
use cinefuse_data::prepared::{EncodedSample, Preprocessor};
use cinefuse_data::split::{Split, fold_of};

use crate::neighbour_vote::{NeighbourVote, NeighboursConfig, VoteSpace, Voters};

pub const METADATA_NEIGHBOURS_FILE: &str = "metadata_neighbours.safetensors";

/// `[train.metadata_neighbours]`, `ensemble --metadata-neighbours`: k = 50, temperature 0.2
/// (the metadata's similarities spread wider than the plots'), prior 2.
pub type MetadataNeighboursConfig = NeighboursConfig<200>;

/// A movie's metadata row: its numeric fields, their missing flags, then one one-hot block of
/// `sizes[f]` columns per categorical field (an id past its field's size sets none).
pub fn metadata_row(
    (numeric, missing, categorical): (&[f32], &[f32], &[u32]),
    sizes: &[usize],
) -> Vec<f32> {
    let mut row = Vec::with_capacity(numeric.len() * 2 + sizes.iter().sum::<usize>());
    row.extend(numeric);
    row.extend(missing);
    for (id, size) in categorical.iter().zip(sizes) {
        let at = row.len();
        row.resize(at + size, 0.0);
        if (*id as usize) < *size {
            row[at + *id as usize] = 1.0;
        }
    }
    row
}

fn sample_row(s: &EncodedSample, sizes: &[usize]) -> Vec<f32> {
    metadata_row((&s.numeric, &s.numeric_missing, &s.categorical), sizes)
}

/// The metadata vote of the train and validation movies of `prepared` with genres, on the
/// bags' folds.
pub fn build(
    prepared: &Prepared,
    (seed, n_folds): (u64, usize),
    config: MetadataNeighboursConfig,
) -> Result<NeighbourVote> {
    let sizes = prepared.preprocessor.categorical_sizes();
    let voters: Vec<&EncodedSample> = prepared
        .samples
        .iter()
        .filter(|s| s.split != Split::Test && s.genres_present)
        .collect();
    let voters = Voters {
        rows: voters.iter().map(|s| sample_row(s, &sizes)).collect(),
        labels: voters.iter().map(|s| s.genres.clone()).collect(),
        folds: voters
            .iter()
            .map(|s| fold_of(seed, &s.id, n_folds) as u32)
            .collect(),
    };
    NeighbourVote::from_voters(
        (VoteSpace::Metadata, config.settings(), n_folds),
        voters,
        true,
        sizes,
    )
    .with_context(|| prepared.dir.display().to_string())
}

/// The metadata row of each movie `ids` of `prepared`.
pub(crate) fn queries(
    prepared: &Prepared,
    ids: &[String],
    vote: &NeighbourVote,
) -> Result<Vec<Option<Vec<f32>>>> {
    check_fields(vote, &prepared.preprocessor)
        .with_context(|| prepared.dir.display().to_string())?;
    Ok(crate::plot_neighbours::sample_indices(prepared, ids)?
        .into_iter()
        .map(|i| Some(sample_row(&prepared.samples[i], &vote.categorical_sizes)))
        .collect())
}

/// A metadata vote must read the fields `pre` encodes: the same categorical vocabularies and
/// as many numeric columns.
pub fn check_fields(vote: &NeighbourVote, pre: &Preprocessor) -> Result<()> {
    let sizes = pre.categorical_sizes();
    let width = 2 * pre.n_numeric() + sizes.iter().sum::<usize>();
    if vote.categorical_sizes != sizes || vote.dim != width {
        bail!(
            "the metadata vote reads {} columns with categorical sizes {:?}; the model encodes \
             {width} with {sizes:?}",
            vote.dim,
            vote.categorical_sizes
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_numbers_then_flags_then_one_hot_blocks() {
        let row = metadata_row((&[0.5, -1.0], &[0.0, 1.0], &[2, 0, 9]), &[3, 2, 4]);
        assert_eq!(
            row,
            vec![
                0.5, -1.0, // numeric
                0.0, 1.0, // missing flags
                0.0, 0.0, 1.0, // field 0, id 2
                1.0, 0.0, // field 1, id 0 (missing)
                0.0, 0.0, 0.0, 0.0, // field 2: id 9 is past its 4 slots
            ]
        );
    }
}

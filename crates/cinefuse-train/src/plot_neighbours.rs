//! The plot space of a neighbour vote (`neighbour_vote.rs`): the labelled movies whose plots
//! read most alike, by cosine similarity of the frozen plot embeddings the first bag already
//! computes. Out of fold on four seeds it raised top-1 and macro-F1 the most of every extra
//! member tried (docs/RESULTS.md): a linear head on pooled embeddings keeps what is common to a
//! genre, while a rare genre is often told by a few very similar plots.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use cinefuse_data::Prepared;
use cinefuse_data::prepared::EncodedSample;
use cinefuse_data::split::{Split, fold_of};

use crate::neighbour_vote::{NeighbourVote, NeighboursConfig, VoteSpace, Voters};

pub const NEIGHBOURS_FILE: &str = "plot_neighbours.safetensors";

/// `[train.plot_neighbours]`, `ensemble --plot-neighbours`: k = 50, temperature 0.05, prior 2.
pub type PlotNeighboursConfig = NeighboursConfig<50>;

/// Whether a sample's plot went through the backbone (as `backbone_features.rs` decides).
pub fn has_plot(s: &EncodedSample) -> bool {
    s.plot_present && !s.tokens.is_empty()
}

/// The plot vote of the train and validation movies of `prepared` with genres and a plot, on
/// the bags' folds; their embeddings come from the prepared data's cached plot features.
pub fn build(
    prepared: &Prepared,
    (seed, n_folds): (u64, usize),
    config: PlotNeighboursConfig,
) -> Result<NeighbourVote> {
    let (table, dim) = plot_table(prepared)?;
    let voters: Vec<usize> = (0..prepared.samples.len())
        .filter(|&i| {
            let s = &prepared.samples[i];
            s.split != Split::Test && s.genres_present && has_plot(s)
        })
        .collect();
    let sample = |i: &usize| &prepared.samples[*i];
    let voters = Voters {
        rows: voters
            .iter()
            .map(|&i| table.row(i)[..dim].to_vec())
            .collect(),
        labels: voters.iter().map(|i| sample(i).genres.clone()).collect(),
        folds: voters
            .iter()
            .map(|i| fold_of(seed, &sample(i).id, n_folds) as u32)
            .collect(),
    };
    NeighbourVote::from_voters(
        (VoteSpace::Plot, config.settings(), n_folds),
        voters,
        false,
        Vec::new(),
    )
    .with_context(|| prepared.dir.display().to_string())
}

/// Each sample's position in `prepared` by id.
pub(crate) fn row_index(prepared: &Prepared) -> HashMap<&str, usize> {
    prepared
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect()
}

/// The position in `prepared` of each movie `ids`; a movie it lacks is an error.
pub(crate) fn sample_indices(prepared: &Prepared, ids: &[String]) -> Result<Vec<usize>> {
    let at = row_index(prepared);
    ids.iter()
        .map(|id| {
            at.get(id.as_str())
                .copied()
                .with_context(|| format!("movie {id} is not in {}", prepared.dir.display()))
        })
        .collect()
}

/// The cached plot embedding of each movie `ids` of `prepared` (`None`: it has no plot).
pub(crate) fn queries(
    prepared: &Prepared,
    ids: &[String],
    dim: usize,
) -> Result<Vec<Option<Vec<f32>>>> {
    let (table, width) = plot_table(prepared)?;
    if width != dim {
        bail!(
            "the plot vote reads {dim}-wide embeddings, {} has {width}",
            prepared.dir.display(),
        );
    }
    Ok(sample_indices(prepared, ids)?
        .into_iter()
        .map(|i| has_plot(&prepared.samples[i]).then(|| table.row(i)[..dim].to_vec()))
        .collect())
}

/// The cached plot features of `prepared` and the width of their leading sentence embedding,
/// the part the vote reads (the concatenated layers' blocks after it are left to the bags).
pub(crate) fn plot_table(
    prepared: &Prepared,
) -> Result<(&cinefuse_data::feature_cache::FeatureTable, usize)> {
    prepared
        .features
        .as_ref()
        .and_then(|f| {
            let table = f.plot.as_deref()?;
            let dim = match f.plot_sentence_dim {
                0 => table.dim,
                d => d,
            };
            Some((table, dim))
        })
        .with_context(|| {
            format!(
                "{}: the plot-neighbour vote needs the first bag's cached plot features (a \
                 frozen pretrained plot encoder, `model.text.kind = \"bert\"`)",
                prepared.dir.display()
            )
        })
}

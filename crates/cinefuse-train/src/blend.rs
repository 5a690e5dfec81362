//! `cinefuse ensemble`: a blend of bags trained with different configs (say, the frozen
//! pretrained model and a plot model learned from scratch) on the same folds of the same data.
//! Their out-of-fold predictions line up movie for movie, so the blend's weights are learned on
//! them (`blend_weights.rs`; genres on log loss, the rating on MAE, separately), and so are its
//! thresholds and CV+ interval: the blend's "member k" is the weighted combination of every
//! bag's member k, which never saw fold k. The test split is never touched.
//!
//! A blend may also hold rating trees (`rating_trees.rs`): gradient-boosted trees on the
//! metadata, trained on the same folds, which take part in the rating only; and
//! neighbour votes (`neighbour_vote.rs`) on the first bag's cached plot embeddings and
//! on its metadata encoding, which take part in the genres only. With a vote, the genres are
//! combined by logistic stacking per genre (`genre_stacking.rs`) instead of one weight per part.
//!
//! How a blend is learnt lives in `blend_learn.rs`.
//!
//! A blend is a folder holding `blend.json` (the bags, the weights, the calibration), the
//! trees' `rating_trees.safetensors` and the votes' `plot_neighbours.safetensors` and
//! `metadata_neighbours.safetensors`; `eval` and `export` take it like a run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cinefuse_data::Prepared;
use cinefuse_data::split::Split;
use serde::{Deserialize, Serialize};

use crate::bag::BagCalibration;
use crate::config::BackendKind;
use crate::content_rating::{
    CONTENT_RATING_FILE, ContentRating, ContentRatingConfig, ContentRatingInfo, feature_rows,
};
use crate::credit_neighbours::CreditNeighboursConfig;
use crate::ensemble::Ensemble;
use crate::evaluate::LoadedRun;
use crate::genre_prompts::GenrePromptsConfig;
use crate::genre_stacking::{GenreStacking, combine, restack_movies};
use crate::metadata_neighbours::MetadataNeighboursConfig;
use crate::metadataless_stacking::metadataless_ids;
use crate::neighbour_vote::{NeighbourVote, VoteSpace};
use crate::plot_neighbours::PlotNeighboursConfig;
use crate::plotless_stacking::{plotless_ids, restack_without_plot};
use crate::predictions::Predictions;
use crate::rating_trees::{RatingTrees, RatingTreesConfig, TREES_FILE, blend_part, tree_row};
use crate::run_dir::read_json;
use crate::voteless_rating::{VotelessRatingInfo, VotelessRow, VotelessTrees, may_rate_reduced};

pub use crate::blend_learn::{LearnedBlend, blend, learn_blend};

pub const BLEND_FILE: &str = "blend.json";

/// What a blend folder records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlendInfo {
    /// The bags, resolved to absolute paths.
    pub runs: Vec<PathBuf>,
    /// Weight of each bag's genre probabilities and of its rating, then of the plot vote and
    /// the metadata vote when there are some (their rating weight is 0), then of the rating
    /// trees when there are some (their genre weight is 0); each sums to 1.
    pub genre_weights: Vec<f32>,
    pub rating_weights: Vec<f32>,
    /// How the rating trees were trained; `None`: the blend has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating_trees: Option<RatingTreesConfig>,
    /// How the plot-neighbour vote is taken; `None`: the blend has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plot_neighbours: Option<PlotNeighboursConfig>,
    /// How the metadata-neighbour vote is taken; `None`: the blend has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_neighbours: Option<MetadataNeighboursConfig>,
    /// How the credits-neighbour vote is taken; `None`: the blend has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_neighbours: Option<CreditNeighboursConfig>,
    /// How the genre-prompt vote is taken; `None`: the blend has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genre_prompts: Option<GenrePromptsConfig>,
    /// The genres' logistic stacking over the bags and the votes (with a vote only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genre_stacking: Option<GenreStacking>,
    /// The stacking of the same parts for movies without a plot (`plotless_stacking.rs`);
    /// `None` in a blend learnt before 2026-12-05, whose stacking takes every movie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genre_stacking_without_plot: Option<GenreStacking>,
    /// The stacking of the same parts for movies given without metadata
    /// (`metadataless_stacking.rs`); `None` in a blend learnt before 2026-12-06, whose
    /// stacking (or plotless stacking) takes such movies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genre_stacking_without_metadata: Option<GenreStacking>,
    /// The rating of movies without metadata, from their plot (`content_rating.rs`); its
    /// interval is the content bin of `calibration.interval`. `None` in a blend learnt before
    /// 2026-12-05 or without `[train.content_rating]`: such movies are rated like any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_rating: Option<ContentRatingInfo>,
    /// The rating of movies without a vote count, from rating trees that never saw one
    /// (`voteless_rating.rs`, learnt with the rating trees); its interval is the voteless bin
    /// of `calibration.interval`. `None` in a blend learnt before 2026-12-06 or without trees:
    /// such movies are rated like any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating_without_votes: Option<VotelessRatingInfo>,
    /// Thresholds, interval and scores from the blend's out-of-fold predictions.
    pub calibration: BagCalibration,
}

/// A blend loaded for evaluation and export.
pub struct Blend {
    pub dir: PathBuf,
    pub info: BlendInfo,
    /// The bags, in the order of `info.runs`.
    pub parts: Vec<Ensemble>,
    /// The neighbour votes: the plot's, the metadata's, the credits', then the genre
    /// prompts', as the blend has them.
    pub votes: Vec<NeighbourVote>,
    pub trees: Option<RatingTrees>,
    pub content: Option<ContentRating>,
    /// The trees without the vote count (`info.rating_without_votes`).
    pub voteless: Option<VotelessTrees>,
}

/// What a blend adds to its bags (`[train.rating_trees]`, `[train.plot_neighbours]`,
/// `[train.metadata_neighbours]`, `[train.credit_neighbours]`, `[train.genre_prompts]`).
#[derive(Debug, Clone, Default)]
pub struct BlendExtras {
    pub rating_trees: Option<RatingTreesConfig>,
    pub plot_neighbours: Option<PlotNeighboursConfig>,
    pub metadata_neighbours: Option<MetadataNeighboursConfig>,
    pub credit_neighbours: Option<CreditNeighboursConfig>,
    pub genre_prompts: Option<GenrePromptsConfig>,
    pub content_rating: Option<ContentRatingConfig>,
}

impl BlendExtras {
    /// The spaces that vote, in the blend's part order.
    pub fn vote_spaces(&self) -> Vec<VoteSpace> {
        let plot = self.plot_neighbours.map(|_| VoteSpace::Plot);
        let metadata = self.metadata_neighbours.map(|_| VoteSpace::Metadata);
        let credits = self.credit_neighbours.map(|_| VoteSpace::Credits);
        let prompts = self.genre_prompts.as_ref().map(|_| VoteSpace::Prompts);
        plot.into_iter()
            .chain(metadata)
            .chain(credits)
            .chain(prompts)
            .collect()
    }
}

pub fn is_blend(dir: &Path) -> bool {
    dir.join(BLEND_FILE).is_file()
}

/// Opens `run` as one part of a blend: a calibrated bag with all its members.
pub(crate) fn open_part(run: &Path, backend: Option<BackendKind>) -> Result<Ensemble> {
    match Ensemble::open(run, backend)? {
        Some(e) if !e.refit => Ok(e),
        _ => bail!(
            "{}: not a bag (a blend combines bags trained with `train.folds = K`; a refit \
             model or a single run has no out-of-fold predictions to learn weights on)",
            run.display()
        ),
    }
}

impl Blend {
    /// `dir` as a blend, or `None` when it is not one.
    pub fn open(dir: &Path, backend: Option<BackendKind>) -> Result<Option<Self>> {
        if !is_blend(dir) {
            return Ok(None);
        }
        let info: BlendInfo = read_json(&dir.join(BLEND_FILE))?;
        let parts = info
            .runs
            .iter()
            .map(|r| open_part(r, backend))
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("{}: cannot load the blend's bags", dir.display()))?;
        check_compatible(&parts)?;
        let trees = match info.rating_trees {
            Some(_) => Some(RatingTrees::load(&dir.join(TREES_FILE))?),
            None => None,
        };
        let votes = load_votes(dir, &info.extras(), parts[0].lead())?;
        let n_genres = parts[0].lead().prepared.preprocessor.genre_names().len();
        let genre_parts = parts.len() + votes.len();
        for s in info
            .genre_stacking
            .iter()
            .chain(&info.genre_stacking_without_plot)
            .chain(&info.genre_stacking_without_metadata)
        {
            s.check(genre_parts, n_genres)
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(BLEND_FILE).display()))?;
        }
        let expected = genre_parts + usize::from(trees.is_some());
        if info.genre_weights.len() != expected || info.rating_weights.len() != expected {
            bail!(
                "{}: {expected} parts but {} genre and {} rating weights",
                dir.join(BLEND_FILE).display(),
                info.genre_weights.len(),
                info.rating_weights.len()
            );
        }
        let content = match info.content_rating {
            Some(_) => Some(load_content(dir, &parts[0])?),
            None => None,
        };
        let voteless = match &info.rating_without_votes {
            Some(v) => Some(VotelessTrees::load(dir, v, parts[0].info.folds)?),
            None => None,
        };
        let mut all_trees = trees.iter().chain(voteless.iter().flat_map(|v| &v.sets));
        if let Some(t) = all_trees.find(|t| t.reads_other_genres(n_genres)) {
            bail!(
                "{}: rating trees that read {} genre probabilities, the bags predict {n_genres} \
                 genres",
                dir.display(),
                t.n_genres
            );
        }
        Ok(Some(Self {
            dir: dir.to_path_buf(),
            info,
            parts,
            votes,
            trees,
            content,
            voteless,
        }))
    }

    pub fn lead(&self) -> &LoadedRun {
        self.parts[0].lead()
    }

    /// Every part's predictions on `split` (or on all of each part's `data`, the same movies
    /// prepared each part's way), combined member by member: (the blend, its members).
    pub fn predict(
        &self,
        data: &[&Prepared],
        split: Option<Split>,
    ) -> Result<(Predictions, Vec<Predictions>)> {
        let mut per_part: Vec<Vec<Predictions>> = self
            .parts
            .iter()
            .zip(data)
            .map(|(e, d)| e.predict(d, split).1)
            .collect();
        let lead = self.lead();
        for v in &self.votes {
            per_part.push(vote_part(v, data[0], &per_part[0], &lead.device)?);
        }
        if let Some(t) = &self.trees {
            per_part.push(tree_part(t, data[0], &per_part[0])?);
        }
        let ids = &per_part[0][0].ids;
        let has_plot = plots_of(data[0], ids);
        let bare = bare_of(data[0], ids);
        let w = self.info.weights();
        let mut members = combine_members(
            &per_part,
            &Weights {
                has_plot: &has_plot,
                bare: &bare,
                ..w
            },
        )?;
        if let Some((trees, info)) = self
            .voteless
            .as_ref()
            .zip(self.info.rating_without_votes.as_ref())
        {
            let plots = match &self.content {
                Some(_) => feature_rows(data[0], &members[0].ids, false)?,
                None => vec![None; members[0].ids.len()],
            };
            let rows = voteless_rows(data[0], &members[0].ids, &plots)?;
            let bags = &per_part[..self.parts.len()];
            let cal = self.info.calibration.interval.as_ref();
            trees
                .models(info, self.content.as_ref(), cal)
                .apply(&mut members, bags, &rows);
        }
        if let Some(c) = &self.content {
            let rows = feature_rows(data[0], &members[0].ids, true)?;
            c.apply(&mut members, &rows);
        }
        if let Some(cal) = &self.info.calibration.interval {
            let missing = crate::blend_learn::sample_missing(data[0], &members[0].ids)?;
            cal.key_members(&mut members, |i| missing[i]);
        }
        Ok((Predictions::mean(&members), members))
    }
}

/// The rating trees as a blend part: member k is the first bag's member k (the genre weight
/// of this part is 0) with forest k's ratings on the same movies.
pub(crate) fn tree_part(
    trees: &RatingTrees,
    prepared: &Prepared,
    lead: &[Predictions],
) -> Result<Vec<Predictions>> {
    if trees.members.len() != lead.len() {
        bail!(
            "the rating trees have {} forests for {} members",
            trees.members.len(),
            lead.len()
        );
    }
    let ratings = lead
        .iter()
        .enumerate()
        .map(|(k, p)| trees.predict_member_without(k, prepared, &p.ids, &[], Some(p)))
        .collect::<Result<Vec<_>>>()?;
    Ok(blend_part(lead, ratings))
}

/// A neighbour vote as a blend part: member k is the first bag's member k (the rating weight
/// of this part is 0) with vote k's genre probabilities for the same movies.
pub(crate) fn vote_part(
    vote: &NeighbourVote,
    prepared: &Prepared,
    lead: &[Predictions],
    device: &burn::prelude::Device,
) -> Result<Vec<Predictions>> {
    if vote.n_folds != lead.len() {
        bail!(
            "the {} vote has {} members for {} bag members",
            vote.space.name(),
            vote.n_folds,
            lead.len()
        );
    }
    lead.iter()
        .enumerate()
        .map(|(k, p)| {
            Ok(Predictions {
                probs: vote.vote_member(k, prepared, &p.ids, device)?,
                genre_shift: Vec::new(),
                ..p.clone()
            })
        })
        .collect()
}

/// A blend's votes from their files in `dir`, checked against the first bag: its genres and,
/// for the metadata vote, its fields.
fn load_votes(dir: &Path, extras: &BlendExtras, lead: &LoadedRun) -> Result<Vec<NeighbourVote>> {
    let pre = &lead.prepared.preprocessor;
    extras
        .vote_spaces()
        .into_iter()
        .map(|space| {
            let path = dir.join(space.file());
            let v = NeighbourVote::load(&path)?;
            if v.space != space || v.n_genres != pre.genre_names().len() {
                bail!(
                    "{}: a {} vote on {} genres, the blend expects a {} vote on {}",
                    path.display(),
                    v.space.name(),
                    v.n_genres,
                    space.name(),
                    pre.genre_names().len()
                );
            }
            if space == VoteSpace::Metadata {
                crate::metadata_neighbours::check_fields(&v, pre)
                    .with_context(|| path.display().to_string())?;
            }
            Ok(v)
        })
        .collect()
}

/// "blend of 3 bags", "blend of 1 bag, a plot-neighbour vote and rating trees": what eval and
/// the model card say.
pub fn describe(bags: usize, votes: &[VoteSpace], trees: bool) -> String {
    let mut extras: Vec<String> = votes.iter().map(|v| format!("a {}", v.label())).collect();
    if trees {
        extras.push("rating trees".into());
    }
    let and = match extras.split_last() {
        None => String::new(),
        Some((last, [])) => format!(" and {last}"),
        Some((last, rest)) => format!(", {} and {last}", rest.join(", ")),
    };
    format!(
        "blend of {bags} bag{}{and}",
        if bags == 1 { "" } else { "s" }
    )
}

/// One part's weights as `ensemble`, a blended `train` and `eval` print them. With genre
/// stacking (`stacking`: the part's logit weight averaged over the genres) the greedy genre
/// weight only mixes modality shares and losses and can be 0 for a part the stacking leans on.
pub fn part_weights(part: &Path, genre: f32, stacking: Option<f32>, rating: f32) -> String {
    let leaning = stacking
        .map(|w| format!(", stacking weight {w:.2} (mean over genres)"))
        .unwrap_or_default();
    format!(
        "{}: genre weight {genre:.2}{leaning}, rating weight {rating:.2}",
        part.display()
    )
}

/// A blend's weights and stacking, and its bags for error messages.
pub(crate) struct Weights<'a> {
    pub(crate) genre: &'a [f32],
    pub(crate) rating: &'a [f32],
    pub(crate) stacking: Option<&'a GenreStacking>,
    /// The stacking of movies without a plot, and which movies have one (empty: all).
    pub(crate) plotless: Option<&'a GenreStacking>,
    pub(crate) has_plot: &'a [bool],
    /// The stacking of movies given without metadata, and which movies are (`bare`; empty:
    /// none).
    pub(crate) metadataless: Option<&'a GenreStacking>,
    pub(crate) bare: &'a [bool],
    pub(crate) runs: &'a [PathBuf],
}

impl BlendInfo {
    /// The trees and votes the blend holds.
    pub fn extras(&self) -> BlendExtras {
        BlendExtras {
            rating_trees: self.rating_trees,
            plot_neighbours: self.plot_neighbours,
            metadata_neighbours: self.metadata_neighbours,
            credit_neighbours: self.credit_neighbours,
            genre_prompts: self.genre_prompts.clone(),
            content_rating: self
                .content_rating
                .as_ref()
                .map(|_| ContentRatingConfig::default()),
        }
    }

    fn weights(&self) -> Weights<'_> {
        Weights {
            genre: &self.genre_weights,
            rating: &self.rating_weights,
            stacking: self.genre_stacking.as_ref(),
            plotless: self.genre_stacking_without_plot.as_ref(),
            has_plot: &[],
            metadataless: self.genre_stacking_without_metadata.as_ref(),
            bare: &[],
            runs: &self.runs,
        }
    }
}

/// Whether each movie `ids` of `prepared` has a plot (a movie it does not hold counts as
/// having one, and keeps the blend's own stacking).
fn plots_of(prepared: &Prepared, ids: &[String]) -> Vec<bool> {
    let plotless = plotless_ids(prepared);
    ids.iter().map(|id| !plotless.contains(id)).collect()
}

/// Whether each movie `ids` of `prepared` is given without metadata (with a plot; a movie it
/// does not hold counts as having metadata).
fn bare_of(prepared: &Prepared, ids: &[String]) -> Vec<bool> {
    let bare = metadataless_ids(prepared);
    ids.iter().map(|id| bare.contains(id)).collect()
}

/// Member k of the blend from member k of every part.
pub(crate) fn combine_members(
    per_part: &[Vec<Predictions>],
    w: &Weights<'_>,
) -> Result<Vec<Predictions>> {
    let k = per_part[0].len();
    (0..k)
        .map(|m| {
            let each: Vec<Predictions> = per_part.iter().map(|p| p[m].clone()).collect();
            check_same_movies(&each, w.runs)?;
            Ok(combine_one(&each, w))
        })
        .collect()
}

/// One member of the blend from that member of every part: the stacking's genres, restacked
/// for the movies without a plot, and for those given without metadata, when the blend has a
/// stacking for them.
pub(crate) fn combine_one(each: &[Predictions], w: &Weights<'_>) -> Predictions {
    let mut out = combine(each, (w.genre, w.rating), w.stacking);
    if let Some(plotless) = w.plotless.filter(|_| !w.has_plot.is_empty()) {
        restack_without_plot(&mut out, each, plotless, w.has_plot);
    }
    if let Some(bare) = w.metadataless.filter(|_| !w.bare.is_empty()) {
        restack_movies(&mut out, each, bare, |i| w.bare[i]);
    }
    out
}

pub(crate) fn check_same_movies(each: &[Predictions], runs: &[PathBuf]) -> Result<()> {
    for (p, run) in each.iter().zip(runs).skip(1) {
        if p.ids != each[0].ids {
            bail!(
                "{} predicts for other movies than {} (different splits, folds or filters); \
                 a blend needs bags trained on the same movies",
                run.display(),
                runs[0].display()
            );
        }
    }
    Ok(())
}

/// The rows of the movies `ids` of `prepared` that a reduced rating may rate (without a vote
/// count, or without any extra), with their `plots` features; `None` for the others.
fn voteless_rows<'a>(
    prepared: &'a Prepared,
    ids: &[String],
    plots: &[Option<&'a [f32]>],
) -> Result<Vec<Option<VotelessRow<'a>>>> {
    let at = crate::plot_neighbours::sample_indices(prepared, ids)?;
    Ok(at
        .into_iter()
        .zip(plots)
        .map(|(i, plot)| {
            let s = &prepared.samples[i];
            may_rate_reduced(&s.numeric_missing, s.extras_absent).then(|| VotelessRow {
                numeric_missing: &s.numeric_missing,
                extras_absent: s.extras_absent,
                trees: tree_row(&s.numeric, &s.numeric_missing, &s.categorical),
                plot: *plot,
            })
        })
        .collect())
}

/// A blend's content rating, one ridge per fold of its bags.
fn load_content(dir: &Path, lead: &Ensemble) -> Result<ContentRating> {
    let path = dir.join(CONTENT_RATING_FILE);
    let content = ContentRating::load(&path)?;
    if content.members.len() != lead.info.folds {
        bail!(
            "{}: {} ridges for {} folds",
            path.display(),
            content.members.len(),
            lead.info.folds
        );
    }
    Ok(content)
}

/// The bags must share folds, fold seed, genres and data.
pub(crate) fn check_compatible(parts: &[Ensemble]) -> Result<()> {
    let first = &parts[0];
    let genres = |e: &Ensemble| e.lead().prepared.preprocessor.genre_names().to_vec();
    let data = |e: &Ensemble| e.lead().prepared.preprocessor.state.dataset_hash.clone();
    for e in &parts[1..] {
        let (a, b) = (first.bag.display(), e.bag.display());
        if (e.info.folds, e.info.seed) != (first.info.folds, first.info.seed) {
            bail!(
                "{b} has {} folds with seed {}, {a} has {} with seed {}: a blend needs bags \
                 trained on the same folds (same `train.folds` and `seed`)",
                e.info.folds,
                e.info.seed,
                first.info.folds,
                first.info.seed
            );
        }
        if genres(e) != genres(first) {
            bail!(
                "{b} predicts other genres than {a}: {:?} vs {:?}",
                genres(e),
                genres(first)
            );
        }
        if data(e) != data(first) {
            bail!("{b} was trained on other data than {a} (dataset hashes differ)");
        }
    }
    Ok(())
}

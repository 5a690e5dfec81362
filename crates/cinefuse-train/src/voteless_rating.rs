//! The rating of a movie given without its vote count. Every training movie has one, and the
//! blend leans on it: the bags read it in their metadata branch and the rating trees split on
//! it first. A movie without it (one not yet released, say) was rated with MAE 0.57 and an
//! interval that covered 86 %, where gradient boosting fitted on the same movies without the
//! vote count scores 0.47 (docs/RESULTS.md, "Movies without a vote count"). So a blend with
//! rating trees also learns sets of trees with the vote count taken from every training
//! movie: without it alone; then, when the data declares them, without the numeric extras too
//! (the Metacritic score) and without the text extras as well (the award words), since a
//! movie not yet released has none of them. Each set has one forest per fold of the bags,
//! forest k from the rated movies outside fold k. A movie without a vote count is rated by the
//! widest set whose fields it lacks all, mixed with the bags' own ratings of it and the plot's
//! by weights learnt out of fold, with a CV+ interval bin of its own from those out-of-fold
//! residuals.
//!
//! One more set keeps the vote count and never sees the numeric and text extras: it rates a
//! movie given with its vote count and without any declared extra (a table without those
//! columns), which otherwise read like the few training movies without a Metacritic score and
//! awards (docs/RESULTS.md, "Movies given without their extras"). Any other movie with a vote
//! count is rated as before. (The names here, and `rating_without_votes` in `blend.json` and
//! the export, predate that set.)

use std::ops::Range;
use std::path::Path;

use anyhow::{Result, bail};
use cinefuse_data::Prepared;
use cinefuse_data::extra::FittedFeature;
use cinefuse_data::prepared::Preprocessor;
use serde::{Deserialize, Serialize};

use crate::bag::out_of_fold_with;
use crate::blend_weights::{ROUNDS, greedy_weights, mean_abs_error};
use crate::content_rating::{ContentRating, feature_rows};
use crate::ensemble::Ensemble;
use crate::interval::{Calibration, EXTRAS_KEY_OFFSET, VOTES_COLUMN, plain_votes, voteless_key};
use crate::predictions::Predictions;
use crate::rating_trees::{
    RatingTrees, RatingTreesConfig, genre_inputs, train_rating_trees_without,
};

pub const VOTELESS_TREES_FILE: &str = "rating_trees_without_votes.safetensors";

/// A rating without the vote count, as `blend.json` records it: which fields its trees never
/// saw, how it mixes in the plot, and what it scored when learnt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReducedRatingInfo {
    /// The numeric fields (columns of the trees' rows) taken from every training movie: the
    /// vote count, and in the wider sets the declared numeric, then text extras too.
    pub columns: Vec<usize>,
    /// Their names, for the reader.
    pub fields: Vec<String>,
    /// The weight of each bag's own rating of the movie as given (the blend's bags, in order).
    pub part_weights: Vec<f32>,
    /// The trees' weight.
    pub trees_weight: f32,
    /// The content rating's weight (ridge k on the plot features, `content_rating.rs`); for a
    /// movie without a plot it goes to the trees. The weights sum to 1, chosen greedily on
    /// out-of-fold MAE like the blend's rating weights.
    pub plot_weight: f32,
    /// The rated train + validation movies it was scored on, out of fold.
    pub movies: usize,
    /// Its out-of-fold MAE on those movies with the fields taken away.
    pub out_of_fold_mae: f32,
    /// The trees' alone, on the same movies.
    pub trees_out_of_fold_mae: f32,
    /// The first bag's alone, given the movies without those fields.
    pub lead_out_of_fold_mae: f32,
    /// The blend's out-of-fold MAE on the same movies given every field, for scale.
    pub blend_out_of_fold_mae: f32,
}

impl ReducedRatingInfo {
    /// Whether this set keeps the vote count (it rates a movie given without any extra).
    pub fn keeps_votes(&self) -> bool {
        !self.fields.iter().any(|f| f == VOTES_FIELD)
    }
}

/// A blend's ratings of movies without a vote count (`blend.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VotelessRatingInfo {
    /// Each set's rating, narrowest first: without the vote count; then, when the data
    /// declares them, without the numeric extras too (the Metacritic score); then without the
    /// text extras as well (the award words). A movie not yet released lacks all three.
    pub sets: Vec<ReducedRatingInfo>,
}

/// Whether a movie's numeric fields lack the vote count.
pub fn lacks_votes(numeric_missing: &[f32]) -> bool {
    lacks_all(numeric_missing, &[VOTES_COLUMN])
}

/// Whether a reduced rating may rate a movie: one without a vote count, or one given without
/// any declared extra (`EncodedSample::extras_absent`).
pub fn may_rate_reduced(numeric_missing: &[f32], extras_absent: bool) -> bool {
    extras_absent || lacks_votes(numeric_missing)
}

/// Whether a movie's numeric fields lack every one of `columns`.
fn lacks_all(numeric_missing: &[f32], columns: &[usize]) -> bool {
    columns
        .iter()
        .all(|c| numeric_missing.get(*c).is_some_and(|m| *m > 0.5))
}

/// The columns of each declared extra among the numeric fields (a set or text extra has
/// one per item or word), with its name.
fn extra_columns(pre: &Preprocessor) -> Vec<(String, Range<usize>)> {
    let mut column = pre.state.numeric.len();
    let mut out = Vec::new();
    for f in &pre.state.extras {
        let width = f.numeric_width();
        if width > 0 {
            out.push((extra_name(f), column..column + width));
        }
        column += width;
    }
    out
}

/// Each declared numeric or text extra's numeric columns (a Metacritic score's one, award
/// words' one per word): the fields whose absence a blend's interval keys apart
/// (`Calibration::lacking_columns`).
pub fn extra_field_columns(pre: &Preprocessor) -> Vec<Vec<usize>> {
    let kept = [extra_names(pre, true), extra_names(pre, false)].concat();
    extra_columns(pre)
        .into_iter()
        .filter(|(name, _)| kept.contains(name))
        .map(|(_, columns)| columns.collect())
        .collect()
}

/// The names of the declared numeric extras (`numeric`), or else of the text extras: the
/// fields the reduced sets take away and the interval keys apart when missing.
fn extra_names(pre: &Preprocessor, numeric: bool) -> Vec<String> {
    let kind = |f: &&FittedFeature| match f {
        FittedFeature::Numeric { .. } => numeric,
        FittedFeature::Text { .. } => !numeric,
        _ => false,
    };
    pre.state
        .extras
        .iter()
        .filter(kind)
        .map(extra_name)
        .collect()
}

/// A declared extra's name as `blend.json` records it: `extra.NAME`.
fn extra_name(f: &FittedFeature) -> String {
    match f {
        FittedFeature::Numeric { scaler } => scaler.name.clone(),
        other => format!("extra.{}", other.name()),
    }
}

/// Whether any rated training movie of `prepared` has a vote count: without one, the blend's
/// own trees already learnt without it.
fn votes_given(prepared: &Prepared) -> bool {
    prepared
        .samples
        .iter()
        .any(|s| s.rating.is_some() && !lacks_votes(&s.numeric_missing))
}

/// A movie the blend rates without its vote count: its row for the trees, and its plot
/// features when it has a plot and the blend a content rating.
pub struct VotelessRow<'a> {
    pub numeric_missing: &'a [f32],
    /// The movie gives none of the declared extras: a set that keeps the vote count may rate it.
    pub extras_absent: bool,
    pub trees: Vec<f64>,
    pub plot: Option<&'a [f32]>,
}

/// One rating without some fields: its trees and how it mixes in the plot.
pub struct ReducedRating<'a> {
    pub columns: &'a [usize],
    pub trees: &'a RatingTrees,
    pub part_weights: &'a [f32],
    pub trees_weight: f32,
    pub plot_weight: f32,
    /// The interval key of the movies it rates.
    pub key: f32,
    /// It keeps the vote count and the interval has vote bins for its movies
    /// (`Calibration::extras`): a movie it rates is keyed `EXTRAS_KEY_OFFSET` + its vote count
    /// instead of `key`.
    pub vote_keyed: bool,
}

/// What rates a movie without its vote count: each set's rating, narrowest first, and the
/// content rating they mix in.
pub struct VotelessModels<'a> {
    pub sets: Vec<ReducedRating<'a>>,
    pub content: Option<&'a ContentRating>,
}

impl VotelessModels<'_> {
    /// The rating that serves movie `row`: of the sets whose fields it lacks all, the one that
    /// never saw the most columns (the sets nest, so that is the widest); none when it lacks
    /// no set's fields all. A set that keeps the vote count serves only a movie given without
    /// any extra: one given with some extras but without its Metacritic score lacks it as an
    /// obscure movie does, and the rating with every field reads that better (docs/RESULTS.md,
    /// "Movies given without their extras").
    fn pick(&self, row: &VotelessRow<'_>) -> Option<&ReducedRating<'_>> {
        let fits = |r: &&ReducedRating<'_>| {
            let keeps_votes = !r.columns.contains(&VOTES_COLUMN);
            lacks_all(row.numeric_missing, r.columns) && (row.extras_absent || !keeps_votes)
        };
        // Reversed, so that of equals the first wins (`max_by_key` keeps the last).
        self.sets
            .iter()
            .rev()
            .filter(fits)
            .max_by_key(|r| r.columns.len())
    }

    /// Member `k`'s rating of movie `i` (`row`) by `r`, from the bags' own ratings `parts`.
    fn rate(
        &self,
        r: &ReducedRating<'_>,
        (k, i): (usize, usize),
        row: &VotelessRow<'_>,
        parts: &[Vec<Predictions>],
    ) -> f32 {
        let lead = &parts[0][k.min(parts[0].len() - 1)];
        let trees = r.trees.predict_one(
            k.min(r.trees.members.len() - 1),
            &row.trees,
            lead.probs_of(i),
        );
        let ridge = self.content.zip(row.plot).map(|(c, plot)| {
            let ridge = &c.members[k.min(c.members.len() - 1)];
            ridge.predict(plot)
        });
        let bags = parts.iter().map(|p| p[k.min(p.len() - 1)].rating[i]);
        let weights = (r.part_weights, r.trees_weight, r.plot_weight);
        mix_reduced(weights, bags, trees, ridge)
    }

    /// Rates the movies `rows` marks (`Some`) in each member's predictions, member k from
    /// member k of every bag in `parts` (their own ratings of the same movies), forest k and
    /// ridge k, and gives them their rating's interval key.
    pub fn apply(
        &self,
        members: &mut [Predictions],
        parts: &[Vec<Predictions>],
        rows: &[Option<VotelessRow<'_>>],
    ) {
        let picked: Vec<_> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, row)| {
                let row = row.as_ref()?;
                Some((i, row, self.pick(row)?))
            })
            .collect();
        for (k, p) in members.iter_mut().enumerate() {
            for &(i, row, r) in &picked {
                p.rating[i] = self.rate(r, (k, i), row, parts);
                let votes = p.votes[i];
                p.votes[i] = match r.vote_keyed && votes.is_finite() {
                    true => EXTRAS_KEY_OFFSET + votes,
                    false => r.key,
                };
            }
        }
    }
}

/// A reduced rating of one movie: the bags' own ratings `bags` by `part_weights`, its trees'
/// rating, and the plot's ridge `ridge` (the trees' rating for a movie without a plot).
pub(crate) fn mix_reduced(
    (part_weights, trees_weight, plot_weight): (&[f32], f32, f32),
    bags: impl Iterator<Item = f32>,
    trees: f32,
    ridge: Option<f32>,
) -> f32 {
    let bags: f32 = part_weights.iter().zip(bags).map(|(w, r)| w * r).sum();
    bags + trees_weight * trees + plot_weight * ridge.unwrap_or(trees)
}

/// A blend's ratings without the vote count just learnt: per set, the forests, what they
/// scored out of fold, and their residuals (tagged with their member) for the interval's bin.
pub struct LearnedVoteless {
    pub info: VotelessRatingInfo,
    pub sets: Vec<Learned>,
}

/// One reduced rating just learnt.
pub struct Learned {
    pub trees: RatingTrees,
    pub info: ReducedRatingInfo,
    pub residuals: Vec<(u16, f32)>,
    /// Each residual's movie's vote key (its scaled log vote count; NaN when unknown).
    pub votes: Vec<f32>,
}

/// The ratings without the vote count of a blend of the bags `parts` whose out-of-fold
/// members are `oof` (member k: fold k's movies): trees trained like its rating trees on the
/// first bag's data and folds, mixed with the bags' own ratings of the movies without those
/// fields and with its `content` rating on the plot. `None` when no training movie has a vote
/// count.
pub fn learn_for_blend(
    parts: &[Ensemble],
    (cfg, content): (&RatingTreesConfig, Option<&ContentRating>),
    oof: &[Predictions],
) -> Result<Option<LearnedVoteless>> {
    let prepared = &parts[0].lead().prepared;
    if !votes_given(prepared) {
        return Ok(None);
    }
    let sets = reduced_sets(&prepared.preprocessor)
        .into_iter()
        .map(|fields| learn_reduced(parts, fields, (cfg, content), oof))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(LearnedVoteless {
        info: VotelessRatingInfo {
            sets: sets.iter().map(|l| l.info.clone()).collect(),
        },
        sets,
    }))
}

/// The fields each set of reduced ratings never sees: the vote count; with the declared
/// numeric extras; with the text extras as well (each set only when it adds fields); then,
/// when the data declares any, the numeric and text extras without the vote count, for a
/// movie given with its vote count and without any extra. That is what a table of a few
/// columns gives: without this set such a movie read like the few training movies that have
/// no Metacritic score and no awards, obscure ones rated low (docs/RESULTS.md, "Movies given
/// without their extras").
fn reduced_sets(pre: &Preprocessor) -> Vec<Vec<String>> {
    let mut sets = extras_chain(pre, vec![VOTES_FIELD.to_string()]);
    let mut extras = extras_chain(pre, Vec::new());
    if extras.len() > 1 {
        sets.extend(extras.pop());
    }
    sets
}

/// `first`, then `first` with the declared numeric extras, then with the text extras as well,
/// each only when it adds fields.
fn extras_chain(pre: &Preprocessor, first: Vec<String>) -> Vec<Vec<String>> {
    let mut sets = vec![first];
    for extra in [extra_names(pre, true), extra_names(pre, false)] {
        if !extra.is_empty() {
            let wider = [sets[sets.len() - 1].clone(), extra].concat();
            sets.push(wider);
        }
    }
    sets
}

/// The vote count's name among the numeric fields.
pub const VOTES_FIELD: &str = "votes";

/// The columns of the numeric fields `names` in `pre`'s encoding (the built-in `votes`,
/// declared extras by their `extra.NAME`).
fn columns_of(pre: &Preprocessor, names: &[String]) -> Vec<usize> {
    let extras = extra_columns(pre);
    names
        .iter()
        .flat_map(|n| match n.as_str() {
            VOTES_FIELD => VOTES_COLUMN..VOTES_COLUMN + 1,
            _ => extras
                .iter()
                .find(|(e, _)| e == n)
                .map_or(0..0, |(_, c)| c.clone()),
        })
        .collect()
}

/// Another handle on `prepared` whose movies lack the numeric fields `columns` (value 0, the
/// mean, flagged missing), as a movie given without them is encoded.
pub(crate) fn prepared_without(prepared: &Prepared, columns: &[usize]) -> Prepared {
    prepared.with_samples_edited(|mut s| {
        for c in columns {
            if let (Some(v), Some(m)) = (s.numeric.get_mut(*c), s.numeric_missing.get_mut(*c)) {
                (*v, *m) = (0.0, 1.0);
            }
        }
        s
    })
}

/// Each bag's members' ratings of their held-out folds given without the fields `names`.
fn bags_without(parts: &[Ensemble], names: &[String]) -> Result<Vec<Vec<Predictions>>> {
    parts
        .iter()
        .map(|e| {
            out_of_fold_with(&e.members, &e.info, |m, rows| {
                let columns = columns_of(&m.prepared.preprocessor, names);
                m.predict_dataset(prepared_without(&m.prepared, &columns).dataset_of(rows))
            })
        })
        .collect()
}

/// The out-of-fold candidates of a reduced rating over the rated movies: one column each for
/// every bag, the trees and (with a content rating) the plot's ridges, the trees' for a movie
/// without a plot; the truth, each movie's member (fold) and the blend's rating given every
/// field.
struct Candidates {
    columns: Vec<Vec<f32>>,
    truth: Vec<f32>,
    member: Vec<u16>,
    blend: Vec<f32>,
    votes: Vec<f32>,
}

fn candidates(
    prepared: &Prepared,
    (trees, blank): (&RatingTrees, &[usize]),
    (bags, content): (&[Vec<Predictions>], Option<&ContentRating>),
    oof: &[Predictions],
) -> Result<Candidates> {
    let mut c = Candidates {
        columns: vec![Vec::new(); bags.len() + 1 + usize::from(content.is_some())],
        truth: Vec::new(),
        member: Vec::new(),
        blend: Vec::new(),
        votes: Vec::new(),
    };
    for (k, p) in oof.iter().enumerate() {
        if bags.iter().any(|b| b[k].ids != p.ids) {
            bail!(
                "a bag's held-out fold {} holds other movies than the blend's",
                k + 1
            );
        }
        let own = trees.predict_member_without(k, prepared, &p.ids, blank, Some(&bags[0][k]))?;
        let plots = match content {
            Some(_) => feature_rows(prepared, &p.ids, false)?,
            None => Vec::new(),
        };
        for (i, t) in own
            .into_iter()
            .enumerate()
            .filter(|(i, _)| p.rating_present[*i])
        {
            for (col, b) in c.columns.iter_mut().zip(bags) {
                col.push(b[k].rating[i]);
            }
            c.columns[bags.len()].push(t);
            if let Some(ridges) = content {
                let ridge = plots[i].map_or(t, |x| ridges.members[k].predict(x));
                c.columns[bags.len() + 1].push(ridge);
            }
            c.truth.push(p.rating_true[i]);
            c.member.push(k as u16);
            c.blend.push(p.rating[i]);
            c.votes.push(plain_votes(p.votes[i]));
        }
    }
    Ok(c)
}

/// Trees that never saw `fields`, and the weights that mix them with the bags' ratings and the
/// plot's on `oof`'s movies given without those fields, out of fold.
fn learn_reduced(
    parts: &[Ensemble],
    fields: Vec<String>,
    (cfg, content): (&RatingTreesConfig, Option<&ContentRating>),
    oof: &[Predictions],
) -> Result<Learned> {
    let start = std::time::Instant::now();
    let (lead, info) = (&parts[0].lead().prepared, &parts[0].info);
    let columns = columns_of(&lead.preprocessor, &fields);
    let bags = bags_without(parts, &fields)?;
    // The genre probabilities the first bag gives the movies without those fields, out of fold.
    let genres = cfg.genre_probabilities.then(|| genre_inputs(&bags[0]));
    let trees = train_rating_trees_without(
        lead,
        (info.seed, info.folds),
        cfg,
        (&columns, genres.as_ref()),
    )?;
    let c = candidates(lead, (&trees, &columns), (&bags, content), oof)?;
    let weights = greedy_weights(&c.columns, |x| mean_abs_error(x, &c.truth), ROUNDS);
    let mixed: Vec<f32> = (0..c.truth.len())
        .map(|i| {
            c.columns
                .iter()
                .zip(&weights)
                .map(|(col, w)| w * col[i])
                .sum()
        })
        .collect();
    let mae = |x: &[f32]| mean_abs_error(x, &c.truth) as f32;
    let info = ReducedRatingInfo {
        columns,
        fields,
        part_weights: weights[..bags.len()].to_vec(),
        trees_weight: weights[bags.len()],
        plot_weight: weights.get(bags.len() + 1).copied().unwrap_or(0.0),
        movies: c.truth.len(),
        out_of_fold_mae: mae(&mixed),
        trees_out_of_fold_mae: mae(&c.columns[bags.len()]),
        lead_out_of_fold_mae: mae(&c.columns[0]),
        blend_out_of_fold_mae: mae(&c.blend),
    };
    report(&info, start);
    let residuals = (0..c.truth.len())
        .map(|i| (c.member[i], mixed[i] - c.truth[i]))
        .collect();
    Ok(Learned {
        trees,
        info,
        residuals,
        votes: c.votes,
    })
}

fn report(info: &ReducedRatingInfo, start: std::time::Instant) {
    println!(
        "rating without {}: out-of-fold MAE {:.4} on {} movies (trees {:.4}, first bag {:.4}; \
         weights: bags {:?}, trees {:.2}, plot {:.2}; the blend, given them: {:.4}), in {:.1}s",
        info.fields.join(", "),
        info.out_of_fold_mae,
        info.movies,
        info.trees_out_of_fold_mae,
        info.lead_out_of_fold_mae,
        info.part_weights,
        info.trees_weight,
        info.plot_weight,
        info.blend_out_of_fold_mae,
        start.elapsed().as_secs_f64()
    );
}

/// A blend's trees without the vote count, one set of forests per set of ratings, as saved.
pub struct VotelessTrees {
    pub sets: Vec<RatingTrees>,
}

/// The file of set `k`'s trees in a blend or export folder.
pub fn trees_file(k: usize) -> String {
    match k {
        0 => VOTELESS_TREES_FILE.to_string(),
        k => format!("rating_trees_without_votes_{k}.safetensors"),
    }
}

impl VotelessTrees {
    /// The trees of `learned`.
    pub fn of(learned: LearnedVoteless) -> Self {
        Self {
            sets: learned.sets.into_iter().map(|l| l.trees).collect(),
        }
    }

    /// Each set of trees with its file name.
    pub fn files(&self) -> impl Iterator<Item = (String, &RatingTrees)> {
        self.sets
            .iter()
            .enumerate()
            .map(|(k, t)| (trees_file(k), t))
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        self.files()
            .try_for_each(|(file, t)| t.save(&dir.join(file)))
    }

    /// The trees `info` describes from `dir`, each with `members` forests: the files a blend
    /// writes.
    pub fn load(dir: &Path, info: &VotelessRatingInfo, members: usize) -> Result<Self> {
        let files: Vec<String> = (0..info.sets.len()).map(trees_file).collect();
        Self::load_files(dir, &files, members)
    }

    /// The trees from `files` inside `dir` (plain names, one per set), each with `members`
    /// forests.
    pub fn load_files(dir: &Path, files: &[String], members: usize) -> Result<Self> {
        let load = |file: &String| -> Result<RatingTrees> {
            let path = cinefuse_data::paths::resolve_inside(dir, file)
                .map_err(|e| anyhow::anyhow!("{}: rating_without_votes: {e}", dir.display()))?;
            let trees = RatingTrees::load(&path)?;
            if trees.members.len() != members {
                bail!(
                    "{}: {} forests for {members} members",
                    path.display(),
                    trees.members.len()
                );
            }
            Ok(trees)
        };
        if files.is_empty() {
            bail!("{}: rating_without_votes names no trees", dir.display());
        }
        Ok(Self {
            sets: files.iter().map(load).collect::<Result<_>>()?,
        })
    }

    /// What rates a movie without its vote count, as `info` learnt it, with the blend's
    /// `content` rating and `interval` (when it has vote bins for the movies of the sets that
    /// keep the vote count, `Calibration::extras`, those movies are keyed with it).
    pub fn models<'a>(
        &'a self,
        info: &'a VotelessRatingInfo,
        content: Option<&'a ContentRating>,
        interval: Option<&Calibration>,
    ) -> VotelessModels<'a> {
        let extras_bins = interval.is_some_and(|c| c.extras.is_some());
        let sets = self.sets.iter().zip(&info.sets).enumerate();
        VotelessModels {
            sets: sets
                .map(|(k, (trees, i))| ReducedRating {
                    columns: &i.columns,
                    trees,
                    part_weights: &i.part_weights,
                    trees_weight: i.trees_weight,
                    plot_weight: i.plot_weight,
                    key: voteless_key(k),
                    vote_keyed: extras_bins && i.keeps_votes(),
                })
                .collect(),
            content,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content_rating::Ridge;
    use crate::tree_forest::Forest;

    /// A forest of no tree: every movie gets `value`.
    fn constant(value: f32) -> Forest {
        Forest {
            base: f64::from(value),
            ..Forest::empty()
        }
    }

    #[test]
    fn a_movie_lacking_a_sets_fields_is_rated_by_the_widest_set_that_may_rate_it_with_the_plot_mixed_in()
     {
        let tree = |a: f32, b: f32| RatingTrees {
            members: vec![constant(a), constant(b)],
            n_numeric: 4,
            n_categorical: 0,
            n_genres: 0,
        };
        let (votes, extras, kept) = (tree(6.0, 8.0), tree(5.0, 5.5), tree(9.0, 9.0));
        let content = ContentRating {
            members: vec![
                Ridge {
                    weights: vec![1.0],
                    bias: 3.0,
                };
                2
            ],
            alpha: 1.0,
        };
        let set = |columns, trees, weights: &'static [f32; 3], k| ReducedRating {
            columns,
            trees,
            part_weights: &weights[..1],
            trees_weight: weights[1],
            plot_weight: weights[2],
            key: voteless_key(k),
            vote_keyed: false,
        };
        // Without the vote count; without it and column 3; without column 3 alone.
        let models = VotelessModels {
            sets: vec![
                set(&[2], &votes, &[0.5, 0.25, 0.25], 0),
                set(&[2, 3], &extras, &[0.0, 0.5, 0.5], 1),
                set(&[3], &kept, &[0.0, 1.0, 0.0], 2),
            ],
            content: Some(&content),
        };
        let member = || Predictions {
            ids: ["a", "b", "c", "d", "e", "f", "g"]
                .map(String::from)
                .to_vec(),
            rating: vec![7.0; 7],
            votes: vec![0.5, f32::NAN, f32::NAN, f32::NAN, 0.5, 0.5, 0.5],
            ..Predictions::default()
        };
        let mut members = vec![member(), member()];
        let no_votes = [0.0, 0.0, 1.0, 0.0];
        let (neither, no_extra, no_year) = ([0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0], [1.0; 1]);
        let plot = [1.0f32];
        let row = |missing, plot, extras_absent| {
            Some(VotelessRow {
                numeric_missing: missing,
                extras_absent,
                trees: vec![1.0, 2.0, f64::NAN, 0.0],
                plot,
            })
        };
        let rows = [
            None,
            row(&no_votes[..], None, false),
            row(&no_votes[..], Some(&plot[..]), false),
            row(&neither[..], Some(&plot[..]), true),
            // Given without any extra: the set that keeps the vote count rates it.
            row(&no_extra[..], Some(&plot[..]), true),
            // Lacks a field no set leaves out: rated as before.
            row(&no_year[..], None, true),
            // Lacks column 3 among other extras it gives: rated as before.
            row(&no_extra[..], Some(&plot[..]), false),
        ];
        // The bag's own ratings: member 0 rates every movie 2.0, member 1 rates 3.0.
        let bag = |r: f32| Predictions {
            rating: vec![r; 7],
            ..member()
        };
        let parts = [vec![bag(2.0), bag(3.0)]];
        models.apply(&mut members, &parts, &rows);
        // The ridges rate 4.0; for a movie without a plot their share goes to the trees.
        assert_eq!(
            members[0].rating,
            [7.0, 1.0 + 0.5 * 6.0, 1.0 + 1.5 + 1.0, 4.5, 9.0, 7.0, 7.0]
        );
        assert_eq!(
            members[1].rating,
            [7.0, 1.5 + 0.5 * 8.0, 1.5 + 2.0 + 1.0, 4.75, 9.0, 7.0, 7.0]
        );
        let keys = &members[1].votes;
        assert_eq!((keys[0], keys[5], keys[6]), (0.5, 0.5, 0.5));
        assert!(keys[1].is_nan() && keys[2].is_nan());
        assert_eq!((keys[3], keys[4]), (voteless_key(1), voteless_key(2)));
        // With vote bins for its movies, the set that keeps the vote count keys a movie with
        // its own vote count (member 1's key of movie e was its vote count, 0.5).
        let mut keyed = VotelessModels {
            sets: models.sets,
            content: None,
        };
        keyed.sets[2].vote_keyed = true;
        let mut again = vec![member(), member()];
        keyed.apply(&mut again, &parts, &rows);
        assert_eq!(again[1].votes[4], EXTRAS_KEY_OFFSET + 0.5);
        assert_eq!(
            again[1].votes[3],
            voteless_key(1),
            "the other sets keep their keys"
        );
        assert!(lacks_votes(&[0.0, 0.0, 1.0]));
        assert!(!lacks_votes(&[1.0, 1.0, 0.0]));
        assert!(!lacks_votes(&[1.0]), "no such field: not missing");
        assert!(may_rate_reduced(&[0.0, 0.0, 1.0], false) && may_rate_reduced(&[0.0], true));
        assert!(!may_rate_reduced(&[1.0, 1.0, 0.0, 1.0], false));
    }
}

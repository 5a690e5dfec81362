//! Learning a blend (`blend.rs`) from its bags' out-of-fold predictions: the parts' member
//! predictions out of fold (bags, votes, rating trees), the greedy weights, the genre stackings
//! (`blend_stacking.rs`), the cross-fitted members that choose the thresholds and the interval,
//! and the content rating; then the blend folder, written whole.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cinefuse_data::Prepared;
use cinefuse_data::output_dir::OutputKind;

use crate::bag::{BagCalibration, calibrate_folds, out_of_fold};
use crate::blend::{
    BLEND_FILE, BlendExtras, BlendInfo, Weights, check_compatible, check_same_movies,
    combine_members, open_part, tree_part, vote_part,
};
use crate::blend_stacking::{
    Lacking, cross_fitted_members, learn_stackings, report_without_inputs,
};
use crate::blend_weights::{ROUNDS, greedy_weights, log_loss, mean_abs_error};
use crate::config::BackendKind;
use crate::content_rating::{CONTENT_RATING_FILE, ContentRating, LearnedContent};
use crate::ensemble::Ensemble;
use crate::evaluate::LoadedRun;
use crate::neighbour_vote::NeighbourVote;
use crate::oof::write_oof;
use crate::predictions::Predictions;
use crate::rating_trees::{
    RatingTrees, RatingTreesConfig, TREES_FILE, genre_inputs, train_rating_trees,
};
use crate::run_dir::write_json;
use crate::voteless_rating::{LearnedVoteless, VotelessTrees, learn_for_blend as learn_voteless};

/// Learns a blend of the bags `runs` on their out-of-fold predictions and writes it to `out`.
pub fn blend(
    runs: &[PathBuf],
    out: &Path,
    backend: Option<BackendKind>,
    extras: BlendExtras,
) -> Result<BlendInfo> {
    let inputs: Vec<&Path> = runs.iter().map(PathBuf::as_path).collect();
    cinefuse_data::output_dir::check_output(out, OutputKind::Blend, &inputs)?;
    let learned = learn_blend(runs, backend, extras)?;
    let staging = cinefuse_data::atomic::StagingDir::new(out, OutputKind::Blend, &inputs)?;
    learned.write(staging.path())?;
    staging.commit()?;
    Ok(learned.info)
}

/// A blend just learnt, with its blended out-of-fold predictions.
pub struct LearnedBlend {
    pub info: BlendInfo,
    out_of_fold: Vec<Predictions>,
    genres: Vec<String>,
    votes: Vec<NeighbourVote>,
    trees: Option<RatingTrees>,
    content: Option<ContentRating>,
    voteless: Option<VotelessTrees>,
}

impl LearnedBlend {
    /// Writes `oof_predictions.csv`, the rating trees, the votes and, last (it marks the
    /// blend done), `blend.json` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_oof(dir, &self.out_of_fold, &self.genres)?;
        if let Some(t) = &self.trees {
            t.save(&dir.join(TREES_FILE))?;
        }
        for v in &self.votes {
            v.save(&dir.join(v.space.file()))?;
        }
        if let Some(c) = &self.content {
            c.save(&dir.join(CONTENT_RATING_FILE))?;
        }
        if let Some(t) = &self.voteless {
            t.save(dir)?;
        }
        write_json(&dir.join(BLEND_FILE), &self.info)
    }
}

/// A blend combines two bags at least, or one with something of its own to add.
fn check_blend_runs(runs: &[PathBuf], extras: &BlendExtras) -> Result<()> {
    let adds = extras.rating_trees.is_some()
        || extras.content_rating.is_some()
        || !extras.vote_spaces().is_empty();
    if runs.is_empty() || (runs.len() < 2 && !adds) {
        bail!(
            "--runs: a blend needs at least two bags (or one with --rating-trees, \
             --content-rating, --plot-neighbours, --metadata-neighbours or \
             --credit-neighbours), got {}",
            runs.len()
        );
    }
    // The same bag twice would only count double: its weight is learnt once already.
    let mut seen = std::collections::HashSet::new();
    for run in runs {
        let resolved = cinefuse_data::paths::absolute_resolved(run).unwrap_or_else(|_| run.clone());
        if !seen.insert(resolved) {
            bail!("--runs lists {} twice", run.display());
        }
    }
    Ok(())
}

/// Rating trees trained on the lead bag's folds (`(seed, folds)`), reading the lead bag's
/// out-of-fold genre probabilities when `config` asks; their out-of-fold predictions join
/// `oof` as its last part.
fn add_rating_trees(
    prepared: &Prepared,
    (seed, folds): (u64, usize),
    config: &RatingTreesConfig,
    oof: &mut Vec<Vec<Predictions>>,
) -> Result<RatingTrees> {
    let genres = config.genre_probabilities.then(|| genre_inputs(&oof[0]));
    let trees = train_rating_trees(prepared, (seed, folds), config, genres.as_ref())?;
    oof.push(tree_part(&trees, prepared, &oof[0])?);
    let mae = |p: &[Predictions]| Predictions::concat(p).rating_metrics().mae;
    println!(
        "rating trees: out-of-fold MAE {:.4} (first bag {:.4})",
        mae(&oof[oof.len() - 1]),
        mae(&oof[0])
    );
    Ok(trees)
}

/// Every part's member predictions out of fold: the bags', then the votes' (genres only),
/// then the rating trees' when `extras` asks for them.
struct PartsOutOfFold {
    oof: Vec<Vec<Predictions>>,
    /// The bags and the votes: the parts that predict genres.
    genre_parts: usize,
    votes: Vec<NeighbourVote>,
    forests: Option<RatingTrees>,
}

fn parts_out_of_fold(parts: &[Ensemble], extras: &BlendExtras) -> Result<PartsOutOfFold> {
    let mut oof: Vec<Vec<Predictions>> = parts
        .iter()
        .map(|e| out_of_fold(&e.members, &e.info))
        .collect::<Result<_>>()?;
    let (lead, info) = (parts[0].lead(), &parts[0].info);
    let votes = build_votes(lead, (info.seed, info.folds), extras)?;
    for v in &votes {
        oof.push(vote_part(v, &lead.prepared, &oof[0], &lead.device)?);
    }
    let genre_parts = oof.len();
    let forests = match &extras.rating_trees {
        Some(cfg) => Some(add_rating_trees(
            &lead.prepared,
            (info.seed, info.folds),
            cfg,
            &mut oof,
        )?),
        None => None,
    };
    Ok(PartsOutOfFold {
        oof,
        genre_parts,
        votes,
        forests,
    })
}

/// The blend of the bags `runs` (with rating trees and neighbour votes trained on their folds
/// when `extras` asks): weights, thresholds and interval from their out-of-fold predictions.
pub fn learn_blend(
    runs: &[PathBuf],
    backend: Option<BackendKind>,
    extras: BlendExtras,
) -> Result<LearnedBlend> {
    check_blend_runs(runs, &extras)?;
    let parts = runs
        .iter()
        .map(|r| open_part(r, backend))
        .collect::<Result<Vec<_>>>()?;
    check_compatible(&parts)?;
    println!("learning the blend on the bags' out-of-fold predictions");
    let PartsOutOfFold {
        oof,
        genre_parts,
        votes,
        forests,
    } = parts_out_of_fold(&parts, &extras)?;
    crate::trainer::stop_if_interrupted("the genre stackings")?;
    let resolved = resolved_runs(runs)?;
    let (genre_weights, rating_weights) =
        learn_weights(&oof, (genre_parts, parts.len()..genre_parts), &resolved)?;
    let lead = parts[0].lead();
    let names = lead.prepared.preprocessor.genre_names().to_vec();
    let lacking = Lacking::of(&lead.prepared);
    let stackings = learn_stackings(
        (&parts, &votes),
        (&lead.prepared, &lead.device),
        &oof,
        genre_parts,
        &lacking,
    )?;
    crate::trainer::stop_if_interrupted("the calibration and the ratings without inputs")?;
    let weights = Weights {
        genre: &genre_weights,
        rating: &rating_weights,
        stacking: stackings.with_plot.as_ref(),
        plotless: None,
        has_plot: &[],
        metadataless: None,
        bare: &[],
        runs: &resolved,
    };
    let mut members = match &stackings.cross_fit {
        Some(cross) => cross_fitted_members(&oof, cross, &weights, &lacking)?,
        None => combine_members(&oof, &weights)?,
    };
    let mut calibration = calibrate_blend(lead, &mut members, &names)?;
    let (content, voteless) = ratings_without_inputs(&parts, &extras, &members, &mut calibration)?;
    if let Some(cal) = calibration.interval.take() {
        let ratings = crate::input_scales::BlendRatings {
            parts: &parts,
            trees: forests.as_ref(),
            rating_weights: &rating_weights,
            voteless: voteless.as_ref(),
            content: content.as_ref().map(|c| &c.ridges),
            members: &members,
        };
        let scales = crate::input_scales::learn(&ratings, &cal)?;
        calibration.interval = Some(cal.with_input_scales(scales));
    }
    if let Some(cross) = &stackings.cross_fit {
        report_without_inputs(cross, &weights, (&calibration.thresholds, &names), &lacking);
    }
    let info = BlendInfo {
        calibration,
        runs: resolved,
        genre_weights,
        rating_weights,
        rating_trees: extras.rating_trees,
        plot_neighbours: extras.plot_neighbours,
        metadata_neighbours: extras.metadata_neighbours,
        credit_neighbours: extras.credit_neighbours,
        genre_prompts: extras.genre_prompts,
        genre_stacking: stackings.with_plot,
        genre_stacking_without_plot: stackings.without_plot,
        genre_stacking_without_metadata: stackings.without_metadata,
        content_rating: content.as_ref().map(|c| c.info.clone()),
        rating_without_votes: voteless.as_ref().map(|v| v.info.clone()),
    };
    Ok(LearnedBlend {
        info,
        out_of_fold: members,
        genres: names,
        votes,
        trees: forests,
        content: content.map(|c| c.ridges),
        voteless: voteless.map(VotelessTrees::of),
    })
}

/// The blend's ratings of movies given without some inputs, learnt on its out-of-fold
/// `members`: the content rating (from the plot, for a movie without metadata) and the
/// ratings without the vote count, each when `extras` asks, with the interval bins their
/// residuals make added to `calibration`.
fn ratings_without_inputs(
    parts: &[Ensemble],
    extras: &BlendExtras,
    members: &[Predictions],
    calibration: &mut BagCalibration,
) -> Result<(Option<LearnedContent>, Option<LearnedVoteless>)> {
    let content = match extras.content_rating {
        Some(_) => {
            let lead = parts[0].lead();
            let folds = folds_of(parts);
            let learned = crate::content_rating::learn_for_blend(&lead.prepared, folds, members)?;
            calibration.interval = calibration
                .interval
                .take()
                .map(|c| c.with_content(&learned.residuals));
            Some(learned)
        }
        None => None,
    };
    let voteless = match &extras.rating_trees {
        Some(cfg) => {
            crate::trainer::stop_if_interrupted("the ratings without the vote count")?;
            let ridges = content.as_ref().map(|c| &c.ridges);
            let learned = learn_voteless(parts, (cfg, ridges), members)?;
            if let Some(l) = &learned {
                let sets: Vec<&[(u16, f32)]> =
                    l.sets.iter().map(|s| s.residuals.as_slice()).collect();
                let extras_sets: Vec<usize> = (0..l.sets.len())
                    .filter(|k| l.sets[*k].info.keeps_votes())
                    .collect();
                let kept = extras_residuals(l, &extras_sets);
                calibration.interval = calibration.interval.take().map(|c| {
                    c.with_voteless(&sets)
                        .with_extras_bins(&kept, crate::bag::INTERVAL_BINS)
                        .with_extras_sets(extras_sets)
                });
            }
            learned
        }
        None => None,
    };
    Ok((content, voteless))
}

/// The residuals, with their movies' vote keys, of the reduced ratings `sets` of `l` that keep
/// the vote count: what the interval's vote bins for their movies are fitted on.
fn extras_residuals(l: &LearnedVoteless, sets: &[usize]) -> Vec<crate::interval::Residual> {
    sets.iter()
        .flat_map(|k| {
            let set = &l.sets[*k];
            set.residuals
                .iter()
                .zip(&set.votes)
                .map(|((m, r), v)| crate::interval::Residual {
                    member: *m,
                    residual: *r,
                    votes: *v,
                })
        })
        .collect()
}

/// The blend's thresholds and interval from its out-of-fold `members`, whose movies without
/// some extras (a Metacritic score, say) are keyed apart for interval bins of their own
/// (`Calibration::key`).
fn calibrate_blend(
    lead: &LoadedRun,
    members: &mut [Predictions],
    names: &[String],
) -> Result<BagCalibration> {
    let fields = crate::voteless_rating::extra_field_columns(&lead.prepared.preprocessor);
    for fold in members.iter_mut() {
        let missing = sample_missing(&lead.prepared, &fold.ids)?;
        crate::interval::rekey_lacking(std::slice::from_mut(fold), |i| missing[i], &fields);
    }
    let t = &lead.config.train;
    let rule = (t.threshold_rule, t.shared_threshold_weight);
    let mut calibration = calibrate_folds(members, names, Vec::new(), rule);
    calibration.interval = calibration
        .interval
        .take()
        .map(|c| c.with_lacking_columns(fields));
    Ok(calibration)
}

/// The numeric missing flags of the movies `ids` of `prepared`.
pub(crate) fn sample_missing<'a>(prepared: &'a Prepared, ids: &[String]) -> Result<Vec<&'a [f32]>> {
    let at = crate::plot_neighbours::sample_indices(prepared, ids)?;
    Ok(at
        .into_iter()
        .map(|i| prepared.samples[i].numeric_missing.as_slice())
        .collect())
}

/// The first bag's seed and folds, which every part shares.
fn folds_of(parts: &[Ensemble]) -> (u64, usize) {
    (parts[0].info.seed, parts[0].info.folds)
}

/// The parts' run folders as absolute paths, links resolved: what the blend records.
fn resolved_runs(runs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    runs.iter()
        .map(|r| {
            cinefuse_data::paths::absolute_resolved(r).with_context(|| r.display().to_string())
        })
        .collect()
}

/// Genre and rating weights from the parts' out-of-fold predictions (all folds together).
/// Only the first `genre_parts` predict genres (the rating trees, last, get genre weight 0);
/// the parts in `no_rating` (the votes, whose rating is the first bag's) get rating weight 0.
fn learn_weights(
    oof: &[Vec<Predictions>],
    (genre_parts, no_rating): (usize, std::ops::Range<usize>),
    runs: &[PathBuf],
) -> Result<(Vec<f32>, Vec<f32>)> {
    let all: Vec<Predictions> = oof.iter().map(|f| Predictions::concat(f)).collect();
    check_same_movies(&all, runs)?;
    let genres: Vec<_> = all[..genre_parts]
        .iter()
        .map(Predictions::labelled_genres)
        .collect();
    let targets = genres[0].targets.clone();
    let mut genre_weights = greedy_weights(
        &genres.into_iter().map(|g| g.probs).collect::<Vec<_>>(),
        |p| log_loss(p, &targets),
        ROUNDS,
    );
    genre_weights.resize(oof.len(), 0.0);
    let rated: Vec<usize> = (0..all.len()).filter(|i| !no_rating.contains(i)).collect();
    let ratings: Vec<(Vec<f32>, Vec<f32>)> =
        rated.iter().map(|i| all[*i].labelled_ratings()).collect();
    let truth = ratings[0].1.clone();
    let learnt = greedy_weights(
        &ratings.into_iter().map(|r| r.0).collect::<Vec<_>>(),
        |p| mean_abs_error(p, &truth),
        ROUNDS,
    );
    let mut rating_weights = vec![0.0; all.len()];
    for (i, w) in rated.iter().zip(learnt) {
        rating_weights[*i] = w;
    }
    Ok((genre_weights, rating_weights))
}

/// The votes `extras` asks for, built on the first bag's data and folds (the genre prompts
/// embedded by its plot backbone).
fn build_votes(
    lead: &LoadedRun,
    folds: (u64, usize),
    extras: &BlendExtras,
) -> Result<Vec<NeighbourVote>> {
    let prepared = &lead.prepared;
    let plot = extras
        .plot_neighbours
        .map(|c| crate::plot_neighbours::build(prepared, folds, c));
    let metadata = extras
        .metadata_neighbours
        .map(|c| crate::metadata_neighbours::build(prepared, folds, c));
    let credits = extras
        .credit_neighbours
        .map(|c| crate::credit_neighbours::build(prepared, folds, c));
    let prompts = extras
        .genre_prompts
        .as_ref()
        .map(|c| crate::genre_prompts::build(lead, folds.1, c));
    plot.into_iter()
        .chain(metadata)
        .chain(credits)
        .chain(prompts)
        .collect()
}

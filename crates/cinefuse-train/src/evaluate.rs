//! `cinefuse eval`: metrics of a trained run on a split or on another dataset, with decision
//! thresholds tuned on the validation split and baselines printed beside them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use burn::data::dataset::Dataset;
use burn::prelude::*;
use cinefuse_data::dataset::MovieItem;
use cinefuse_data::split::Split;
use cinefuse_data::{Prepared, prepare::apply_preprocessor};
use cinefuse_model::CinefuseModel;
use serde::{Deserialize, Serialize};

use crate::backend::select_device;
use crate::bootstrap::Confidence;
use crate::config::{BackendKind, TrainConfig};
use crate::input_warnings::input_warnings;
use crate::metrics::{
    GenreMetrics, GenrePredictions, RatingMetrics, genre_metrics, rating_metrics,
};
use crate::predictions::{Predictions, Scorer, predict_dataset};
use crate::run_dir::*;
use crate::thresholds::pooled_thresholds;

/// A trained run loaded for inference.
pub struct LoadedRun {
    pub dir: PathBuf,
    pub config: TrainConfig,
    pub info: RunInfo,
    pub prepared: Prepared,
    pub model: CinefuseModel,
    pub device: Device,
    pub best_epoch: usize,
}

impl LoadedRun {
    pub fn open(run_dir: &Path, backend: Option<BackendKind>) -> Result<Self> {
        Self::open_over(run_dir, backend, &mut PretrainedBase::default())
    }

    /// `open`, its model loaded over `base` (a bag's members share its frozen backbones).
    pub fn open_over(
        run_dir: &Path,
        backend: Option<BackendKind>,
        base: &mut PretrainedBase,
    ) -> Result<Self> {
        crate::run_dir::refuse_other_outputs(run_dir)?;
        let mut config = TrainConfig::load(&run_dir.join(CONFIG_FILE), &[])
            .with_context(|| format!("{}: not a run directory", run_dir.display()))?;
        let mut info = RunInfo::read(run_dir)?;
        info.locate_paths(&mut config);
        // A run from before `workdir` was recorded keeps paths relative to where it trained:
        // when one is missing from here, say where to open it from.
        let hint = if info.prepared_dir.is_relative() && !info.prepared_dir.exists() {
            " (its paths are relative to the directory it trained in: open it from there)"
        } else {
            ""
        };
        crate::data_setup::check_fingerprint(&info, &info.prepared_dir)
            .with_context(|| format!("{}: cannot evaluate this run{hint}", run_dir.display()))?;
        let mut prepared = Prepared::open(&info.prepared_dir).with_context(|| {
            format!(
                "the run's prepared data {} is gone{hint}",
                info.prepared_dir.display()
            )
        })?;
        let device = select_device(&config.backend.with_kind(backend))?.device;
        // Frozen pretrained encoders: the cached features when their checkpoint is still
        // there; otherwise the backbone runs (a run saved since frozen weights stay in the
        // checkpoint folder cannot load without it; an older one has its own copy).
        if let Err(e) =
            crate::backbone_features::attach_cached_features(&config.model, &mut prepared, &device)
        {
            eprintln!("warning: no cached features ({e:#}); running the backbones instead");
        }
        let best = best_dir(run_dir).ok_or_else(|| {
            anyhow!(
                "{}: no best model yet (train for at least one epoch)",
                run_dir.display()
            )
        })?;
        let state: TrainState = read_json(&best.join(STATE_FILE))?;
        let weights = best.join(MODEL_FILE);
        let model = load_model_over(&config.model, &info.shapes, &weights, &device, base)?;
        Ok(Self {
            dir: run_dir.to_path_buf(),
            config,
            info,
            prepared,
            model,
            device,
            best_epoch: state.best_epoch,
        })
    }

    pub fn scorer(&self) -> Scorer<'_> {
        Scorer {
            loss: &self.config.loss,
            scale: self.info.rating_scale,
            pos_weight: None,
            genre_shift: &self.info.genre_logit_shift,
        }
    }

    /// The model's predictions for every movie of `dataset` (a prepared split, or items in
    /// memory that carry their frozen layers' states).
    pub fn predict_dataset(&self, dataset: impl Dataset<MovieItem> + 'static) -> Predictions {
        predict_dataset(
            &self.model,
            dataset,
            &crate::backend::config_batcher(&self.config.backend, &self.prepared),
            self.config.train.eval_batch_size,
            &self.device,
            &self.scorer(),
            &[],
        )
    }

    pub fn predict(&self, prepared: &Prepared, split: Option<Split>) -> Predictions {
        self.predict_dataset(match split {
            Some(s) => prepared.dataset(s),
            None => prepared.dataset_all(),
        })
    }

    /// Predictions for the movies at `rows` of the run's prepared data.
    pub fn predict_rows(&self, rows: Vec<usize>) -> Predictions {
        self.predict_dataset(self.prepared.dataset_of(rows))
    }

    /// Per-genre thresholds tuned on the run's own validation movies (the validation split,
    /// or a bag member's held-out fold), pulled toward a shared one as the config says.
    pub fn tuned_thresholds(&self) -> (Vec<f32>, Predictions) {
        let (_, val_ds) = crate::trainer::datasets_for(&self.prepared, self.info.rows);
        let val = self.predict_dataset(val_ds);
        let t = &self.config.train;
        let genres = val.labelled_genres();
        let thresholds = pooled_thresholds(&genres, t.threshold_rule, t.shared_threshold_weight);
        (thresholds, val)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baselines {
    /// Always the most frequent training genre(s): every genre with prevalence ≥ 50 %, at least one.
    pub majority_genres: Vec<String>,
    pub majority: GenreMetrics,
    /// Always the training mean rating.
    pub mean_rating: f64,
    pub mean: RatingMetrics,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    pub run: PathBuf,
    pub target: String,
    pub movies: usize,
    pub best_epoch: usize,
    #[serde(deserialize_with = "crate::metrics::nan_if_null")]
    pub loss: f64,
    pub genres: GenreMetrics,
    pub genres_at_0_5: GenreMetrics,
    pub rating: RatingMetrics,
    /// The rating interval (split conformal on validation, or a bag's CV+), measured here.
    #[serde(default)]
    pub interval: Option<IntervalMetrics>,
    pub baselines: Baselines,
    /// A bag: its members and their out-of-fold scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bag: Option<BagSummary>,
    /// Bootstrap intervals of the headline metrics over the evaluated movies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
}

/// What an evaluation of a bag (or of its refit model) adds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BagSummary {
    /// Models averaged: the folds (times the sets), or 1 for the refit model.
    pub members: usize,
    /// A bag's repeated sets of folds (`train.bag_sets`; 1 for the refit model and a blend).
    #[serde(default = "crate::bag_sets::one_set")]
    pub sets: usize,
    pub refit: bool,
    pub out_of_fold: crate::bag::OutOfFold,
    /// How far the thresholds were pulled toward a shared one (`thresholds.rs`).
    #[serde(default)]
    pub shared_threshold_weight: f32,
    /// How each genre's own threshold was chosen (`thresholds.rs`).
    #[serde(default)]
    pub threshold_rule: crate::thresholds::ThresholdRule,
    /// A blend: its bags and their weights (empty for a bag).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blend: Vec<BlendPart>,
}

/// One bag of a blend.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlendPart {
    pub run: PathBuf,
    pub genre_weight: f32,
    pub rating_weight: f32,
    /// With genre stacking: the part's logit weight averaged over the genres (the greedy
    /// genre weight then only mixes modality shares and losses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacking_weight: Option<f32>,
}

/// How a constant-width conformal rating interval (`prediction ± half_width`, clipped to
/// 0–10) does on the evaluated movies.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntervalMetrics {
    #[serde(deserialize_with = "crate::metrics::nan_if_null")]
    pub nominal: f64,
    #[serde(deserialize_with = "crate::metrics::nan_if_null")]
    pub half_width: f64,
    /// Share of rated movies whose rating falls inside.
    #[serde(deserialize_with = "crate::metrics::nan_if_null")]
    pub coverage: f64,
    /// Mean width after clipping to 0–10.
    #[serde(deserialize_with = "crate::metrics::nan_if_null")]
    pub mean_width: f64,
    /// Rated movies it was measured on.
    #[serde(default)]
    pub count: usize,
    /// Of those, the movies a blend rated from their plot alone (`content_rating.rs`), whose
    /// interval is the content bin's.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub from_plot: usize,
    /// Of those, the movies a blend rated without their vote count (`voteless_rating.rs`),
    /// whose interval is the bin of such movies.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub without_votes: usize,
    /// Of those, the movies a blend rated as given with a vote count and without any extra
    /// (`voteless_rating.rs`), whose interval is the bin of such movies.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub without_extras: usize,
    /// Of those, the movies given without their plot or poster whose interval the blend's
    /// scale for them widened (`input_scales.rs`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub widened: usize,
    /// A blend whose interval keys movies without some extras apart (`Calibration::key`):
    /// how it does on those movies and on the others with a vote count, each group alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_extras: Option<ByExtras>,
}

/// An interval's coverage on the movies with a vote count that lack some extras and on those
/// that have them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ByExtras {
    pub lacking: crate::interval::Coverage,
    pub given: crate::interval::Coverage,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

pub fn interval_metrics(
    val: &Predictions,
    target: &Predictions,
    nominal: f64,
) -> Option<IntervalMetrics> {
    let (vp, vt) = val.labelled_ratings();
    let residuals: Vec<f32> = vp.iter().zip(&vt).map(|(p, t)| p - t).collect();
    let hw = f64::from(crate::metrics::conformal_quantile(&residuals, nominal));
    let (p, t) = target.labelled_ratings();
    if !hw.is_finite() || p.is_empty() {
        return None;
    }
    let n = p.len() as f64;
    let inside = p
        .iter()
        .zip(&t)
        .filter(|(p, t)| (f64::from(**p) - f64::from(**t)).abs() <= hw)
        .count();
    let width: f64 = p
        .iter()
        .map(|&p| (f64::from(p) + hw).min(10.0) - (f64::from(p) - hw).max(0.0))
        .sum();
    Some(IntervalMetrics {
        nominal,
        half_width: hw,
        coverage: inside as f64 / n,
        mean_width: width / n,
        count: p.len(),
        from_plot: 0,
        without_votes: 0,
        without_extras: 0,
        widened: 0,
        by_extras: None,
    })
}

pub fn baselines(run: &LoadedRun, preds: &Predictions) -> Baselines {
    let state = &run.prepared.preprocessor.state;
    let g = preds.n_genres;
    let n_train = state.genres.train_movies_with_genres.max(1) as f64;
    let prevalence: Vec<f64> = state
        .genres
        .train_counts
        .iter()
        .map(|c| *c as f64 / n_train)
        .collect();
    let mut chosen: Vec<usize> = (0..g).filter(|k| prevalence[*k] >= 0.5).collect();
    if chosen.is_empty() && g > 0 {
        chosen.push(0); // genres are sorted by training frequency
    }
    let labelled = preds.labelled_genres();
    let rows = labelled.rows();
    let mut probs = vec![0.0f32; rows * g];
    for i in 0..rows {
        for k in 0..g {
            // Prevalence as the score keeps the majority genre on top for top-1 and mAP.
            probs[i * g + k] = if chosen.contains(&k) {
                0.5 + prevalence[k] as f32 / 2.0
            } else {
                prevalence[k] as f32 / 2.0
            };
        }
    }
    let majority = genre_metrics(
        &GenrePredictions {
            n_genres: g,
            probs,
            targets: labelled.targets.clone(),
            shift: Vec::new(),
        },
        &vec![0.5; g],
        &state.genres.genres,
    );
    let (_, truth) = preds.labelled_ratings();
    let mean = vec![state.rating_mean as f32; truth.len()];
    Baselines {
        majority_genres: chosen
            .iter()
            .map(|k| state.genres.genres[*k].clone())
            .collect(),
        majority,
        mean_rating: state.rating_mean,
        mean: rating_metrics(&mean, &truth),
    }
}

/// Evaluates `run_dir` on `split` of its prepared data, or on every movie of `data`.
pub fn evaluate(
    run_dir: &Path,
    split: Split,
    data: Option<&Path>,
    backend: Option<BackendKind>,
) -> Result<EvalReport> {
    let target = EvalTarget {
        split,
        data,
        resamples: crate::bootstrap::DEFAULT_RESAMPLES,
    };
    evaluate_with(run_dir, target, backend)
}

/// What to evaluate on, and how many bootstrap resamples its confidence intervals draw.
#[derive(Debug, Clone, Copy)]
pub struct EvalTarget<'a> {
    pub split: Split,
    /// Every movie of another dataset instead of a split of the run's own.
    pub data: Option<&'a Path>,
    /// 0: no confidence intervals.
    pub resamples: usize,
}

pub fn evaluate_with(
    run_dir: &Path,
    t: EvalTarget<'_>,
    backend: Option<BackendKind>,
) -> Result<EvalReport> {
    let EvalTarget { split, data, .. } = t;
    let max = crate::bootstrap::MAX_RESAMPLES;
    if t.resamples > max {
        bail!(
            "{} bootstrap resamples: expected at most {max}",
            t.resamples
        );
    }
    if let Some(dir) = data {
        // Checked before any model loads (a blend's take a while), so a mistyped folder is
        // refused at once.
        cinefuse_data::user_file::open_regular(&dir.join(cinefuse_data::movie::MOVIES_FILE))?;
    }
    if let Some(blend) = crate::blend::Blend::open(run_dir, backend)? {
        return evaluate_blend(run_dir, &blend, t);
    }
    if let Some(ensemble) = crate::ensemble::Ensemble::open(run_dir, backend)? {
        return evaluate_ensemble(run_dir, &ensemble, t);
    }
    let run = LoadedRun::open(run_dir, backend)?;
    let (thresholds, val) = run.tuned_thresholds();
    let (preds, target) = match data {
        Some(dir) => {
            let foreign = foreign_data(run_dir, dir, &run)?;
            (run.predict(&foreign, None), dir.display().to_string())
        }
        None => (
            run.predict(&run.prepared, Some(split)),
            format!("{split} split"),
        ),
    };
    let names = run.prepared.preprocessor.genre_names().to_vec();
    let report = EvalReport {
        run: run_dir.to_path_buf(),
        target,
        movies: preds.ids.len(),
        best_epoch: run.best_epoch,
        loss: preds.loss,
        genres: preds.genre_metrics(&thresholds, &names),
        genres_at_0_5: preds.genre_metrics(&vec![0.5; names.len()], &names),
        rating: preds.rating_metrics(),
        interval: interval_metrics(&val, &preds, crate::export::INTERVAL_COVERAGE),
        baselines: baselines(&run, &preds),
        bag: None,
        confidence: None,
    };
    finish_report(run_dir, report, &preds, run.model.modalities(), t)
}

/// A bag or blend as `report` and `sweep` score it: the thresholds and out-of-fold scores its
/// calibration chose and measured, and (when asked) its predictions of one split of its own
/// data, which `eval` scores with those thresholds.
pub struct GroupScores {
    pub preds: Option<Predictions>,
    pub thresholds: Vec<f32>,
    pub genre_names: Vec<String>,
    pub out_of_fold: crate::bag::OutOfFold,
    /// The lead bag's members' best epochs.
    pub best_epochs: Vec<usize>,
}

/// The bag or blend in `run_dir`, with its predictions of `split` when given; `None` for a
/// single run.
pub fn group_scores(
    run_dir: &Path,
    split: Option<Split>,
    backend: Option<BackendKind>,
) -> Result<Option<GroupScores>> {
    if let Some(b) = crate::blend::Blend::open(run_dir, backend)? {
        let own: Vec<&Prepared> = b.parts.iter().map(|e| &e.lead().prepared).collect();
        let preds = match split {
            Some(s) => Some(b.predict(&own, Some(s))?.0),
            None => None,
        };
        return Ok(Some(GroupScores {
            preds,
            thresholds: b.info.calibration.thresholds.clone(),
            genre_names: b.lead().prepared.preprocessor.genre_names().to_vec(),
            out_of_fold: b.info.calibration.out_of_fold.clone(),
            best_epochs: b.parts[0].calibration.best_epochs.clone(),
        }));
    }
    let Some(e) = crate::ensemble::Ensemble::open(run_dir, backend)? else {
        return Ok(None);
    };
    let lead = &e.lead().prepared;
    Ok(Some(GroupScores {
        preds: split.map(|s| e.predict(lead, Some(s)).0),
        thresholds: e.calibration.thresholds.clone(),
        genre_names: lead.preprocessor.genre_names().to_vec(),
        out_of_fold: e.calibration.out_of_fold.clone(),
        best_epochs: e.calibration.best_epochs.clone(),
    }))
}

/// How a bag's or blend's report names `split`: its members trained on the train and
/// validation movies, so only the test split is unseen; the others are named in-sample, and
/// said so on stderr, where their scores (far above the test split's) would mislead.
fn group_split(split: Split, kind: &str) -> String {
    if split == Split::Test {
        return format!("{split} split");
    }
    eprintln!(
        "warning: the {kind}'s members trained on the train and validation movies, so its \
         scores on the {split} split are in-sample; its out-of-fold scores (at the end of this \
         report) are the honest ones, and so is a test split when the run keeps one"
    );
    format!("{split} split (in-sample: the {kind} trained on it)")
}

/// A bag (members' mean) or its refit model, with the bag's out-of-fold thresholds and
/// interval.
fn evaluate_ensemble(
    run_dir: &Path,
    e: &crate::ensemble::Ensemble,
    t: EvalTarget<'_>,
) -> Result<EvalReport> {
    let EvalTarget { split, data, .. } = t;
    let lead = e.lead();
    let ((preds, each), target) = match data {
        Some(dir) => {
            let foreign = foreign_data(run_dir, dir, lead)?;
            (e.predict(&foreign, None), dir.display().to_string())
        }
        None => (
            e.predict(&lead.prepared, Some(split)),
            group_split(split, "bag"),
        ),
    };
    let summary = BagSummary {
        members: e.members.len(),
        sets: e.sets(),
        refit: e.refit,
        out_of_fold: e.calibration.out_of_fold.clone(),
        shared_threshold_weight: e.calibration.shared_threshold_weight,
        threshold_rule: e.calibration.threshold_rule,
        blend: Vec::new(),
    };
    let scored = Scored {
        lead,
        preds,
        each,
        target,
    };
    ensemble_report(run_dir, scored, &e.calibration, summary, t)
}

/// A blend of bags, with its out-of-fold weights, thresholds and interval.
fn evaluate_blend(
    run_dir: &Path,
    b: &crate::blend::Blend,
    t: EvalTarget<'_>,
) -> Result<EvalReport> {
    let EvalTarget { split, data, .. } = t;
    let ((preds, each), target) = match data {
        Some(dir) => {
            let foreign = blend_inputs(run_dir, b, dir)?;
            let refs: Vec<&Prepared> = foreign.iter().collect();
            (b.predict(&refs, None)?, dir.display().to_string())
        }
        None => {
            let own: Vec<&Prepared> = b.parts.iter().map(|e| &e.lead().prepared).collect();
            (b.predict(&own, Some(split))?, group_split(split, "blend"))
        }
    };
    let summary = blend_summary(b, each.len());
    let scored = Scored {
        lead: b.lead(),
        preds,
        each,
        target,
    };
    ensemble_report(run_dir, scored, &b.info.calibration, summary, t)
}

/// The movies of dataset `dir` as each bag of `b` prepares them (under the run's
/// `eval-data/`), each with its frozen backbones' features (the lead's plot embeddings are
/// also what the plot vote reads). Bags trained on the same prepared folder share one
/// encoding, and with it the feature caches written beside it.
fn blend_inputs(run_dir: &Path, b: &crate::blend::Blend, dir: &Path) -> Result<Vec<Prepared>> {
    let mut encoded: Vec<(PathBuf, Prepared)> = Vec::new();
    let mut inputs = Vec::new();
    for (i, e) in b.parts.iter().enumerate() {
        let lead = e.lead();
        if i == 0 {
            let voteless = b
                .voteless
                .as_ref()
                .and(b.info.rating_without_votes.as_ref());
            let plot_info = b.info.content_rating.as_ref();
            let handled =
                crate::input_warnings::Handled::of(b.content.is_some(), plot_info, voteless);
            warn_unscored(dir, &lead.prepared.preprocessor, handled)?;
        }
        let own = std::fs::canonicalize(&lead.info.prepared_dir)
            .unwrap_or_else(|_| lead.info.prepared_dir.clone());
        let p = match encoded.iter().find(|(d, _)| *d == own) {
            Some((_, p)) => with_features(p.without_features(), lead),
            None => {
                let out = run_dir.join("eval-data").join(data_key(dir));
                let p = encode_foreign(dir, &out.join(format!("part-{i}")), lead)?;
                encoded.push((own, p.without_features()));
                p
            }
        };
        inputs.push(p);
    }
    Ok(inputs)
}

/// What the report says of a blend of `members` predictors: its parts and their weights.
fn blend_summary(b: &crate::blend::Blend, members: usize) -> BagSummary {
    let info = &b.info;
    let stacked = info.genre_stacking.as_ref().map(|s| s.mean_weights());
    BagSummary {
        members,
        sets: 1,
        refit: false,
        out_of_fold: info.calibration.out_of_fold.clone(),
        shared_threshold_weight: info.calibration.shared_threshold_weight,
        threshold_rule: info.calibration.threshold_rule,
        // The votes and the rating trees, when present, are listed last by their files.
        blend: info
            .runs
            .iter()
            .cloned()
            .chain(b.votes.iter().map(|v| b.dir.join(v.space.file())))
            .chain(
                b.trees
                    .as_ref()
                    .map(|_| b.dir.join(crate::rating_trees::TREES_FILE)),
            )
            .enumerate()
            .map(|(i, run)| BlendPart {
                run,
                genre_weight: info.genre_weights[i],
                rating_weight: info.rating_weights[i],
                stacking_weight: stacked.as_ref().and_then(|m| m.get(i).copied()),
            })
            .collect(),
    }
}

/// An ensemble's predictions on the evaluated movies.
struct Scored<'a> {
    /// The first model: its data gives the genre names and baselines.
    lead: &'a LoadedRun,
    preds: Predictions,
    /// Each member's predictions (for the CV+ interval).
    each: Vec<Predictions>,
    target: String,
}

fn ensemble_report(
    run_dir: &Path,
    s: Scored<'_>,
    cal: &crate::bag::BagCalibration,
    summary: BagSummary,
    t: EvalTarget<'_>,
) -> Result<EvalReport> {
    let names = s.lead.prepared.preprocessor.genre_names().to_vec();
    let report = EvalReport {
        run: run_dir.to_path_buf(),
        target: s.target,
        movies: s.preds.ids.len(),
        best_epoch: s.lead.best_epoch,
        loss: s.preds.loss,
        genres: s.preds.genre_metrics(&cal.thresholds, &names),
        genres_at_0_5: s.preds.genre_metrics(&vec![0.5; names.len()], &names),
        rating: s.preds.rating_metrics(),
        interval: crate::ensemble::interval_metrics_of(cal.interval.as_ref(), &s.each),
        baselines: baselines(s.lead, &s.preds),
        bag: Some(summary),
        confidence: None,
    };
    finish_report(run_dir, report, &s.preds, s.lead.model.modalities(), t)
}

/// Adds the bootstrap intervals at the report's own thresholds and saves the report (and,
/// for the run's test split, the predictions behind it).
fn finish_report(
    run_dir: &Path,
    mut report: EvalReport,
    preds: &Predictions,
    modalities: &[cinefuse_model::Modality],
    t: EvalTarget<'_>,
) -> Result<EvalReport> {
    if report.movies == 0 {
        bail!("{}", nothing_to_score(run_dir, t));
    }
    let thresholds = report.genres.thresholds();
    let (predicted, actual) = preds.labelled_ratings();
    report.confidence = crate::bootstrap::confidence(
        &preds.labelled_genres(),
        &thresholds,
        (&predicted, &actual),
        t.resamples,
    );
    let file = eval_file(t.split, t.data);
    write_json(&run_dir.join(&file), &report)?;
    if file == EVAL_FILE {
        write_json(
            &run_dir.join(EVAL_PREDICTIONS_FILE),
            &prediction_summary(preds, modalities, &report),
        )?;
    }
    Ok(report)
}

/// Why an evaluation of no movies is refused rather than reported as scores of 0, which
/// would read as a model that is always wrong (and would replace the run's `eval.json`).
fn nothing_to_score(run_dir: &Path, t: EvalTarget<'_>) -> String {
    if let Some(dir) = t.data {
        return format!(
            "{}: no movie of this dataset could be scored",
            dir.display()
        );
    }
    let ratio = match t.split {
        Split::Val => "val_ratio",
        _ => "test_ratio",
    };
    format!(
        "{}: its {} split holds no movies (the run was prepared with data.preprocess.{ratio} = \
         0, so it keeps none aside): a bag's or blend's out-of-fold scores are the honest ones \
         (printed by `train`, kept in its bag.json or blend.json, shown by `cinefuse serve`), \
         and `--data DIR` scores the movies of another dataset",
        run_dir.display(),
        t.split
    )
}

/// The test split's evaluation: what the run's pages and `/api/runs` show as test metrics.
pub const EVAL_FILE: &str = "eval.json";

/// Where an evaluation is saved: `eval.json` for the test split of the run's own data only,
/// so that evaluating another split or dataset never shows up as the run's test metrics.
pub fn eval_file(split: Split, data: Option<&Path>) -> String {
    match data {
        Some(dir) => format!("eval-data-{}.json", data_key(dir)),
        None if split == Split::Test => EVAL_FILE.to_string(),
        None => format!("eval-{split}.json"),
    }
}

/// Every movie of the dataset `dir`, encoded with the run's fitted preprocessing (nothing
/// refitted) into `RUN/eval-data/<key>`.
fn foreign_data(run_dir: &Path, dir: &Path, run: &LoadedRun) -> Result<Prepared> {
    let out = run_dir.join("eval-data").join(data_key(dir));
    warn_unscored(dir, &run.prepared.preprocessor, Default::default())?;
    encode_foreign(dir, &out, run)
}

/// The movies of dataset `dir` encoded with `run`'s preprocessing into `out`, with the
/// features of its frozen backbones computed once (and cached there), as the run's own movies
/// have them: otherwise every member of a bag would run the backbones on every movie.
fn encode_foreign(dir: &Path, out: &Path, run: &LoadedRun) -> Result<Prepared> {
    let p = apply_preprocessor(dir, out, &run.prepared.preprocessor, true)?;
    Ok(with_features(p, run))
}

/// `p` with the features of `run`'s frozen backbones (computed, or read from the caches
/// beside `p`); without them, with a warning, when they cannot be had.
fn with_features(mut p: Prepared, run: &LoadedRun) -> Prepared {
    let model = &run.config.model;
    if let Err(e) = crate::backbone_features::attach_cached_features(model, &mut p, &run.device) {
        eprintln!("warning: no cached features ({e:#}); running the backbones instead");
    }
    p
}

/// Refuses a dataset with nothing to score, and warns of labels the model cannot score and
/// of movies whose inputs `predict` would warn about (`input_warnings.rs`), counted once.
/// `handled`: what a blend rates in its own way.
fn warn_unscored(
    dir: &Path,
    pre: &cinefuse_data::prepared::Preprocessor,
    handled: crate::input_warnings::Handled,
) -> Result<()> {
    let path = dir.join(cinefuse_data::movie::MOVIES_FILE);
    let movies = cinefuse_data::movie::parse_movies_file(&path)?.movies;
    for w in cinefuse_data::prepare::check_scoreable(&path, &movies, pre)? {
        eprintln!("{w}");
    }
    let warned: Vec<String> = movies
        .iter()
        .filter_map(|(_, m)| input_warnings(pre, m, &handled).into_iter().next())
        .collect();
    if let Some(first) = warned.first() {
        eprintln!(
            "warning: for {} of the {} movies an input the training movies had is missing or \
             a value lies far from theirs, so their scores measure an extrapolation; the \
             first: {first}",
            warned.len(),
            movies.len()
        );
    }
    Ok(())
}

/// A file-name key for a dataset folder: its name and a hash of its resolved path, so that
/// two datasets of the same name never share one.
fn data_key(dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let resolved = cinefuse_data::paths::absolute_resolved(dir).unwrap_or_else(|_| dir.into());
    let digest = format!(
        "{:x}",
        Sha256::digest(resolved.as_os_str().as_encoded_bytes())
    );
    format!("{name}-{}", &digest[..8])
}

/// What `eval` keeps of its predictions for the report pages and for paired comparisons with
/// other models on the same movies (`scripts/baselines_sklearn.py --paired RUN`): (actual,
/// predicted) ratings, the mean fusion weight of each modality (where the fusion has
/// weights), and each genre-labelled movie's id and genre probabilities with the thresholds
/// and the logit shift their grid was moved by.
pub const EVAL_PREDICTIONS_FILE: &str = "eval_predictions.json";

fn prediction_summary(
    preds: &Predictions,
    modalities: &[cinefuse_model::Modality],
    report: &EvalReport,
) -> serde_json::Value {
    let (predicted, actual) = preds.labelled_ratings();
    let m = modalities.len().max(1);
    let n = (preds.ids.len().max(1)) as f32;
    let mean_weights = preds.weights.as_ref().map(|w| {
        (0..m)
            .map(|j| w.iter().skip(j).step_by(m).sum::<f32>() / n)
            .collect::<Vec<f32>>()
    });
    let g = preds.n_genres;
    let labelled = (0..preds.ids.len()).filter(|&i| preds.genres_present[i]);
    let rated = (0..preds.ids.len()).filter(|&i| preds.rating_present[i]);
    serde_json::json!({
        "target": report.target,
        "modalities": modalities.iter().map(|md| md.name()).collect::<Vec<_>>(),
        "ratings": actual.iter().zip(&predicted).map(|(a, p)| [*a, *p]).collect::<Vec<_>>(),
        "rating_ids": rated.map(|i| &preds.ids[i]).collect::<Vec<_>>(),
        "mean_weights": mean_weights,
        "genres": report.genres.per_genre.iter().map(|x| &x.genre).collect::<Vec<_>>(),
        "thresholds": report.genres.thresholds(),
        // The logit shift the thresholds' grid was moved by (a blend without genre stacking
        // keeps its first bag's; empty: none), so a script can tune them as cinefuse does.
        "genre_logit_shift": &preds.genre_shift,
        "genre_ids": labelled.clone().map(|i| &preds.ids[i]).collect::<Vec<_>>(),
        "genre_probs": labelled.map(|i| &preds.probs[i * g..(i + 1) * g]).collect::<Vec<_>>(),
    })
}

type Out<'a, 'b> = &'a mut std::fmt::Formatter<'b>;

impl EvalReport {
    /// The metric table: model, its bootstrap interval, model at 0.5 (genres), baseline.
    fn write_metrics(&self, f: Out) -> std::fmt::Result {
        let ci = match &self.confidence {
            Some(c) => format!("{:.0} % CI", c.level * 100.0),
            None => String::new(),
        };
        writeln!(
            f,
            "{:<22}{:>12}{:>17}{:>12}{:>12}",
            "metric", "model", ci, "@0.5", "baseline"
        )?;
        // Without rated movies the rating rows would show 0 as if measured.
        let rated = self.rating.count > 0;
        for (name, key, model, at_half, base) in self.metric_rows() {
            if !rated && name.starts_with("rating ") {
                continue;
            }
            // `+ 0.0` prints a bootstrap bound of -0 as 0.
            let range = self
                .confidence
                .as_ref()
                .and_then(|c| c.get(key))
                .map(|[lo, hi]| format!("{:.4}–{:.4}", lo + 0.0, hi + 0.0))
                .unwrap_or_default();
            let at_half = at_half.map(|v| format!("{v:.4}")).unwrap_or_default();
            writeln!(
                f,
                "{name:<22}{model:>12.4}{range:>17}{at_half:>12}{base:>12.4}"
            )?;
        }
        Ok(())
    }

    /// Each row of the metric table: its name, its key in the bootstrap intervals, the
    /// model's value, the model's at threshold 0.5 (genre F1 only) and the baseline's.
    fn metric_rows(&self) -> [(&'static str, &'static str, f64, Option<f64>, f64); 10] {
        let (g, h, b) = (&self.genres, &self.genres_at_0_5, &self.baselines);
        let (r, m) = (&self.rating, &b.mean);
        [
            (
                "genre micro-F1",
                "micro_f1",
                g.micro_f1,
                Some(h.micro_f1),
                b.majority.micro_f1,
            ),
            (
                "genre macro-F1",
                "macro_f1",
                g.macro_f1,
                Some(h.macro_f1),
                b.majority.macro_f1,
            ),
            (
                "genre samples-F1",
                "samples_f1",
                g.samples_f1,
                Some(h.samples_f1),
                b.majority.samples_f1,
            ),
            ("genre mAP", "map", g.map, None, b.majority.map),
            (
                "genre micro AP",
                "micro_ap",
                g.micro_ap,
                None,
                b.majority.micro_ap,
            ),
            (
                "genre top-1 accuracy",
                "top1",
                g.top1,
                None,
                b.majority.top1,
            ),
            ("rating MAE", "mae", r.mae, None, m.mae),
            ("rating RMSE", "rmse", r.rmse, None, m.rmse),
            ("rating R²", "r2", r.r2, None, m.r2),
            (
                "rating within 10 %",
                "within_10pct",
                r.within_10pct,
                None,
                m.within_10pct,
            ),
        ]
    }

    /// " (95 % CI a–b %)": the Wilson interval of a coverage measured on `count` movies;
    /// nothing when `eval --bootstrap 0` asked for no intervals.
    fn coverage_range(&self, coverage: f64, count: usize) -> String {
        let hits = (coverage * count as f64).round() as usize;
        match (&self.confidence, crate::bootstrap::wilson(hits, count)) {
            (Some(_), Some([lo, hi])) => format!(
                " ({:.0} % CI {:.1}–{:.1} %)",
                crate::bootstrap::LEVEL * 100.0,
                lo * 100.0,
                hi * 100.0
            ),
            _ => String::new(),
        }
    }

    fn write_interval(&self, f: Out) -> std::fmt::Result {
        /// The movies a blend rated in its own way, with the interval of such movies.
        fn own_ratings(i: &IntervalMetrics) -> String {
            let plot = (i.from_plot > 0).then(|| {
                format!(
                    "{} of them without metadata, rated from the plot alone",
                    i.from_plot
                )
            });
            let votes = (i.without_votes > 0).then(|| {
                format!(
                    "{} of them without a vote count, rated by trees that never saw one",
                    i.without_votes
                )
            });
            let extras = (i.without_extras > 0).then(|| {
                format!(
                    "{} of them without any extra, rated by trees that never saw the extras",
                    i.without_extras
                )
            });
            let both: Vec<String> = plot.into_iter().chain(votes).chain(extras).collect();
            let own = match both.is_empty() {
                true => String::new(),
                false => format!(
                    " ({}; each with the interval of such movies)",
                    both.join("; ")
                ),
            };
            match i.widened {
                0 => own,
                n => format!(
                    "{own}; {n} given without their plot or poster, their intervals widened for it"
                ),
            }
        }
        match (&self.interval, &self.bag) {
            (Some(i), None) => writeln!(
                f,
                "rating interval: ±{:.2} (calibrated on validation for {:.0} %): covers {:.1} %{} of {} rated movies, mean width {:.2}",
                i.half_width,
                i.nominal * 100.0,
                i.coverage * 100.0,
                self.coverage_range(i.coverage, i.count),
                i.count,
                i.mean_width
            ),
            (Some(i), Some(_)) => {
                writeln!(
                    f,
                    "rating interval (CV+ by vote count, {:.0} % nominal): covers {:.1} %{} of {} rated movies, mean width {:.2}{}",
                    i.nominal * 100.0,
                    i.coverage * 100.0,
                    self.coverage_range(i.coverage, i.count),
                    i.count,
                    i.mean_width,
                    own_ratings(i)
                )?;
                match &i.by_extras {
                    Some(b) if b.lacking.count > 0 => self.write_by_extras(b, f),
                    _ => Ok(()),
                }
            }
            (None, _) if self.rating.count == 0 => {
                writeln!(
                    f,
                    "rating interval: not measured (no rated movies to score)"
                )
            }
            (None, _) => writeln!(
                f,
                "rating interval: none (too few rated calibration movies for {:.0} %)",
                crate::export::INTERVAL_COVERAGE * 100.0
            ),
        }
    }

    /// The interval on the movies without some extras, with bins of their own, and on the rest.
    fn write_by_extras(&self, b: &ByExtras, f: Out) -> std::fmt::Result {
        let group = |c: &crate::interval::Coverage| {
            format!(
                "{} movies: covers {:.1} %{}, mean width {:.2}",
                c.count,
                c.coverage * 100.0,
                self.coverage_range(c.coverage, c.count),
                c.mean_width
            )
        };
        writeln!(
            f,
            "  without some extras (bins of their own) {}; with them {}",
            group(&b.lacking),
            group(&b.given)
        )
    }

    /// A bag's or blend's out-of-fold scores (and a blend's weights).
    fn write_ensemble(b: &BagSummary, f: Out) -> std::fmt::Result {
        let o = &b.out_of_fold;
        let what = if b.refit {
            "refit model of a bag".to_string()
        } else if !b.blend.is_empty() {
            use crate::neighbour_vote::VoteSpace;
            let is = |file: &str| b.blend.iter().any(|p| p.run.ends_with(file));
            let trees = is(crate::rating_trees::TREES_FILE);
            let votes: Vec<VoteSpace> = VoteSpace::ALL
                .into_iter()
                .filter(|v| is(v.file()))
                .collect();
            let bags = b.blend.len() - usize::from(trees) - votes.len();
            crate::blend::describe(bags, &votes, trees)
        } else {
            match b.sets {
                1 => format!("bag of {} members", b.members),
                sets => format!(
                    "bag of {} members ({sets} sets of {} folds)",
                    b.members,
                    b.members / sets
                ),
            }
        };
        let per_fold: Vec<String> = o
            .interval_per_fold
            .iter()
            .map(|c| format!("{:.1} %", c.coverage * 100.0))
            .collect();
        writeln!(
            f,
            "{what}: out of fold ({} movies) micro-F1 {:.4}, macro-F1 {:.4}, top-1 {:.4}, MAE {:.4}; interval per fold: {}",
            o.movies,
            o.genres.micro_f1,
            o.genres.macro_f1,
            o.genres.top1,
            o.rating.mae,
            per_fold.join(", ")
        )?;
        let (rule, weight) = (b.threshold_rule, b.shared_threshold_weight);
        if weight > 0.0 || rule != crate::thresholds::ThresholdRule::Grid {
            let rule = crate::thresholds::describe(rule, weight);
            writeln!(f, "thresholds: {rule}")?;
        }
        for p in &b.blend {
            let weights = (p.genre_weight, p.stacking_weight, p.rating_weight);
            let line = crate::blend::part_weights(&p.run, weights.0, weights.1, weights.2);
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }

    fn write_per_genre(&self, f: Out) -> std::fmt::Result {
        // As wide as the longest genre name ("Thriller/Suspense" in a table of one's own).
        let names = self
            .genres
            .per_genre
            .iter()
            .map(|p| p.genre.chars().count());
        let w = names.max().unwrap_or(0).max(15) + 1;
        writeln!(
            f,
            "{:<w$}{:>8}{:>8}{:>8}{:>8}{:>8}",
            "genre", "thresh", "prec", "recall", "F1", "support"
        )?;
        for p in &self.genres.per_genre {
            writeln!(
                f,
                "{:<w$}{:>8.2}{:>8.3}{:>8.3}{:>8.3}{:>8}",
                p.genre, p.threshold, p.precision, p.recall, p.f1, p.support
            )?;
        }
        Ok(())
    }
}

impl std::fmt::Display for EvalReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "evaluation of {} on {} ({} movies, best epoch {})",
            self.run.display(),
            self.target,
            self.movies,
            self.best_epoch
        )?;
        self.write_metrics(f)?;
        self.write_interval(f)?;
        writeln!(f, "rating metrics over {} rated movies", self.rating.count)?;
        if let Some(b) = &self.bag {
            Self::write_ensemble(b, f)?;
        }
        let b = &self.baselines;
        writeln!(
            f,
            "baselines: genres {:?} always; rating {:.2} always",
            b.majority_genres, b.mean_rating
        )?;
        self.write_per_genre(f)
    }
}

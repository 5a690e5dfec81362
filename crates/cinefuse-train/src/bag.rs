//! K-fold bagging (`train.folds = K`): K members, each trained on K − 1 folds of train +
//! validation and early-stopped on its own held-out fold. Their out-of-fold predictions, one
//! for every train and validation movie from the member that never saw it, choose the genre
//! thresholds and calibrate the rating interval (CV+, `interval.rs`); the bag predicts with
//! the members' mean. The test split is never touched. Optionally (`train.refit`) one more
//! model is trained on all of train + validation for the members' mean best epoch count.
//!
//! A bag is a run folder holding `bag.json`, the bag's `config.toml` and one ordinary run
//! folder per member (`fold-0`, …, `set-1-fold-0`, … with `train.bag_sets`, and `refit`),
//! each resumable on its own.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::bag_sets::{out_of_fold_over_sets, set_member_dir, set_seed};
use crate::config::{BackendKind, TrainConfig};
use crate::evaluate::LoadedRun;
use crate::export::INTERVAL_COVERAGE;
use crate::group_run::{create_group_run, note_started};
use crate::interval::{Calibration, Coverage, Residual, per_fold_coverage};
use crate::metrics::{GenreMetrics, RatingMetrics};
use crate::predictions::Predictions;
use crate::run_dir::*;
use crate::thresholds::{ThresholdRule, pooled_thresholds};
use crate::trainer::{RunSummary, TrainOptions, Trainer, interrupt_requested};

pub const BAG_FILE: &str = "bag.json";
pub const REFIT_DIR: &str = "refit";
/// Vote-count bins of the bag's rating interval (fewer when a bin would be too small).
pub const INTERVAL_BINS: usize = 3;

/// What a bag folder records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BagInfo {
    pub name: String,
    pub folds: usize,
    /// Seeds the fold assignment (the config's seed).
    pub seed: u64,
    /// Repeated sets of folds (`train.bag_sets`; bags from before it: 1).
    #[serde(default = "crate::bag_sets::one_set")]
    pub sets: usize,
    /// Whether the rating averages over the sets (bags created since 2026-12-04); older bags
    /// kept the first set's and are read back that way (`bag_sets::SetLayout`).
    #[serde(default)]
    pub rating_over_sets: bool,
    /// Members that finished training, set by set, by fold within a set.
    pub done: Vec<bool>,
    pub refit_done: bool,
    /// The `--data` the bag was started with, for members that start after a resume.
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// Written once every member is done.
    pub calibration: Option<BagCalibration>,
}

/// What the out-of-fold predictions decided.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BagCalibration {
    pub thresholds: Vec<f32>,
    /// How far the thresholds were pulled toward a shared one (`train.shared_threshold_weight`;
    /// bags calibrated before it existed: 0, per genre).
    #[serde(default)]
    pub shared_threshold_weight: f32,
    /// How each genre's own threshold was chosen (`train.threshold_rule`; before it: the grid).
    #[serde(default)]
    pub threshold_rule: ThresholdRule,
    /// `None` when too few out-of-fold movies have a rating for any interval.
    pub interval: Option<Calibration>,
    pub best_epochs: Vec<usize>,
    pub out_of_fold: OutOfFold,
}

/// The members' scores on the movies they did not train on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutOfFold {
    pub movies: usize,
    pub genres: GenreMetrics,
    pub rating: RatingMetrics,
    /// Coverage of the interval on each fold, calibrated on the other folds.
    pub interval_per_fold: Vec<Coverage>,
}

impl BagInfo {
    /// Every member of every set.
    pub fn members(&self) -> usize {
        self.sets * self.folds
    }

    /// How its sets combine at prediction.
    pub fn layout(&self) -> crate::bag_sets::SetLayout {
        crate::bag_sets::SetLayout {
            sets: self.sets,
            rating_over_sets: self.rating_over_sets,
        }
    }

    /// Member `m`'s (set, fold).
    pub fn set_and_fold(&self, m: usize) -> (usize, usize) {
        (m / self.folds, m % self.folds)
    }

    /// Member `m`'s training rows.
    fn rows(&self, m: usize) -> TrainRows {
        let (set, fold) = self.set_and_fold(m);
        TrainRows::Fold {
            index: fold,
            count: self.folds,
            seed: set_seed(self.seed, set),
        }
    }

    /// Member `m`'s held-out movies: its fold of train + validation, drawn with its set's seed.
    fn held_out(&self, prepared: &cinefuse_data::Prepared, m: usize) -> Vec<usize> {
        let (set, fold) = self.set_and_fold(m);
        prepared.fold_indices(set_seed(self.seed, set), fold, self.folds, true)
    }

    /// Member `m`'s folder in the bag folder `bag`.
    fn member_path(&self, bag: &Path, m: usize) -> PathBuf {
        let (set, fold) = self.set_and_fold(m);
        set_member_dir(bag, set, fold)
    }

    /// How progress names member `m`: "fold 2/5", or "set 2/2, fold 2/5".
    fn label(&self, m: usize) -> String {
        let (set, fold) = self.set_and_fold(m);
        let fold = format!("fold {}/{}", fold + 1, self.folds);
        match self.sets {
            1 => fold,
            n => format!("set {}/{n}, {fold}", set + 1),
        }
    }
}

pub fn is_bag(dir: &Path) -> bool {
    dir.join(BAG_FILE).is_file()
}

/// The first set's member of `fold` (`bag_sets::set_member_dir` names every set's).
pub fn member_dir(bag: &Path, fold: usize) -> PathBuf {
    set_member_dir(bag, 0, fold)
}

/// The bag a member or refit folder belongs to, if any.
pub fn parent_bag(run_dir: &Path) -> Option<PathBuf> {
    let parent = run_dir.parent()?;
    is_bag(parent).then(|| parent.to_path_buf())
}

/// A bag's record, checked: its members' list must match its folds and sets.
pub fn read_bag(dir: &Path) -> Result<BagInfo> {
    let path = dir.join(BAG_FILE);
    let info: BagInfo = read_json(&path)?;
    if info.folds < 2 || info.sets == 0 || info.done.len() != info.folds * info.sets {
        bail!(
            "{}: {} folds in {} sets need {} members, `done` lists {}",
            path.display(),
            info.folds,
            info.sets,
            info.folds * info.sets,
            info.done.len()
        );
    }
    Ok(info)
}

/// The config a member trains with: the bag's, without bagging, initialised with `seed`.
fn member_config(config: &TrainConfig, seed: u64) -> TrainConfig {
    let mut c = config.clone();
    c.seed = seed;
    c.train.folds = 0;
    c.train.bag_sets = 1;
    c.train.refit = false;
    c
}

/// Trains (or resumes) every member, calibrates the bag on their out-of-fold predictions and
/// trains the refit model when asked.
pub fn train_bag(config: &TrainConfig, opts: &TrainOptions) -> Result<RunSummary> {
    let (dir, _lock, mut info, mut unstarted) = open_bag(config, opts)?;
    let opts = &TrainOptions {
        data_override: info.data.clone(),
        ..opts.clone()
    };
    for m in 0..info.members() {
        if info.done[m] {
            continue;
        }
        if interrupt_requested() {
            return Ok(stopped_before(&dir, &info.label(m)));
        }
        println!("── bag {}: {} ──", dir.display(), info.label(m));
        let member = member_config(config, set_seed(info.seed, info.set_and_fold(m).0));
        let member_dir = info.member_path(&dir, m);
        let summary = train_member(&member, opts, &member_dir, info.rows(m));
        note_started(&mut unstarted, &member_dir);
        let summary = summary?;
        if summary.interrupted {
            return Ok(interrupted(&dir, summary));
        }
        info.done[m] = true;
        write_json(&dir.join(BAG_FILE), &info)?;
    }
    if info.calibration.is_none() {
        if interrupt_requested() {
            return Ok(stopped_before(&dir, "its calibration"));
        }
        info.calibration = match calibrate(&dir, &info, opts.backend) {
            Err(e) if e.is::<crate::trainer::LearningInterrupted>() => {
                return Ok(stopped_before(&dir, "the end of its calibration"));
            }
            other => Some(other?),
        };
        write_json(&dir.join(BAG_FILE), &info)?;
    }
    let cal = info.calibration.clone().context("calibrated above")?;
    if config.train.refit && !info.refit_done {
        let epochs = mean_epochs(&cal.best_epochs);
        println!(
            "── bag {}: refit on all of train + validation, {epochs} epochs ──",
            dir.display()
        );
        let mut refit = config.clone();
        refit.train.epochs = epochs;
        refit.train.early_stopping_patience = 0;
        let summary = train_member(
            &member_config(&refit, info.seed),
            opts,
            &dir.join(REFIT_DIR),
            TrainRows::All { epochs },
        )?;
        if summary.interrupted {
            return Ok(interrupted(&dir, summary));
        }
        info.refit_done = true;
        write_json(&dir.join(BAG_FILE), &info)?;
    }
    print_out_of_fold(&cal);
    Ok(RunSummary {
        run_dir: dir,
        epochs_completed: cal.best_epochs.iter().sum(),
        best_epoch: mean_epochs(&cal.best_epochs),
        best_value: None,
        stopped_early: false,
        interrupted: false,
        history: Vec::new(),
    })
}

fn mean_epochs(epochs: &[usize]) -> usize {
    let n = epochs.len().max(1);
    ((epochs.iter().sum::<usize>() as f64 / n as f64).round() as usize).max(1)
}

/// The summary of a bag or blend that Ctrl-C stopped between two of its stages, before
/// `what` (a member, the calibration, the blend's learning); nothing of that stage was written.
pub(crate) fn stopped_before(dir: &Path, what: &str) -> RunSummary {
    println!(
        "interrupted before {what}; resume with: cinefuse train --resume {}",
        dir.display()
    );
    RunSummary {
        run_dir: dir.to_path_buf(),
        epochs_completed: 0,
        best_epoch: 0,
        best_value: None,
        stopped_early: false,
        interrupted: true,
        history: Vec::new(),
    }
}

fn interrupted(dir: &Path, member: RunSummary) -> RunSummary {
    println!(
        "the bag stopped in {}; resume it with: cinefuse train --resume {}",
        member.run_dir.display(),
        dir.display()
    );
    RunSummary {
        run_dir: dir.to_path_buf(),
        ..member
    }
}

fn print_out_of_fold(cal: &BagCalibration) {
    let o = &cal.out_of_fold;
    println!(
        "out of fold ({} movies): micro-F1 {:.4}, macro-F1 {:.4}, top-1 {:.4}, rating MAE {:.4} ({} rated)",
        o.movies, o.genres.micro_f1, o.genres.macro_f1, o.genres.top1, o.rating.mae, o.rating.count
    );
    for (f, c) in o.interval_per_fold.iter().enumerate() {
        println!(
            "  fold {f}: {:.0} % interval covers {:.1} % of {} movies, mean width {:.2}",
            c.nominal * 100.0,
            c.coverage * 100.0,
            c.count,
            c.mean_width
        );
    }
}

/// The bag folder, locked, and its record: new, or the one `--resume` names.
fn open_bag(config: &TrainConfig, opts: &TrainOptions) -> Result<OpenedBag> {
    if let Some(dir) = &opts.resume {
        if !is_bag(dir) {
            bail!("{}: not a bag folder (no {BAG_FILE})", dir.display());
        }
        let lock = RunLock::acquire(dir)?;
        return Ok((dir.clone(), lock, read_bag(dir)?, None));
    }
    let (dir, lock, guard) = create_group_run(config, opts)?;
    let sets = config.train.bag_sets;
    let info = BagInfo {
        name: config.name.clone(),
        folds: config.train.folds,
        seed: config.seed,
        sets,
        rating_over_sets: true,
        done: vec![false; config.train.folds * sets],
        refit_done: false,
        data: opts.data_override.clone(),
        calibration: None,
    };
    write_json(&dir.join(BAG_FILE), &info)?;
    Ok((dir, lock, info, Some(guard)))
}

/// A bag's folder, its lock, its record, and (a new bag) the guard that removes it again
/// when its first member fails before it starts.
type OpenedBag = (PathBuf, RunLock, BagInfo, Option<UnstartedFolder>);

/// Trains one member (with its config, `member_config`) into `dir`, resuming it when its
/// setup finished (a member stopped before then starts anew in its folder).
fn train_member(
    config: &TrainConfig,
    opts: &TrainOptions,
    dir: &Path,
    rows: TrainRows,
) -> Result<RunSummary> {
    clear_unstarted(dir, RUN_FILE)?;
    let started = dir.join(RUN_FILE).is_file();
    let member_opts = TrainOptions {
        out: Some(dir.to_path_buf()),
        resume: started.then(|| dir.to_path_buf()),
        rows,
        ..opts.clone()
    };
    Trainer::setup(config, &member_opts)?.fit()
}

/// One prediction per fold of the first set: each movie's from the member that did not train
/// on it, averaged over the sets (`bag_sets.rs`).
pub(crate) fn out_of_fold(members: &[LoadedRun], info: &BagInfo) -> Result<Vec<Predictions>> {
    out_of_fold_with(members, info, LoadedRun::predict_rows)
}

/// `out_of_fold` with each member's prediction of its held-out rows made by `predict`. Ctrl-C
/// (in `train`) stops it between two members with `LearningInterrupted`: with a fine-tuned
/// bag each member's folds take a while, and a calibration or a blend's stage predicts them
/// all.
pub(crate) fn out_of_fold_with(
    members: &[LoadedRun],
    info: &BagInfo,
    predict: impl Fn(&LoadedRun, Vec<usize>) -> Predictions,
) -> Result<Vec<Predictions>> {
    let mut per_set = Vec::with_capacity(info.sets);
    for set in 0..info.sets {
        let mut folds = Vec::with_capacity(info.folds);
        for m in (0..info.folds).map(|f| set * info.folds + f) {
            crate::trainer::stop_if_interrupted("the rest of the held-out predictions")?;
            folds.push(predict(&members[m], info.held_out(&members[m].prepared, m)));
        }
        per_set.push(folds);
    }
    out_of_fold_over_sets(per_set, info.rating_over_sets)
}

/// Thresholds, interval and out-of-fold scores from the members' held-out predictions.
fn calibrate(dir: &Path, info: &BagInfo, backend: Option<BackendKind>) -> Result<BagCalibration> {
    println!("calibrating the bag on its out-of-fold predictions");
    let members = load_members(dir, info, backend)?;
    let names = members[0].prepared.preprocessor.genre_names().to_vec();
    let best_epochs = members.iter().map(|m| m.best_epoch).collect();
    let folds = out_of_fold(&members, info)?;
    crate::oof::write_oof(dir, &folds, &names)?;
    let t = &members[0].config.train;
    let rule = (t.threshold_rule, t.shared_threshold_weight);
    Ok(calibrate_folds(&folds, &names, best_epochs, rule))
}

/// Thresholds, interval and out-of-fold scores from `folds`, the predictions on each fold of
/// the model that did not train on it (a bag's member, or a blend of members).
pub(crate) fn calibrate_folds(
    folds: &[Predictions],
    names: &[String],
    best_epochs: Vec<usize>,
    (threshold_rule, shared_threshold_weight): (ThresholdRule, f32),
) -> BagCalibration {
    let all = Predictions::concat(folds);
    let thresholds = pooled_thresholds(
        &all.labelled_genres(),
        threshold_rule,
        shared_threshold_weight,
    );
    let residuals = residuals_of(folds);
    BagCalibration {
        interval: Calibration::fit(&residuals, INTERVAL_BINS, INTERVAL_COVERAGE),
        best_epochs,
        shared_threshold_weight,
        threshold_rule,
        out_of_fold: OutOfFold {
            movies: all.ids.len(),
            genres: all.genre_metrics(&thresholds, names),
            rating: all.rating_metrics(),
            interval_per_fold: per_fold_coverage(
                &residuals,
                folds.len(),
                INTERVAL_BINS,
                INTERVAL_COVERAGE,
            ),
        },
        thresholds,
    }
}

/// Each rated out-of-fold movie's residual, tagged with the member that did not see it.
fn residuals_of(folds: &[Predictions]) -> Vec<Residual> {
    folds
        .iter()
        .enumerate()
        .flat_map(|(fold, p)| {
            (0..p.ids.len())
                .filter(|i| p.rating_present[*i])
                .map(move |i| Residual {
                    member: fold as u16,
                    residual: p.rating[i] - p.rating_true[i],
                    votes: p.votes.get(i).copied().unwrap_or(f32::NAN),
                })
        })
        .collect()
}

/// Every member of a trained bag.
pub fn load_members(
    dir: &Path,
    info: &BagInfo,
    backend: Option<BackendKind>,
) -> Result<Vec<LoadedRun>> {
    if let Some(missing) = info.done.iter().position(|d| !d) {
        bail!(
            "{}: member {} has not finished training; resume the bag with \
             cinefuse train --resume {}",
            info.member_path(dir, missing).display(),
            info.label(missing),
            dir.display()
        );
    }
    let mut base = crate::run_dir::PretrainedBase::default();
    (0..info.members())
        .map(|m| LoadedRun::open_over(&info.member_path(dir, m), backend, &mut base))
        .collect()
}

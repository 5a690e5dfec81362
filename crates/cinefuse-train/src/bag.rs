//! K-fold bagging (`train.folds = K`): K members, each trained on K − 1 folds of train +
//! validation and early-stopped on its own held-out fold. Their out-of-fold predictions, one
//! for every train and validation movie from the member that never saw it, choose the genre
//! thresholds and calibrate the rating interval (CV+, `interval.rs`); the bag predicts with
//! the members' mean. The test split is never touched. Optionally (`train.refit`) one more
//! model is trained on all of train + validation for the members' mean best epoch count.
//!
//! A bag is a run folder holding `bag.json`, the bag's `config.toml` and one ordinary run
//! folder per member (`fold-0`, …, and `refit`), each resumable on its own.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cinefuse_data::output_dir::{OutputKind, write_marker};
use serde::{Deserialize, Serialize};

use crate::config::{BackendKind, TrainConfig};
use crate::evaluate::LoadedRun;
use crate::export::INTERVAL_COVERAGE;
use crate::interval::{Calibration, Coverage, Residual, per_fold_coverage};
use crate::metrics::{GenreMetrics, RatingMetrics};
use crate::predictions::Predictions;
use crate::run_dir::*;
use crate::thresholds::pooled_thresholds;
use crate::trainer::{RunSummary, TrainOptions, Trainer};

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
    /// Members that finished training, by fold.
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

pub fn is_bag(dir: &Path) -> bool {
    dir.join(BAG_FILE).is_file()
}

pub fn member_dir(bag: &Path, fold: usize) -> PathBuf {
    bag.join(format!("fold-{fold}"))
}

/// The bag a member or refit folder belongs to, if any.
pub fn parent_bag(run_dir: &Path) -> Option<PathBuf> {
    let parent = run_dir.parent()?;
    is_bag(parent).then(|| parent.to_path_buf())
}

pub fn read_bag(dir: &Path) -> Result<BagInfo> {
    read_json(&dir.join(BAG_FILE))
}

/// The config a member trains with: the bag's, without bagging.
fn member_config(config: &TrainConfig) -> TrainConfig {
    let mut c = config.clone();
    c.train.folds = 0;
    c.train.refit = false;
    c
}

/// Trains (or resumes) every member, calibrates the bag on their out-of-fold predictions and
/// trains the refit model when asked.
pub fn train_bag(config: &TrainConfig, opts: &TrainOptions) -> Result<RunSummary> {
    let (dir, _lock, mut info) = open_bag(config, opts)?;
    let opts = &TrainOptions {
        data_override: info.data.clone(),
        ..opts.clone()
    };
    let k = info.folds;
    for fold in 0..k {
        if info.done[fold] {
            continue;
        }
        println!("── bag {}: fold {}/{k} ──", dir.display(), fold + 1);
        let rows = TrainRows::Fold {
            index: fold,
            count: k,
            seed: info.seed,
        };
        let summary = train_member(config, opts, &member_dir(&dir, fold), rows)?;
        if summary.interrupted {
            return Ok(interrupted(&dir, summary));
        }
        info.done[fold] = true;
        write_json(&dir.join(BAG_FILE), &info)?;
    }
    if info.calibration.is_none() {
        info.calibration = Some(calibrate(&dir, &info, opts.backend)?);
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
            &refit,
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
fn open_bag(config: &TrainConfig, opts: &TrainOptions) -> Result<(PathBuf, RunLock, BagInfo)> {
    if let Some(dir) = &opts.resume {
        if !is_bag(dir) {
            bail!("{}: not a bag folder (no {BAG_FILE})", dir.display());
        }
        let lock = RunLock::acquire(dir)?;
        return Ok((dir.clone(), lock, read_bag(dir)?));
    }
    let (dir, lock) = create_group_run(config, opts)?;
    let info = BagInfo {
        name: config.name.clone(),
        folds: config.train.folds,
        seed: config.seed,
        done: vec![false; config.train.folds],
        refit_done: false,
        data: opts.data_override.clone(),
        calibration: None,
    };
    write_json(&dir.join(BAG_FILE), &info)?;
    Ok((dir, lock, info))
}

/// A new run folder that holds other runs (a bag's members, a blend's bags): checked like
/// any new run, created, locked, marked and given the config.
pub(crate) fn create_group_run(
    config: &TrainConfig,
    opts: &TrainOptions,
) -> Result<(PathBuf, RunLock)> {
    let dir = opts.out.clone().unwrap_or_else(|| {
        config
            .output
            .runs_dir
            .join(format!("{}-{}", config.name, timestamp()))
    });
    crate::trainer::check_new_run_dir(&dir, config, opts)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let lock = RunLock::acquire(&dir)?;
    write_marker(&dir, OutputKind::Run)?;
    std::fs::write(dir.join(CONFIG_FILE), config.to_toml())?;
    Ok((dir, lock))
}

/// Trains one member into `dir`, resuming it when its setup finished (a member stopped before
/// then starts anew in its folder).
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
    Trainer::setup(&member_config(config), &member_opts)?.fit()
}

/// Every member's predictions on its own held-out fold.
pub(crate) fn out_of_fold(members: &[LoadedRun], info: &BagInfo) -> Vec<Predictions> {
    members
        .iter()
        .enumerate()
        .map(|(fold, m)| {
            let rows = m.prepared.fold_indices(info.seed, fold, info.folds, true);
            m.predict_rows(rows)
        })
        .collect()
}

/// Thresholds, interval and out-of-fold scores from the members' held-out predictions.
fn calibrate(dir: &Path, info: &BagInfo, backend: Option<BackendKind>) -> Result<BagCalibration> {
    println!("calibrating the bag on its out-of-fold predictions");
    let members = load_members(dir, info, backend)?;
    let names = members[0].prepared.preprocessor.genre_names().to_vec();
    let best_epochs = members.iter().map(|m| m.best_epoch).collect();
    let folds = out_of_fold(&members, info);
    crate::oof::write_oof(dir, &folds, &names)?;
    let weight = members[0].config.train.shared_threshold_weight;
    Ok(calibrate_folds(&folds, &names, best_epochs, weight))
}

/// Thresholds, interval and out-of-fold scores from `folds`, the predictions on each fold of
/// the model that did not train on it (a bag's member, or a blend of members).
pub(crate) fn calibrate_folds(
    folds: &[Predictions],
    names: &[String],
    best_epochs: Vec<usize>,
    shared_threshold_weight: f32,
) -> BagCalibration {
    let all = Predictions::concat(folds);
    let thresholds = pooled_thresholds(&all.labelled_genres(), shared_threshold_weight);
    let residuals = residuals_of(folds);
    BagCalibration {
        interval: Calibration::fit(&residuals, INTERVAL_BINS, INTERVAL_COVERAGE),
        best_epochs,
        shared_threshold_weight,
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
            "{}: member fold-{missing} has not finished training; resume the bag with \
             cinefuse train --resume {}",
            dir.display(),
            dir.display()
        );
    }
    (0..info.folds)
        .map(|f| LoadedRun::open(&member_dir(dir, f), backend))
        .collect()
}

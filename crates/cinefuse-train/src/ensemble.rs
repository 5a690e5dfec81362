//! A trained bag loaded for evaluation and export: its members (or its refit model) with the
//! thresholds and rating interval its out-of-fold predictions chose.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cinefuse_data::Prepared;
use cinefuse_data::split::Split;

use crate::bag::{BagCalibration, BagInfo, load_members, parent_bag, read_bag};
use crate::bag_sets::{SetLayout, group_sets};
use crate::config::BackendKind;
use crate::evaluate::{IntervalMetrics, LoadedRun};
use crate::interval::{Calibration, coverage_of};
use crate::predictions::Predictions;
use crate::run_dir::{RUN_FILE, RunInfo, TrainRows, read_json};

pub struct Ensemble {
    /// The bag folder.
    pub bag: PathBuf,
    pub info: BagInfo,
    pub calibration: BagCalibration,
    /// The bag's members (every set's, set by set), or its refit model alone.
    pub members: Vec<LoadedRun>,
    pub refit: bool,
}

impl Ensemble {
    /// `dir` as an ensemble: a bag (all members), or a bag's refit folder (that one model
    /// with the bag's calibration). `None` for an ordinary run or a bag member.
    pub fn open(dir: &Path, backend: Option<BackendKind>) -> Result<Option<Self>> {
        let (bag, refit) = if crate::bag::is_bag(dir) {
            (dir.to_path_buf(), false)
        } else {
            match parent_bag(dir) {
                Some(bag) if is_refit(dir) => (bag, true),
                _ => return Ok(None),
            }
        };
        let info = read_bag(&bag)?;
        let calibration = info.calibration.clone().with_context(|| {
            format!(
                "{}: the bag is not calibrated yet (resume it: cinefuse train --resume {})",
                bag.display(),
                bag.display()
            )
        })?;
        let members = if refit {
            vec![LoadedRun::open(dir, backend)?]
        } else {
            load_members(&bag, &info, backend)?
        };
        Ok(Some(Self {
            bag,
            info,
            calibration,
            members,
            refit,
        }))
    }

    pub fn lead(&self) -> &LoadedRun {
        &self.members[0]
    }

    pub fn interval(&self) -> Option<&Calibration> {
        self.calibration.interval.as_ref()
    }

    /// Repeated sets of members this ensemble predicts with (a refit model: one).
    pub fn sets(&self) -> usize {
        self.layout().sets
    }

    /// How its members' predictions combine (a refit model: one set).
    pub fn layout(&self) -> SetLayout {
        if self.refit {
            SetLayout::ONE
        } else {
            self.info.layout()
        }
    }

    /// Each member's predictions (a repeated bag's grouped into one per fold, `bag_sets.rs`)
    /// and their mean, on `split` of `prepared` (every movie when `None`).
    pub fn predict(
        &self,
        prepared: &Prepared,
        split: Option<Split>,
    ) -> (Predictions, Vec<Predictions>) {
        let each: Vec<Predictions> = self
            .members
            .iter()
            .map(|m| m.predict(prepared, split))
            .collect();
        let each = group_sets(each, self.layout()).expect("a bag loads every set's members");
        (Predictions::mean(&each), each)
    }

    /// How the interval does on the rated movies of `each` (the members' predictions).
    pub fn interval_metrics(&self, each: &[Predictions]) -> Option<IntervalMetrics> {
        interval_metrics_of(self.interval(), each)
    }
}

/// How the CV+ interval `cal` does on the rated movies of `each` (the members' predictions).
pub fn interval_metrics_of(
    cal: Option<&Calibration>,
    each: &[Predictions],
) -> Option<IntervalMetrics> {
    let cal = cal?;
    let first = &each[0];
    let rated: Vec<usize> = (0..first.ids.len())
        .filter(|i| first.rating_present[*i])
        .collect();
    let preds: Vec<Vec<f32>> = rated
        .iter()
        .map(|i| each.iter().map(|p| p.rating[*i]).collect())
        .collect();
    let votes: Vec<f32> = rated.iter().map(|i| first.votes[*i]).collect();
    let truth: Vec<f32> = rated.iter().map(|i| first.rating_true[*i]).collect();
    if truth.is_empty() {
        return None;
    }
    let c = coverage_of(cal, &preds, &votes, &truth);
    Some(IntervalMetrics {
        nominal: c.nominal,
        half_width: c.mean_width / 2.0,
        coverage: c.coverage,
        mean_width: c.mean_width,
        count: c.count,
    })
}

fn is_refit(dir: &Path) -> bool {
    read_json::<RunInfo>(&dir.join(RUN_FILE)).is_ok_and(|i| matches!(i.rows, TrainRows::All { .. }))
}

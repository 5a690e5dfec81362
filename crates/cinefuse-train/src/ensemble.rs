//! A trained bag loaded for evaluation and export: its members (or its refit model) with the
//! thresholds and rating interval its out-of-fold predictions chose.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::data::dataset::Dataset;
use cinefuse_data::dataset::MovieItem;
use cinefuse_data::split::Split;
use cinefuse_data::{MovieDataset, Prepared};
use cinefuse_model::CinefuseModel;

use crate::backend::config_batcher;
use crate::bag::{BagCalibration, BagInfo, load_members, parent_bag, read_bag};
use crate::bag_sets::{SetLayout, group_sets};
use crate::config::BackendKind;
use crate::evaluate::{IntervalMetrics, LoadedRun};
use crate::interval::{Calibration, GivenWithout, coverage_given};
use crate::predictions::Predictions;
use crate::run_dir::{RUN_FILE, RunInfo, TrainRows, read_json};
use crate::shared_passes::{SharedItems, attach_frozen_states, shared_frozen_layers};

/// Batches of movies whose frozen layers' states are held at once (about 100 MB with
/// MiniLM-L6 at 128 tokens and batches of 128).
const STATES_CHUNK_BATCHES: usize = 4;

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
        let dataset = match split {
            Some(s) => prepared.dataset(s),
            None => prepared.dataset_all(),
        };
        let shared = self.shared_frozen_layer();
        let each = match shared.map(|layer| self.predict_from_states(&dataset, layer)) {
            Some(Ok(each)) => each,
            failed => {
                if let Some(Err(e)) = failed {
                    eprintln!("warning: {e:#}; each member runs its whole plot backbone");
                }
                self.members
                    .iter()
                    .map(|m| m.predict_dataset(dataset.clone()))
                    .collect()
            }
        };
        let each = group_sets(each, self.layout()).expect("a bag loads every set's members");
        (Predictions::mean(&each), each)
    }

    /// The layer below which every member's plot backbone is the same frozen network (a bag
    /// that fine-tunes only MiniLM's last layers), when there are members to share it.
    fn shared_frozen_layer(&self) -> Option<usize> {
        let models: Vec<&CinefuseModel> = self.members.iter().map(|m| &m.model).collect();
        (models.len() > 1)
            .then(|| shared_frozen_layers(&self.lead().config.model, &models))
            .flatten()
    }

    /// Each member's predictions on `dataset`, the frozen layers below `layer` run once per
    /// movie for all of them: chunk by chunk, so that the states held stay bounded.
    fn predict_from_states(
        &self,
        dataset: &MovieDataset,
        layer: usize,
    ) -> Result<Vec<Predictions>> {
        let lead = self.lead();
        let bert = &lead
            .model
            .pretrained_text()
            .context("the bag's plot backbone is missing")?
            .backbone;
        let batcher = config_batcher(&lead.config.backend, &lead.prepared);
        let chunk = STATES_CHUNK_BATCHES * lead.config.train.eval_batch_size.max(1);
        let mut per_member = vec![Vec::new(); self.members.len()];
        for start in (0..dataset.len()).step_by(chunk) {
            let mut items: Vec<MovieItem> = (start..(start + chunk).min(dataset.len()))
                .map(|i| dataset.item(i))
                .collect();
            attach_frozen_states(bert, layer, &mut items, &batcher, &lead.device)
                .context("the plot backbone's shared frozen layers")?;
            let items = SharedItems::new(items);
            for (m, out) in self.members.iter().zip(&mut per_member) {
                out.push(m.predict_dataset(items.clone()));
            }
        }
        Ok(per_member.iter().map(|p| Predictions::concat(p)).collect())
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
    let without: Vec<GivenWithout> = rated.iter().map(|i| first.given_without_of(*i)).collect();
    if truth.is_empty() {
        return None;
    }
    let c = coverage_given(cal, &preds, (&votes, &without), &truth);
    let by_extras = by_extras(cal, &preds, (&votes, &without), &truth);
    Some(IntervalMetrics {
        nominal: c.nominal,
        half_width: c.mean_width / 2.0,
        coverage: c.coverage,
        mean_width: c.mean_width,
        count: c.count,
        from_plot: votes
            .iter()
            .filter(|v| **v == crate::interval::RATED_FROM_CONTENT)
            .count(),
        without_votes: rated_by_sets(cal, &votes, false),
        without_extras: rated_by_sets(cal, &votes, true),
        widened: (0..votes.len())
            .filter(|i| cal.scale_of(votes[*i], without[*i]) > 1.0)
            .count(),
        by_extras,
    })
}

/// How many of the movies keyed `votes` a blend's reduced ratings rated: by the sets that
/// keep the vote count (`extras`), or by the others; 0 without their interval bins.
fn rated_by_sets(cal: &Calibration, votes: &[f32], extras: bool) -> usize {
    if cal.without_votes.iter().all(Vec::is_empty) {
        return 0;
    }
    let of_kind = |s: usize| cal.extras_sets.contains(&s) == extras;
    // With vote bins for them, the movies of the sets that keep the vote count carry it.
    let kind = |v: f32| {
        crate::interval::voteless_set(v).is_some_and(of_kind)
            || (extras && crate::interval::is_extras_key(v))
    };
    votes.iter().filter(|v| kind(**v)).count()
}

/// How `cal` does on the movies with a vote count that lack some extras and on the rest, each
/// group alone, when it keys them apart (member predictions `preds`, keys `votes`).
fn by_extras(
    cal: &Calibration,
    preds: &[Vec<f32>],
    (votes, without): (&[f32], &[GivenWithout]),
    truth: &[f32],
) -> Option<crate::evaluate::ByExtras> {
    let group = |lacking: bool| {
        let keep = |i: &usize| match lacking {
            true => crate::interval::is_lacking(votes[*i]),
            false => crate::interval::is_vote_key(votes[*i]),
        };
        let at: Vec<usize> = (0..votes.len()).filter(keep).collect();
        let pick = |x: &[f32]| at.iter().map(|i| x[*i]).collect::<Vec<f32>>();
        let p: Vec<Vec<f32>> = at.iter().map(|i| preds[*i].clone()).collect();
        let given: Vec<GivenWithout> = at.iter().map(|i| without[*i]).collect();
        coverage_given(cal, &p, (&pick(votes), &given), &pick(truth))
    };
    (!cal.lacking_columns.is_empty()).then(|| crate::evaluate::ByExtras {
        lacking: group(true),
        given: group(false),
    })
}

fn is_refit(dir: &Path) -> bool {
    read_json::<RunInfo>(&dir.join(RUN_FILE)).is_ok_and(|i| matches!(i.rows, TrainRows::All { .. }))
}

//! `cinefuse export`: a self-contained model directory — weights, resolved config,
//! preprocessing state, tokenizer, genre list, tuned thresholds, a split-conformal rating
//! interval calibrated on the validation split, and a manifest. Pretrained backbones are
//! stored once however many members use them (`export_backbones.rs`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cinefuse_data::output_dir::OutputKind;
use cinefuse_data::split::Split;
use cinefuse_model::head::RatingScale;
use cinefuse_model::{Modality, ModelShapes};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bag_sets::SetLayout;
use crate::blend::Blend;
use crate::config::BackendKind;
use crate::content_rating::CONTENT_RATING_FILE;
use crate::ensemble::Ensemble;
use crate::evaluate::LoadedRun;
use crate::export_backbones::{ExportBackbones, ManifestBackbone};
use crate::export_check::{check_export, checked_predictions};
use crate::metrics::{Scores, conformal_quantile};
use crate::model_card::{CardFacts, write_card};
use crate::neighbour_vote::VoteSpace;
use crate::portable::write_portable;
use crate::predictions::Predictions;
use crate::rating_trees::TREES_FILE;
use crate::run_dir::{CONFIG_FILE, MODEL_FILE, write_json};
use crate::weights_digest::{digest_weights, weights_sha256};

pub const MANIFEST_FILE: &str = "manifest.json";
/// Nominal coverage of the rating interval.
pub const INTERVAL_COVERAGE: f64 = 0.9;

/// The export format this cinefuse writes (`manifest.json`'s `format_version`): 4 adds the
/// interval's `input_scales` (a movie without its plot or poster gets a wider interval; a
/// reader that ignored them would give it the narrower one); 3 stores each backbone copy's
/// weights once, as its portable file; 2 stored each pretrained backbone once per export
/// (`backbones`) but in both formats; 1 saved every tensor in every member.
pub const EXPORT_FORMAT_VERSION: u32 = 4;
/// The widest an interval's scale for movies without some inputs may be in a manifest: a
/// factor beyond it is a hand edit, not something `train` learns (it learnt 1.0 to 1.2).
const MAX_INPUT_SCALE: f32 = 100.0;
/// The export formats this cinefuse reads.
pub const READS_FORMATS: std::ops::RangeInclusive<u32> = 1..=EXPORT_FORMAT_VERSION;

fn is_one_set(sets: &usize) -> bool {
    *sets == 1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub cinefuse_version: String,
    pub burn_version: String,
    pub run_name: String,
    pub best_epoch: usize,
    pub modalities: Vec<Modality>,
    pub genres: Vec<String>,
    /// Per-genre decision thresholds tuned on the validation split.
    pub thresholds: Vec<f32>,
    /// Subtracted from each genre logit before the sigmoid (the run's `genre_logit_shift`).
    /// Empty: none, as in exports from before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub genre_logit_shift: Vec<f32>,
    pub rating_scale: RatingScale,
    /// Half-width of the split-conformal rating interval (`null`: too few rated validation
    /// movies to calibrate one; predictions then carry no interval) and its nominal coverage.
    pub interval_half_width: Option<f32>,
    pub interval_coverage: f64,
    /// A bag's (or its refit's) CV+ interval by vote count; used instead of the half-width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<crate::interval::Calibration>,
    /// The weight files of a bag's members, averaged at prediction (empty: `model.bpk`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// A repeated bag's sets (`train.bag_sets`): `members` holds them set by set, and member k
    /// of the bag averages every set's member k (`bag_sets.rs`). 1 (absent): one set.
    #[serde(
        default = "crate::bag_sets::one_set",
        skip_serializing_if = "is_one_set"
    )]
    pub bag_sets: usize,
    /// With `bag_sets` > 1: member k's rating is the mean over every set's member k too
    /// (exports since 2026-12-04); absent, the first set's member k's, as bags trained before
    /// then were calibrated.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rating_over_sets: bool,
    /// A blend: its bags, each exported whole into a sub-folder, and their weights. The
    /// fields above then describe the blend (thresholds, interval) and its first bag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<ManifestPart>,
    /// A blend's rating trees: their file (forest k beside each part's member k, reading the
    /// first part's fields) and rating weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating_trees: Option<ManifestTrees>,
    /// A blend's plot-neighbour vote: its file (vote k beside each part's member k, from the
    /// first part's plot embeddings) and genre weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plot_neighbours: Option<ManifestNeighbours>,
    /// A blend's metadata-neighbour vote: its file (vote k beside each part's member k, from
    /// the first part's metadata encoding) and genre weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_neighbours: Option<ManifestNeighbours>,
    /// A blend's credits-neighbour vote: its file (vote k beside each part's member k, from
    /// the movies' credits) and genre weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_neighbours: Option<ManifestNeighbours>,
    /// A blend's genre-prompt vote: its file (the prompts' embeddings, against the first
    /// part's plot embeddings) and genre weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genre_prompts: Option<ManifestNeighbours>,
    /// A blend's genre stacking over its parts and then the votes (see `genre_stacking.rs`);
    /// when present it gives the probabilities instead of the genre weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genre_stacking: Option<crate::genre_stacking::GenreStacking>,
    /// The stacking of the same parts for a movie without a plot (`plotless_stacking.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genre_stacking_without_plot: Option<crate::genre_stacking::GenreStacking>,
    /// The stacking of the same parts for a movie given without metadata
    /// (`metadataless_stacking.rs`): a plot and no category (`content_rating::lacks_metadata`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genre_stacking_without_metadata: Option<crate::genre_stacking::GenreStacking>,
    /// A blend's rating of movies without metadata, from the first part's plot features
    /// (`content_rating.rs`; ridge k beside each part's member k); its interval is the
    /// content bin of `interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_rating: Option<ManifestContentRating>,
    /// A blend's rating of movies without a vote count (`voteless_rating.rs`): rating trees
    /// that never saw it (forest k beside each part's member k, reading the first part's
    /// fields), mixed with the content rating; its intervals are the voteless bins of
    /// `interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating_without_votes: Option<ManifestVoteless>,
    /// Set when `cinefuse calibrate` fitted `interval` again on rated movies of another
    /// source (`recalibrate.rs`); the scores above are still the training movies'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recalibrated: Option<crate::recalibrate::Recalibration>,
    /// The pretrained backbones the members were saved without (formats 2 and 3), one copy
    /// each; empty when every tensor is in the member files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backbones: Vec<ManifestBackbone>,
    pub shapes: ModelShapes,
    /// Scores of the validation split, or out of fold for a bag or blend.
    pub validation: Scores,
    pub test: Scores,
    /// SHA-256 of the training dataset's `movies.jsonl`.
    pub data_hash: String,
    /// SHA-256 of the exported weights' values (`weights_digest.rs`; a blend's also covers its
    /// trees and votes): the same for every export of the same run, so two runs' manifests
    /// show whether they trained the same weights.
    pub weights_sha256: String,
}

/// The rating trees of an exported blend.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestTrees {
    /// A plain file name in the export folder.
    pub file: String,
    pub rating_weight: f32,
}

/// The content rating of an exported blend.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestContentRating {
    /// A plain file name in the export folder.
    pub file: String,
    /// Its out-of-fold errors, which `predict`'s warning quotes (absent in exports before
    /// 2026-12-06).
    #[serde(default)]
    pub info: Option<crate::content_rating::ContentRatingInfo>,
}

/// The rating without the vote count of an exported blend.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestVoteless {
    /// Each set's trees, narrowest first: plain file names in the export folder.
    pub files: Vec<String>,
    /// Which fields each set's trees never saw, its weights and its scores.
    pub info: crate::voteless_rating::VotelessRatingInfo,
}

/// A neighbour vote of an exported blend.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestNeighbours {
    /// A plain file name in the export folder.
    pub file: String,
    pub genre_weight: f32,
}

/// One bag of an exported blend.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestPart {
    /// Its sub-folder (a plain name).
    pub dir: String,
    pub genre_weight: f32,
    pub rating_weight: f32,
}

impl Manifest {
    /// The manifest of one trained model, `run`, with the given decisions and scores; no
    /// interval, members or parts (callers set those they have).
    fn of_run(
        run: &LoadedRun,
        thresholds: Vec<f32>,
        validation: Scores,
        test: Scores,
        weights_sha256: String,
    ) -> Self {
        let pre = &run.prepared.preprocessor;
        Self {
            format_version: EXPORT_FORMAT_VERSION,
            cinefuse_version: env!("CARGO_PKG_VERSION").into(),
            burn_version: "0.22.1".into(),
            run_name: run.info.name.clone(),
            best_epoch: run.best_epoch,
            modalities: run.model.modalities().to_vec(),
            genres: pre.genre_names().to_vec(),
            thresholds,
            genre_logit_shift: run.info.genre_logit_shift.clone(),
            rating_scale: run.info.rating_scale,
            interval_half_width: None,
            interval_coverage: INTERVAL_COVERAGE,
            interval: None,
            members: Vec::new(),
            bag_sets: 1,
            rating_over_sets: false,
            parts: Vec::new(),
            rating_trees: None,
            plot_neighbours: None,
            metadata_neighbours: None,
            credit_neighbours: None,
            genre_prompts: None,
            genre_stacking: None,
            genre_stacking_without_plot: None,
            genre_stacking_without_metadata: None,
            content_rating: None,
            rating_without_votes: None,
            recalibrated: None,
            backbones: Vec::new(),
            shapes: run.info.shapes.clone(),
            validation,
            test,
            data_hash: pre.state.dataset_hash.clone(),
            weights_sha256,
        }
    }

    /// Whether the manifest agrees with itself and with the model's outputs; errors name the
    /// field. (A hand-edited or truncated manifest must not reach an index out of bounds.)
    pub fn check(&self) -> Result<(), String> {
        if !READS_FORMATS.contains(&self.format_version) {
            return Err(format!(
                "format_version = {}: this cinefuse reads exports of formats {} to {}; \
                 export the run again with this version",
                self.format_version,
                READS_FORMATS.start(),
                READS_FORMATS.end()
            ));
        }
        self.shapes.check()?;
        self.check_genre_outputs()?;
        self.rating_scale.check()?;
        self.check_interval()?;
        self.check_layout()?;
        self.check_voteless()?;
        if self.modalities.is_empty() {
            return Err("modalities is empty: the model reads at least one".into());
        }
        Ok(())
    }

    /// One genre name, threshold and (when present) logit shift per predicted genre.
    fn check_genre_outputs(&self) -> Result<(), String> {
        let n = self.shapes.n_genres;
        if self.genres.len() != n {
            return Err(format!(
                "genres has {} names but the model predicts {n} genres (shapes.n_genres)",
                self.genres.len()
            ));
        }
        if let Some((k, g)) = self
            .genres
            .iter()
            .enumerate()
            .find(|(k, g)| g.trim().is_empty() || self.genres[..*k].contains(g))
        {
            return Err(format!(
                "genres[{k}] = {g:?}: expected a name, each genre once"
            ));
        }
        if self.thresholds.len() != n {
            return Err(format!(
                "thresholds has {} values but the model predicts {n} genres",
                self.thresholds.len()
            ));
        }
        if let Some((k, t)) = self
            .thresholds
            .iter()
            .enumerate()
            .find(|(_, t)| !(0.0..=1.0).contains(*t))
        {
            return Err(format!(
                "thresholds[{k}] = {t}: expected a probability in [0, 1]"
            ));
        }
        if !self.genre_logit_shift.is_empty()
            && (self.genre_logit_shift.len() != n
                || self.genre_logit_shift.iter().any(|s| !s.is_finite()))
        {
            return Err(format!(
                "genre_logit_shift: expected {n} finite values (one per genre) or none, got {:?}",
                self.genre_logit_shift
            ));
        }
        Ok(())
    }

    /// The rating without the vote count mixes one weight per part, the trees' and the plot's,
    /// each a share in [0, 1].
    fn check_voteless(&self) -> Result<(), String> {
        let Some(v) = &self.rating_without_votes else {
            return Ok(());
        };
        if v.files.is_empty() || v.files.len() != v.info.sets.len() {
            return Err(format!(
                "rating_without_votes: {} files for {} sets (one each, at least one)",
                v.files.len(),
                v.info.sets.len()
            ));
        }
        for (k, set) in v.info.sets.iter().enumerate() {
            if set.part_weights.len() != self.parts.len() {
                return Err(format!(
                    "rating_without_votes.info: set {k} has {} part weights for {} parts",
                    set.part_weights.len(),
                    self.parts.len()
                ));
            }
            let weights = set
                .part_weights
                .iter()
                .chain([&set.trees_weight, &set.plot_weight]);
            if let Some(w) = weights.into_iter().find(|w| !(0.0..=1.0).contains(*w)) {
                return Err(format!(
                    "rating_without_votes.info: set {k} has a weight {w}: expected a share in \
                     [0, 1]"
                ));
            }
        }
        Ok(())
    }

    /// The rating interval's width, bins and coverage.
    fn check_interval(&self) -> Result<(), String> {
        if let Some(w) = self.interval_half_width
            && !(w.is_finite() && w >= 0.0)
        {
            return Err(format!(
                "interval_half_width = {w}: expected a finite width >= 0"
            ));
        }
        if let Some(cal) = &self.interval
            && (cal.bins.len() != cal.edges.len() + 1 || cal.bins.iter().any(Vec::is_empty))
        {
            return Err("interval: expected one non-empty bin more than edges".into());
        }
        let scales = self.interval.iter().flat_map(|c| c.input_scales.iter());
        if let Some((k, s)) = scales
            .enumerate()
            .find(|(_, s)| !(1.0..=MAX_INPUT_SCALE).contains(&s.scale))
        {
            return Err(format!(
                "interval.input_scales[{k}].scale = {}: expected a factor from 1 to {MAX_INPUT_SCALE}",
                s.scale
            ));
        }
        if !(self.interval_coverage > 0.0 && self.interval_coverage < 1.0) {
            return Err(format!(
                "interval_coverage = {}: expected a probability in (0, 1)",
                self.interval_coverage
            ));
        }
        Ok(())
    }

    /// The files and sub-folders the manifest names stay inside the model folder, the member
    /// files split into whole sets, and a stacker fits the parts and votes it combines.
    fn check_layout(&self) -> Result<(), String> {
        if let Some(m) = self
            .members
            .iter()
            .find(|m| m.contains(['/', '\\']) || m.starts_with('.'))
        {
            return Err(format!(
                "members: {m:?} is not a file name in the model folder"
            ));
        }
        let files = self.members.len().max(1);
        if self.bag_sets == 0 || !files.is_multiple_of(self.bag_sets) {
            return Err(format!(
                "bag_sets = {}: expected a whole number of sets in the {files} member file(s)",
                self.bag_sets
            ));
        }
        if let Some(p) = self.parts.iter().find(|p| {
            p.dir.contains(['/', '\\'])
                || p.dir.starts_with('.')
                || !(p.genre_weight.is_finite() && p.genre_weight >= 0.0)
                || !(p.rating_weight.is_finite() && p.rating_weight >= 0.0)
        }) {
            return Err(format!(
                "parts: {p:?}: expected a sub-folder name and weights >= 0"
            ));
        }
        for b in &self.backbones {
            b.check()?;
        }
        if self.genre_stacking.is_none() {
            if self.genre_stacking_without_plot.is_some() {
                return Err("genre_stacking_without_plot needs a genre_stacking".into());
            }
            if self.genre_stacking_without_metadata.is_some() {
                return Err("genre_stacking_without_metadata needs a genre_stacking".into());
            }
        }
        if self.content_rating.is_some() && self.parts.is_empty() {
            return Err("content_rating: only a blend (with parts) has one".into());
        }
        if let Some(s) = &self.genre_stacking {
            let votes = [
                &self.plot_neighbours,
                &self.metadata_neighbours,
                &self.credit_neighbours,
                &self.genre_prompts,
            ];
            let parts = self.parts.len() + votes.iter().filter(|v| v.is_some()).count();
            s.check(parts, self.shapes.n_genres)
                .map_err(|e| format!("genre_stacking: {e}"))?;
            if let Some(p) = &self.genre_stacking_without_plot {
                p.check(parts, self.shapes.n_genres)
                    .map_err(|e| format!("genre_stacking_without_plot: {e}"))?;
            }
            if let Some(p) = &self.genre_stacking_without_metadata {
                p.check(parts, self.shapes.n_genres)
                    .map_err(|e| format!("genre_stacking_without_metadata: {e}"))?;
            }
        }
        Ok(())
    }
}

/// Copies a run's file into the export; only a regular file (a FIFO would block the copy).
pub(crate) fn copy(from: &Path, to: &Path) -> Result<()> {
    let mut source = cinefuse_data::user_file::open_regular(from)?;
    let mut target =
        std::fs::File::create(to).with_context(|| format!("cannot create {}", to.display()))?;
    std::io::copy(&mut source, &mut target)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

pub fn export(run_dir: &Path, out: &Path, backend: Option<BackendKind>) -> Result<PathBuf> {
    // Refuse a bad --out before loading and predicting, not after.
    cinefuse_data::output_dir::check_output(out, OutputKind::Export, &[run_dir])?;
    if let Some(b) = Blend::open(run_dir, backend)? {
        return export_blend(run_dir, &b, out, backend);
    }
    if let Some(e) = Ensemble::open(run_dir, backend)? {
        return export_ensemble(run_dir, &e, out, backend);
    }
    let run = LoadedRun::open(run_dir, backend)?;
    let (thresholds, val) = run.tuned_thresholds();
    let (vp, vt) = val.labelled_ratings();
    let residuals: Vec<f32> = vp.iter().zip(&vt).map(|(p, t)| p - t).collect();
    // Too few rated validation movies: no interval, said so, rather than an infinite one.
    let half_width =
        Some(conformal_quantile(&residuals, INTERVAL_COVERAGE)).filter(|w| w.is_finite());
    if half_width.is_none() {
        eprintln!(
            "warning: {} rated validation movies are too few for a {:.0} % rating interval; \
             the export predicts ratings without one",
            residuals.len(),
            INTERVAL_COVERAGE * 100.0
        );
    }
    let names = run.prepared.preprocessor.genre_names().to_vec();
    let test_preds = run.predict(&run.prepared, Some(Split::Test));
    let (validation, test) = (
        scores(&val, &thresholds, &names),
        scores(&test_preds, &thresholds, &names),
    );
    let staging = cinefuse_data::atomic::StagingDir::new(out, OutputKind::Export, &[run_dir])?;
    let dir = staging.path();
    // The frozen backbones once, beside the trained tensors: the export stands alone.
    let mut copies = ExportBackbones::new(dir);
    let backbones = copies.save_member(&run.model, &run.config.model, dir, MODEL_FILE)?;
    copy(&run_dir.join(CONFIG_FILE), &dir.join(CONFIG_FILE))?;
    run.prepared.preprocessor.save(dir)?;
    let manifest = Manifest {
        interval_half_width: half_width,
        backbones,
        ..Manifest::of_run(
            &run,
            thresholds,
            validation,
            test,
            weights_sha256(&run.model),
        )
    };
    write_json(&dir.join(MANIFEST_FILE), &manifest)?;
    write_portable(dir, &manifest, &copies)?;
    let interval = crate::evaluate::interval_metrics(&val, &test_preds, INTERVAL_COVERAGE);
    let card = CardFacts::of("one model".into(), &run, &test_preds, interval, run_dir);
    write_card(dir, &manifest, &card)?;
    let checked = checked_predictions(&test_preds, || {
        Ok(run.predict(&run.prepared, Some(Split::Val)))
    })?;
    check_export(
        dir,
        &run.info.dataset_dir,
        &manifest.data_hash,
        &checked,
        backend,
    )?;
    staging.commit()?;
    Ok(out.to_path_buf())
}

/// The scores of predictions that a manifest keeps.
fn scores(p: &crate::predictions::Predictions, thresholds: &[f32], names: &[String]) -> Scores {
    let g = p.genre_metrics(thresholds, names);
    Scores::of(p.ids.len(), &g, &p.rating_metrics())
}

/// The scores a manifest keeps of out-of-fold predictions.
fn out_of_fold_scores(oof: &crate::bag::OutOfFold) -> Scores {
    Scores {
        out_of_fold: true,
        ..Scores::of(oof.movies, &oof.genres, &oof.rating)
    }
}

/// Exports a bag (every member's weights, averaged at prediction) or its refit model, with
/// the bag's out-of-fold thresholds and CV+ interval.
fn export_ensemble(
    run_dir: &Path,
    e: &Ensemble,
    out: &Path,
    backend: Option<BackendKind>,
) -> Result<PathBuf> {
    let staging = cinefuse_data::atomic::StagingDir::new(out, OutputKind::Export, &[run_dir])?;
    let mut backbones = ExportBackbones::new(staging.path());
    let (manifest, test) = write_ensemble(e, staging.path(), &mut backbones)?;
    let lead = e.lead();
    let checked = checked_predictions(&test, || Ok(e.predict(&lead.prepared, Some(Split::Val)).0))?;
    let dataset = &lead.info.dataset_dir;
    check_export(
        staging.path(),
        dataset,
        &manifest.data_hash,
        &checked,
        backend,
    )?;
    staging.commit()?;
    Ok(out.to_path_buf())
}

/// Writes a bag's export into `dir` (the export's folder or a blend part's), its backbones
/// into `backbones`, and returns its manifest and its test predictions.
fn write_ensemble(
    e: &Ensemble,
    dir: &Path,
    backbones: &mut ExportBackbones,
) -> Result<(Manifest, Predictions)> {
    let lead = e.lead();
    let names = lead.prepared.preprocessor.genre_names().to_vec();
    let thresholds = e.calibration.thresholds.clone();
    let (test, each) = e.predict(&lead.prepared, Some(Split::Test));
    let mut members = Vec::new();
    let mut used: Vec<ManifestBackbone> = Vec::new();
    let mut hasher = Sha256::new();
    for (k, m) in e.members.iter().enumerate() {
        let name = if e.members.len() == 1 {
            MODEL_FILE.to_string()
        } else {
            format!("model-{k}.bpk")
        };
        for b in backbones.save_member(&m.model, &m.config.model, dir, &name)? {
            if !used.contains(&b) {
                used.push(b);
            }
        }
        digest_weights(&m.model, &mut hasher);
        members.push(name);
    }
    copy(&lead.dir.join(CONFIG_FILE), &dir.join(CONFIG_FILE))?;
    lead.prepared.preprocessor.save(dir)?;
    let manifest = Manifest {
        run_name: e.info.name.clone(),
        interval: e.interval().cloned(),
        members: if e.members.len() == 1 {
            Vec::new()
        } else {
            members
        },
        bag_sets: e.sets(),
        rating_over_sets: e.sets() > 1 && e.layout().rating_over_sets,
        backbones: used,
        ..Manifest::of_run(
            lead,
            thresholds.clone(),
            out_of_fold_scores(&e.calibration.out_of_fold),
            scores(&test, &thresholds, &names),
            format!("{:x}", hasher.finalize()),
        )
    };
    write_json(&dir.join(MANIFEST_FILE), &manifest)?;
    write_portable(dir, &manifest, backbones)?;
    let kind = if e.refit {
        "the refit model of a bag (one model on all of train + validation)".to_string()
    } else {
        bag_description(e.members.len(), e.layout())
    };
    let card = CardFacts::of(kind, lead, &test, e.interval_metrics(&each), &e.bag);
    write_card(dir, &manifest, &card)?;
    Ok((manifest, test))
}

/// Writes a blend's rating trees, when it has some, and their manifest entry.
fn write_blend_trees(b: &Blend, dir: &Path, hasher: &mut Sha256) -> Result<Option<ManifestTrees>> {
    let Some(t) = &b.trees else {
        return Ok(None);
    };
    write_hashed(dir, TREES_FILE, &t.to_bytes()?, hasher)?;
    Ok(Some(ManifestTrees {
        file: TREES_FILE.into(),
        rating_weight: *b.info.rating_weights.last().expect("weights"),
    }))
}

/// Writes a blend's content rating, when it has one, and its manifest entry.
fn write_blend_content(
    b: &Blend,
    dir: &Path,
    hasher: &mut Sha256,
) -> Result<Option<ManifestContentRating>> {
    let Some(c) = &b.content else {
        return Ok(None);
    };
    write_hashed(dir, CONTENT_RATING_FILE, &c.to_bytes()?, hasher)?;
    Ok(Some(ManifestContentRating {
        file: CONTENT_RATING_FILE.into(),
        info: b.info.content_rating.clone(),
    }))
}

/// Writes a blend's trees without the vote count, when it has some, and their manifest entry.
fn write_blend_voteless(
    b: &Blend,
    dir: &Path,
    hasher: &mut Sha256,
) -> Result<Option<ManifestVoteless>> {
    let (Some(trees), Some(info)) = (&b.voteless, &b.info.rating_without_votes) else {
        return Ok(None);
    };
    let mut files = Vec::new();
    for (file, t) in trees.files() {
        write_hashed(dir, &file, &t.to_bytes()?, hasher)?;
        files.push(file);
    }
    Ok(Some(ManifestVoteless {
        files,
        info: info.clone(),
    }))
}

/// Writes a blend's neighbour votes and returns their manifest entries in `VoteSpace::ALL`'s
/// order (plot, metadata, credits, genre prompts), each `None` when the blend has no such vote.
fn write_blend_votes(
    b: &Blend,
    dir: &Path,
    hasher: &mut Sha256,
) -> Result<[Option<ManifestNeighbours>; 4]> {
    let mut entries = [None, None, None, None];
    for (k, v) in b.votes.iter().enumerate() {
        write_hashed(dir, v.space.file(), &v.to_bytes()?, hasher)?;
        let slot = VoteSpace::ALL
            .iter()
            .position(|s| *s == v.space)
            .expect("every space is listed");
        entries[slot] = Some(ManifestNeighbours {
            file: v.space.file().into(),
            genre_weight: b.info.genre_weights[b.parts.len() + k],
        });
    }
    Ok(entries)
}

/// Exports a blend: each bag whole in `part-K/`, and a manifest with the blend's weights,
/// out-of-fold thresholds and CV+ interval.
fn export_blend(
    run_dir: &Path,
    b: &Blend,
    out: &Path,
    backend: Option<BackendKind>,
) -> Result<PathBuf> {
    let staging = cinefuse_data::atomic::StagingDir::new(out, OutputKind::Export, &[run_dir])?;
    let dir = staging.path();
    let mut hasher = Sha256::new();
    let mut backbones = ExportBackbones::new(dir);
    let (parts, lead) = write_blend_parts(b, dir, &mut hasher, &mut backbones)?;
    let rating_trees = write_blend_trees(b, dir, &mut hasher)?;
    let content_rating = write_blend_content(b, dir, &mut hasher)?;
    let rating_without_votes = write_blend_voteless(b, dir, &mut hasher)?;
    let [
        plot_neighbours,
        metadata_neighbours,
        credit_neighbours,
        genre_prompts,
    ] = write_blend_votes(b, dir, &mut hasher)?;
    let own: Vec<&cinefuse_data::Prepared> = b.parts.iter().map(|e| &e.lead().prepared).collect();
    let (test, each) = b.predict(&own, Some(Split::Test))?;
    let cal = &b.info.calibration;
    let manifest = Manifest {
        run_name: format!("blend of {}", b.parts.len()),
        thresholds: cal.thresholds.clone(),
        interval: cal.interval.clone(),
        members: Vec::new(),
        bag_sets: 1,
        parts,
        rating_trees,
        plot_neighbours,
        metadata_neighbours,
        credit_neighbours,
        genre_prompts,
        genre_stacking: b.info.genre_stacking.clone(),
        genre_stacking_without_plot: b.info.genre_stacking_without_plot.clone(),
        genre_stacking_without_metadata: b.info.genre_stacking_without_metadata.clone(),
        content_rating,
        rating_without_votes,
        // Listed for the reader: each part loads the copies its own manifest names.
        backbones: backbones.copies().to_vec(),
        validation: out_of_fold_scores(&cal.out_of_fold),
        test: scores(&test, &cal.thresholds, &lead.genres),
        weights_sha256: format!("{:x}", hasher.finalize()),
        ..lead
    };
    write_json(&dir.join(MANIFEST_FILE), &manifest)?;
    write_portable(dir, &manifest, &backbones)?;
    let interval = crate::ensemble::interval_metrics_of(cal.interval.as_ref(), &each);
    let mut card = CardFacts::of(blend_kind(b), b.lead(), &test, interval, run_dir);
    card.reproduce = blend_commands(b, card.dataset);
    write_own_prompts(b, dir)?;
    write_card(dir, &manifest, &card)?;
    let checked = checked_predictions(&test, || Ok(b.predict(&own, Some(Split::Val))?.0))?;
    check_export(
        dir,
        &b.lead().info.dataset_dir,
        &manifest.data_hash,
        &checked,
        backend,
    )?;
    staging.commit()?;
    Ok(out.to_path_buf())
}

/// Each bag of the blend into its own `part-K` folder of the export `dir`, its weights'
/// digest into `hasher`; the manifest parts and the lead bag's manifest.
fn write_blend_parts(
    b: &Blend,
    dir: &Path,
    hasher: &mut Sha256,
    backbones: &mut ExportBackbones,
) -> Result<(Vec<ManifestPart>, Manifest)> {
    let mut parts = Vec::new();
    let mut lead = None;
    for (k, e) in b.parts.iter().enumerate() {
        let name = format!("part-{k}");
        std::fs::create_dir(dir.join(&name))
            .with_context(|| format!("cannot create {}", dir.join(&name).display()))?;
        let (m, _) = write_ensemble(e, &dir.join(&name), backbones)?;
        hasher.update(m.weights_sha256.as_bytes());
        lead.get_or_insert(m);
        parts.push(ManifestPart {
            dir: name,
            genre_weight: b.info.genre_weights[k],
            rating_weight: b.info.rating_weights[k],
        });
    }
    Ok((parts, lead.context("a blend has parts")?))
}

/// What the model card says the blend is: its parts, and how their genres and ratings mix.
fn blend_kind(b: &Blend) -> String {
    let info = &b.info;
    let own_stackings = [
        (&info.genre_stacking_without_plot, "a movie without a plot"),
        (
            &info.genre_stacking_without_metadata,
            "a movie without metadata",
        ),
    ];
    let own: Vec<&str> = own_stackings
        .iter()
        .filter(|(s, _)| s.is_some())
        .map(|(_, who)| *who)
        .collect();
    let genres = match (&info.genre_stacking, own.is_empty()) {
        (Some(_), false) => format!(
            "genres stacked per genre on the parts' logits, {} by a stacking of its own",
            own.join(" and ")
        ),
        (Some(_), true) => "genres stacked per genre on the parts' logits".to_string(),
        (None, _) => format!("genre weights {:?}", info.genre_weights),
    };
    let content = match b.content {
        Some(_) => "; a movie without metadata rated from its plot alone",
        None => "",
    };
    let voteless = match b.voteless {
        Some(_) => "; a movie without a vote count rated by trees that never saw one",
        None => "",
    };
    format!(
        "a {} ({genres}, rating weights {:?}{content}{voteless})",
        crate::blend::describe(
            b.parts.len(),
            &b.info.extras().vote_spaces(),
            b.trees.is_some()
        ),
        b.info.rating_weights
    )
}

/// Writes `bytes` as `name` in the export folder `dir`, their digest into the export's `hasher`.
fn write_hashed(dir: &Path, name: &str, bytes: &[u8], hasher: &mut Sha256) -> Result<()> {
    cinefuse_data::atomic::write_atomic(&dir.join(name), bytes)?;
    hasher.update(format!("{:x}", Sha256::digest(bytes)).as_bytes());
    Ok(())
}

/// A blend's own genre prompts, written beside its card for the command that reproduces it.
const OWN_PROMPTS_FILE: &str = "genre_prompts.toml";

/// Writes the blend's own genre-prompt sentences, when it has some, as `ensemble --prompts`
/// reads them.
fn write_own_prompts(b: &Blend, dir: &Path) -> Result<()> {
    let Some(v) = b
        .info
        .genre_prompts
        .as_ref()
        .filter(|v| !v.prompts.is_empty())
    else {
        return Ok(());
    };
    let text = toml::to_string(&v.prompts).context("cannot write the genre prompts as TOML")?;
    cinefuse_data::atomic::write_atomic(&dir.join(OWN_PROMPTS_FILE), text.as_bytes())?;
    Ok(())
}

/// The commands that train a blend's bags (each part's saved config) and blend them.
fn blend_commands(b: &Blend, dataset: &Path) -> String {
    let mut lines: Vec<String> = (0..b.parts.len())
        .map(|k| {
            format!(
                "cinefuse train --config part-{k}/config.toml --data {} --out BAG-{k}",
                dataset.display()
            )
        })
        .collect();
    let bags: Vec<String> = (0..b.parts.len()).map(|k| format!("BAG-{k}")).collect();
    let trees = match b.info.rating_trees {
        Some(t) => format!(
            " --rating-trees --tree-iterations {} --tree-learning-rate {} --tree-leaves {} \
             --tree-l2 {} --tree-min-leaf {}{}",
            t.iterations,
            t.learning_rate,
            t.max_leaves,
            t.l2,
            t.min_leaf,
            if t.genre_probabilities {
                " --tree-genres"
            } else {
                ""
            }
        ),
        None => String::new(),
    };
    let plot = b.info.plot_neighbours.map(|v| {
        format!(
            " --plot-neighbours --neighbour-k {} --neighbour-temperature {} --neighbour-prior {}",
            v.k, v.temperature, v.prior
        )
    });
    let metadata = b.info.metadata_neighbours.map(|v| {
        format!(
            " --metadata-neighbours --metadata-k {} --metadata-temperature {} \
             --metadata-prior {}",
            v.k, v.temperature, v.prior
        )
    });
    let credits = b.info.credit_neighbours.map(|v| {
        format!(
            " --credit-neighbours --credit-k {} --credit-temperature {} --credit-prior {}",
            v.k, v.temperature, v.prior
        )
    });
    let prompts = b.info.genre_prompts.as_ref().map(|v| {
        let own = if v.prompts.is_empty() {
            String::new()
        } else {
            format!(" --prompts {OWN_PROMPTS_FILE}")
        };
        format!(
            " --genre-prompts --prompt-k {} --prompt-temperature {} --prompt-prior {}{own}",
            v.k, v.temperature, v.prior
        )
    });
    let content = b.content.as_ref().map(|_| " --content-rating".to_string());
    let vote = [plot, metadata, credits, prompts, content]
        .into_iter()
        .flatten()
        .collect::<String>();
    lines.push(format!(
        "cinefuse ensemble --runs {}{vote}{trees} --out BLEND",
        bags.join(",")
    ));
    lines.push("cinefuse export --run BLEND --out MODEL".into());
    lines.join("\n")
}

/// How the model card names a bag of `members` models in `layout.sets` repeated sets.
fn bag_description(members: usize, layout: SetLayout) -> String {
    match (layout.sets, layout.rating_over_sets) {
        (1, _) => format!("a bag of {members} models (their mean)"),
        (sets, true) => format!("a bag of {members} models in {sets} sets of folds (their mean)"),
        (sets, false) => format!(
            "a bag of {members} models in {sets} sets of folds (genres: the mean of all; \
             rating: the first set's mean)"
        ),
    }
}

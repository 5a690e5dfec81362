//! `cinefuse export`: a self-contained model directory — weights, resolved config,
//! preprocessing state, tokenizer, genre list, tuned thresholds, a split-conformal rating
//! interval calibrated on the validation split, and a manifest.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cinefuse_data::output_dir::OutputKind;
use cinefuse_data::split::Split;
use cinefuse_model::head::RatingScale;
use cinefuse_model::{Modality, ModelShapes};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::BackendKind;
use crate::evaluate::LoadedRun;
use crate::metrics::conformal_quantile;
use crate::run_dir::{CONFIG_FILE, MODEL_FILE, best_dir, write_json};

pub const MANIFEST_FILE: &str = "manifest.json";
/// Nominal coverage of the rating interval.
pub const INTERVAL_COVERAGE: f64 = 0.9;

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
    pub rating_scale: RatingScale,
    /// Half-width of the split-conformal rating interval and its nominal coverage.
    pub interval_half_width: f32,
    pub interval_coverage: f64,
    pub shapes: ModelShapes,
    pub validation: serde_json::Value,
    pub test: serde_json::Value,
    /// SHA-256 of the training dataset's `movies.jsonl` and of the exported weights.
    pub data_hash: String,
    pub weights_sha256: String,
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

pub fn export(run_dir: &Path, out: &Path, backend: Option<BackendKind>) -> Result<PathBuf> {
    // Refuse a bad --out before loading and predicting, not after.
    cinefuse_data::output_dir::check_output(out, OutputKind::Export, &[run_dir])?;
    let run = LoadedRun::open(run_dir, backend)?;
    let (thresholds, val) = run.tuned_thresholds();
    let (vp, vt) = val.labelled_ratings();
    let residuals: Vec<f32> = vp.iter().zip(&vt).map(|(p, t)| p - t).collect();
    let half_width = conformal_quantile(&residuals, INTERVAL_COVERAGE);
    let names = run.prepared.preprocessor.genre_names().to_vec();
    let test = run.predict(&run.prepared, Some(Split::Test));
    let summary = |p: &crate::inference::Predictions| {
        let g = p.genre_metrics(&thresholds, &names);
        let r = p.rating_metrics();
        serde_json::json!({
            "movies": p.ids.len(), "micro_f1": g.micro_f1, "macro_f1": g.macro_f1, "samples_f1": g.samples_f1,
            "map": g.map, "top1": g.top1, "mae": r.mae, "rmse": r.rmse, "r2": r.r2, "within_10pct": r.within_10pct,
        })
    };
    let (validation, test) = (summary(&val), summary(&test));
    let staging = cinefuse_data::atomic::StagingDir::new(out, OutputKind::Export, &[run_dir])?;
    let dir = staging.path();
    let best = best_dir(run_dir).context("no best model")?;
    copy(&best.join(MODEL_FILE), &dir.join(MODEL_FILE))?;
    copy(&run_dir.join(CONFIG_FILE), &dir.join(CONFIG_FILE))?;
    run.prepared.preprocessor.save(dir)?;
    let weights = std::fs::read(dir.join(MODEL_FILE))?;
    let manifest = Manifest {
        format_version: 1,
        cinefuse_version: env!("CARGO_PKG_VERSION").into(),
        burn_version: "0.22.1".into(),
        run_name: run.info.name.clone(),
        best_epoch: run.best_epoch,
        modalities: run.model.modalities().to_vec(),
        genres: names.clone(),
        thresholds,
        rating_scale: run.info.rating_scale,
        interval_half_width: half_width,
        interval_coverage: INTERVAL_COVERAGE,
        shapes: run.info.shapes.clone(),
        validation,
        test,
        data_hash: run.prepared.preprocessor.state.dataset_hash.clone(),
        weights_sha256: format!("{:x}", Sha256::digest(&weights)),
    };
    write_json(&dir.join(MANIFEST_FILE), &manifest)?;
    staging.commit()?;
    Ok(out.to_path_buf())
}

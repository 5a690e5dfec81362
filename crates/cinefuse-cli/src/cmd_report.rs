//! `eda` and `report`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cinefuse_data::split::Split;
use cinefuse_report::run_report::GenreConfusion;
use cinefuse_report::{CurvePoint, RunReportData, write_eda, write_run_report};
use cinefuse_train::config::BackendKind;
use cinefuse_train::evaluate::{LoadedRun, group_scores};
use cinefuse_train::predictions::Predictions;
use cinefuse_train::run_dir::read_metrics;
use clap::Args;

#[derive(Args)]
pub struct EdaArgs {
    /// The dataset folder to describe (movies.jsonl and posters/).
    #[arg(long)]
    data: PathBuf,
    /// The folder for the report (index.html and its charts).
    #[arg(long)]
    out: PathBuf,
}

pub fn eda(a: EdaArgs) -> Result<()> {
    let summary = write_eda(&a.data, &a.out)?;
    println!("{summary}");
    println!("report: {}", a.out.join("index.html").display());
    Ok(())
}

#[derive(Args)]
pub struct ReportArgs {
    /// A run, bag or blend folder, as `train` or `ensemble` wrote it.
    #[arg(long)]
    run: PathBuf,
    /// Split for the genre and rating views.
    #[arg(long, default_value = "test")]
    split: String,
    /// auto, flex, wgpu, lavapipe or cuda (default: the config's `backend.kind`).
    #[arg(long)]
    backend: Option<String>,
}

pub fn report(a: ReportArgs) -> Result<()> {
    let split = Split::parse(&a.split)
        .with_context(|| format!("--split {:?}: expected train, val or test", a.split))?;
    let backend = a
        .backend
        .as_deref()
        .map(cinefuse_train::backend::parse_backend)
        .transpose()?;
    let data = match cinefuse_train::run_dir::RunDir::new(a.run.clone()).group() {
        Some((kind, member)) => group_report(&a.run, (kind, &member), split, backend)?,
        None => single_report(&a.run, split, backend)?,
    };
    let images = write_run_report(&a.run, &data)?;
    println!(
        "wrote {} charts and {}",
        images.len(),
        a.run.join("report.html").display()
    );
    Ok(())
}

/// One model: its own curves, and its predictions at its validation thresholds.
fn single_report(
    run_dir: &Path,
    split: Split,
    backend: Option<BackendKind>,
) -> Result<RunReportData> {
    let run = LoadedRun::open(run_dir, backend)?;
    let (thresholds, _) = run.tuned_thresholds();
    let preds = run.predict(&run.prepared, Some(split));
    refuse_empty(run_dir, split, &preds)?;
    let names = run.prepared.preprocessor.genre_names().to_vec();
    let mut data = report_data(&preds, (&thresholds, &names), split);
    data.run_name = run.info.name.clone();
    data.history = curves(run_dir)?;
    Ok(data)
}

/// A bag or blend: the whole group's predictions at the thresholds it chose out of fold,
/// beside its first member's learning curves (the group itself has none).
fn group_report(
    run_dir: &Path,
    (kind, member): (&str, &Path),
    split: Split,
    backend: Option<BackendKind>,
) -> Result<RunReportData> {
    let g = group_scores(run_dir, Some(split), backend)?.with_context(|| {
        format!(
            "--run {}: looks like a {kind} but is not a finished one (no bag.json or \
             blend.json); `report` a member instead ({})",
            run_dir.display(),
            member.display()
        )
    })?;
    let preds = g.preds.expect("a split was asked for");
    refuse_empty(run_dir, split, &preds)?;
    let mut data = report_data(&preds, (&g.thresholds, &g.genre_names), split);
    if split != Split::Test {
        // Its members trained on these movies: "Genres on the in-sample val split".
        data.split = format!("in-sample {split}");
    }
    data.run_name = format!("{} ({kind})", run_dir.display());
    data.history = curves(member)?;
    data.curves_of = format!("its first member, {}", member.display());
    Ok(data)
}

/// A split that holds no movies (prepared with its ratio at 0) would chart nothing as if it
/// were a result.
fn refuse_empty(run_dir: &Path, split: Split, preds: &Predictions) -> Result<()> {
    if preds.ids.is_empty() {
        anyhow::bail!(
            "--run {}: its {split} split holds no movies (prepared with its ratio at 0); choose \
             another with --split",
            run_dir.display()
        );
    }
    Ok(())
}

/// The genre and rating views of `preds` at `thresholds`.
fn report_data(
    preds: &Predictions,
    (thresholds, names): (&[f32], &[String]),
    split: Split,
) -> RunReportData {
    let genres = preds
        .genre_metrics(thresholds, names)
        .per_genre
        .into_iter()
        .map(|p| GenreConfusion {
            genre: p.genre,
            threshold: p.threshold,
            tp: p.tp,
            fp: p.fp,
            fn_: p.fn_,
            tn: p.tn,
        })
        .collect();
    let (pred, truth) = preds.labelled_ratings();
    RunReportData {
        run_name: String::new(),
        split: split.to_string(),
        history: Vec::new(),
        curves_of: String::new(),
        genres,
        ratings: truth
            .iter()
            .zip(&pred)
            .map(|(t, p)| (f64::from(*t), f64::from(*p)))
            .collect(),
    }
}

/// The learning curves of the run in `dir`, from its metrics.jsonl.
fn curves(dir: &Path) -> Result<Vec<CurvePoint>> {
    Ok(read_metrics(dir)?
        .iter()
        .map(|m| CurvePoint {
            epoch: m.epoch,
            train_loss: m.train_loss,
            val_loss: m.val_loss,
            val_micro_f1: m.val_micro_f1,
            val_macro_f1: m.val_macro_f1,
            val_top1: m.val_top1,
            val_mae: m.val_mae,
            val_within_10pct: m.val_within_10pct,
        })
        .collect())
}

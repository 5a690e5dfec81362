//! `eda` and `report`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use cinefuse_data::split::Split;
use cinefuse_report::run_report::GenreConfusion;
use cinefuse_report::{CurvePoint, RunReportData, write_eda, write_run_report};
use cinefuse_train::evaluate::LoadedRun;
use cinefuse_train::run_dir::read_metrics;
use clap::Args;

#[derive(Args)]
pub struct EdaArgs {
    #[arg(long)]
    data: PathBuf,
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
    #[arg(long)]
    run: PathBuf,
    /// Split for the genre and rating views.
    #[arg(long, default_value = "test")]
    split: String,
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
    if let Some((kind, member)) = cinefuse_train::run_dir::RunDir::new(a.run.clone()).group() {
        bail!(
            "--run {}: a {kind}; `report` draws one model's learning curves: give it a member \
             ({}), or run `cinefuse eval --run {}` for the whole {kind}'s per-genre table and \
             rating metrics",
            a.run.display(),
            member.display(),
            a.run.display(),
        );
    }
    let run = LoadedRun::open(&a.run, backend)?;
    let (thresholds, _) = run.tuned_thresholds();
    let preds = run.predict(&run.prepared, Some(split));
    let names = run.prepared.preprocessor.genre_names().to_vec();
    let genres = preds
        .genre_metrics(&thresholds, &names)
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
    let data = RunReportData {
        run_name: run.info.name.clone(),
        split: split.to_string(),
        history: read_metrics(&a.run)?
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
            .collect(),
        genres,
        ratings: truth
            .iter()
            .zip(&pred)
            .map(|(t, p)| (f64::from(*t), f64::from(*p)))
            .collect(),
    };
    let images = write_run_report(&a.run, &data)?;
    println!(
        "wrote {} charts and {}",
        images.len(),
        a.run.join("report.html").display()
    );
    Ok(())
}

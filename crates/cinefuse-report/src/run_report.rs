//! `cinefuse report --run RUN`: learning curves, per-genre F1, predicted-vs-actual ratings with
//! the ±10 % band and a per-genre confusion view, as PNG files and `report.html` in the run.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::charts;
use crate::html::Page;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenreConfusion {
    pub genre: String,
    pub threshold: f32,
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
    pub tn: usize,
}

impl GenreConfusion {
    /// True-positive and false-negative rates among the positives, false-positive and
    /// true-negative rates among the negatives: rates keep rare and common genres comparable.
    pub fn rates(&self) -> Vec<f64> {
        let pos = (self.tp + self.fn_).max(1) as f64;
        let neg = (self.fp + self.tn).max(1) as f64;
        vec![
            self.tp as f64 / pos,
            self.fn_ as f64 / pos,
            self.fp as f64 / neg,
            self.tn as f64 / neg,
        ]
    }

    pub fn f1(&self) -> f64 {
        let d = 2 * self.tp + self.fp + self.fn_;
        if d == 0 {
            0.0
        } else {
            2.0 * self.tp as f64 / d as f64
        }
    }
}

/// One epoch of the learning curves (from the run's `metrics.jsonl`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_micro_f1: f64,
    pub val_macro_f1: f64,
    pub val_top1: f64,
    pub val_mae: f64,
    pub val_within_10pct: f64,
}

/// What the run report shows; gathered by the caller from the run directory and the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReportData {
    pub run_name: String,
    pub split: String,
    /// The learning curves, one point per epoch.
    pub history: Vec<CurvePoint>,
    /// Whose curves they are, under the section's heading (a bag or blend shows its first
    /// member's; empty: the run's own).
    #[serde(default)]
    pub curves_of: String,
    pub genres: Vec<GenreConfusion>,
    /// (actual, predicted) ratings.
    pub ratings: Vec<(f64, f64)>,
}

/// One curve: (epoch, value) for every epoch whose value is a number.
fn series(history: &[CurvePoint], value: fn(&CurvePoint) -> f64) -> Vec<(f64, f64)> {
    history
        .iter()
        .map(|p| (p.epoch as f64, value(p)))
        .filter(|(_, v)| v.is_finite())
        .collect()
}

/// Writes the report files into `run_dir` and returns the image names.
/// The images the report writes into `report/`, section by section.
const IMAGES: [&str; 6] = [
    "loss.png",
    "genre_metrics.png",
    "rating_metrics.png",
    "genre_f1.png",
    "genre_confusion.png",
    "rating_scatter.png",
];

pub fn write_run_report(run_dir: &Path, data: &RunReportData) -> Result<Vec<String>> {
    let out = run_dir.join("report");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut page = Page::new(&format!("cinefuse run report — {}", data.run_name));
    curves_section(&mut page, &out, data)?;
    genres_section(&mut page, &out, data)?;
    rating_section(&mut page, &out, data)?;
    cinefuse_data::atomic::write_atomic(&run_dir.join("report.html"), page.render().as_bytes())?;
    Ok(IMAGES.map(String::from).to_vec())
}

/// Learning curves: losses, validation genre metrics, validation rating metrics.
fn curves_section(page: &mut Page, out: &Path, data: &RunReportData) -> Result<()> {
    let whose = match data.curves_of.as_str() {
        "" => "Per epoch, from metrics.jsonl.".to_string(),
        of => format!("Per epoch, from the metrics.jsonl of {of}."),
    };
    page.section("curves", "Learning curves", &whose);
    charts::lines(
        &out.join("loss.png"),
        "Loss",
        "epoch",
        "loss",
        &[
            ("train".into(), series(&data.history, |p| p.train_loss)),
            ("validation".into(), series(&data.history, |p| p.val_loss)),
        ],
    )?;
    page.image("report/loss.png", "Training and validation loss");
    charts::lines(
        &out.join("genre_metrics.png"),
        "Validation genre metrics",
        "epoch",
        "score",
        &[
            ("micro-F1".into(), series(&data.history, |p| p.val_micro_f1)),
            ("macro-F1".into(), series(&data.history, |p| p.val_macro_f1)),
            (
                "top-1 accuracy".into(),
                series(&data.history, |p| p.val_top1),
            ),
        ],
    )?;
    page.image(
        "report/genre_metrics.png",
        "Validation micro-F1, macro-F1 and top-1 accuracy",
    );
    charts::lines(
        &out.join("rating_metrics.png"),
        "Validation rating metrics",
        "epoch",
        "value",
        &[
            ("MAE".into(), series(&data.history, |p| p.val_mae)),
            (
                "within 10 %".into(),
                series(&data.history, |p| p.val_within_10pct),
            ),
        ],
    )?;
    page.image(
        "report/rating_metrics.png",
        "Validation MAE and share within 10 %",
    );
    page.end_section();
    Ok(())
}

/// F1 and confusion rates per genre, with the table of counts.
fn genres_section(page: &mut Page, out: &Path, data: &RunReportData) -> Result<()> {
    page.section(
        "genres",
        &format!("Genres on the {} split", data.split),
        "Thresholds tuned on the validation split (a bag's or blend's: on its out-of-fold \
         predictions).",
    );
    let names: Vec<String> = data.genres.iter().map(|g| g.genre.clone()).collect();
    charts::bar_chart(
        &out.join("genre_f1.png"),
        "F1 per genre",
        "F1",
        &names,
        &data
            .genres
            .iter()
            .map(GenreConfusion::f1)
            .collect::<Vec<_>>(),
    )?;
    page.image("report/genre_f1.png", "F1 per genre");
    let cols: Vec<String> = [
        "true positive",
        "false negative",
        "false positive",
        "true negative",
    ]
    .map(String::from)
    .to_vec();
    let rates: Vec<Vec<f64>> = data.genres.iter().map(GenreConfusion::rates).collect();
    charts::heatmap(
        &out.join("genre_confusion.png"),
        "Per-genre confusion (rates within positives / negatives)",
        &names,
        &cols,
        &rates,
        None,
        2,
    )?;
    page.image("report/genre_confusion.png", "Per-genre confusion rates");
    page.table(
        &["genre", "threshold", "TP", "FN", "FP", "TN", "F1"],
        &data
            .genres
            .iter()
            .map(|g| {
                vec![
                    g.genre.clone(),
                    format!("{:.2}", g.threshold),
                    g.tp.to_string(),
                    g.fn_.to_string(),
                    g.fp.to_string(),
                    g.tn.to_string(),
                    format!("{:.3}", g.f1()),
                ]
            })
            .collect::<Vec<_>>(),
    );
    page.end_section();
    Ok(())
}

/// Predicted against actual ratings with the ±10 % band.
fn rating_section(page: &mut Page, out: &Path, data: &RunReportData) -> Result<()> {
    page.section(
        "rating",
        "Predicted vs actual rating",
        "Points inside the green lines are within 10 % of the actual rating.",
    );
    charts::scatter_with_band(
        &out.join("rating_scatter.png"),
        "Predicted vs actual rating",
        "actual rating",
        "predicted rating",
        &data.ratings,
        0.10,
        (0.0, 10.0),
    )?;
    page.image(
        "report/rating_scatter.png",
        "Predicted vs actual rating with the ±10 % band",
    );
    page.end_section();
    Ok(())
}

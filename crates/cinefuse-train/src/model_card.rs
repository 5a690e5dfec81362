//! The model card every export carries (`README.md`): what the model was trained on, how it
//! scores beside the baselines, how its rating interval holds, what it is for and not for, and
//! the commands that reproduce it.

use std::fmt::Write;
use std::path::Path;

use anyhow::Result;
use cinefuse_data::Prepared;
use cinefuse_data::split::Split;

use crate::evaluate::{Baselines, IntervalMetrics, LoadedRun};
use crate::export::Manifest;
use crate::predictions::Predictions;

pub const CARD_FILE: &str = "README.md";

/// What the card says beyond the manifest.
pub struct CardFacts<'a> {
    /// "one model", "a bag of 5 models", "a blend of 3 bags".
    pub kind: String,
    pub prepared: &'a Prepared,
    pub dataset: &'a Path,
    pub baselines: Baselines,
    /// The interval measured on the test split.
    pub interval: Option<IntervalMetrics>,
    /// What was exported (a run, bag or blend folder).
    pub run: &'a Path,
    /// Shell commands that train and export it again.
    pub reproduce: String,
    /// How its decision thresholds were chosen (`thresholds::describe`).
    pub thresholds: String,
}

impl<'a> CardFacts<'a> {
    /// Facts of `run` measured on its test predictions.
    pub fn of(
        kind: String,
        lead: &'a LoadedRun,
        test: &Predictions,
        interval: Option<IntervalMetrics>,
        run: &'a Path,
    ) -> Self {
        let dataset = &lead.info.dataset_dir;
        Self {
            kind,
            prepared: &lead.prepared,
            dataset,
            baselines: crate::evaluate::baselines(lead, test),
            interval,
            run,
            thresholds: crate::thresholds::describe(
                lead.config.train.threshold_rule,
                lead.config.train.shared_threshold_weight,
            ),
            reproduce: format!(
                "cinefuse train --config config.toml --data {} --out RUN\n\
                 cinefuse export --run RUN --out MODEL",
                dataset.display()
            ),
        }
    }
}

fn split_counts(prepared: &Prepared) -> [usize; 3] {
    let mut n = [0; 3];
    for s in prepared.samples.iter() {
        n[match s.split {
            Split::Train => 0,
            Split::Val => 1,
            Split::Test => 2,
        }] += 1;
    }
    n
}

fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "–".into()
    }
}

/// Writes the card into the export folder `dir`.
pub fn write_card(dir: &Path, m: &Manifest, f: &CardFacts<'_>) -> Result<()> {
    std::fs::write(dir.join(CARD_FILE), card_text(m, f))?;
    Ok(())
}

const RECALIBRATION_HEADING: &str = "\n## Interval fitted again";

/// Appends to the model card in `dir` why its interval differs from the one it was exported
/// with (`cinefuse calibrate`); nothing when `m` was not recalibrated.
pub fn note_recalibration(dir: &Path, m: &Manifest) -> Result<()> {
    let Some(r) = &m.recalibrated else {
        return Ok(());
    };
    let path = dir.join(CARD_FILE);
    let mut s = std::fs::read_to_string(&path).unwrap_or_default();
    // An earlier recalibration's note no longer holds: the last section, replaced.
    if let Some(at) = s.find(RECALIBRATION_HEADING) {
        s.truncate(at);
    }
    let groups: Vec<String> = r.groups.iter().map(|(g, n)| format!("{n} {g}")).collect();
    let _ = write!(
        s,
        "{RECALIBRATION_HEADING}\n\n`cinefuse calibrate` fitted this model's {:.0} % rating \
         interval again on {} rated movies of `{}` (SHA-256 {}; {}), split conformal in the \
         groups the model keys movies into. It holds on movies like those; the scores above are \
         still the training movies'. Genres, ratings and weights are unchanged.\n",
        m.interval_coverage * 100.0,
        r.movies,
        r.data,
        r.data_sha256,
        groups.join(", ")
    );
    if let Some(kept) = &r.kept {
        let _ = writeln!(s, "\nThe {}.", crate::recalibrate::describe_kept(kept));
    }
    if let Some(check) = &r.check {
        let text = crate::recalibrate::describe_check(check);
        let _ = writeln!(s, "\nChecked: {text}.");
    }
    std::fs::write(&path, s)?;
    Ok(())
}

fn card_text(m: &Manifest, f: &CardFacts<'_>) -> String {
    let [train, val, test] = split_counts(f.prepared);
    let modalities: Vec<&str> = m.modalities.iter().map(|x| x.name()).collect();
    let mut s = String::new();
    let _ = writeln!(s, "# {} — a cinefuse model\n", m.run_name);
    let _ = writeln!(
        s,
        "Predicts a movie's genres ({} of them, multi-label) and its IMDb rating with a {:.0} % \
         interval, from its {}. It is {}.\n",
        m.genres.len(),
        m.interval_coverage * 100.0,
        modalities.join(", "),
        f.kind
    );
    let _ = writeln!(s, "## Training data\n");
    let _ = writeln!(
        s,
        "- dataset `{}`, `movies.jsonl` SHA-256 `{}`",
        f.dataset.display(),
        m.data_hash
    );
    let _ = writeln!(
        s,
        "- {train} train, {val} validation and {test} test movies (split by a seeded hash of the id)"
    );
    let _ = writeln!(s, "- genres: {}", m.genres.join(", "));
    let _ = writeln!(
        s,
        "- decision thresholds, chosen on held-out predictions: {}\n",
        f.thresholds
    );
    write_scores(&mut s, m, f);
    write_use(&mut s, m, f);
    s
}

fn write_scores(s: &mut String, m: &Manifest, f: &CardFacts<'_>) {
    if m.test.movies == 0 {
        return write_final_scores(s, m);
    }
    let (t, b) = (&m.test, &f.baselines);
    let _ = writeln!(s, "## Scores on the test split ({} movies)\n", t.movies);
    let _ = writeln!(s, "| metric | this model | baseline |");
    let _ = writeln!(s, "|---|---|---|");
    let rows = [
        ("genre micro-F1", t.micro_f1, b.majority.micro_f1),
        ("genre macro-F1", t.macro_f1, b.majority.macro_f1),
        ("genre mAP", t.map, b.majority.map),
        ("genre top-1 accuracy", t.top1, b.majority.top1),
        ("rating MAE", t.mae, b.mean.mae),
        ("rating within 10 %", t.within_10pct, b.mean.within_10pct),
    ];
    for (name, value, base) in rows {
        let _ = writeln!(s, "| {name} | {} | {base:.3} |", num(value));
    }
    let _ = writeln!(
        s,
        "\nBaselines: always {:?} (genres), always the training mean {:.2} (rating). \
         Out of fold / on validation: micro-F1 {}, macro-F1 {}, MAE {}.\n",
        b.majority_genres,
        b.mean_rating,
        num(m.validation.micro_f1),
        num(m.validation.macro_f1),
        num(m.validation.mae)
    );
    let _ = match &f.interval {
        Some(i) => writeln!(
            s,
            "Rating interval: nominal {:.0} %, measured {:.1} % on {} rated test movies, mean \
             width {:.2} points.\n",
            i.nominal * 100.0,
            i.coverage * 100.0,
            i.count,
            i.mean_width
        ),
        None => writeln!(
            s,
            "Rating interval: none (too few rated calibration movies).\n"
        ),
    };
    write_input_scales(s, m);
}

/// A final model, trained without a test split, has none to score: the card gives the
/// held-out scores it was chosen by (out of fold for a bag or blend) and says how to measure it.
fn write_final_scores(s: &mut String, m: &Manifest) {
    let v = &m.validation;
    let whose = if v.out_of_fold {
        "out of fold"
    } else {
        "on the validation split"
    };
    let _ = writeln!(s, "## Scores {whose} ({} movies)\n", v.movies);
    let _ = writeln!(
        s,
        "It was trained without a test split (`data.preprocess.test_ratio = 0`), so no movie \
         was kept from every choice: these are the held-out scores its thresholds and interval \
         were chosen by. To measure it on movies that chose nothing, train the same config with \
         `--set data.preprocess.test_ratio=0.15`, or run `cinefuse eval --data DIR` on movies \
         it never saw.\n"
    );
    let _ = writeln!(s, "| metric | this model |");
    let _ = writeln!(s, "|---|---|");
    let rows = [
        ("genre micro-F1", v.micro_f1),
        ("genre macro-F1", v.macro_f1),
        ("genre mAP", v.map),
        ("genre top-1 accuracy", v.top1),
        ("rating MAE", v.mae),
        ("rating within 10 %", v.within_10pct),
    ];
    for (name, value) in rows {
        let _ = writeln!(s, "| {name} | {} |", num(value));
    }
    let calibrated = m.interval.is_some() || m.interval_half_width.is_some();
    let _ = writeln!(
        s,
        "\nRating interval: {}.\n",
        if calibrated {
            format!(
                "nominal {:.0} %, calibrated {whose}",
                m.interval_coverage * 100.0
            )
        } else {
            "none (too few rated calibration movies)".into()
        }
    );
    write_input_scales(s, m);
}

/// Which movies get a wider interval for the inputs they come without, and by how much.
fn write_input_scales(s: &mut String, m: &Manifest) {
    let scales = m.interval.iter().flat_map(|c| c.input_scales.iter());
    let widened: Vec<&crate::interval::InputScale> = scales.filter(|s| s.scale > 1.0).collect();
    if !widened.is_empty() {
        let _ = writeln!(
            s,
            "A movie given without its plot or poster gets a wider interval: {}.\n",
            crate::input_scales::describe(&widened)
        );
    }
}

fn write_use(s: &mut String, m: &Manifest, f: &CardFacts<'_>) {
    let _ = writeln!(s, "## Intended use and limits\n");
    let _ = writeln!(
        s,
        "For tagging and triaging movies like those it was trained on: the genres above, ratings \
         on IMDb's 0–10 scale. It has not seen other genres, other kinds of titles (series, \
         shorts) or other rating scales; far outside its training data (`cinefuse predict` warns \
         when a number is) its outputs are extrapolations. Scores above come from {} held-out \
         movies and carry that sampling noise; the interval's coverage is a property of movies \
         drawn like the training data, not a guarantee for any one movie.\n",
        if m.test.movies == 0 {
            m.validation.movies
        } else {
            m.test.movies
        }
    );
    let _ = writeln!(s, "## Reproduce\n");
    let _ = writeln!(
        s,
        "With the config files of this folder:\n\n```sh\n{}\n```\n\nExported from `{}` with \
         cinefuse {} (Burn {}).",
        f.reproduce,
        f.run.display(),
        m.cinefuse_version,
        m.burn_version
    );
    write_backbones(s, m);
}

/// The pretrained checkpoints the export carries: the configs name them where they were at
/// training time, so a rerun needs them there (or the configs pointed at these copies).
fn write_backbones(s: &mut String, m: &Manifest) {
    if m.backbones.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nThe frozen pretrained checkpoints it was trained from are in this folder, each \
         once (the configs name them where they were at training time):\n"
    );
    for b in &m.backbones {
        let _ = writeln!(
            s,
            "- `{}`: `{}` (weights SHA-256 `{}`)",
            b.section, b.dir, b.sha256
        );
    }
}

//! `cinefuse sweep`: train every combination of a grid of config overrides (sequentially, on
//! shared prepared data), optionally under several seeds, and write a comparison table of
//! validation metrics (mean and range over the seeds), with test metrics only on request.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use cinefuse_data::output_dir::{OutputKind, check_output, write_marker};
use cinefuse_data::split::Split;
use serde::Serialize;

use crate::config::{BackendKind, TrainConfig};
use crate::evaluate::{LoadedRun, group_scores};
use crate::metrics::SplitScores;
pub use crate::sweep_table::write_tables;
use crate::trainer::{TrainOptions, train};

/// Splits `a,b,[c, d],"e,f"` at top-level commas only.
pub fn split_values(raw: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut quoted) = (Vec::new(), String::new(), 0i32, false);
    for c in raw.chars() {
        match c {
            '"' => quoted = !quoted,
            '[' | '{' if !quoted => depth += 1,
            ']' | '}' if !quoted => depth -= 1,
            ',' if depth == 0 && !quoted => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Parses `--grid key=v1,v2,…`.
pub fn parse_grid(spec: &str) -> Result<(String, Vec<String>)> {
    let Some((key, values)) = spec.split_once('=') else {
        bail!("--grid {spec:?}: expected KEY=V1,V2,… e.g. model.fusion.kind=late,gmu");
    };
    let values = split_values(values);
    if values.is_empty() {
        bail!("--grid {spec:?}: no values");
    }
    Ok((key.trim().to_string(), values))
}

/// One trained run of the sweep: a combination of the grid under one seed.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    pub label: String,
    pub seed: u64,
    pub overrides: Vec<String>,
    pub run_dir: PathBuf,
    pub seconds: f64,
    pub best_epoch: usize,
    /// Thresholds tuned on validation, scored on validation: for choosing between rows. A bag
    /// or blend has its out-of-fold scores here (every train + validation movie, scored by
    /// the member that did not train on it, thresholds chosen on them).
    pub val: SplitScores,
    /// Whether `val` holds out-of-fold scores (a bag or blend).
    pub out_of_fold: bool,
    /// Only with `--test`, once the choice is made.
    pub test: Option<SplitScores>,
}

fn label_of(overrides: &[String]) -> String {
    let raw = overrides
        .iter()
        .map(|o| {
            let (k, v) = o.split_once('=').unwrap_or((o, ""));
            format!("{}={}", k.rsplit('.').next().unwrap_or(k), v)
        })
        .collect::<Vec<_>>()
        .join("_");
    raw.chars()
        .filter(|c| !matches!(c, '[' | ']' | '"' | '\'' | ' '))
        .map(|c| match c {
            ',' => '+',
            c if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '=' | '.') => c,
            _ => '-',
        })
        .collect()
}

pub struct SweepSpec<'a> {
    pub config: &'a Path,
    pub base_overrides: Vec<String>,
    pub grid: Vec<(String, Vec<String>)>,
    /// Every combination once per seed (`seed = N`); empty: once, with the config's seed.
    pub seeds: Vec<u64>,
    /// Also score the test split (read once per run; choose on validation first).
    pub test: bool,
    pub out: PathBuf,
    pub data: Option<PathBuf>,
    pub backend: Option<BackendKind>,
}

/// One run to train: its combination's label and overrides, and its seed when swept.
struct Job {
    label: String,
    seed: Option<u64>,
    overrides: Vec<String>,
}

/// The most runs one sweep may train: far more than a sweep can finish, few enough that
/// listing and checking them all up front stays instant.
pub const MAX_SWEEP_RUNS: usize = 10_000;

/// How many runs the grid and seeds make, refused past `MAX_SWEEP_RUNS` before any is listed
/// (eight keys of 1,000 values each are 10^24 combinations).
fn run_count(spec: &SweepSpec) -> Result<usize> {
    let sizes = spec.grid.iter().map(|(_, v)| v.len());
    sizes
        .chain([spec.seeds.len().max(1)])
        .try_fold(1usize, |n, k| n.checked_mul(k).filter(|&n| n <= MAX_SWEEP_RUNS))
        .ok_or_else(|| {
            let grid: Vec<String> = spec
                .grid
                .iter()
                .map(|(k, v)| format!("{k} ({} values)", v.len()))
                .collect();
            anyhow::anyhow!(
                "--grid {} with {} seed(s) makes more than {MAX_SWEEP_RUNS} runs: sweep fewer values",
                grid.join(" × "),
                spec.seeds.len().max(1)
            )
        })
}

fn jobs(spec: &SweepSpec) -> Result<Vec<Job>> {
    run_count(spec)?;
    if !spec.seeds.is_empty() && spec.grid.iter().any(|(k, _)| k == "seed") {
        bail!("--seeds and --grid seed=… both set the seed: use one of them");
    }
    if let Some(s) = first_repeated(spec.seeds.iter()) {
        bail!("--seeds lists {s} twice");
    }
    if let Some(k) = first_repeated(spec.grid.iter().map(|(k, _)| k)) {
        bail!("--grid {k} is given twice: list its values once, comma-separated");
    }
    // A key both fixed and swept would take whichever comes last, silently.
    let swept =
        |k: &str| spec.grid.iter().any(|(g, _)| g == k) || (k == "seed" && !spec.seeds.is_empty());
    let fixed = spec.base_overrides.iter().filter_map(|o| o.split_once('='));
    if let Some((k, _)) = fixed.map(|(k, v)| (k.trim(), v)).find(|(k, _)| swept(k)) {
        bail!("--set {k} fixes what the sweep varies (--grid or --seeds): give it once");
    }
    let mut combos: Vec<Vec<String>> = vec![Vec::new()];
    for (key, values) in &spec.grid {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values
                    .iter()
                    .map(move |v| [c.clone(), vec![format!("{key}={v}")]].concat())
            })
            .collect();
    }
    let seeds: Vec<Option<u64>> = match spec.seeds.as_slice() {
        [] => vec![None],
        s => s.iter().copied().map(Some).collect(),
    };
    let mut out = Vec::new();
    for combo in combos {
        let label = if combo.is_empty() {
            "base".to_string()
        } else {
            label_of(&combo)
        };
        for &seed in &seeds {
            let seed_set = seed.map(|s| format!("seed={s}"));
            out.push(Job {
                label: label.clone(),
                seed,
                overrides: [spec.base_overrides.clone(), combo.clone()]
                    .into_iter()
                    .flatten()
                    .chain(seed_set)
                    .collect(),
            });
        }
    }
    // Each job trains into `label[/seed-N]`: two jobs there would collide after the first
    // had trained.
    if let Some(j) = first_repeated(out.iter().map(|j| (&j.label, j.seed))) {
        bail!(
            "--grid: two combinations are both named {} (a value listed twice?)",
            j.0
        );
    }
    Ok(out)
}

/// The first item that appeared before.
fn first_repeated<T: Eq + std::hash::Hash + Copy>(mut items: impl Iterator<Item = T>) -> Option<T> {
    let mut seen = std::collections::HashSet::new();
    items.find(|i| !seen.insert(*i))
}

pub fn sweep(spec: &SweepSpec) -> Result<Vec<SweepRow>> {
    let jobs = jobs(spec)?;
    // Validate every combination before spending time on training.
    let configs: Vec<TrainConfig> = jobs
        .iter()
        .map(|j| TrainConfig::load(spec.config, &j.overrides))
        .collect::<Result<_>>()?;
    if let Some((job, _)) = jobs
        .iter()
        .zip(&configs)
        .find(|(_, c)| spec.test && c.data.preprocess.test_ratio <= 0.0)
    {
        bail!(
            "--test: run {} has data.preprocess.test_ratio = 0, so no test split to score",
            job.label
        );
    }
    let mut inputs = vec![spec.config];
    inputs.extend(spec.data.as_deref());
    check_output(&spec.out, OutputKind::Sweep, &inputs)?;
    std::fs::create_dir_all(&spec.out)?;
    write_marker(&spec.out, OutputKind::Sweep)?;
    let mut rows = Vec::new();
    for (job, config) in jobs.iter().zip(configs) {
        let name = match job.seed {
            Some(s) => format!("{} seed {s}", job.label),
            None => job.label.clone(),
        };
        println!("=== sweep {}/{}: {name}", rows.len() + 1, jobs.len());
        let run_dir = match job.seed {
            Some(s) => spec.out.join(&job.label).join(format!("seed-{s}")),
            None => spec.out.join(&job.label),
        };
        rows.push(train_and_score(spec, job, &config, run_dir)?);
        write_tables(&spec.out, spec.config, &rows)?;
    }
    Ok(rows)
}

fn train_and_score(
    spec: &SweepSpec,
    job: &Job,
    config: &TrainConfig,
    run_dir: PathBuf,
) -> Result<SweepRow> {
    let started = Instant::now();
    let summary = train(
        config,
        &TrainOptions {
            data_override: spec.data.clone(),
            out: Some(run_dir.clone()),
            backend: spec.backend,
            ..Default::default()
        },
    )?;
    if summary.interrupted {
        bail!(
            "{}: interrupted; the sweep stops here (the runs before it are in {})",
            run_dir.display(),
            spec.out.join("results.md").display()
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let scored = scores(&summary.run_dir, spec)?;
    Ok(SweepRow {
        label: job.label.clone(),
        seed: config.seed,
        overrides: job.overrides.clone(),
        run_dir,
        seconds,
        best_epoch: scored.best_epoch,
        val: scored.val,
        out_of_fold: scored.out_of_fold,
        test: scored.test,
    })
}

/// What a sweep row shows of a trained run.
struct RunScores {
    best_epoch: usize,
    val: SplitScores,
    out_of_fold: bool,
    test: Option<SplitScores>,
}

/// A single run's validation scores (thresholds tuned on validation), or a bag's or blend's
/// out-of-fold ones; with `--test`, the test split's at the same thresholds.
fn scores(run_dir: &Path, spec: &SweepSpec) -> Result<RunScores> {
    let test_split = spec.test.then_some(Split::Test);
    if let Some(g) = group_scores(run_dir, test_split, spec.backend)? {
        let test = g.preds.map(|p| {
            SplitScores::of(
                &p.genre_metrics(&g.thresholds, &g.genre_names),
                &p.rating_metrics(),
            )
        });
        return Ok(RunScores {
            best_epoch: median(&g.best_epochs),
            val: SplitScores::of(&g.out_of_fold.genres, &g.out_of_fold.rating),
            out_of_fold: true,
            test,
        });
    }
    let run = LoadedRun::open(run_dir, spec.backend)?;
    let (thresholds, val) = run.tuned_thresholds();
    let names = run.prepared.preprocessor.genre_names().to_vec();
    let score = |p: &crate::predictions::Predictions| {
        SplitScores::of(&p.genre_metrics(&thresholds, &names), &p.rating_metrics())
    };
    let test = spec
        .test
        .then(|| score(&run.predict(&run.prepared, Some(Split::Test))));
    Ok(RunScores {
        best_epoch: run.best_epoch,
        val: score(&val),
        out_of_fold: false,
        test,
    })
}

/// The middle best epoch of a bag's members (the lower of the two middle ones; 0 for none).
fn median(epochs: &[usize]) -> usize {
    let mut sorted = epochs.to_vec();
    sorted.sort_unstable();
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_values_split_at_top_level_commas() {
        assert_eq!(
            split_values("late,concat, gmu"),
            vec!["late", "concat", "gmu"]
        );
        assert_eq!(
            split_values(r#"["poster","text"],["meta"]"#),
            vec![r#"["poster","text"]"#, r#"["meta"]"#]
        );
        let (k, v) = parse_grid("model.fusion.kind=late,gmu").unwrap();
        assert_eq!((k.as_str(), v.len()), ("model.fusion.kind", 2));
        assert!(parse_grid("nokey").is_err());
        assert_eq!(
            label_of(&[
                r#"model.modalities=["poster"]"#.into(),
                "optim.lr=1e-3".into()
            ]),
            "modalities=poster_lr=1e-3"
        );
        assert_eq!(
            label_of(&[r#"model.modalities=["poster","text"]"#.into()]),
            "modalities=poster+text"
        );
    }

    #[test]
    fn repeated_seeds_keys_and_values_are_refused_before_training() {
        let spec = |grid: &[&str], seeds: &[u64]| SweepSpec {
            config: Path::new("c.toml"),
            base_overrides: Vec::new(),
            grid: grid.iter().map(|g| parse_grid(g).unwrap()).collect(),
            seeds: seeds.to_vec(),
            test: false,
            out: PathBuf::from("out"),
            data: None,
            backend: None,
        };
        let refused = |s: SweepSpec, says: &str| {
            let e = jobs(&s).err().expect(says).to_string();
            assert!(e.contains(says), "{e}");
        };
        refused(
            spec(&["train.epochs=1,2"], &[7, 11, 7]),
            "--seeds lists 7 twice",
        );
        refused(
            spec(&["optim.lr=1e-3", "optim.lr=1e-4"], &[]),
            "--grid optim.lr is given twice",
        );
        refused(spec(&["train.epochs=1,2,1"], &[]), "both named epochs=1");
        let fixed = |set: &str, grid: &[&str], seeds: &[u64]| SweepSpec {
            base_overrides: vec![set.to_string()],
            ..spec(grid, seeds)
        };
        refused(
            fixed("train.epochs = 3", &["train.epochs=1,2"], &[]),
            "--set train.epochs fixes what the sweep varies",
        );
        refused(fixed("seed=5", &[], &[7, 11]), "--set seed fixes");
        assert!(jobs(&fixed("optim.lr=1e-3", &["train.epochs=1,2"], &[7])).is_ok());
        let thousand: Vec<String> = (1..=1000).map(|i| i.to_string()).collect();
        let wide = |key: &str| format!("{key}={}", thousand.join(","));
        let keys = ["train.epochs", "seed", "optim.lr", "train.patience"];
        let grid: Vec<String> = keys.iter().map(|k| wide(k)).collect();
        let grid: Vec<&str> = grid.iter().map(String::as_str).collect();
        refused(spec(&grid, &[]), "more than 10000 runs");
        refused(spec(&grid[..1], &(0..11).collect::<Vec<_>>()), "11 seed(s)");
        assert_eq!(
            jobs(&spec(&grid[..1], &(0..10).collect::<Vec<_>>()))
                .unwrap()
                .len(),
            10_000
        );
        assert_eq!(
            jobs(&spec(&["train.epochs=1,2"], &[7, 11])).unwrap().len(),
            4
        );
    }
}

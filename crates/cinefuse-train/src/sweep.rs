//! `cinefuse sweep`: train every combination of a grid of config overrides (sequentially, on
//! shared prepared data) and write a comparison table of validation and test metrics.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use cinefuse_data::output_dir::{OutputKind, check_output, write_marker};
use cinefuse_data::split::Split;
use serde::Serialize;

use crate::config::{BackendKind, TrainConfig};
use crate::evaluate::LoadedRun;
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

#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    pub label: String,
    pub overrides: Vec<String>,
    pub run_dir: PathBuf,
    pub seconds: f64,
    pub best_epoch: usize,
    pub val_micro_f1: f64,
    pub val_top1: f64,
    pub val_mae: f64,
    pub test_micro_f1: f64,
    pub test_macro_f1: f64,
    pub test_samples_f1: f64,
    pub test_map: f64,
    pub test_top1: f64,
    pub test_mae: f64,
    pub test_rmse: f64,
    pub test_within_10pct: f64,
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
    pub out: PathBuf,
    pub data: Option<PathBuf>,
    pub backend: Option<BackendKind>,
}

pub fn sweep(spec: &SweepSpec) -> Result<Vec<SweepRow>> {
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
    // Validate every combination before spending time on training.
    let configs: Vec<TrainConfig> = combos
        .iter()
        .map(|c| {
            TrainConfig::load(
                spec.config,
                &[spec.base_overrides.clone(), c.clone()].concat(),
            )
        })
        .collect::<Result<_>>()?;
    let mut inputs = vec![spec.config];
    inputs.extend(spec.data.as_deref());
    check_output(&spec.out, OutputKind::Sweep, &inputs)?;
    std::fs::create_dir_all(&spec.out)?;
    write_marker(&spec.out, OutputKind::Sweep)?;
    let mut rows = Vec::new();
    for (overrides, config) in combos.iter().zip(configs) {
        let label = if overrides.is_empty() {
            "base".to_string()
        } else {
            label_of(overrides)
        };
        println!("=== sweep {}/{}: {label}", rows.len() + 1, combos.len());
        let run_dir = spec.out.join(&label);
        let started = Instant::now();
        let summary = train(
            &config,
            &TrainOptions {
                data_override: spec.data.clone(),
                out: Some(run_dir.clone()),
                backend: spec.backend,
                ..Default::default()
            },
        )?;
        let seconds = started.elapsed().as_secs_f64();
        let run = LoadedRun::open(&summary.run_dir, spec.backend)?;
        let (thresholds, val) = run.tuned_thresholds();
        let test = run.predict(&run.prepared, Some(Split::Test));
        let names = run.prepared.preprocessor.genre_names().to_vec();
        let (vg, vr) = (val.genre_metrics(&thresholds, &names), val.rating_metrics());
        let (tg, tr) = (
            test.genre_metrics(&thresholds, &names),
            test.rating_metrics(),
        );
        rows.push(SweepRow {
            label,
            overrides: [spec.base_overrides.clone(), overrides.clone()].concat(),
            run_dir,
            seconds,
            best_epoch: run.best_epoch,
            val_micro_f1: vg.micro_f1,
            val_top1: vg.top1,
            val_mae: vr.mae,
            test_micro_f1: tg.micro_f1,
            test_macro_f1: tg.macro_f1,
            test_samples_f1: tg.samples_f1,
            test_map: tg.map,
            test_top1: tg.top1,
            test_mae: tr.mae,
            test_rmse: tr.rmse,
            test_within_10pct: tr.within_10pct,
        });
        write_tables(&spec.out, spec.config, &rows)?;
    }
    Ok(rows)
}

/// Writes `results.md` and `results.csv` (rewritten after every run, so partial sweeps keep theirs).
pub fn write_tables(out: &Path, config: &Path, rows: &[SweepRow]) -> Result<()> {
    let mut md = String::from(
        "| run | val micro-F1 | val top-1 | val MAE | test micro-F1 | test macro-F1 | test samples-F1 | test mAP | test top-1 | test MAE | test RMSE | test within 10 % | best epoch | seconds |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut csv = String::from(
        "run,overrides,val_micro_f1,val_top1,val_mae,test_micro_f1,test_macro_f1,test_samples_f1,test_map,test_top1,test_mae,test_rmse,test_within_10pct,best_epoch,seconds\n",
    );
    for r in rows {
        md.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:.0} |\n",
            r.label, r.val_micro_f1, r.val_top1, r.val_mae, r.test_micro_f1, r.test_macro_f1, r.test_samples_f1, r.test_map, r.test_top1, r.test_mae, r.test_rmse, r.test_within_10pct, r.best_epoch, r.seconds
        ));
        csv.push_str(&format!(
            "{},\"{}\",{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{},{:.1}\n",
            r.label,
            r.overrides.join(" ").replace('"', "'"),
            r.val_micro_f1, r.val_top1, r.val_mae, r.test_micro_f1, r.test_macro_f1, r.test_samples_f1, r.test_map, r.test_top1, r.test_mae, r.test_rmse, r.test_within_10pct, r.best_epoch, r.seconds
        ));
    }
    md.push_str("\nReproduce a row with `cinefuse train --config ");
    md.push_str(&config.display().to_string());
    md.push_str(" --set KEY=VALUE …` using the row's overrides (see results.csv).\n");
    std::fs::write(out.join("results.md"), md)?;
    std::fs::write(out.join("results.csv"), csv)?;
    Ok(())
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
}

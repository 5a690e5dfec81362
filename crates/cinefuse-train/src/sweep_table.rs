//! The sweep's tables: `results.csv` with one line per trained run, and `results.md` with one
//! line per combination, each score the mean over its seeds with their range beside it.

use std::path::Path;

use anyhow::Result;

use crate::metrics::SplitScores;
use crate::sweep::SweepRow;

/// Reads one score of a split.
type Score = fn(&SplitScores) -> f64;

/// The tables' score columns: the Markdown header, the CSV name and how to read the score.
const SCORES: [(&str, &str, Score); 6] = [
    ("micro-F1", "micro_f1", |s| s.micro_f1),
    ("macro-F1", "macro_f1", |s| s.macro_f1),
    ("top-1", "top1", |s| s.top1),
    ("mAP", "map", |s| s.map),
    ("MAE", "mae", |s| s.mae),
    ("within 10 %", "within_10pct", |s| s.within_10pct),
];

/// Writes `results.md` and `results.csv` (rewritten after every run, so partial sweeps keep theirs).
pub fn write_tables(out: &Path, config: &Path, rows: &[SweepRow]) -> Result<()> {
    std::fs::write(out.join("results.md"), markdown(config, rows))?;
    std::fs::write(out.join("results.csv"), csv(rows))?;
    Ok(())
}

/// The rows of each combination, in the order the sweep ran them.
fn by_combination(rows: &[SweepRow]) -> Vec<Vec<&SweepRow>> {
    let mut groups: Vec<Vec<&SweepRow>> = Vec::new();
    for r in rows {
        match groups.iter_mut().find(|g| g[0].label == r.label) {
            Some(g) => g.push(r),
            None => groups.push(vec![r]),
        }
    }
    groups
}

/// `mean` for one value, `mean (min–max)` for several.
fn mean_and_range(values: &[f64]) -> String {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if values.len() == 1 {
        format!("{mean:.3}")
    } else {
        format!("{mean:.3} ({lo:.3}–{hi:.3})")
    }
}

fn markdown(config: &Path, rows: &[SweepRow]) -> String {
    let with_test = rows.iter().any(|r| r.test.is_some());
    let mut header = vec!["run".to_string(), "seeds".to_string()];
    header.extend(SCORES.iter().map(|(name, _, _)| format!("val {name}")));
    if with_test {
        header.extend(SCORES.iter().map(|(name, _, _)| format!("test {name}")));
    }
    header.extend(["best epoch".to_string(), "seconds".to_string()]);
    let mut md = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for group in by_combination(rows) {
        let mut cells = vec![group[0].label.clone(), group.len().to_string()];
        let column = |split: fn(&SweepRow) -> Option<SplitScores>,
                      read: fn(&SplitScores) -> f64| {
            let values: Vec<f64> = group
                .iter()
                .filter_map(|r| split(r))
                .map(|s| read(&s))
                .collect();
            if values.is_empty() {
                String::new()
            } else {
                mean_and_range(&values)
            }
        };
        cells.extend(
            SCORES
                .iter()
                .map(|(_, _, read)| column(|r| Some(r.val), *read)),
        );
        if with_test {
            cells.extend(SCORES.iter().map(|(_, _, read)| column(|r| r.test, *read)));
        }
        let epochs: Vec<String> = group.iter().map(|r| r.best_epoch.to_string()).collect();
        let seconds = group.iter().map(|r| r.seconds).sum::<f64>() / group.len() as f64;
        cells.extend([epochs.join(", "), format!("{seconds:.0}")]);
        md.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    md.push_str(&format!(
        "\nValidation scores use thresholds tuned on validation: choose on them.{} Each cell \
         with several seeds is their mean (range).{} Reproduce a run with `cinefuse train \
         --config {} --set KEY=VALUE …` using its overrides (results.csv).\n",
        if rows.iter().any(|r| r.out_of_fold) {
            " A bag's or blend's are its out-of-fold scores (every train + validation movie, \
             scored by the member that did not train on it), and its best epoch the median of \
             its first bag's members'."
        } else {
            ""
        },
        if with_test {
            ""
        } else {
            " Test scores: `--test`, once the choice is made."
        },
        config.display()
    ));
    md
}

fn csv(rows: &[SweepRow]) -> String {
    let mut header = vec!["run".to_string(), "seed".into(), "overrides".into()];
    for split in ["val", "test"] {
        header.extend(SCORES.iter().map(|(_, n, _)| format!("{split}_{n}")));
    }
    header.extend(["best_epoch".to_string(), "seconds".into()]);
    let mut csv = header.join(",") + "\n";
    for r in rows {
        let mut cells = vec![
            r.label.clone(),
            r.seed.to_string(),
            format!("\"{}\"", r.overrides.join(" ").replace('"', "'")),
        ];
        for split in [Some(r.val), r.test] {
            cells.extend(SCORES.iter().map(|(_, _, read)| match &split {
                Some(s) => format!("{:.4}", read(s)),
                None => String::new(),
            }));
        }
        cells.extend([r.best_epoch.to_string(), format!("{:.1}", r.seconds)]);
        csv.push_str(&(cells.join(",") + "\n"));
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, seed: u64, micro_f1: f64, test: bool) -> SweepRow {
        let scores = SplitScores {
            micro_f1,
            macro_f1: 0.5,
            top1: 0.8,
            map: 0.6,
            mae: 0.4,
            within_10pct: 0.8,
        };
        SweepRow {
            label: label.into(),
            seed,
            overrides: vec![format!("seed={seed}")],
            run_dir: "x".into(),
            seconds: 10.0,
            best_epoch: seed as usize,
            val: scores,
            out_of_fold: false,
            test: test.then_some(scores),
        }
    }

    #[test]
    fn one_line_per_combination_with_mean_and_range_over_seeds() {
        let rows = [
            row("a", 1, 0.60, false),
            row("b", 1, 0.70, false),
            row("a", 2, 0.64, false),
        ];
        let md = markdown(Path::new("c.toml"), &rows);
        assert!(
            md.contains("| a | 2 | 0.620 (0.600–0.640) | 0.500 (0.500–0.500) |"),
            "{md}"
        );
        assert!(md.contains("| b | 1 | 0.700 | 0.500 |"), "{md}");
        assert!(md.contains("| 1, 2 | 10 |"), "{md}");
        assert!(
            !md.contains("test micro-F1") && md.contains("`--test`"),
            "{md}"
        );
        assert!(!md.contains("out-of-fold"), "{md}");
        let bagged = [SweepRow {
            out_of_fold: true,
            ..rows[0].clone()
        }];
        let md = markdown(Path::new("c.toml"), &bagged);
        assert!(md.contains("are its out-of-fold scores"), "{md}");
        let csv = csv(&rows);
        assert_eq!(csv.lines().count(), 4, "header + one line per run: {csv}");
        assert!(
            csv.lines()
                .nth(3)
                .unwrap()
                .starts_with("a,2,\"seed=2\",0.6400,"),
            "{csv}"
        );
        assert!(
            csv.lines().nth(1).unwrap().contains(",,,,,,"),
            "no test scores: {csv}"
        );
    }

    #[test]
    fn test_columns_only_when_scored() {
        let md = markdown(Path::new("c.toml"), &[row("a", 1, 0.6, true)]);
        assert!(
            md.contains("test micro-F1") && !md.contains("`--test`"),
            "{md}"
        );
        assert_eq!(
            md.lines().next().unwrap().matches('|').count(),
            2 + 2 * 6 + 2 + 1
        );
    }
}

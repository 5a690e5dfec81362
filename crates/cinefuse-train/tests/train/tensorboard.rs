//! (imported into the `train` test binary)
//! TensorBoard event files, read back by TensorBoard's own reader (`EventAccumulator`, from the
//! `tensorboard` package that `scripts/setup_python.sh` installs; SKIPPED without it).

use std::io::Write;

use cinefuse_train::run_dir::read_metrics;
use cinefuse_train::tensorboard::TENSORBOARD_DIR;

use super::{serial, tiny_config, train_into};

/// Every scalar series in a log folder, as TensorBoard reads it: {tag: [[step, value], ...]}.
const READ_SCALARS: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
acc.Reload()
print(json.dumps({t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}))
"#;

#[test]
fn tensorboard_reads_every_epoch_metric_and_step_of_a_run() {
    let _guard = serial();
    let Some(python) = super::python_with("tensorboard") else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: no Python with the tensorboard package (scripts/setup_python.sh installs it)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config(dir.path(), "");
    config.train.epochs = 3;
    config.train.tensorboard = true;
    let run = dir.path().join("run");
    let summary = train_into(&config, &run).unwrap();
    let dir = run.join(TENSORBOARD_DIR);
    let args: [&std::ffi::OsStr; 3] = ["-c".as_ref(), READ_SCALARS.as_ref(), dir.as_os_str()];
    let out = super::run_python(&python, &args);
    let scalars: serde_json::Value = serde_json::from_slice(&out).unwrap();

    // metrics.jsonl as plain JSON, independent of the type that writes it.
    let history: Vec<serde_json::Value> =
        std::fs::read_to_string(run.join(cinefuse_train::run_dir::METRICS_FILE))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(history.len(), 3);
    assert_eq!(read_metrics(&run).unwrap().len(), 3, "and read back typed");
    for key in [
        "train_loss",
        "val_loss",
        "val_micro_f1",
        "val_top1",
        "val_mae",
        "lr",
    ] {
        let series = scalars[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key}"));
        assert_eq!(series.len(), 3, "{key}");
        for (point, line) in series.iter().zip(&history) {
            assert_eq!(point[0], line["epoch"], "{key}: one point per epoch");
            let (got, want) = (point[1].as_f64().unwrap(), line[key].as_f64().unwrap());
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{key}: {got} vs {want}"
            );
        }
    }
    // One loss and learning rate per optimizer step, steps 1..=N.
    let steps = history.last().unwrap()["step"].as_u64().unwrap();
    for tag in ["step/train_loss", "step/lr"] {
        let series = scalars[tag].as_array().unwrap();
        let numbers: Vec<u64> = series.iter().map(|p| p[0].as_u64().unwrap()).collect();
        assert_eq!(numbers, (1..=steps).collect::<Vec<_>>(), "{tag}");
    }
    assert!(
        scalars.get("step/loss_scale").is_none(),
        "f32 has no loss scale"
    );
    assert_eq!(summary.epochs_completed, 3);
}

#[test]
fn a_run_without_tensorboard_writes_no_event_files() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config(dir.path(), "");
    config.train.epochs = 1;
    let run = dir.path().join("run");
    train_into(&config, &run).unwrap();
    assert!(!run.join(TENSORBOARD_DIR).exists());
}

//! (imported into the `cli` test binary)
//! Hostile and careless input: no command destroys, overwrites or reads what it was not
//! given, no flag value panics, and wrong values are refused by name.

use std::path::Path;
use std::process::{Command, Stdio};

use super::{TINY, cinefuse, fails, ok, train_tiny};

fn digest(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn out_folders_never_swallow_inputs_or_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tiny.toml"), TINY).unwrap();
    std::fs::write(d.join("notes.txt"), "mine").unwrap();
    let e = fails(d, &["synth", "--out", ".", "--n", "20"]);
    assert!(e.contains("not written by cinefuse"), "{e}");
    assert_eq!(
        std::fs::read_to_string(d.join("notes.txt")).unwrap(),
        "mine"
    );

    ok(d, &["synth", "--out", "demo", "--n", "60", "--seed", "3"]);
    let dataset = digest(&d.join("demo"));
    let e = fails(d, &["prepare", "--data", "demo", "--out", "demo"]);
    assert!(e.contains("is the input"), "{e}");
    let e = fails(d, &["eda", "--data", "demo", "--out", "."]);
    assert!(e.contains("contains the input"), "{e}");
    assert_eq!(digest(&d.join("demo")), dataset, "the dataset is untouched");

    train_tiny(d, "runs/a", &["train.epochs=1"]);
    let run = digest(&d.join("runs/a"));
    let e = fails(d, &["export", "--run", "runs/a", "--out", "runs/a"]);
    assert!(e.contains("is the input"), "{e}");
    let e = fails(d, &["export", "--run", "runs/a", "--out", "runs"]);
    assert!(e.contains("contains the input"), "{e}");
    let e = fails(d, &["train", "--config", "tiny.toml", "--out", "runs/a"]);
    assert!(
        e.contains("already holds a run") && e.contains("--resume"),
        "{e}"
    );
    let e = fails(d, &["train", "--config", "tiny.toml", "--out", "."]);
    assert!(e.contains("contains the input demo"), "{e}");
    assert_eq!(digest(&d.join("runs/a")), run, "the run is untouched");
    assert_eq!(std::fs::read_to_string(d.join("tiny.toml")).unwrap(), TINY);

    // A folder written by cinefuse as an export may be exported over again.
    ok(d, &["export", "--run", "runs/a", "--out", "model"]);
    ok(d, &["export", "--run", "runs/a", "--out", "model"]);
}

#[test]
fn a_run_being_trained_is_locked_against_a_second_process() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tiny.toml"), TINY).unwrap();
    ok(d, &["synth", "--out", "demo", "--n", "120", "--seed", "3"]);
    let mut first = Command::new(env!("CARGO_BIN_EXE_cinefuse"))
        .args([
            "train",
            "--config",
            "tiny.toml",
            "--set",
            "train.epochs=400",
            "--out",
            "runs/l",
        ])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = d.join("runs/l/.lock");
    let held_by = |pid: u32| {
        (0..1200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            d.join("runs/l/config.toml").exists()
                && std::fs::read_to_string(&lock).is_ok_and(|t| t.contains(&format!("pid {pid} ")))
        })
    };
    assert!(held_by(first.id()), "the first process took the lock");
    let e = fails(d, &["train", "--resume", "runs/l"]);
    let holder = format!("pid {}", first.id());
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        e.contains("another process is training") && e.contains(&holder),
        "{e}"
    );
    // Killed, the process no longer holds the lock: a resume takes it.
    let mut second = Command::new(env!("CARGO_BIN_EXE_cinefuse"))
        .args(["train", "--resume", "runs/l"])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let resumed = held_by(second.id());
    second.kill().unwrap();
    second.wait().unwrap();
    assert!(resumed, "the lock of a killed process is free");
}

#[test]
fn no_flag_value_panics_and_bad_numbers_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (flag, value) in [
        ("--timeout", "nan"),
        ("--timeout", "1e30"),
        ("--timeout", "-1"),
        ("--timeout", "0"),
        ("--rate", "nan"),
        ("--rate", "1e-300"),
        ("--rate", "inf"),
        ("--concurrency", "0"),
        ("--retries", "-2"),
    ] {
        let arg = format!("{flag}={value}");
        let out = cinefuse(d, &["scrape", "--id", "tt0000001", "--out", "s", &arg]);
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {e}");
        assert!(
            !e.contains("panicked") && e.contains(flag),
            "{flag} {value}: {e}"
        );
    }
    assert!(!d.join("s").exists());

    std::fs::write(d.join("ok.toml"), "name = \"x\"\n").unwrap();
    let e = fails(
        d,
        &[
            "config",
            "check",
            "ok.toml",
            "--set",
            "train.epochs=\"two\"",
        ],
    );
    assert!(
        e.contains("--set train.epochs") && e.contains("train.epochs"),
        "{e}"
    );
    let e = fails(
        d,
        &[
            "config",
            "check",
            "ok.toml",
            "--set",
            "optim.weight_decay=nan",
        ],
    );
    assert!(
        e.contains("optim.weight_decay") && e.contains("finite"),
        "{e}"
    );
}

#[test]
fn scrape_never_truncates_a_dataset_it_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["synth", "--out", "demo", "--n", "30", "--seed", "3"]);
    let before = digest(&d.join("demo"));
    // The folder is refused before any request is made (nothing listens on port 9).
    let e = fails(
        d,
        &[
            "scrape",
            "--id",
            "tt0000001",
            "--out",
            "demo",
            "--base-url",
            "http://127.0.0.1:9",
        ],
    );
    assert!(e.contains("not an earlier scrape"), "{e}");
    assert_eq!(digest(&d.join("demo")), before);
}

#[test]
fn predict_validates_its_input_like_prepare() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tiny.toml"), TINY).unwrap();
    ok(d, &["synth", "--out", "demo", "--n", "60", "--seed", "3"]);
    train_tiny(d, "runs/p", &["train.epochs=1"]);
    ok(d, &["export", "--run", "runs/p", "--out", "model"]);
    fn predict<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        [&["predict", "--model", "model"][..], extra].concat()
    }
    for (args, says) in [
        (vec!["--year", "99999"], "year"),
        (vec!["--year", "0"], "year"),
        (vec!["--runtime", "NaN"], "runtime_min"),
        (vec!["--runtime=-5"], "runtime_min"),
        (vec!["--movie", r#"{"rating": 42}"#], "field `rating`"),
        (vec!["--movie", r#"{"ratng": 5}"#], "unknown field `ratng`"),
        (
            vec!["--movie", r#"{"poster": "/etc/passwd"}"#],
            "leaves the dataset folder",
        ),
        (vec![], "nothing to predict"),
    ] {
        let e = fails(d, &predict(&args));
        assert!(e.contains(says) && !e.contains("panicked"), "{args:?}: {e}");
    }
    let text = ok(d, &predict(&["--plot", "a story", "--runtime", "1990"]));
    assert!(
        text.contains("warning:") && text.contains("runtime_min"),
        "{text}"
    );
    let text = ok(d, &predict(&["--plot", "a story", "--runtime", "100"]));
    assert!(!text.contains("warning:"), "{text}");
}

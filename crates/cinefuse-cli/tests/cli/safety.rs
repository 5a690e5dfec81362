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
    // Resamples that would keep eval busy for hours: refused by the flag's range.
    let out = cinefuse(d, &["eval", "--run", "r", "--bootstrap", "100000000"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(2) && e.contains("--bootstrap") && e.contains("0..=100000"),
        "{e}"
    );
    // A negative number given as its own argument is read as the flag's value and refused by
    // its range, not taken for an unknown flag.
    for args in [
        &["scrape", "--id", "tt0000001", "--out", "s", "--rate", "-1"][..],
        &[
            "ensemble",
            "--runs",
            "a,b",
            "--out",
            "e",
            "--rating-trees",
            "--tree-l2",
            "-5",
        ],
        &[
            "ensemble",
            "--runs",
            "a,b",
            "--out",
            "e",
            "--plot-neighbours",
            "--neighbour-prior",
            "-1",
        ],
    ] {
        let out = cinefuse(d, args);
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            !e.contains("unexpected argument") && (e.contains("must be") || e.contains("expected")),
            "{args:?}: {e}"
        );
    }
    // Counts that would abort on allocation or time nothing.
    for (args, flag) in [
        (&["synth", "--out", "s", "--n", "0"][..], "--n"),
        (&["synth", "--out", "s", "--n", "99999999999"][..], "--n"),
        (&["bench", "--steps", "0"][..], "--steps"),
        (&["bench", "--reps", "0"][..], "--reps"),
    ] {
        let out = cinefuse(d, args);
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {e}");
        assert!(!e.contains("panicked") && e.contains(flag), "{args:?}: {e}");
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
            "data.synth_if_missing=99999999",
        ],
    );
    assert!(e.contains("data.synth_if_missing = 99999999"), "{e}");
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
    // A scrape in which every title fails is a failure, not a success with nothing in it
    // (a site that answers 404 to everything, robots.txt included).
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let base = format!(
        "http://127.0.0.1:{}",
        server.server_addr().to_ip().unwrap().port()
    );
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let _ = req.respond(tiny_http::Response::empty(404));
        }
    });
    let e = fails(
        d,
        &[
            "scrape",
            "--id",
            "tt0000001",
            "--id",
            "tt0000002",
            "--out",
            "empty",
            "--base-url",
            &base,
            "--retries",
            "0",
            "--rate",
            "50",
        ],
    );
    assert!(e.contains("every one of the 2 titles failed"), "{e}");
}

#[test]
fn predict_validates_its_input_like_prepare() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tiny.toml"), TINY).unwrap();
    ok(d, &["synth", "--out", "demo", "--n", "60", "--seed", "3"]);
    train_tiny(d, "runs/p", &["train.epochs=1"]);
    ok(d, &["export", "--run", "runs/p", "--out", "model"]);
    let fifo = std::ffi::CString::new(d.join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: a valid path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    fn predict<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        [&["predict", "--model", "model"][..], extra].concat()
    }
    for (args, says) in [
        (vec!["--year", "99999"], "year"),
        (vec!["--year", "0"], "year"),
        (vec!["--runtime", "NaN"], "runtime_min"),
        (vec!["--runtime=-5"], "runtime_min"),
        (vec!["--runtime", "-5"], "runtime_min"),
        (vec!["--runtime", "1e39"], "out of range, got 1e39"),
        (
            vec!["--movie", r#"{"year": 99999999999}"#],
            "got 99999999999",
        ),
        (vec!["--year", "-1999"], "year"),
        (vec!["--poster", "/dev/zero"], "not a regular file"),
        (vec!["--poster", "/dev/urandom"], "not a regular file"),
        (vec!["--movie", "@/dev/zero"], "not a regular file"),
        (vec!["--jsonl", "/dev/zero"], "not a regular file"),
        (vec!["--jsonl", "fifo"], "not a regular file"),
        (
            vec!["--poster", "fifo", "--plot", "x"],
            "not a regular file",
        ),
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
    // Every training movie of this tiny set had a year: a movie without one is said to be an
    // extrapolation, and with one (and values near the training data's) nothing is said.
    let text = ok(d, &predict(&["--plot", "a story", "--runtime", "100"]));
    assert!(
        text.contains("warning: input: no year, which 32 of the 32 movies the model's inputs"),
        "{text}"
    );
    let usual = ["--plot", "a story", "--runtime", "100", "--year", "2001"];
    let text = ok(d, &predict(&usual));
    assert!(!text.contains("warning:"), "{text}");
    // With nothing but a plot the rating has nothing it leans on: said, and still predicted.
    let text = ok(d, &predict(&["--plot", "a story"]));
    assert!(
        text.contains("warning: input: no metadata") && text.contains("rating"),
        "{text}"
    );

    // A manifest that disagrees with the weights is refused by field, never a panic (nor an
    // abort: sizes are allocated before the weights are read).
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("model/manifest.json")).unwrap()).unwrap();
    let first_genre = manifest["genres"][0].clone();
    let other_modality = match manifest["modalities"] == serde_json::json!(["meta"]) {
        true => serde_json::json!(["text"]),
        false => serde_json::json!(["meta"]),
    };
    for (field, value, says) in [
        (
            "/thresholds",
            serde_json::json!([0.5]),
            "thresholds has 1 values",
        ),
        (
            "/genres",
            serde_json::json!(["Drama"]),
            "genres has 1 names",
        ),
        ("/genres/1", first_genre, "genres[1] = "),
        (
            "/interval_half_width",
            serde_json::json!(-1.0),
            "interval_half_width = -1",
        ),
        (
            "/bag_sets",
            serde_json::json!(2),
            "bag_sets = 2: expected a whole number of sets in the 1 member file(s)",
        ),
        (
            "/format_version",
            serde_json::json!(5),
            "format_version = 5",
        ),
        (
            "/backbones",
            serde_json::json!([{"section": "model.text", "dir": "../../elsewhere", "sha256": "0"}]),
            "backbones: dir \"../../elsewhere\"",
        ),
        (
            "/backbones",
            serde_json::json!([{"section": "model.text", "dir": "../backbones/x", "sha256": "0"}]),
            "not a blend with this folder as a part",
        ),
        ("/rating_scale/std", serde_json::json!(0.0), "std = 0"),
        (
            "/shapes/max_tokens",
            serde_json::json!(4_000_000_000u64),
            "shapes.max_tokens = 4000000000: expected 1..=4096",
        ),
        (
            "/shapes/max_tokens",
            serde_json::json!(3),
            "but preprocess.json gives",
        ),
        ("/modalities", other_modality, "model.modalities"),
        (
            "/genre_stacking_without_plot",
            serde_json::json!({"coefficients": [[1.0]]}),
            "genre_stacking_without_plot needs a genre_stacking",
        ),
        (
            "/content_rating",
            serde_json::json!({"file": "content_rating.safetensors"}),
            "content_rating: only a blend (with parts) has one",
        ),
    ] {
        let bad = d.join("bad-model");
        let _ = std::fs::remove_dir_all(&bad);
        std::fs::create_dir(&bad).unwrap();
        for e in std::fs::read_dir(d.join("model")).unwrap().flatten() {
            std::fs::copy(e.path(), bad.join(e.file_name())).unwrap();
        }
        let mut m = manifest.clone();
        // Set the field, adding it when the export left it out (`bag_sets` of one set).
        let (parent, key) = field.rsplit_once('/').unwrap();
        match m.pointer_mut(parent).unwrap() {
            serde_json::Value::Array(a) => a[key.parse::<usize>().unwrap()] = value,
            object => object[key] = value,
        }
        std::fs::write(bad.join("manifest.json"), m.to_string()).unwrap();
        let e = fails(d, &["predict", "--model", "bad-model", "--plot", "a story"]);
        assert!(e.contains(says) && !e.contains("panicked"), "{field}: {e}");
    }
    // A model without an interval (too few rated validation movies) still predicts, and says so.
    let mut m = manifest.clone();
    m["interval_half_width"] = serde_json::Value::Null;
    std::fs::write(d.join("bad-model/manifest.json"), m.to_string()).unwrap();
    let text = ok(d, &["predict", "--model", "bad-model", "--plot", "a story"]);
    assert!(text.contains("no interval"), "{text}");
    // Weights that are a FIFO (nothing ever writes to it): refused by name, not a hang.
    std::fs::remove_file(d.join("bad-model/model.bpk")).unwrap();
    std::os::unix::fs::symlink(d.join("fifo"), d.join("bad-model/model.bpk")).unwrap();
    let e = fails(d, &["predict", "--model", "bad-model", "--plot", "a story"]);
    assert!(
        e.contains("model.bpk") && e.contains("not a regular file"),
        "{e}"
    );
}

#[test]
fn prepared_folders_are_keyed_by_dataset_never_linked_and_leftovers_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tiny.toml"), TINY).unwrap();
    // Two datasets with the same folder name: each gets its own auto-prepared folder, and
    // training on the second leaves the first run's prepared data intact.
    ok(d, &["synth", "--out", "a/demo", "--n", "60", "--seed", "3"]);
    ok(d, &["synth", "--out", "b/demo", "--n", "60", "--seed", "4"]);
    let one = ["train.epochs=1"];
    let train_on = |data: &str, out: &str| {
        let mut args = vec![
            "train",
            "--config",
            "tiny.toml",
            "--data",
            data,
            "--out",
            out,
        ];
        for s in one {
            args.extend(["--set", s]);
        }
        ok(d, &args)
    };
    train_on("a/demo", "runs/a");
    train_on("b/demo", "runs/b");
    let prepared: Vec<_> = std::fs::read_dir(d.join("prepared"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        prepared.len(),
        2,
        "one prepared folder per dataset: {prepared:?}"
    );
    ok(d, &["eval", "--run", "runs/a"]);
    ok(d, &["eval", "--run", "runs/b"]);

    // A train that fails on its data leaves no half-made run folder: the same command with
    // good data then just works.
    std::fs::create_dir(d.join("bad")).unwrap();
    std::fs::write(d.join("bad/movies.jsonl"), "{not json\n").unwrap();
    let e = fails(
        d,
        &[
            "train",
            "--config",
            "tiny.toml",
            "--data",
            "bad",
            "--out",
            "runs/c",
        ],
    );
    assert!(e.contains("movies.jsonl"), "{e}");
    assert!(
        !d.join("runs/c").exists(),
        "the failed run's folder is gone"
    );
    train_on("a/demo", "runs/c");

    // A symlinked --out is refused and the link left as it is.
    std::fs::create_dir(d.join("real")).unwrap();
    std::os::unix::fs::symlink(d.join("real"), d.join("link")).unwrap();
    let e = fails(d, &["prepare", "--data", "a/demo", "--out", "link"]);
    assert!(e.contains("symbolic link"), "{e}");
    assert!(
        d.join("link")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_dir(d.join("real")).unwrap().count(), 0);

    // What a killed prepare left beside its output is cleaned by the next one.
    std::fs::create_dir(d.join(".p.partial-99999")).unwrap();
    ok(d, &["prepare", "--data", "a/demo", "--out", "p"]);
    std::fs::create_dir(d.join(".p.old-99998")).unwrap();
    ok(d, &["prepare", "--data", "a/demo", "--out", "p"]);
    let hidden: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".p."))
        .collect();
    assert!(hidden.is_empty(), "left behind: {hidden:?}");
}

#[test]
fn a_fifo_where_a_poster_should_be_is_a_bad_record_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["synth", "--out", "demo", "--n", "40", "--seed", "3"]);
    let mut posters: Vec<_> = std::fs::read_dir(d.join("demo/posters"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    posters.sort();
    std::fs::remove_file(&posters[0]).unwrap();
    let fifo = std::ffi::CString::new(posters[0].to_str().unwrap()).unwrap();
    // SAFETY: a valid path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    // Nothing ever writes to the FIFO: opening it for reading the usual way would block.
    let e = fails(d, &["prepare", "--data", "demo", "--out", "p"]);
    assert!(e.contains("not a regular file"), "{e}");
    let text = ok(
        d,
        &["prepare", "--data", "demo", "--out", "p", "--skip-bad"],
    );
    assert!(text.contains("skipped") || text.contains("bad"), "{text}");
}

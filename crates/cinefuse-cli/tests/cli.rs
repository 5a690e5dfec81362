//! End-to-end tests of the `cinefuse` binary on tiny generated data.

#[path = "cli/portable.rs"]
mod portable;
#[path = "cli/safety.rs"]
mod safety;
#[path = "cli/serve.rs"]
mod serve;

use std::path::Path;
use std::process::{Command, Output};

/// This package's folder: Cargo's value when it runs the test (right even when the binary was
/// built from another checkout sharing the target folder), else the one compiled in.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}

fn cinefuse(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cinefuse"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = cinefuse(dir, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "cinefuse {args:?} failed:\n{text}");
    text
}

/// `cinefuse train --config tiny.toml --out OUT` with `--set` overrides; it must succeed.
fn train_tiny(dir: &Path, out: &str, sets: &[&str]) -> String {
    let mut args = vec!["train", "--config", "tiny.toml", "--out", out];
    for s in sets {
        args.extend(["--set", s]);
    }
    ok(dir, &args)
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let out = cinefuse(dir, args);
    assert!(!out.status.success(), "cinefuse {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every option of every command says what it takes in `--help`: a bare `--run <RUN>` leaves
/// a user guessing which folder. Walks the commands as `--help` lists them.
#[test]
fn every_option_has_help_text() {
    let dir = tempfile::tempdir().unwrap();
    let mut missing = Vec::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = ok(dir.path(), &args);
        let lines: Vec<&str> = help.lines().collect();
        let mut in_commands = false;
        for (i, line) in lines.iter().enumerate() {
            if !line.starts_with(' ') {
                in_commands = line.starts_with("Commands:");
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            if in_commands && words.first().is_some_and(|w| *w != "help") {
                todo.push([path.clone(), vec![words[0].to_string()]].concat());
            }
            // An option's line starts with it (`-h, --help` with its short form first).
            let short = words
                .first()
                .is_some_and(|w| w.len() == 3 && w.starts_with('-'));
            let Some(flag) = words
                .get(usize::from(short))
                .filter(|w| w.starts_with("--"))
            else {
                continue;
            };
            // The text follows the flag (and its value), or sits on the next, deeper line.
            let said = words
                .iter()
                .skip_while(|w| !w.starts_with("--"))
                .skip(1)
                .any(|w| {
                    !w.starts_with('<')
                        && !w.starts_with("[default")
                        && !w.ends_with("...")
                        && !w.ends_with(']')
                });
            let below = lines.get(i + 1).is_some_and(|next| {
                let depth = |l: &str| l.len() - l.trim_start().len();
                depth(next) > depth(line) && !next.trim_start().starts_with('-')
            });
            if !said && !below && *flag != "--help" && *flag != "--version" {
                missing.push(format!("cinefuse {} {flag}", path.join(" ")));
            }
        }
    }
    assert!(missing.is_empty(), "options without help: {missing:?}");
}

const TINY: &str = r#"
name = "tiny"
seed = 1
[data]
dataset = "demo"
prepared = "prepared/demo"
[data.preprocess]
image_width = 16
image_height = 24
tokenizer = "wordlevel"
vocab_size = 300
max_tokens = 16
min_genre_count = 2
val_ratio = 0.2
test_ratio = 0.2
[model]
embed_dim = 16
[model.poster]
widths = [4, 8]
[model.text]
kind = "transformer"
d_model = 16
n_heads = 2
d_ff = 32
n_layers = 1
[model.meta]
hidden = 16
[model.fusion]
kind = "attention"
hidden = 16
n_heads = 2
[optim]
lr = 3e-3
[schedule]
warmup_steps = 3
[train]
epochs = 3
batch_size = 16
early_stopping_patience = 0
[backend]
kind = "flex"
"#;

#[test]
fn synth_prepare_train_eval_export_predict() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tiny.toml"), TINY).unwrap();
    ok(d, &["synth", "--out", "demo", "--n", "600", "--seed", "4"]);
    assert!(d.join("demo/movies.jsonl").exists());
    let text = ok(
        d,
        &[
            "prepare",
            "--data",
            "demo",
            "--out",
            "prepared/demo",
            "--config",
            "tiny.toml",
        ],
    );
    assert!(
        text.contains("splits") && text.contains("posters cached"),
        "{text}"
    );
    ok(d, &["config", "check", "tiny.toml"]);
    // As `train` takes it, too.
    let text = ok(d, &["config", "check", "--config", "tiny.toml"]);
    assert!(text.contains("tiny.toml: ok"), "{text}");

    // Enough steps for the tiny model to beat the baselines (checked below).
    let text = train_tiny(d, "runs/t", &["train.epochs=10", "optim.lr=1e-2"]);
    assert!(
        text.contains("reusing prepared data"),
        "prepared data is reused: {text}"
    );
    assert!(text.contains("backend: flex"), "{text}");
    assert!(
        text.contains("parameters:") && text.contains("poster encoder"),
        "{text}"
    );
    let run = d.join("runs/t");
    for f in [
        "config.toml",
        "run.json",
        "metrics.jsonl",
        "best/model.bpk",
        "checkpoints/epoch-0010/model.bpk",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 10);
    let loss = |i: usize| lines[i]["train_loss"].as_f64().unwrap();
    assert!(
        loss(9) < 0.8 * loss(0),
        "training loss falls by more than 20 %: {} → {}",
        loss(0),
        loss(9)
    );

    let text = ok(d, &["eval", "--run", "runs/t"]);
    assert!(
        text.contains("genre micro-F1") && text.contains("rating within 10 %"),
        "{text}"
    );
    let eval: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("eval.json")).unwrap()).unwrap();
    let metric = |path: &[&str]| {
        path.iter()
            .fold(&eval, |v, k| &v[*k])
            .as_f64()
            .unwrap_or_else(|| panic!("{path:?} in eval.json"))
    };
    assert!(
        metric(&["genres", "top1"]) > metric(&["baselines", "majority", "top1"]),
        "genres beat the majority baseline"
    );
    assert!(
        metric(&["rating", "mae"]) < metric(&["baselines", "mean", "mae"]),
        "the rating beats the mean"
    );
    check_confidence(&eval, &text);
    check_saved_predictions(&run, &eval);
    let plain = ok(d, &["eval", "--run", "runs/t", "--bootstrap", "0"]);
    assert!(
        !plain.contains("% CI"),
        "--bootstrap 0 draws no intervals: {plain}"
    );

    // Another dataset, encoded with the run's fitted preprocessing (nothing refitted).
    ok(d, &["synth", "--out", "other", "--n", "40", "--seed", "77"]);
    let test_eval = std::fs::read(run.join("eval.json")).unwrap();
    let text = ok(d, &["eval", "--run", "runs/t", "--data", "other"]);
    assert!(text.contains("on other (40 movies"), "{text}");
    // --data scores every movie of its dataset: a split beside it would be ignored.
    let e = fails(
        d,
        &[
            "eval", "--run", "runs/t", "--data", "other", "--split", "val",
        ],
    );
    assert!(e.contains("cannot be used with"), "{e}");
    // A dataset folder that is not there is refused before any model loads.
    let e = fails(d, &["eval", "--run", "runs/none", "--data", "missing"]);
    assert!(e.contains("missing/movies.jsonl"), "{e}");
    // Nothing labelled: refused, not a table of zeros. Genres alone: no rating rows, and a
    // genre the model does not predict is named.
    let labels = [
        ("bare", r#"{"id":"a","title":"A"}"#),
        (
            "genres",
            r#"{"id":"a","title":"A","genres":["Drama","Zombie"]}"#,
        ),
    ];
    for (name, line) in labels {
        std::fs::create_dir(d.join(name)).unwrap();
        std::fs::write(d.join(name).join("movies.jsonl"), format!("{line}\n")).unwrap();
    }
    let e = fails(d, &["eval", "--run", "runs/t", "--data", "bare"]);
    assert!(
        e.contains("bare/movies.jsonl") && e.contains("nothing to score"),
        "{e}"
    );
    let text = ok(d, &["eval", "--run", "runs/t", "--data", "genres"]);
    assert!(
        text.contains("does not predict") && text.contains("Zombie (1 movie)"),
        "{text}"
    );
    assert!(
        !text.contains("rating MAE") && text.contains("no rated movies"),
        "{text}"
    );
    // Its one movie has no metadata: eval says its scores measure an extrapolation.
    assert!(
        text.contains("warning: for 1 of the 1 movies an input")
            && text.contains("the first: a: no metadata"),
        "{text}"
    );
    let text = ok(d, &["eval", "--run", "runs/t", "--split", "train"]);
    assert!(text.contains("eval-train.json"), "{text}");
    assert_eq!(
        std::fs::read(run.join("eval.json")).unwrap(),
        test_eval,
        "other splits and datasets never replace the test evaluation"
    );
    let saved: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("eval-data-other-"))
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}");

    ok(d, &["export", "--run", "runs/t", "--out", "model"]);
    portable::check_portable(d, "model", &portable_movies(d));
    portable::check_poster_limit(d, "model");
    // Movies that are not there are refused before any model loads.
    let e = fails(
        d,
        &["predict", "--model", "none", "--jsonl", "missing.jsonl"],
    );
    assert!(e.contains("missing.jsonl"), "{e}");
    let movie = r#"{"title":"x","year":1999,"plot":"a family grief story","genres":["Drama"],"poster":"demo/posters/syn000001.png"}"#;
    let text = ok(
        d,
        &["predict", "--model", "model", "--movie", movie, "--json"],
    );
    let json_line = |text: &str| -> serde_json::Value {
        serde_json::from_str(text.lines().find(|l| l.starts_with('{')).unwrap()).unwrap()
    };
    let p = json_line(&text);
    let rating = p["rating"].as_f64().unwrap();
    let interval: Vec<f64> = p["rating_interval"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    // The interval is the manifest's calibrated half-width around the rating, clipped to 0–10.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("model/manifest.json")).unwrap()).unwrap();
    let hw = manifest["interval_half_width"].as_f64().unwrap();
    assert!(hw > 0.0, "{manifest}");
    let expected = [(rating - hw).max(0.0), (rating + hw).min(10.0)];
    assert!(
        (interval[0] - expected[0]).abs() < 1e-4 && (interval[1] - expected[1]).abs() < 1e-4,
        "{interval:?} vs {expected:?}"
    );
    let genres = p["genres"].as_array().unwrap();
    assert!(!genres.is_empty());
    for g in genres {
        let prob = g["probability"].as_f64().unwrap();
        assert!(
            g["genre"].is_string() && g["predicted"].is_boolean() && (0.0..=1.0).contains(&prob)
        );
    }
    assert_eq!(p["contribution_method"], "leave-one-out");
    assert_eq!(p["contributions"].as_array().unwrap().len(), 3);

    // --poster stands in for the movie's own poster: the same image, the same prediction.
    let bare = r#"{"title":"x","year":1999,"plot":"a family grief story","genres":["Drama"]}"#;
    let predict_with = |poster: &str| {
        json_line(&ok(
            d,
            &[
                "predict", "--model", "model", "--movie", bare, "--poster", poster, "--json",
            ],
        ))
    };
    assert_eq!(predict_with("demo/posters/syn000001.png"), p);
    let mut posters: Vec<String> = std::fs::read_dir(d.join("demo/posters"))
        .unwrap()
        .map(|e| format!("demo/posters/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    posters.sort();
    assert_eq!(posters[0], "demo/posters/syn000001.png");
    let other = predict_with(&posters[1]);
    assert_ne!(
        other["genres"], p["genres"],
        "another poster, other genre scores"
    );
    let text = ok(
        d,
        &[
            "predict",
            "--model",
            "model",
            "--jsonl",
            "demo/movies.jsonl",
        ],
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.trim_start().starts_with("rating"))
            .count(),
        600,
        "one prediction per movie"
    );
    // Predicted in chunks (64 movies): every movie once, in the file's order.
    let json = ok(
        d,
        &[
            "predict",
            "--model",
            "model",
            "--jsonl",
            "demo/movies.jsonl",
            "--json",
        ],
    );
    let ids = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string())
            .collect()
    };
    let file = std::fs::read_to_string(d.join("demo/movies.jsonl")).unwrap();
    assert_eq!(ids(&json), ids(&file));
    // A missing poster in the last chunk stops it before any movie is predicted.
    let mut lines: Vec<String> = file.lines().take(70).map(String::from).collect();
    let last = lines.pop().unwrap();
    let mut gone: serde_json::Value = serde_json::from_str(&last).unwrap();
    gone["poster"] = "posters/gone.png".into();
    lines.push(gone.to_string());
    std::fs::write(d.join("demo/gone.jsonl"), lines.join("\n")).unwrap();
    let run = cinefuse(
        d,
        &["predict", "--model", "model", "--jsonl", "demo/gone.jsonl"],
    );
    let err = String::from_utf8_lossy(&run.stderr);
    // The error names the movie's line and id, not only the path.
    let at = format!("gone.jsonl:70: movie {}", gone["id"]);
    assert!(
        !run.status.success() && err.contains("gone.png") && err.contains(&at),
        "{err}"
    );
    assert!(
        run.stdout.is_empty(),
        "nothing predicted before the refusal"
    );
    // Flags that describe one movie of their own are refused beside --jsonl or --movie, where
    // they would be ignored.
    let jsonl = ["predict", "--model", "model", "--jsonl", "demo/gone.jsonl"];
    let one = ["predict", "--model", "model", "--movie", r#"{"id":"x"}"#];
    for (input, flag) in [(&jsonl, "--poster"), (&jsonl, "--title"), (&one, "--year")] {
        let e = fails(d, &[&input[..], &[flag, "1999"]].concat());
        assert!(e.contains("cannot be used with"), "{flag}: {e}");
    }

    // Resuming a finished run is a no-op that still succeeds, from any directory: the run's
    // relative data paths are where training ran, and nothing is prepared where it resumes.
    ok(d, &["train", "--resume", "runs/t"]);
    let elsewhere = d.join("runs");
    ok(&elsewhere, &["train", "--resume", "t"]);
    let made: Vec<_> = std::fs::read_dir(&elsewhere)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(made, ["t"], "resuming from runs/ wrote beside the run");

    // A resumed run keeps its own config, data and folder: flags that would change them are
    // refused, not silently ignored.
    for flag in [
        ["--config", "tiny.toml"],
        ["--out", "runs/other"],
        ["--data", "demo"],
    ] {
        let e = fails(d, &["train", "--resume", "runs/t", flag[0], flag[1]]);
        assert!(
            e.contains("cannot be used with") && e.contains(flag[0]),
            "{e}"
        );
    }
    // An export is not a run: refused by what it holds, and nothing is written into it (the
    // advice used to be to remove the folder).
    let before = std::fs::read_dir(d.join("model")).unwrap().count();
    let e = fails(d, &["train", "--resume", "model"]);
    assert!(
        e.contains("holds an exported model") && !e.contains("remove"),
        "{e}"
    );
    for command in ["eval", "report"] {
        let e = fails(d, &[command, "--run", "model"]);
        assert!(e.contains("holds an exported model"), "{command}: {e}");
    }
    assert_eq!(std::fs::read_dir(d.join("model")).unwrap().count(), before);
}

#[test]
fn config_errors_name_the_key_and_the_allowed_values() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("bad.toml"), "name = \"x\"\n[train]\nepohcs = 3\n").unwrap();
    let e = fails(d, &["config", "check", "bad.toml"]);
    assert!(e.contains("bad.toml") && e.contains("epohcs"), "{e}");
    std::fs::write(d.join("ok.toml"), "name = \"x\"\n").unwrap();
    let e = fails(
        d,
        &[
            "config",
            "check",
            "ok.toml",
            "--set",
            "model.fusion.kind=sum",
        ],
    );
    assert!(e.contains("sum") && e.contains("gmu"), "{e}");
    let e = fails(
        d,
        &[
            "config",
            "check",
            "ok.toml",
            "--set",
            "model.text.n_heads=3",
        ],
    );
    assert!(e.contains("model.text.n_heads = 3"), "{e}");
    let e = fails(
        d,
        &[
            "train",
            "--config",
            "ok.toml",
            "--set",
            "data.dataset=nowhere",
        ],
    );
    assert!(e.contains("nowhere") && e.contains("movies.jsonl"), "{e}");
}

/// The wgpu code path end to end (lavapipe on machines without a GPU).
#[cfg(feature = "wgpu")]
#[test]
fn trains_a_few_steps_on_wgpu() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tiny.toml"), TINY).unwrap();
    ok(d, &["synth", "--out", "demo", "--n", "60", "--seed", "2"]);
    // Without dropout both backends draw no random numbers after the (seeded, CPU-side)
    // initialization, so two steps on wgpu must land where two steps on flex do.
    let train_on = |backend: &str| {
        let out = format!("runs/{backend}");
        let text = ok(
            d,
            &[
                "train",
                "--config",
                "tiny.toml",
                "--backend",
                backend,
                "--set",
                "train.epochs=1",
                "--set",
                "train.max_steps_per_epoch=2",
                "--set",
                "model.fusion.dropout=0",
                "--set",
                "model.meta.dropout=0",
                "--set",
                "model.text.dropout=0",
                "--out",
                &out,
            ],
        );
        assert!(text.contains(&format!("backend: {backend}")), "{text}");
        assert!(d.join(&out).join("best/model.bpk").exists());
        let metrics: serde_json::Value = serde_json::from_str(
            std::fs::read_to_string(d.join(&out).join("metrics.jsonl"))
                .unwrap()
                .lines()
                .next()
                .unwrap(),
        )
        .unwrap();
        (
            metrics["train_loss"].as_f64().unwrap(),
            metrics["val_loss"].as_f64().unwrap(),
        )
    };
    let (flex, wgpu) = (train_on("flex"), train_on("wgpu"));
    for (name, a, b) in [("train", flex.0, wgpu.0), ("val", flex.1, wgpu.1)] {
        assert!(
            (a - b).abs() < 1e-3 * a.abs(),
            "{name} loss: flex {a} vs wgpu {b}"
        );
    }
}

/// Devices and precision are checked before anything is written: repeated devices, several
/// devices on flex and half precision on flex are errors that leave no run folder behind.
#[test]
fn devices_and_precision_the_backend_cannot_use_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tiny.toml"), TINY).unwrap();
    let cases = [
        (vec!["--devices", "0,0"], "listed twice"),
        (vec!["--devices", "0,1"], "flex is one CPU device"),
        (
            vec!["--set", "train.precision=\"f16\""],
            "flex trains in f32",
        ),
        (vec!["--set", "train.precision=\"f64\""], "train.precision"),
        (
            vec!["--set", "backend.token_bucket=0"],
            "backend.token_bucket = 0",
        ),
    ];
    for (flags, message) in cases {
        let mut args = vec!["train", "--config", "tiny.toml", "--out", "runs/x"];
        args.extend(flags);
        let e = fails(d, &args);
        assert!(e.contains(message), "{args:?}: {e}");
        assert!(!d.join("runs/x").exists(), "{args:?} left a run folder");
    }
}

/// Kill `cinefuse scrape` mid-run, run it again: nothing is fetched twice, nothing is lost.
#[test]
fn scrape_survives_a_kill_and_resumes() {
    use std::sync::{Arc, Mutex};
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    let hits: Arc<Mutex<std::collections::HashMap<String, usize>>> = Arc::default();
    let (srv, h) = (server.clone(), hits.clone());
    std::thread::spawn(move || {
        for req in srv.incoming_requests() {
            let url = req.url().to_string();
            *h.lock().unwrap().entry(url.clone()).or_default() += 1;
            let body = match url
                .strip_prefix("/title/")
                .and_then(|r| r.strip_suffix('/'))
            {
                Some(id) => format!(
                    r#"<html><head><script type="application/ld+json">{{"@type":"Movie","name":"Movie {id}","genre":["Drama"],"aggregateRating":{{"ratingValue":6.5,"ratingCount":"1,234"}},"duration":"PT1H30M"}}</script></head></html>"#
                ),
                None => String::new(),
            };
            let code = if url == "/robots.txt" || url.starts_with("/title/") {
                200
            } else {
                404
            };
            let _ = req.respond(tiny_http::Response::from_string(body).with_status_code(code));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ids: Vec<String> = (1..=12).map(|i| format!("tt{i:07}")).collect();
    std::fs::write(d.join("ids.txt"), ids.join("\n")).unwrap();
    let args = [
        "scrape",
        "--ids",
        "ids.txt",
        "--out",
        "ds",
        "--base-url",
        &format!("http://127.0.0.1:{port}"),
        "--rate",
        "6",
        "--concurrency",
        "2",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_cinefuse"))
        .args(args)
        .current_dir(d)
        .spawn()
        .unwrap();
    // Let a few pages arrive, then kill it hard (no chance to clean up).
    let records = d.join("ds/.scrape/records");
    let started = std::time::Instant::now();
    while std::fs::read_dir(&records).map(|r| r.count()).unwrap_or(0) < 3
        && started.elapsed().as_secs() < 20
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done_before = std::fs::read_dir(&records).unwrap().count();
    assert!(
        (3..12).contains(&done_before),
        "killed mid-run with {done_before} records"
    );
    let text = ok(d, &args);
    assert!(text.contains("already done"), "{text}");
    let movies = std::fs::read_to_string(d.join("ds/movies.jsonl")).unwrap();
    let lines: Vec<&str> = movies.lines().collect();
    assert_eq!(lines.len(), 12, "every title exactly once");
    for id in &ids {
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.contains(&format!("\"{id}\"")))
                .count(),
            1
        );
        let n = hits
            .lock()
            .unwrap()
            .get(&format!("/title/{id}/"))
            .copied()
            .unwrap_or(0);
        assert_eq!(n, 1, "{id} fetched {n} times");
    }
    let no_temp = std::fs::read_dir(d.join("ds/.scrape/records"))
        .unwrap()
        .flatten()
        .all(|e| e.file_name().to_string_lossy().ends_with(".json"));
    assert!(no_temp, "no temporary files among the records");
}

#[test]
fn an_interrupted_train_exits_130_and_says_how_to_resume() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tiny.toml"), TINY).unwrap();
    ok(d, &["synth", "--out", "demo", "--n", "100", "--seed", "8"]);
    let args = [
        "train",
        "--config",
        "tiny.toml",
        "--out",
        "runs/i",
        "--set",
        "train.epochs=100000",
        "--set",
        "train.early_stopping_patience=0",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_cinefuse"))
        .args(args)
        .current_dir(d)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Ctrl-C once the first epoch is logged (the handler is installed by then).
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        out.any(|l| l.unwrap().starts_with("epoch")),
        "no epoch line"
    );
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let rest: Vec<String> = out.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    // Not 0: `quickstart` (and any script) went on to evaluate and export the stopped run.
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted; resume it with: cinefuse train --resume runs/i"),
        "{err}"
    );
    assert!(!rest.iter().any(|l| l.starts_with("run: ")), "{rest:?}");
}

#[test]
fn a_model_whose_modalities_have_no_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tiny.toml"), TINY).unwrap();
    ok(d, &["synth", "--out", "demo", "--n", "100", "--seed", "8"]);
    demo_variant(d, "bare", |m| {
        m.remove("plot");
        m.remove("poster");
    });
    let data = [
        "--set",
        "data.dataset=\"bare\"",
        "--set",
        "data.prepared=\"prepared/bare\"",
    ];
    let text_only = [&data[..], &["--set", "model.modalities=[\"text\"]"]].concat();
    let e = fails(
        d,
        &[
            &["train", "--config", "tiny.toml", "--out", "runs/t"][..],
            &text_only,
        ]
        .concat(),
    );
    assert!(
        e.contains("model.modalities [\"text\"]") && e.contains("would learn from nothing"),
        "{e}"
    );
    // With the metadata beside it the run trains, and says the text branch learns nothing.
    let both = [
        &data[..],
        &["--set", "model.modalities=[\"text\", \"meta\"]"],
    ]
    .concat();
    let args = [
        &["train", "--config", "tiny.toml", "--out", "runs/tm"][..],
        &both,
        &["--set", "train.epochs=1"],
    ]
    .concat();
    let out = ok(d, &args);
    assert!(out.contains("has \"text\", but none of the"), "{out}");
    // A poster given to that model, which reads none, is said to be ignored.
    ok(d, &["export", "--run", "runs/tm", "--out", "models/tm"]);
    let poster = std::fs::read_dir(d.join("demo/posters"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let poster = poster.to_str().unwrap();
    let args = [
        "predict",
        "--model",
        "models/tm",
        "--title",
        "X",
        "--plot",
        "A heist",
        "--poster",
        poster,
    ];
    let out = ok(d, &args);
    assert!(
        out.contains("this model reads no poster (its modalities: text, meta)"),
        "{out}"
    );
    assert!(!out.contains("reads no plot"), "{out}");
}

#[test]
fn sweep_over_two_tiny_configurations_writes_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tiny.toml"), TINY).unwrap();
    ok(d, &["synth", "--out", "demo", "--n", "100", "--seed", "8"]);
    let text = ok(
        d,
        &[
            "sweep",
            "--config",
            "tiny.toml",
            "--grid",
            "model.fusion.kind=late,concat",
            "--set",
            "train.epochs=1",
            "--set",
            "train.max_steps_per_epoch=2",
            "--seeds",
            "1,2",
            "--out",
            "sw",
        ],
    );
    assert!(text.contains("4 runs"), "{text}");
    let md = std::fs::read_to_string(d.join("sw/results.md")).unwrap();
    // One line per combination, over both seeds; validation only (no test read).
    assert!(
        md.contains("| kind=late | 2 |") && md.contains("| kind=concat | 2 |"),
        "{md}"
    );
    assert!(!md.contains("test micro-F1"), "{md}");
    let csv = std::fs::read_to_string(d.join("sw/results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "header + 4 runs");
    assert!(d.join("sw/kind=late/seed-2/best/model.bpk").exists());
    let seed_of = |run: &str| -> i64 {
        let t: toml::Table =
            toml::from_str(&std::fs::read_to_string(d.join(run).join("config.toml")).unwrap())
                .unwrap();
        t["seed"].as_integer().unwrap()
    };
    assert_eq!(seed_of("sw/kind=late/seed-1"), 1);
    assert_eq!(seed_of("sw/kind=late/seed-2"), 2);
    let text = one_step_sweep(d, "sw-test", &[]);
    assert!(
        text.contains("test micro-F1") && text.contains("| base | 1 |"),
        "{text}"
    );
    let csv_test = std::fs::read_to_string(d.join("sw-test/results.csv")).unwrap();
    assert!(!csv_test.contains(",,"), "every score filled: {csv_test}");

    // Each run trained what its override says, and nothing else differs between the configs.
    let config_of = |label: &str| -> toml::Table {
        let path = d.join(format!("sw/{label}/seed-1/config.toml"));
        toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let (mut late, mut concat) = (config_of("kind=late"), config_of("kind=concat"));
    let fusion_kind = |t: &toml::Table| t["model"]["fusion"]["kind"].as_str().unwrap().to_string();
    assert_eq!(
        (fusion_kind(&late), fusion_kind(&concat)),
        ("late".into(), "concat".into())
    );
    for t in [&mut late, &mut concat] {
        t["model"].as_table_mut().unwrap()["fusion"]
            .as_table_mut()
            .unwrap()
            .remove("kind");
    }
    assert_eq!(late, concat, "only the swept key differs");
    // Two different models: their metric columns are not copies of one another.
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    // rows: late seed 1, late seed 2, concat seed 1, concat seed 2.
    assert_ne!(rows[0][col("val_mae")], rows[2][col("val_mae")], "{csv}");
    assert_ne!(rows[0][col("val_mae")], rows[1][col("val_mae")], "{csv}");

    // A bag with rating trees (a blend): scored out of fold, and on the test split as `eval`
    // scores it (it stopped at the missing run.json of a single run).
    let bagged = ["train.folds=2", "train.rating_trees.iterations=5"];
    let text = one_step_sweep(d, "sw-bag", &bagged);
    assert!(text.contains("are its out-of-fold scores"), "{text}");
    let eval = ok(d, &["eval", "--run", "sw-bag/base"]);
    let csv = std::fs::read_to_string(d.join("sw-bag/results.csv")).unwrap();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let cell = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    let micro = format!("genre micro-F1              {}", cell("test_micro_f1"));
    assert!(eval.contains(&micro), "{micro} in {eval}");
    let oof = format!("micro-F1 {}", cell("val_micro_f1"));
    assert!(eval.contains(&oof), "{oof} in {eval}");
    // The bag trained on its validation movies: scored there, the report says in-sample.
    let val = ok(d, &["eval", "--run", "sw-bag/base", "--split", "val"]);
    assert!(
        val.contains("val split (in-sample: the blend trained on it)"),
        "{val}"
    );

    // A bag of every labelled movie (no test split): eval and report refuse the empty split
    // rather than score it 0, and a sweep asked to read it refuses before training.
    let no_test = "data.preprocess.test_ratio=0";
    let all = [no_test, "data.prepared=prepared/all", "train.folds=2"];
    train_tiny(d, "all", &[&all[..], &["train.epochs=1"]].concat());
    let e = fails(d, &["eval", "--run", "all"]);
    assert!(e.contains("test split holds no movies"), "{e}");
    assert!(e.contains("data.preprocess.test_ratio = 0"), "{e}");
    assert!(!d.join("all/eval.json").exists(), "no report of 0 movies");
    let e = fails(d, &["report", "--run", "all"]);
    assert!(e.contains("test split holds no movies"), "{e}");
    // It exports (the check then predicts validation movies: `checked_predictions`' unit test),
    // its card giving the out-of-fold scores, and predicts.
    ok(d, &["export", "--run", "all", "--out", "model-all"]);
    let card = std::fs::read_to_string(d.join("model-all/README.md")).unwrap();
    assert!(card.contains("## Scores out of fold ("), "{card}");
    assert!(!card.contains("test split (0 movies)"), "{card}");
    assert!(card.contains("calibrated out of fold"), "{card}");
    let p = ok(
        d,
        &[
            "predict",
            "--model",
            "model-all",
            "--plot",
            "A heist",
            "--json",
        ],
    );
    assert!(p.contains("\"genres\""), "{p}");
    // So does a blend whose rating trees read the genres (the shipped config's kind): its
    // trees rate the empty test split as well as the checked movies.
    let trees = ["--rating-trees", "--tree-genres", "--out", "blend-all"];
    let text = ok(d, &[&["ensemble", "--runs", "all"][..], &trees].concat());
    // It points to `export`, not to an `eval` that would refuse the empty test split.
    assert!(
        text.contains("next: cinefuse export --run blend-all"),
        "{text}"
    );
    ok(
        d,
        &["export", "--run", "blend-all", "--out", "model-blend-all"],
    );
    let p = ok(
        d,
        &["predict", "--model", "model-blend-all", "--plot", "A heist"],
    );
    assert!(p.contains("rating"), "{p}");
    let sweep = ["sweep", "--config", "tiny.toml", "--test", "--set", no_test];
    let e = fails(d, &[&sweep[..], &["--out", "sw-all"]].concat());
    assert!(e.contains("--test") && e.contains("test_ratio = 0"), "{e}");
    assert!(!d.join("sw-all").exists(), "refused before training");
    // Last: it rewrites the demo movies the runs above trained on.
    absent_fields_read_as_unknown(d);
}

/// A sweep of tiny.toml without a grid (one run of a few steps, scored on test too) into
/// `out`, with the overrides `sets`; its output.
fn one_step_sweep(d: &Path, out: &str, sets: &[&str]) -> String {
    let mut args = vec!["sweep", "--config", "tiny.toml", "--test", "--out", out];
    for s in ["train.epochs=1", "train.max_steps_per_epoch=2"]
        .iter()
        .chain(sets)
    {
        args.extend(["--set", s]);
    }
    ok(d, &args)
}

/// TINY with a pretrained (random, tiny) BERT plot encoder and EfficientNet-Lite0 poster
/// encoder, both frozen, written into `ckpt/` by the test.
fn pretrained_config() -> String {
    TINY.replace(
        "[model]\nembed_dim = 16",
        "[model]\nembed_dim = 16\nlinear_skip = true",
    )
    .replace(
        "tokenizer = \"wordlevel\"\nvocab_size = 300",
        "tokenizer = \"pretrained\"\ntokenizer_path = \"ckpt/bert\"\ntitle_in_text = true",
    )
    .replace(
        "[model.poster]\nwidths = [4, 8]",
        "[model.poster]\nkind = \"efficientnet-lite0\"\npretrained = \"ckpt/effnet\"",
    )
    .replace(
        "[model.text]\nkind = \"transformer\"",
        "[model.text]\nkind = \"bert\"\npretrained = \"ckpt/bert\"",
    )
    .replace(
        "prepared = \"prepared/demo\"",
        "prepared = \"prepared/demo-pretrained\"",
    )
    .replace("epochs = 3", "epochs = 2")
        // Up-weighted positives: the export carries the logit shift that takes them back out.
        + "[loss]\npos_weight = true\npos_weight_max = 3.0\n"
}

/// A field every training movie had is read as unknown where a movie lacks it
/// (`absent_fields.rs`): trained on demo movies that all name their directors, a movie given
/// without them is predicted exactly as one whose director nobody knows, not through a
/// missing slot the model never learnt, and the PyTorch reference reads it the same way. A
/// field the training movies often lacked (the certificate) keeps its missing slot.
fn absent_fields_read_as_unknown(d: &Path) {
    let movies = d.join("demo/movies.jsonl");
    let text = std::fs::read_to_string(&movies).unwrap();
    let mut filled: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Every movie names a director; a third of them the same one, which the vocabulary keeps.
    for (i, m) in filled.iter_mut().enumerate() {
        if i % 3 == 0 {
            m["directors"] = serde_json::json!(["Bo Frequent"]);
        } else if m.get("directors").is_none_or(|v| v.is_null()) {
            m["directors"] = serde_json::json!(["Ann Filler"]);
        }
    }
    let filled: Vec<String> = filled.iter().map(|m| m.to_string()).collect();
    std::fs::write(&movies, filled.join("\n") + "\n").unwrap();
    let short = [
        "--set",
        "train.epochs=1",
        "--set",
        "data.prepared=prepared/filled",
    ];
    ok(
        d,
        &[
            &["train", "--config", "tiny.toml", "--out", "runs/filled"],
            &short[..],
        ]
        .concat(),
    );
    ok(d, &["export", "--run", "runs/filled", "--out", "filled"]);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("filled/preprocess.json")).unwrap()).unwrap();
    let listed = state["absent_as_unknown"].to_string();
    assert!(
        listed.contains("\"director\"") && !listed.contains("certificate"),
        "{listed}"
    );
    let base = r#"{"id":"m","title":"Harbour","plot":"a family grief story","year":2001,"votes":900,"languages":["English"]"#;
    let predict = |movie: &str| {
        ok(
            d,
            &["predict", "--model", "filled", "--movie", movie, "--json"],
        )
    };
    let absent = predict(&format!("{base}}}"));
    assert_eq!(
        absent,
        predict(&format!(r#"{base},"directors":["Nobody Anyone Knows"]}}"#)),
        "a movie without its directors reads as one with an unknown director"
    );
    assert_ne!(
        absent,
        predict(&format!(r#"{base},"directors":["Bo Frequent"]}}"#)),
        "a known director still counts"
    );
    let lines = [
        format!("{base}}}"),
        format!(r#"{base},"certificate":"R","cast":["Bo Actor"]}}"#),
        r#"{"id":"bare","title":"Nothing known","plot":"a family grief story"}"#.to_string(),
    ];
    std::fs::write(d.join("absent.jsonl"), lines.join("\n")).unwrap();
    portable::check_portable(d, "filled", "absent.jsonl");
    given_without_extras(d);
}

/// A bag that declares two extras, blended with rating trees: a movie given with its vote
/// count and without either extra is rated by the trees that never saw them (the train test
/// `without_extras` checks the rule), one without the critic score gets the interval bins of
/// such movies, and the PyTorch reference rates and bounds both the same way.
fn given_without_extras(d: &Path) {
    let movies = d.join("demo/movies.jsonl");
    let text = std::fs::read_to_string(&movies).unwrap();
    let with_extras: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut m: serde_json::Value = serde_json::from_str(l).unwrap();
            // A third lack the critic score: enough for interval bins of their own.
            let critic = (i % 3 != 0).then_some(30 + (i * 7) % 60);
            m["extra"] = serde_json::json!({"critic": critic, "studio": format!("s{}", i % 3)});
            m.to_string()
        })
        .collect();
    std::fs::write(&movies, with_extras.join("\n") + "\n").unwrap();
    let features = "\n[[data.features]]\nname = \"critic\"\nkind = \"numeric\"\n\
                    [[data.features]]\nname = \"studio\"\nkind = \"categorical\"\n";
    std::fs::write(d.join("extras.toml"), format!("{TINY}{features}")).unwrap();
    let sets = [
        "data.prepared=prepared/extras",
        "train.folds=2",
        "train.epochs=1",
    ];
    let mut args = vec!["train", "--config", "extras.toml", "--out", "runs/extras"];
    args.extend(sets.iter().flat_map(|s| ["--set", s]));
    ok(d, &args);
    let trees = [
        "--rating-trees",
        "--tree-genres",
        "--out",
        "runs/extras-blend",
    ];
    ok(
        d,
        &[&["ensemble", "--runs", "runs/extras"][..], &trees].concat(),
    );
    let blend: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("runs/extras-blend/blend.json")).unwrap())
            .unwrap();
    let last = &blend["rating_without_votes"]["sets"][2]["fields"];
    assert_eq!(last, &serde_json::json!(["extra.critic"]), "{blend}");
    let interval = &blend["calibration"]["interval"];
    assert_eq!(
        interval["lacking_columns"],
        serde_json::json!([[5]]),
        "{interval}"
    );
    assert!(interval["lacking"]["bins"].is_array(), "{interval}");
    // The movies of the set that keeps the vote count get vote bins of their own.
    assert!(interval["extras"]["bins"].is_array(), "{interval}");
    ok(
        d,
        &["export", "--run", "runs/extras-blend", "--out", "extras"],
    );
    let base = r#""plot":"a family grief story","year":2001,"votes":900,"certificate":"R""#;
    let lines = [
        format!(r#"{{"id":"bare",{base}}}"#),
        format!(r#"{{"id":"studio",{base},"extra":{{"studio":"s1"}}}}"#),
        format!(r#"{{"id":"both",{base},"extra":{{"studio":"s1","critic":80}}}}"#),
        r#"{"id":"voteless","plot":"a family grief story","certificate":"R"}"#.to_string(),
    ];
    std::fs::write(d.join("extras.jsonl"), lines.join("\n")).unwrap();
    let out = cinefuse(
        d,
        &["predict", "--model", "extras", "--jsonl", "extras.jsonl"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("bare: none of the extra fields") && !err.contains("studio: none"),
        "{err}"
    );
    portable::check_portable(d, "extras", "extras.jsonl");
    // `eval --data` on demo movies given with a vote count and without their extras counts
    // them apart.
    demo_variant(d, "no-extras", |m| {
        m.remove("extra");
        if m.get("votes").is_none_or(|v| v.is_null()) {
            m.insert("votes".into(), 1000.into());
        }
    });
    let text = ok(
        d,
        &["eval", "--run", "runs/extras-blend", "--data", "no-extras"],
    );
    assert!(
        text.contains("of them without any extra, rated by trees that never saw the extras")
            && !text.contains("without a vote count, rated by"),
        "{text}"
    );
    calibrate_on_another_source(d, "extras");
}

/// `calibrate` on movies of "another source" (the demo movies rated 2.5 higher, without
/// posters): the new export rates and ranks as the old one but its interval, fitted on half of
/// them, covers the other half; the reference reads it alike; the old export is untouched.
fn calibrate_on_another_source(d: &Path, model: &str) {
    let demo = std::fs::read_to_string(d.join("demo/movies.jsonl")).unwrap();
    let (mut fit, mut held) = (Vec::new(), Vec::new());
    for (i, line) in demo.lines().enumerate() {
        let mut m: serde_json::Value = serde_json::from_str(line).unwrap();
        let Some(r) = m["rating"].as_f64() else {
            continue;
        };
        m["rating"] = serde_json::json!((r + 2.5).min(10.0));
        m.as_object_mut().unwrap().remove("poster");
        [&mut fit, &mut held][i % 2].push(m.to_string());
    }
    std::fs::write(d.join("shifted.jsonl"), fit.join("\n")).unwrap();
    std::fs::write(d.join("shifted-held.jsonl"), held.join("\n")).unwrap();
    let manifest = d.join(model).join("manifest.json");
    let before = std::fs::read(&manifest).unwrap();
    let out = format!("{model}-calibrated");
    let calibrate = |jsonl: &str, out: &str| -> Vec<String> {
        [
            "calibrate",
            "--model",
            model,
            "--jsonl",
            jsonl,
            "--out",
            out,
        ]
        .map(String::from)
        .to_vec()
    };
    fn args(a: &[String]) -> Vec<&str> {
        a.iter().map(String::as_str).collect()
    }
    let text = ok(d, &args(&calibrate("shifted.jsonl", &out)));
    assert!(
        text.contains(&format!("on {} rated movies", fit.len()))
            && text.contains("vote bins")
            // 49 movies: halves too small to fit (the unit tests check the halves' check).
            && text.contains("too few movies to check a fit on half of them"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(&manifest).unwrap(),
        before,
        "the old export changed"
    );
    let predict = |m: &str| {
        let args = [
            "predict",
            "--model",
            m,
            "--jsonl",
            "shifted-held.jsonl",
            "--json",
        ];
        portable::json_lines(&ok(d, &args))
    };
    let (old, new) = (predict(model), predict(&out));
    let truth: Vec<f64> = held
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["rating"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let covered = |p: &[serde_json::Value]| {
        let inside = p.iter().zip(&truth).filter(|(p, t)| {
            let i = &p["rating_interval"];
            i[0].as_f64().unwrap() <= **t && **t <= i[1].as_f64().unwrap()
        });
        inside.count() as f64 / truth.len() as f64
    };
    let (was, now) = (covered(&old), covered(&new));
    assert!(now >= 0.8 && now > was + 0.2, "coverage {was} -> {now}");
    for (a, b) in old.iter().zip(&new) {
        assert_eq!((&a["rating"], &a["genres"]), (&b["rating"], &b["genres"]));
    }
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join(&out).join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        saved["recalibrated"]["movies"],
        fit.len(),
        "{}",
        saved["recalibrated"]
    );
    portable::check_portable(d, &out, "shifted-held.jsonl");
    // Calibrated again: its model card keeps one note, the last.
    let again = format!("{out}-again");
    let text = ok(
        d,
        &[
            "calibrate",
            "--model",
            &out,
            "--jsonl",
            "shifted-held.jsonl",
            "--out",
            &again,
        ],
    );
    assert!(
        text.contains(&format!("on {} rated movies", held.len())),
        "{text}"
    );
    let card = std::fs::read_to_string(d.join(&again).join("README.md")).unwrap();
    assert_eq!(
        card.matches("## Interval fitted again").count(),
        1,
        "{card}"
    );
    assert!(card.contains("shifted-held.jsonl"), "{card}");
    let refused = fails(d, &args(&calibrate("shifted.jsonl", model)));
    assert!(refused.contains(model), "{refused}");
    let inner = format!("{model}/inner");
    let refused = fails(d, &args(&calibrate("shifted.jsonl", &inner)));
    assert!(refused.contains("inside the model folder"), "{refused}");
    assert!(!d.join(&inner).exists());
    std::fs::write(
        d.join("unrated.jsonl"),
        r#"{"id":"u","title":"U","year":2001}"#,
    )
    .unwrap();
    let refused = fails(d, &args(&calibrate("unrated.jsonl", "unrated")));
    assert!(
        refused.contains("unrated.jsonl: no movie has a rating"),
        "{refused}"
    );
    assert!(
        !d.join("unrated").exists(),
        "a refused calibrate left a folder"
    );
}

/// Movies for the portable round trip, in `d`: demo movies with and without posters, plots and
/// metadata, and an empty one.
fn portable_movies(d: &Path) -> String {
    let demo = std::fs::read_to_string(d.join("demo/movies.jsonl")).unwrap();
    let mut lines: Vec<String> = demo
        .lines()
        .take(12)
        .map(|l| l.replace("\"posters/", "\"demo/posters/"))
        .collect();
    lines.push(r#"{"id":"bare","title":"Nothing known"}"#.into());
    lines.push(
        r#"{"id":"odd","plot":"zeppelin quixotic","year":1890,"votes":3,"certificate":"XYZ"}"#
            .into(),
    );
    // Metadata but no vote count: a blend with rating trees rates it by those without votes.
    lines.push(
        r#"{"id":"unreleased","title":"Cold Harbour","plot":"A widow runs a harbour inn","year":2015,"certificate":"R","languages":["English"]}"#
            .into(),
    );
    // A title, a plot and a year: a blend with a content rating rates it from the plot.
    lines.push(
        r#"{"id":"plot-only","title":"Night Train","plot":"A detective hunts a killer on a night train","year":2001}"#
            .into(),
    );
    std::fs::write(d.join("portable.jsonl"), lines.join("\n")).unwrap();
    "portable.jsonl".into()
}

/// The export `vote` with its interval's scales for movies without a plot or poster set to 3
/// (manifest and portable spec alike): `predict` widens the intervals of exactly the movies
/// given without one that its own or the extras-free rating rates, and the PyTorch reference
/// agrees; a scale below 1 is refused by name.
fn input_scales_widen_movies_without_inputs(d: &Path) {
    let learnt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("vote/manifest.json")).unwrap()).unwrap();
    let scales = learnt["interval"]["input_scales"].as_array().unwrap();
    assert!(!scales.is_empty(), "{learnt}");
    assert!(scales.iter().all(|s| s["scale"].as_f64().unwrap() >= 1.0));
    let wide = d.join("vote-wide");
    copy_tree(&d.join("vote"), &wide);
    let set_scales = |scale: f64| {
        let mut all = Vec::new();
        for (plot, poster) in [(true, false), (false, true), (true, true)] {
            for rated_by in ["blend", "extras"] {
                all.push(
                    serde_json::json!({"without": {"plot": plot, "poster": poster},
                    "rated_by": rated_by, "scale": scale}),
                );
            }
        }
        for file in ["manifest.json", "config.json"] {
            let path = wide.join(file);
            let mut v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            v["interval"]["input_scales"] = all.clone().into();
            std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        }
    };
    set_scales(3.0);
    let movies = portable_movies(d);
    let predict = |model: &str| {
        portable::json_lines(&ok(
            d,
            &["predict", "--model", model, "--jsonl", &movies, "--json"],
        ))
    };
    let given: Vec<serde_json::Value> =
        portable::json_lines(&std::fs::read_to_string(d.join(&movies)).unwrap());
    let width = |p: &serde_json::Value| {
        let i = p["rating_interval"].as_array().unwrap();
        i[1].as_f64().unwrap() - i[0].as_f64().unwrap()
    };
    let (mut widened, mut kept) = (Vec::new(), 0);
    for ((m, before), after) in given.iter().zip(predict("vote")).zip(predict("vote-wide")) {
        let whole = [m["plot"].as_str(), m["poster"].as_str()]
            .iter()
            .all(|f| f.is_some_and(|f| !f.trim().is_empty()));
        assert_eq!(before["rating"], after["rating"]);
        if whole {
            assert_eq!(before["rating_interval"], after["rating_interval"], "{m}");
            kept += 1;
        } else if width(&after) > width(&before) + 1e-6 {
            widened.push(m["id"].as_str().unwrap().to_string());
        }
    }
    // "odd" has a vote count, no poster and none of the extras; "bare", "unreleased" (no vote
    // count) and "plot-only" (rated from its plot) are rated another way and keep theirs.
    assert!(
        kept > 0 && widened.contains(&"odd".to_string()),
        "{widened:?}"
    );
    for other in ["bare", "unreleased", "plot-only"] {
        assert!(!widened.contains(&other.to_string()), "{widened:?}");
    }
    portable::check_portable(d, "vote-wide", &movies);
    set_scales(0.5);
    let e = fails(d, &["predict", "--model", "vote-wide", "--plot", "a story"]);
    assert!(
        e.contains("interval.input_scales[0].scale = 0.5") && !e.contains("panicked"),
        "{e}"
    );
    std::fs::remove_dir_all(&wide).unwrap();
}

/// The export `vote` (a blend with a content rating): a movie with a plot and nothing else
/// but its year is rated from the plot (ridge k beside member k), with its own interval, and
/// `predict` says so; a movie with metadata is not. The PyTorch reference (`check_portable`)
/// recomputes it from the exported file.
fn content_rating_rates_plot_only_movies(d: &Path) {
    assert!(d.join("vote/content_rating.safetensors").is_file());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("vote/manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["content_rating"]["file"],
        "content_rating.safetensors"
    );
    assert!(
        !manifest["interval"]["content"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let plot = ["predict", "--model", "vote", "--json"];
    let story = ["--plot", "A detective hunts a killer on a night train"];
    let predict = |extra: &[&str]| {
        let out = cinefuse(d, &[&plot[..], &story, extra].concat());
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        let first = portable::json_lines(&String::from_utf8_lossy(&out.stdout))[0].clone();
        (first, err)
    };
    let (rated, err) = predict(&["--year", "2001"]);
    assert!(
        err.contains("its rating is read from the plot alone"),
        "{err}"
    );
    // With this blend's own out-of-fold errors, which the export records.
    let info = &manifest["content_rating"]["info"];
    let own = format!(
        "this model's ratings from the plot alone were off by {:.2} on average, against {:.2} \
         with metadata",
        info["out_of_fold_mae"].as_f64().unwrap(),
        info["blend_out_of_fold_mae"].as_f64().unwrap()
    );
    assert!(err.contains(&own), "{own}\n{err}");
    // A runtime is no category: still rated from the plot (its genres may move, the rating not).
    let (with_runtime, err) = predict(&["--year", "2001", "--runtime", "100"]);
    assert!(err.contains("read from the plot alone"), "{err}");
    assert_eq!(rated["rating"], with_runtime["rating"]);
    // A certificate is one: rated as any movie with metadata.
    let movie =
        r#"{"id":"m","plot":"A detective hunts a killer on a night train","certificate":"R"}"#;
    let out = cinefuse(d, &[&plot[..], &["--movie", movie]].concat());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("read from the plot alone"), "{err}");
    // It has no vote count: rated by the trees that never saw one, and `predict` says so.
    assert!(err.contains("never saw a vote count"), "{err}");
    // With the errors this blend measured out of fold, not another model's.
    assert!(
        err.contains("out of fold this model's ratings of such movies were off by"),
        "{err}"
    );
    let certified = portable::json_lines(&String::from_utf8_lossy(&out.stdout))[0].clone();
    assert_ne!(rated["rating"], certified["rating"]);
    assert_ne!(rated["rating_interval"], certified["rating_interval"]);
    // `eval --data` on demo movies stripped to their title, plot, year and labels.
    demo_variant(d, "plot-only", |m| {
        let keep = ["id", "title", "plot", "year", "genres", "rating"];
        m.retain(|k, _| keep.contains(&k.as_str()));
    });
    let text = ok(d, &["eval", "--run", "runs/vote", "--data", "plot-only"]);
    assert!(
        text.contains("of them without metadata, rated from the plot alone"),
        "{text}"
    );
    assert!(
        text.contains("its rating is read from the plot alone"),
        "{text}"
    );
    // The same movies with everything but their vote count (and poster): rated by the trees
    // that never saw one, and eval counts them.
    demo_variant(d, "no-votes", |m| {
        m.remove("votes");
        m.remove("poster");
    });
    let text = ok(d, &["eval", "--run", "runs/vote", "--data", "no-votes"]);
    assert!(
        text.contains("of them without a vote count, rated by trees that never saw one"),
        "{text}"
    );
}

/// The first 30 demo movies, each with `edit` applied to its fields, as the dataset `name`.
fn demo_variant(
    d: &Path,
    name: &str,
    edit: impl Fn(&mut serde_json::Map<String, serde_json::Value>),
) {
    let demo = std::fs::read_to_string(d.join("demo/movies.jsonl")).unwrap();
    let lines: Vec<String> = demo
        .lines()
        .take(30)
        .map(|line| {
            let mut m: serde_json::Value = serde_json::from_str(line).unwrap();
            edit(m.as_object_mut().unwrap());
            m.to_string()
        })
        .collect();
    std::fs::create_dir_all(d.join(name)).unwrap();
    std::fs::write(d.join(name).join("movies.jsonl"), lines.join("\n")).unwrap();
}

/// Plot-, metadata- and credits-neighbour votes stacked with a frozen-BERT bag (in `d`, set up
/// by the caller): the blend records the votes and their stacking, eval names them, and the
/// reference recomputes the votes from the exported tables, the first part's BERT, its metadata
/// encoding and the movies' credits. The fine-tuned bag `runs/tuned` caches no plot features, so it cannot vote on
/// plots, but it can on metadata.
fn votes_join_a_frozen_bag(d: &Path) {
    // Trained from the config: a blend of one bag and the vote, in one run. The bag is
    // repeated (two sets of folds): the votes and the stacking stay on the first set's folds,
    // and the export groups the four members into two. Its plot features carry the embeddings'
    // and the layer's mean after the pooled output (`concat_layers`); the plot vote reads only
    // the pooled part, here and in the reference.
    let frozen = [
        "--set",
        "model.text.concat_layers=[0, 1]",
        "--set",
        "train.folds=2",
        "--set",
        "train.bag_sets=2",
        "--set",
        "train.epochs=1",
        "--set",
        "train.plot_neighbours.k=5",
        "--set",
        "train.metadata_neighbours.k=5",
        "--set",
        "train.credit_neighbours.k=5",
        "--set",
        "train.genre_prompts.k=1000",
        "--set",
        "train.genre_prompts.prior=0",
        "--set",
        "train.content_rating.enabled=true",
        "--set",
        "train.rating_trees.enabled=true",
        "--set",
        "train.rating_trees.genre_probabilities=true",
    ];
    let mut args = vec!["train", "--config", "p.toml", "--out", "runs/frozen"];
    args.extend(frozen);
    let text = ok(d, &args);
    assert!(text.contains("genres: stacked per genre"), "{text}");
    assert!(text.contains("set 2/2, fold 2/2"), "{text}");
    assert!(d.join("runs/frozen/bag-0/set-1-fold-1/run.json").is_file());
    let read = |file: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(d.join(file)).unwrap()).unwrap()
    };
    let trained = read("runs/frozen/blend.json");
    assert_eq!(trained["rating_trees"]["genre_probabilities"], true);
    // ... and by hand from its bag: the same vote, stacking and weights.
    let vote = [
        "ensemble",
        "--runs",
        "runs/frozen/bag-0",
        "--plot-neighbours",
        "--metadata-neighbours",
        "--metadata-k",
        "5",
        "--credit-neighbours",
        "--credit-k",
        "5",
        "--genre-prompts",
        "--prompt-k",
        "1000",
        "--prompt-prior",
        "0",
        "--content-rating",
        "--rating-trees",
        "--tree-genres",
    ];
    let text = ok(
        d,
        &[&vote[..], &["--neighbour-k", "5", "--out", "runs/vote"]].concat(),
    );
    assert!(
        text.contains("content rating (for movies without metadata): out-of-fold MAE"),
        "{text}"
    );
    assert!(text.contains("plot-neighbour vote: genre weight"), "{text}");
    assert!(text.contains("stacking weight"), "{text}");
    assert!(
        text.contains("metadata-neighbour vote: genre weight"),
        "{text}"
    );
    let twice = "runs/frozen/bag-0,runs/frozen/../frozen/bag-0";
    let e = fails(d, &["ensemble", "--runs", twice, "--out", "runs/twice"]);
    assert!(e.contains("twice"), "{e}");
    // `report` on a blend or a bag draws the whole group's genres and ratings at the
    // thresholds `eval` scores it with, beside its first member's curves (it used to refuse).
    for run in ["runs/frozen", "runs/frozen/bag-0"] {
        ok(d, &["eval", "--run", run]);
        let text = ok(d, &["report", "--run", run]);
        assert!(text.contains("wrote 6 charts"), "{text}");
        let html = std::fs::read_to_string(d.join(run).join("report.html")).unwrap();
        assert!(html.contains("of its first member"), "{run}");
        let eval: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join(run).join("eval.json")).unwrap())
                .unwrap();
        let drama = &eval["genres"]["per_genre"][0];
        let row = format!(
            "<td>{}</td><td>{:.2}</td><td>{}</td>",
            drama["genre"].as_str().unwrap(),
            drama["threshold"].as_f64().unwrap(),
            drama["tp"]
        );
        assert!(html.contains(&row), "{run}: no row {row}");
    }
    let blend = read("runs/vote/blend.json");
    assert_eq!(blend["plot_neighbours"]["k"], 5);
    assert_eq!(blend["metadata_neighbours"]["k"], 5);
    assert_eq!(blend["metadata_neighbours"]["temperature"], 0.2);
    assert_eq!(blend["credit_neighbours"]["k"], 5);
    assert_eq!(blend["credit_neighbours"]["temperature"], 0.3);
    assert_eq!(blend["genre_prompts"]["k"], 1000);
    assert_eq!(blend["genre_prompts"]["temperature"], 0.02);
    assert!(text.contains("genre-prompt vote: genre weight"), "{text}");
    assert!(
        text.contains("credits-neighbour vote: genre weight"),
        "{text}"
    );
    // Movies without a vote count get trees that never saw one, mixed with the plot's ridges
    // (the reference below predicts "unreleased" with them).
    // The demo data declares no extras: one set, without the vote count alone.
    let voteless = &blend["rating_without_votes"]["sets"];
    assert_eq!(voteless[0]["columns"], serde_json::json!([2]), "{voteless}");
    assert_eq!(voteless.as_array().unwrap().len(), 1, "{voteless}");
    assert!(
        text.contains("rating without votes: out-of-fold MAE"),
        "{text}"
    );
    assert!(
        !blend["calibration"]["interval"]["without_votes"][0]
            .as_array()
            .unwrap()
            .is_empty()
    );
    for key in [
        "genre_stacking",
        "genre_stacking_without_plot",
        "genre_stacking_without_metadata",
        "content_rating",
        "rating_without_votes",
        "genre_weights",
        "rating_weights",
        "calibration",
    ] {
        assert_eq!(blend[key], trained[key], "{key}");
    }
    let stacking = blend["genre_stacking"]["coefficients"].as_array().unwrap();
    assert_eq!(stacking[0].as_array().unwrap().len(), 6, "bag, votes, bias");
    // Movies without a plot get a stacking of their own, learnt on the same folds with the
    // plots taken away (the reference below predicts two such movies with it).
    let plotless = blend["genre_stacking_without_plot"]["coefficients"]
        .as_array()
        .unwrap();
    assert_eq!(plotless.len(), stacking.len());
    assert_eq!(plotless[0].as_array().unwrap().len(), 6);
    assert_ne!(plotless, stacking);
    assert!(
        text.contains("without plots, out of fold: micro-F1"),
        "{text}"
    );
    // So do movies given without metadata (a plot, perhaps a year): the reference below
    // predicts "plot-only" with it.
    let bare = blend["genre_stacking_without_metadata"]["coefficients"]
        .as_array()
        .unwrap();
    assert_eq!(bare.len(), stacking.len());
    assert_eq!(bare[0].as_array().unwrap().len(), 6);
    assert!(bare != stacking && bare != plotless);
    assert!(
        text.contains("without metadata, out of fold: micro-F1"),
        "{text}"
    );
    assert_eq!(
        blend["rating_weights"][1], 0.0,
        "the plot vote has no rating"
    );
    assert_eq!(
        blend["rating_weights"][2], 0.0,
        "the metadata vote has none"
    );
    assert_eq!(blend["rating_weights"][3], 0.0, "nor the credits vote");
    assert_eq!(blend["rating_weights"][4], 0.0, "nor the genre prompts");
    own_genre_prompts(d, &vote);
    let text = ok(d, &["eval", "--run", "runs/vote"]);
    assert!(
        text.contains(
            "blend of 1 bag, a plot-neighbour vote, a metadata-neighbour vote, a \
             credits-neighbour vote, a genre-prompt vote and rating trees"
        ),
        "{text}"
    );
    assert!(
        text.contains("metadata_neighbours.safetensors: genre weight")
            && text.contains("stacking weight"),
        "{text}"
    );
    // On another dataset (here the demo movies again, re-encoded): the vote needs their plot
    // embeddings, which eval gets with the first bag's backbone — here the very inputs of the
    // run's own movies, so the table the run holds, written beside the new encoding too.
    let text = ok(d, &["eval", "--run", "runs/vote", "--data", "demo"]);
    assert!(
        text.contains("plot features: the same inputs as prepared/demo-pretrained/features/plot-"),
        "{text}"
    );
    assert!(text.contains("genre micro-F1"), "{text}");
    ok(d, &["export", "--run", "runs/vote", "--out", "vote"]);
    assert!(d.join("vote/plot_neighbours.safetensors").is_file());
    assert!(d.join("vote/metadata_neighbours.safetensors").is_file());
    assert!(d.join("vote/credit_neighbours.safetensors").is_file());
    assert!(d.join("vote/genre_prompts.safetensors").is_file());
    assert!(
        d.join("vote/rating_trees_without_votes.safetensors")
            .is_file()
    );
    content_rating_rates_plot_only_movies(d);
    let part: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("vote/part-0/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        part["shapes"]["text_backbone"]["concat_layers"],
        serde_json::json!([0, 1])
    );
    assert_eq!(
        (
            part["members"].as_array().unwrap().len(),
            &part["bag_sets"],
            &part["rating_over_sets"]
        ),
        (4, &2.into(), &true.into())
    );
    // The blend keeps the backbones once, in its own folder, for all its parts.
    assert_eq!(backbone_copies(&d.join("vote")), ["poster", "text"]);
    assert!(!d.join("vote/part-0/backbones").exists());
    portable::check_portable(d, "vote", &portable_movies(d));
    portable::check_peer_prompts(d, "vote");
    input_scales_widen_movies_without_inputs(d);
    // The repeated bag alone (a part is an export of its own), through ONNX too.
    portable::check_portable(d, "vote/part-0", &portable_movies(d));
    // Taken out of the blend, a part no longer reaches the blend's backbones: refused by name.
    copy_folder(&d.join("vote/part-0"), &d.join("lone-part"));
    let e = fails(d, &["predict", "--model", "lone-part", "--plot", "a story"]);
    assert!(
        e.contains("lone-part/manifest.json") && e.contains("load the blend's folder"),
        "{e}"
    );
    metadata_vote_needs_no_plots(d);
    credits_vote_needs_credits(d);

    let e = fails(
        d,
        &[&vote[..], &["--neighbour-k", "0", "--out", "runs/bad-k"]].concat(),
    );
    assert!(
        e.contains("--neighbour-k must be in 1..=10000, got 0"),
        "{e}"
    );
    let e = fails(
        d,
        &[
            "ensemble",
            "--runs",
            "runs/tuned",
            "--plot-neighbours",
            "--out",
            "runs/no-plots",
        ],
    );
    assert!(
        e.contains("needs the first bag's cached plot features"),
        "{e}"
    );
    let prompts = ["ensemble", "--runs", "runs/tuned", "--genre-prompts"];
    let e = fails(d, &[&prompts[..], &["--out", "runs/no-prompts"]].concat());
    assert!(
        e.contains("genre-prompt vote needs the first bag's cached plot features"),
        "{e}"
    );
    for bad in ["runs/bad-k", "runs/no-plots", "runs/no-prompts"] {
        assert!(!d.join(bad).exists(), "{bad} is left behind");
    }
}

/// A blend of four bags on the same folds: the repeated frozen bag, one with the same frozen
/// backbones and layers (late fusion), one whose plots are cut shorter and posters made larger
/// (other tokens and pixels, so other features from the same backbones) and the fine-tuned
/// one. `predict` reads each poster once per fitting, runs each frozen backbone once for the
/// parts whose inputs it shares and the fine-tuned bag's frozen part once for its members;
/// the export's own check (against the run's predictions, made part by
/// part from cached features) and the reference (every part's whole backbones) must agree.
fn blend_parts_share_backbone_passes(d: &Path) {
    let bag = |out: &str, extra: &[&str]| {
        let mut args = vec!["train", "--config", "p.toml", "--out", out];
        args.extend(["--set", "train.folds=2", "--set", "train.epochs=1"]);
        args.extend(["--set", "model.text.concat_layers=[0, 1]"]);
        args.extend(extra);
        ok(d, &args);
    };
    bag("runs/late", &["--set", "model.fusion.kind=late"]);
    let short = [
        "data.preprocess.max_tokens=5",
        "data.preprocess.image_height=32",
        "data.prepared=prepared/short",
    ];
    bag(
        "runs/short",
        &["--set", short[0], "--set", short[1], "--set", short[2]],
    );
    let parts = "runs/frozen/bag-0,runs/late,runs/short,runs/tuned";
    ok(d, &["ensemble", "--runs", parts, "--out", "runs/shared"]);
    // Every part weighs in, so that a part predicting from the wrong features shows (the
    // learned weights may leave a part out).
    let blend_file = d.join("runs/shared/blend.json");
    let mut blend: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&blend_file).unwrap()).unwrap();
    assert!(
        blend.get("genre_stacking").is_none(),
        "no votes, no stacking"
    );
    blend["genre_weights"] = serde_json::json!([0.1, 0.2, 0.4, 0.3]);
    blend["rating_weights"] = serde_json::json!([0.1, 0.2, 0.4, 0.3]);
    std::fs::write(&blend_file, blend.to_string()).unwrap();
    ok(d, &["export", "--run", "runs/shared", "--out", "shared"]);
    portable::check_portable(d, "shared", &portable_movies(d));
    foreign_movies_get_each_parts_features(d);
    // The check above has teeth only if every input matters: another poster moves the
    // predictions by ten times its tolerance or more (3e-3 when written; 3e-8 before the
    // test EfficientNet's batch norms were given running statistics).
    let movies = portable_movies(d);
    let mut lines = portable::json_lines(&std::fs::read_to_string(d.join(&movies)).unwrap());
    let (first, second) = (lines[0]["poster"].clone(), lines[1]["poster"].clone());
    assert!(first.is_string() && second.is_string() && first != second);
    (lines[0]["poster"], lines[1]["poster"]) = (second, first);
    let swapped: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(d.join("swapped.jsonl"), swapped.join("\n")).unwrap();
    let predict = |file: &str| {
        portable::json_lines(&ok(
            d,
            &["predict", "--model", "shared", "--jsonl", file, "--json"],
        ))
    };
    let moved = portable::prediction_difference(&predict(&movies), &predict("swapped.jsonl"));
    assert!(
        moved > 1e-3,
        "another poster moved the predictions by {moved} only"
    );
}

/// `eval --data` of the four-part blend: each bag's frozen backbones run once per movie
/// (their features cached beside its encoding of the movies), not once per member; the late
/// and the fine-tuned bag, trained on the lead's prepared folder, share the lead's encoding
/// and caches (the fine-tuned one reads the poster features only).
fn foreign_movies_get_each_parts_features(d: &Path) {
    let text = ok(d, &["eval", "--run", "runs/shared", "--data", "demo"]);
    assert!(text.contains("genre micro-F1"), "{text}");
    let key = std::fs::read_dir(d.join("runs/shared/eval-data"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let mut parts: Vec<String> = std::fs::read_dir(&key)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    parts.sort();
    assert_eq!(
        parts,
        ["part-0", "part-2"],
        "the late and tuned bags share part-0"
    );
    let cached = |part: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(key.join(part).join("features"))
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".bin"))
                    .map(|n| n.split('-').next().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.dedup();
        names
    };
    assert_eq!(cached("part-0"), ["plot", "poster"]);
    assert_eq!(
        cached("part-2"),
        ["plot", "poster"],
        "other tokens and pixels"
    );
}

/// `ensemble --prompts FILE`: a genre's own sentences replace its three built-in ones in the
/// vote's table and are recorded in blend.json; a genre the bags do not predict, an empty
/// list and a FIFO are refused by name, and leave no blend behind.
fn own_genre_prompts(d: &Path, vote: &[&'static str]) {
    std::fs::write(
        d.join("own.toml"),
        "drama = [\"A sad story.\", \"Tears.\"]\n",
    )
    .unwrap();
    let with = |file: &'static str, out: &'static str| {
        [
            vote,
            &["--neighbour-k", "5", "--prompts", file, "--out", out],
        ]
        .concat()
    };
    ok(d, &with("own.toml", "runs/own-prompts"));
    let blend: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("runs/own-prompts/blend.json")).unwrap())
            .unwrap();
    assert_eq!(blend["genre_prompts"]["prompts"]["drama"][1], "Tears.");
    let rows = |run: &str| prompt_rows(&d.join(run).join("genre_prompts.safetensors"));
    assert_eq!(
        rows("runs/own-prompts"),
        rows("runs/vote") - 1,
        "Drama: 2 sentences, not 3"
    );
    // The export keeps them beside its card, whose command reads them back.
    ok(
        d,
        &[
            "export",
            "--run",
            "runs/own-prompts",
            "--out",
            "own-prompts",
        ],
    );
    let kept = std::fs::read_to_string(d.join("own-prompts/genre_prompts.toml")).unwrap();
    assert_eq!(
        kept.parse::<toml::Table>().unwrap()["drama"][1].as_str(),
        Some("Tears.")
    );
    let card = std::fs::read_to_string(d.join("own-prompts/README.md")).unwrap();
    assert!(
        card.contains("--prompt-prior 0 --prompts genre_prompts.toml"),
        "{card}"
    );
    std::fs::write(d.join("typo.toml"), "Dramma = [\"A sad story.\"]\n").unwrap();
    let e = fails(d, &with("typo.toml", "runs/typo-prompts"));
    assert!(
        e.contains("`Dramma` is not one of the bags' genres (") && e.contains("Drama"),
        "{e}"
    );
    std::fs::write(d.join("empty.toml"), "Drama = []\n").unwrap();
    let e = fails(d, &with("empty.toml", "runs/empty-prompts"));
    assert!(
        e.contains("--prompts empty.toml: prompts.Drama must hold 1 to 50 sentences, got 0"),
        "{e}"
    );
    #[cfg(unix)]
    {
        let fifo = d.join("prompts.fifo");
        assert!(
            Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let e = fails(d, &with("prompts.fifo", "runs/fifo-prompts"));
        assert!(
            e.contains("prompts.fifo") && e.contains("not a regular file"),
            "{e}"
        );
    }
    for bad in [
        "runs/typo-prompts",
        "runs/empty-prompts",
        "runs/fifo-prompts",
    ] {
        assert!(!d.join(bad).exists(), "{bad} is left behind");
    }
}

/// How many prompts a vote's table holds (the first dimension of its `rows`, read from the
/// safetensors header).
fn prompt_rows(file: &Path) -> u64 {
    let bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["rows"]["shape"][0].as_u64().unwrap()
}

/// A bag without cached plot features (`runs/tuned`) still takes a metadata vote; a bad
/// setting is refused by its flag and leaves nothing behind.
fn metadata_vote_needs_no_plots(d: &Path) {
    let vote = ["ensemble", "--runs", "runs/tuned", "--metadata-neighbours"];
    let text = ok(d, &[&vote[..], &["--out", "runs/tuned-vote"]].concat());
    assert!(
        text.contains("metadata-neighbour vote: genre weight"),
        "{text}"
    );
    let blend: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("runs/tuned-vote/blend.json")).unwrap())
            .unwrap();
    assert!(blend["plot_neighbours"].is_null(), "{blend}");
    assert_eq!(blend["metadata_neighbours"]["k"], 50);
    let bad = ["--metadata-temperature", "0", "--out", "runs/bad-t"];
    let e = fails(d, &[&vote[..], &bad[..]].concat());
    assert!(
        e.contains("--metadata-temperature must be in (0, 10], got 0"),
        "{e}"
    );
    assert!(!d.join("runs/bad-t").exists());
}

/// Prepared data from before credits were recorded (`prepared/wl` with them stripped): a
/// config with the credits vote is refused before anything trains, naming the folder.
fn credits_vote_needs_credits(d: &Path) {
    std::fs::create_dir_all(d.join("prepared/old")).unwrap();
    for entry in std::fs::read_dir(d.join("prepared/wl")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(
                &path,
                d.join("prepared/old").join(path.file_name().unwrap()),
            )
            .unwrap();
        }
    }
    let samples = std::fs::read_to_string(d.join("prepared/old/samples.jsonl")).unwrap();
    let stripped: Vec<String> = samples
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(
                v.as_object_mut().unwrap().remove("credits").is_some() || v["genres"].is_null()
            );
            v.to_string()
        })
        .collect();
    std::fs::write(d.join("prepared/old/samples.jsonl"), stripped.join("\n")).unwrap();
    let e = fails(
        d,
        &[
            "train",
            "--config",
            "tiny.toml",
            "--set",
            "data.prepared=prepared/old",
            "--set",
            "train.folds=2",
            "--set",
            "train.credit_neighbours.k=5",
            "--out",
            "runs/no-credits",
        ],
    );
    assert!(
        e.contains("prepared/old: no labelled movie carries credits"),
        "{e}"
    );
    assert!(!d.join("runs/no-credits").exists());
    // The check reads only a current prepared folder: a refused --out comes before any preparing.
    let e = fails(
        d,
        &[
            "train",
            "--config",
            "tiny.toml",
            "--set",
            "data.prepared=prepared/not-yet",
            "--set",
            "train.folds=2",
            "--set",
            "train.credit_neighbours.k=5",
            "--out",
            "runs/frozen",
        ],
    );
    assert!(e.contains("already holds a run"), "{e}");
    assert!(!d.join("prepared/not-yet").exists());
}

fn write_tiny_bert(dir: &Path, seed: u64) {
    use cinefuse_model::pretrained::testing::TinyBert;
    let tiny = TinyBert::OVER_TINY_DATASETS;
    tiny.write(dir, &tiny.tensors(seed)).unwrap();
}

/// An MPNet checkpoint (relative attention bias, positions after the padding id) in place of
/// the BERT, its last layer fine-tuned: it trains, exports, and the PyTorch reference rebuilds
/// it to `predict`'s outputs.
fn an_mpnet_fine_tunes_and_exports(d: &Path, tuned: &[&str]) {
    use cinefuse_model::pretrained::testing::TinyBert;
    let tiny = TinyBert::OVER_TINY_DATASETS;
    let dir = d.join("ckpt/mpnet");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        d.join("ckpt/bert/tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    tiny.write_mpnet(&dir, &tiny.mpnet_tensors(&tiny.tensors(1), 4))
        .unwrap();
    let mut args = vec!["train", "--config", "p.toml", "--out", "runs/mpnet"];
    args.extend(tuned);
    args.extend([
        "--set",
        "model.text.pretrained=ckpt/mpnet",
        "--set",
        "data.preprocess.tokenizer_path=ckpt/mpnet",
        "--set",
        "data.prepared=prepared/demo-mpnet",
    ]);
    ok(d, &args);
    ok(d, &["export", "--run", "runs/mpnet", "--out", "mpnet"]);
    portable::check_portable(d, "mpnet", &portable_movies(d));
}

#[test]
fn frozen_pretrained_encoders_cache_features_and_export_self_contained() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tiny.toml"), TINY).unwrap();
    ok(d, &["synth", "--out", "demo", "--n", "120", "--seed", "5"]);
    // The tiny BERT's tokenizer: a word-level one trained on the demo plots by `prepare`.
    ok(
        d,
        &[
            "prepare",
            "--data",
            "demo",
            "--out",
            "prepared/wl",
            "--config",
            "tiny.toml",
        ],
    );
    std::fs::create_dir_all(d.join("ckpt/bert")).unwrap();
    std::fs::copy(
        d.join("prepared/wl/tokenizer.json"),
        d.join("ckpt/bert/tokenizer.json"),
    )
    .unwrap();
    write_tiny_bert(&d.join("ckpt/bert"), 1);
    cinefuse_model::pretrained::testing::write_random_efficientnet(&d.join("ckpt/effnet")).unwrap();
    std::fs::write(d.join("p.toml"), pretrained_config()).unwrap();

    let text = ok(d, &["train", "--config", "p.toml", "--out", "runs/a"]);
    assert!(text.contains("plot features: computed"), "{text}");
    assert!(text.contains("poster features: computed"), "{text}");
    assert!(
        text.contains("text (pretrained)") && text.contains("poster (pretrained)"),
        "{text}"
    );
    let text = ok(d, &["train", "--config", "p.toml", "--out", "runs/b"]);
    assert!(
        text.contains("plot features: cached"),
        "a second run reuses them: {text}"
    );
    assert!(text.contains("poster features: cached"), "{text}");
    let metrics = |run: &str| std::fs::read_to_string(d.join(run).join("metrics.jsonl")).unwrap();
    let val_loss = |m: String| -> Vec<f64> {
        m.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["val_loss"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(
        val_loss(metrics("runs/a")),
        val_loss(metrics("runs/b")),
        "same seed, same run"
    );

    // Other weights: the plot cache misses, the poster cache still hits.
    write_tiny_bert(&d.join("ckpt/bert"), 2);
    let text = ok(d, &["train", "--config", "p.toml", "--out", "runs/c"]);
    assert!(text.contains("plot features: computed"), "{text}");
    assert!(text.contains("poster features: cached"), "{text}");
    // Other pooling, same weights: the plot cache misses too (never mean-pooled features for
    // a [CLS]-pooled checkpoint).
    let pooling = d.join("ckpt/bert/1_Pooling/config.json");
    let mean = std::fs::read_to_string(&pooling).unwrap();
    std::fs::write(
        &pooling,
        r#"{"pooling_mode_mean_tokens": false, "pooling_mode_cls_token": true}"#,
    )
    .unwrap();
    let text = ok(d, &["train", "--config", "p.toml", "--out", "runs/cls"]);
    assert!(text.contains("plot features: computed"), "{text}");
    std::fs::write(&pooling, mean).unwrap();
    // Concatenated layers: a cache of their own; layers the checkpoint lacks, or out of
    // order, are refused by name before anything is written.
    let set = "model.text.concat_layers=[1]";
    let text = ok(
        d,
        &[
            "train",
            "--config",
            "p.toml",
            "--set",
            set,
            "--set",
            "train.epochs=1",
            "--out",
            "runs/cat",
        ],
    );
    assert!(text.contains("plot features: computed"), "{text}");
    for (layers, says) in [
        ("[2]", "model.text.concat_layers: layer 2 does not exist"),
        (
            "[1, 0]",
            "model.text.concat_layers = [1, 0]: expected strictly increasing",
        ),
    ] {
        let set = format!("model.text.concat_layers={layers}");
        let e = fails(
            d,
            &[
                "train",
                "--config",
                "p.toml",
                "--set",
                &set,
                "--out",
                "runs/never",
            ],
        );
        assert!(e.contains(says), "{says}: {e}");
        assert!(!d.join("runs/never").exists());
    }

    // Plots longer than the checkpoint's position table (32 rows): refused by name, not an
    // index past the table.
    let e = fails(
        d,
        &[
            "train",
            "--config",
            "p.toml",
            "--set",
            "data.preprocess.max_tokens=40",
            "--set",
            "data.prepared=prepared/long-plots",
            "--out",
            "runs/never",
        ],
    );
    assert!(
        e.contains("data.preprocess.max_tokens = 40") && e.contains("at most 32 tokens"),
        "{e}"
    );
    assert!(!d.join("runs/never").exists() && !d.join("prepared/long-plots").exists());

    // runs/a saved its models without the frozen backbones, and the BERT it trained on was
    // replaced above: refused by name, then evaluated once those weights are back.
    assert!(d.join("runs/a/best/model.frozen.json").is_file());
    let e = fails(d, &["eval", "--run", "runs/a"]);
    assert!(
        e.contains("model.text backbone") && e.contains("restore that file, or train again"),
        "{e}"
    );
    write_tiny_bert(&d.join("ckpt/bert"), 1);
    let text = ok(d, &["eval", "--run", "runs/a"]);
    assert!(text.contains("genre micro-F1"), "{text}");
    // From another directory: the run's relative data and checkpoint paths still resolve to
    // what it trained on (the cached features, not a fallback to the backbones).
    let elsewhere = d.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let run_a = d.join("runs/a");
    let far = ok(&elsewhere, &["eval", "--run", run_a.to_str().unwrap()]);
    assert!(!far.contains("warning"), "{far}");
    let metric = |t: &str| {
        t.lines()
            .find(|l| l.contains("genre micro-F1"))
            .map(str::to_owned)
    };
    assert_eq!(metric(&far), metric(&text));
    // Resumed from there too: the tokenizer path the prepared data records is the one the
    // run's config names, wherever the resume starts (it was refused as "changed data").
    let resumed = ok(&elsewhere, &["train", "--resume", run_a.to_str().unwrap()]);
    assert!(!resumed.contains("preparing"), "{resumed}");
    ok(d, &["export", "--run", "runs/a", "--out", "model"]);
    // The export holds a copy of each backbone the run left to ckpt/, and its model without
    // them (as the run saved it): it predicts the same without ckpt/.
    let size = |p: &str| std::fs::metadata(d.join(p)).unwrap().len();
    assert!(d.join("model/model.frozen.json").is_file());
    assert_eq!(
        backbone_copies(&d.join("model")),
        ["poster", "text"],
        "one copy of each"
    );
    // The shared portable files are as readable as the rest of the export (the store writes
    // through a private temporary file, owner-only).
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    for copy in std::fs::read_dir(d.join("model/backbones"))
        .unwrap()
        .flatten()
    {
        // Each backbone's weights once: the portable file, not the checkpoint's too.
        for name in ["model.safetensors", "model.pth"] {
            assert!(!copy.path().join(name).exists(), "{name} in {copy:?}");
        }
        let shared = copy.path().join("portable.safetensors");
        assert_eq!(
            mode(&shared),
            mode(&d.join("model/model.bpk")),
            "{}",
            shared.display()
        );
    }
    let card = std::fs::read_to_string(d.join("model/README.md")).unwrap();
    assert!(
        card.contains("`model.text`: `backbones/text-") && card.contains("SHA-256"),
        "the model card names the copies: {card}"
    );
    assert!(
        size("model/model.bpk") <= size("runs/a/best/model.bpk") + 4096,
        "the export's model {} holds no backbone (the run's: {})",
        size("model/model.bpk"),
        size("runs/a/best/model.bpk")
    );
    let movies = portable_movies(d);
    let predict = ["predict", "--model", "model", "--jsonl", &movies, "--json"];
    let with_ckpt = ok(d, &predict);
    std::fs::rename(d.join("ckpt"), d.join("ckpt-away")).unwrap();
    let without_ckpt = ok(d, &predict);
    std::fs::rename(d.join("ckpt-away"), d.join("ckpt")).unwrap();
    assert_eq!(with_ckpt, without_ckpt);
    an_export_of_format_2_still_loads(d, &predict, &with_ckpt);
    let portable: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("model/config.json")).unwrap()).unwrap();
    let shift = portable["genre_logit_shift"].as_array().unwrap();
    assert_eq!(shift.len(), portable["genres"].as_array().unwrap().len());
    assert!(
        shift.iter().any(|s| s.as_f64().unwrap() > 0.1),
        "some genre is up-weighted: {shift:?}"
    );
    portable::check_portable(d, "model", &portable_movies(d));

    // A bag whose plot backbone is fine-tuned: each member has its own BERT, so `predict` must
    // run each member's (the reference does), not share the first member's features.
    let tuned = [
        "--set",
        "model.text.freeze=false",
        "--set",
        "model.text.trainable_layers=1",
        "--set",
        "train.folds=2",
        "--set",
        "train.epochs=1",
    ];
    let mut args = vec!["train", "--config", "p.toml", "--out", "runs/tuned"];
    args.extend(tuned);
    ok(d, &args);
    ok(d, &["export", "--run", "runs/tuned", "--out", "tuned"]);
    // Both members share one copy of each checkpoint; each keeps its own fine-tuned layer.
    assert_eq!(backbone_copies(&d.join("tuned")), ["poster", "text"]);
    for k in 0..2 {
        let frozen = d.join(format!("tuned/model-{k}.frozen.json"));
        assert!(
            std::fs::read_to_string(&frozen)
                .unwrap()
                .contains("backbones/text-")
        );
    }
    portable::check_portable(d, "tuned", &portable_movies(d));
    an_mpnet_fine_tunes_and_exports(d, &tuned);
    // A changed copy is refused by name, never predicted with.
    let text_copy = std::fs::read_dir(d.join("tuned/backbones"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("text-"))
        .unwrap()
        .path();
    // One weight changed (its last byte), the file still a valid one: the SHA-256 says so.
    let weights = text_copy.join("portable.safetensors");
    std::fs::rename(&weights, d.join("kept.safetensors")).unwrap();
    let mut bytes = std::fs::read(d.join("kept.safetensors")).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&weights, bytes).unwrap();
    let e = fails(d, &["predict", "--model", "tuned", "--plot", "a story"]);
    assert!(e.contains("model-0.bpk") && e.contains("SHA-256"), "{e}");
    std::fs::rename(d.join("kept.safetensors"), &weights).unwrap();
    // The copy swapped for a link to the checkpoint outside the export: refused as a link,
    // whatever it holds, not followed.
    std::fs::rename(&text_copy, d.join("kept-copy")).unwrap();
    std::os::unix::fs::symlink(d.join("ckpt/bert"), &text_copy).unwrap();
    let e = fails(d, &["predict", "--model", "tuned", "--plot", "a story"]);
    assert!(
        e.contains("tuned/manifest.json") && e.contains("symbolic link"),
        "{e}"
    );
    std::fs::remove_file(&text_copy).unwrap();
    std::fs::rename(d.join("kept-copy"), &text_copy).unwrap();

    // The same with the frozen part's output cached: trained from it, predicted by the whole
    // backbone as any fine-tuned model (the reference runs all of it too).
    let mut args = vec!["train", "--config", "p.toml", "--out", "runs/tuned-cached"];
    args.extend(tuned);
    args.extend(["--set", "model.text.cache_frozen_layers=true"]);
    let text = ok(d, &args);
    assert!(
        text.contains(
            "plot backbone: its frozen part (the embeddings and the first 0 layers) ran once"
        ),
        "{text}"
    );
    assert!(
        text.contains("its frozen part's output computed earlier in this run, reused"),
        "the second member reuses the first one's: {text}"
    );
    ok(
        d,
        &[
            "export",
            "--run",
            "runs/tuned-cached",
            "--out",
            "tuned-cached",
        ],
    );
    portable::check_portable(d, "tuned-cached", &portable_movies(d));
    let e = fails(
        d,
        &[
            "train",
            "--config",
            "p.toml",
            "--set",
            "model.text.cache_frozen_layers=true",
            "--out",
            "runs/never",
        ],
    );
    assert!(
        e.contains("model.text.cache_frozen_layers: needs kind = \"bert\", freeze = false"),
        "{e}"
    );
    assert!(!d.join("runs/never").exists());

    // The poster backbone fine-tuned from its frozen blocks' cached maps (kept beside the
    // frozen features, so the second member reads them back), predicted by the whole backbone.
    let text = ok(
        d,
        &[
            "train",
            "--config",
            "p.toml",
            "--out",
            "runs/poster-cached",
            "--set",
            "model.poster.freeze=false",
            "--set",
            "model.poster.trainable_layers=2",
            "--set",
            "model.poster.cache_frozen_layers=true",
            "--set",
            "train.folds=2",
            "--set",
            "train.epochs=1",
        ],
    );
    for expected in [
        "frozen-block poster features: computed",
        "poster backbone: its frozen part (the stem and the first 14 blocks) gives a [192, 1, 1] map",
        "poster backbone: its frozen part's output cached (",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    ok(
        d,
        &[
            "export",
            "--run",
            "runs/poster-cached",
            "--out",
            "poster-cached",
        ],
    );
    portable::check_portable(d, "poster-cached", &portable_movies(d));
    let e = fails(
        d,
        &[
            "train",
            "--config",
            "p.toml",
            "--set",
            "model.poster.cache_frozen_layers=true",
            "--out",
            "runs/never",
        ],
    );
    assert!(
        e.contains("model.poster.cache_frozen_layers: needs kind = \"efficientnet-lite0\""),
        "{e}"
    );

    // Rating trees blended with that bag, reading its genre probabilities too: the reference
    // walks the same forests on the same rows. The test leans the rating on them so that a
    // wrong walk or row shows.
    ok(
        d,
        &[
            "ensemble",
            "--runs",
            "runs/tuned",
            "--rating-trees",
            "--tree-genres",
            "--out",
            "runs/tuned-trees",
        ],
    );
    let blend_file = d.join("runs/tuned-trees/blend.json");
    let mut blend: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&blend_file).unwrap()).unwrap();
    assert_eq!(blend["genre_weights"], serde_json::json!([1.0, 0.0]));
    blend["rating_weights"] = serde_json::json!([0.25, 0.75]);
    std::fs::write(&blend_file, blend.to_string()).unwrap();
    ok(
        d,
        &[
            "export",
            "--run",
            "runs/tuned-trees",
            "--out",
            "tuned-trees",
        ],
    );
    portable::check_portable(d, "tuned-trees", &portable_movies(d));
    votes_join_a_frozen_bag(d);
    blend_parts_share_backbone_passes(d);
    let e = fails(
        d,
        &["ensemble", "--runs", "runs/tuned", "--out", "runs/lonely"],
    );
    assert!(e.contains("or one with --rating-trees"), "{e}");
    let e = fails(
        d,
        &[
            "ensemble",
            "--runs",
            "runs/tuned",
            "--rating-trees",
            "--tree-learning-rate",
            "0",
            "--out",
            "runs/bad-rate",
        ],
    );
    assert!(e.contains("--tree-learning-rate must be in (0, 1]"), "{e}");
    assert!(
        !d.join("runs/bad-rate").exists(),
        "a refused blend left a folder"
    );

    let movie = r#"{"title":"x","year":1999,"plot":"a family grief story","poster":"demo/posters/syn000001.png"}"#;
    let predict = || {
        let text = ok(
            d,
            &["predict", "--model", "model", "--movie", movie, "--json"],
        );
        let p: serde_json::Value =
            serde_json::from_str(text.lines().find(|l| l.starts_with('{')).unwrap()).unwrap();
        p
    };
    let before = predict();
    // The export holds the backbones: it predicts the same with the checkpoint folders gone.
    std::fs::remove_dir_all(d.join("ckpt")).unwrap();
    let p = predict();
    assert_eq!(p, before);
    assert_eq!(p["contributions"].as_array().unwrap().len(), 3, "{p}");
}

/// The commands that have no other end-to-end test, on tiny data: quickstart, report, eda,
/// import and bench, each checked for what it wrote, not only for its exit code.
#[test]
fn quickstart_report_eda_import_and_bench_run_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = TINY
        .replace(
            "prepared = \"prepared/demo\"",
            "prepared = \"prepared/demo\"\nsynth_if_missing = 120",
        )
        .replace("epochs = 3", "epochs = 2");
    std::fs::write(d.join("q.toml"), config).unwrap();

    let text = ok(d, &["quickstart", "--config", "q.toml"]);
    let run = std::fs::read_dir(d.join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let name = run.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        text.contains(&format!("cinefuse predict --model models/{name}")),
        "{text}"
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.join("models").join(&name).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["best_epoch"].as_u64().map(|e| e >= 1), Some(true));
    // The quickstart's evaluation and its export score the same model on the same test movies
    // with the same thresholds: their numbers agree.
    let eval: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("eval.json")).unwrap()).unwrap();
    for (m, e) in [
        ("micro_f1", &eval["genres"]["micro_f1"]),
        ("macro_f1", &eval["genres"]["macro_f1"]),
        ("top1", &eval["genres"]["top1"]),
        ("mae", &eval["rating"]["mae"]),
    ] {
        let (a, b) = (manifest["test"][m].as_f64().unwrap(), e.as_f64().unwrap());
        assert!((a - b).abs() < 1e-9, "{m}: export {a} vs eval {b}");
    }
    assert_eq!(manifest["test"]["movies"], eval["movies"]);
    assert_eq!(
        std::fs::read_to_string(d.join("demo/movies.jsonl"))
            .unwrap()
            .lines()
            .count(),
        120
    );

    let text = ok(d, &["report", "--run", &format!("runs/{name}")]);
    assert!(text.contains("charts"), "{text}");
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(
        html.contains("<img") && html.contains("Learning curves"),
        "report.html"
    );

    let text = ok(d, &["eda", "--data", "demo", "--out", "eda"]);
    assert!(text.contains("120 movies"), "{text}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("eda/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["movies"], 120);

    std::fs::write(
        d.join("table.csv"),
        "imdb_id,name,score,length,kinds,critics\ntt1,One,7.5,142 min,Drama|Comedy,88\ntt2,Two,N/A,2h 5m,Horror,N/A\n",
    )
    .unwrap();
    let text = ok(
        d,
        &[
            "import",
            "table",
            "--src",
            "table.csv",
            "--out",
            "imported",
            "--map",
            "id=imdb_id",
            "--map",
            "title=name",
            "--map",
            "rating=score",
            "--map",
            "runtime_min=length",
            "--map",
            "genres=kinds",
            "--extra",
            "critics",
        ],
    );
    assert!(text.contains("2 movies imported"), "{text}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(d.join("imported/movies.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["runtime_min"], 142.0);
    assert_eq!(lines[0]["genres"], serde_json::json!(["Drama", "Comedy"]));
    assert_eq!(lines[1]["runtime_min"], 125.0);
    assert!(lines[1].get("rating").is_none_or(|r| r.is_null()));
    assert_eq!(lines[0]["extra"], serde_json::json!({"critics": "88"}));
    assert!(
        lines[1].get("extra").is_none(),
        "a missing extra value is left out"
    );
    let e = fails(
        d,
        &[
            "import",
            "table",
            "--src",
            "table.csv",
            "--out",
            "i2",
            "--map",
            "id=imdb_id",
            "--extra",
            "critic",
        ],
    );
    assert!(e.contains("--extra critic") && e.contains("critics"), "{e}");
    // Counts a typo could make endless are bounded, by flag.
    for (cmd, flag, value) in [
        (
            &["bench", "--config", "q.toml"][..],
            "--steps",
            "1000000000",
        ),
        (&["bench", "--config", "q.toml"][..], "--reps", "0"),
        (
            &["scrape", "--list", "http://127.0.0.1:9/x", "--out", "s"][..],
            "--max-pages",
            "99999",
        ),
    ] {
        let e = fails(d, &[cmd, &[flag, value]].concat());
        assert!(e.contains(flag) && e.contains(value), "{e}");
    }
    assert!(!d.join("s").exists());

    ok(
        d,
        &[
            "bench",
            "--config",
            "q.toml",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--reps",
            "1",
            "--json",
            "bench.json",
        ],
    );
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(d.join("bench.json")).unwrap()).unwrap();
    assert!(rows.len() >= 2, "training and batching: {rows:?}");
    for r in &rows {
        assert!(r["median"].as_f64().is_some_and(|m| m > 0.0), "{r}");
    }
}

/// Every headline metric has a 95 % bootstrap interval around it, printed and saved.
fn check_confidence(eval: &serde_json::Value, text: &str) {
    assert!(text.contains("95 % CI"), "{text}");
    let c = &eval["confidence"];
    assert_eq!(c["resamples"], 1000, "{c}");
    for (part, key) in [
        ("genres", "micro_f1"),
        ("genres", "top1"),
        ("rating", "mae"),
    ] {
        let v = eval[part][key].as_f64().unwrap();
        let lo = c["intervals"][key][0].as_f64().unwrap();
        let hi = c["intervals"][key][1].as_f64().unwrap();
        assert!(
            lo <= v && v <= hi && lo < hi,
            "{key}: {v} outside {lo}..{hi}"
        );
    }
}

/// The test split's per-movie predictions, for paired comparisons with other models.
fn check_saved_predictions(run: &Path, eval: &serde_json::Value) {
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("eval_predictions.json")).unwrap()).unwrap();
    let genres = saved["genres"].as_array().unwrap().len();
    let probs = saved["genre_probs"].as_array().unwrap();
    assert_eq!(probs.len(), saved["genre_ids"].as_array().unwrap().len());
    assert!(probs.iter().all(|p| p.as_array().unwrap().len() == genres));
    assert_eq!(saved["thresholds"].as_array().unwrap().len(), genres);
    assert_eq!(
        saved["rating_ids"].as_array().unwrap().len(),
        eval["rating"]["count"].as_u64().unwrap() as usize
    );
}

/// The backbone copies in the export `model`: their kinds (`text`, `poster`), sorted.
/// The export `model` turned into one of format 2, whose text copy also held the
/// checkpoint's own weights, recorded by their SHA-256: the loader reads those, and predicts
/// as the format-3 export did (`predict` runs in `d`, `want` is its output).
fn an_export_of_format_2_still_loads(d: &Path, predict: &[&str], want: &str) {
    use cinefuse_model::pretrained::load::file_sha256;
    let old = d.join("model-format-2");
    copy_tree(&d.join("model"), &old);
    let copy = std::fs::read_dir(old.join("backbones"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("text-"))
        .unwrap()
        .path();
    std::fs::copy(
        d.join("ckpt/bert/model.safetensors"),
        copy.join("model.safetensors"),
    )
    .unwrap();
    let sha = file_sha256(&copy.join("model.safetensors")).unwrap();
    let edit = |file: &Path, change: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        change(&mut v);
        std::fs::write(file, serde_json::to_vec(&v).unwrap()).unwrap();
    };
    edit(&old.join("manifest.json"), &|v| {
        v["format_version"] = 2.into()
    });
    edit(&old.join("model.frozen.json"), &|v| {
        for f in v["files"].as_array_mut().unwrap() {
            if f["section"] == "model.text" {
                f["sha256"] = sha.clone().into();
            }
        }
    });
    let args: Vec<&str> = (predict.iter())
        .map(|a| if *a == "model" { "model-format-2" } else { a })
        .collect();
    assert_eq!(ok(d, &args), want);
    // The checkpoint's file is what it reads: the portable file alone no longer matches.
    std::fs::remove_file(copy.join("model.safetensors")).unwrap();
    let e = fails(d, &args);
    assert!(e.contains("model.bpk") && e.contains("SHA-256"), "{e}");
    std::fs::remove_dir_all(&old).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn backbone_copies(model: &Path) -> Vec<String> {
    let mut kinds: Vec<String> = std::fs::read_dir(model.join("backbones"))
        .unwrap()
        .flatten()
        .map(|e| {
            e.file_name()
                .to_string_lossy()
                .split('-')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    kinds.sort();
    kinds
}

/// Copies the files of `from` (no sub-folders) into the new folder `to`.
fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

//! (imported into the `cli` test binary)
//! `cinefuse serve`: the JSON API with a real HTTP client against the server on an ephemeral
//! 127.0.0.1 port, path safety, bad requests, concurrency, the pages, and one end-to-end test
//! in headless Chromium driven over WebDriver.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use super::{TINY, ok, train_tiny};

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two tiny runs (one evaluated and exported) in `d`.
fn runs_and_a_model(d: &Path) {
    std::fs::write(d.join("tiny.toml"), TINY).unwrap();
    ok(d, &["synth", "--out", "demo", "--n", "120", "--seed", "3"]);
    train_tiny(
        d,
        "runs/alpha",
        &["train.epochs=2", "model.fusion.kind=\"gmu\""],
    );
    train_tiny(
        d,
        "runs/beta",
        &["train.epochs=2", "model.fusion.kind=\"concat\""],
    );
    ok(d, &["eval", "--run", "runs/alpha"]);
    ok(d, &["export", "--run", "runs/alpha", "--out", "models/m"]);
}

/// Starts `cinefuse serve` on a free port and returns it with its base URL.
fn start_server(d: &Path, extra: &[&str]) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cinefuse"))
        .args(
            [
                &[
                    "serve",
                    "--runs",
                    "runs",
                    "--models",
                    "models",
                    "--addr",
                    "127.0.0.1:0",
                ][..],
                extra,
            ]
            .concat(),
        )
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // Keep reading what the server prints, so that it never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    (Killed(child), url)
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn poster_base64(d: &Path) -> String {
    let bytes = std::fs::read(first_poster(d)).unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn first_poster(d: &Path) -> PathBuf {
    let mut posters: Vec<PathBuf> = std::fs::read_dir(d.join("demo/posters"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    posters.sort();
    posters.remove(0)
}

#[test]
fn a_bag_is_listed_with_its_first_members_start_and_curves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tiny.toml"), TINY).unwrap();
    ok(d, &["synth", "--out", "demo", "--n", "120", "--seed", "3"]);
    train_tiny(d, "runs/bag", &["train.epochs=2", "train.folds=2"]);
    // A blend `cinefuse ensemble` writes holds no bags of its own (it was not listed at all).
    let blend = ["ensemble", "--runs", "runs/bag", "--rating-trees"];
    ok(d, &[&blend[..], &["--out", "runs/blend"]].concat());
    let (_server, url) = start_server(d, &[]);
    let http = client();
    let runs: Vec<Value> = http
        .get(format!("{url}/api/runs"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let by_id = |id: &str| runs.iter().find(|r| r["id"] == id).unwrap().clone();
    let bag = &by_id("bag");
    assert!(
        bag["status"].as_str().unwrap().starts_with("finished (bag"),
        "{bag}"
    );
    assert_eq!(bag["status_kind"], "finished");
    // The bag has no run.json or curves of its own: its first member's stand for them (it
    // showed no start, no backend and 0 epochs).
    assert_eq!(bag["curves_of"], "fold-0");
    // Its validation scores are its out-of-fold ones, as bag.json records them.
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("runs/bag/bag.json")).unwrap())
            .unwrap();
    let oof = &info["calibration"]["out_of_fold"];
    assert_eq!(bag["out_of_fold"]["micro_f1"], oof["genres"]["micro_f1"]);
    assert_eq!(bag["out_of_fold"]["mae"], oof["rating"]["mae"]);
    assert_eq!(bag["epochs"], 2);
    assert!(
        bag["started_unix"].as_u64().unwrap() > 0 && bag["backend"] != "",
        "{bag}"
    );
    let get = |path: &str| http.get(format!("{url}{path}")).send().unwrap();
    let metrics: Vec<Value> = get("/api/runs/bag/metrics").json().unwrap();
    assert_eq!(metrics.len(), 2);
    let page = get("/runs/bag").text().unwrap();
    assert!(
        page.contains("class=\"status-finished\"") && page.contains("Of its first member"),
        "{page}"
    );
    // The blend: its status and out-of-fold scores from its blend.json, its start and curves
    // from its bag's first member, named relative to the runs folder.
    let blend = by_id("blend");
    assert_eq!(blend["status"], "finished (blend of 1)", "{blend}");
    assert_eq!(blend["curves_of"], "bag/fold-0");
    assert_eq!(blend["epochs"], 2);
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("runs/blend/blend.json")).unwrap())
            .unwrap();
    let oof = &info["calibration"]["out_of_fold"];
    assert_eq!(blend["out_of_fold"]["mae"], oof["rating"]["mae"]);
    let metrics: Vec<Value> = get("/api/runs/blend/metrics").json().unwrap();
    assert_eq!(metrics.len(), 2, "its bag's first member's curves");
    let page = get("/runs/blend").text().unwrap();
    assert!(page.contains("Of its first member"), "{page}");
    // A run whose first member is a symbolic link out of the runs folder: its curves are not
    // read from there.
    std::fs::rename(d.join("runs/bag/fold-1"), d.join("outside-fold")).unwrap();
    std::fs::create_dir(d.join("runs/linked")).unwrap();
    std::fs::copy(
        d.join("runs/bag/config.toml"),
        d.join("runs/linked/config.toml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(d.join("outside-fold"), d.join("runs/linked/fold-0")).unwrap();
    let linked: Vec<Value> = get("/api/runs/linked/metrics").json().unwrap();
    assert!(linked.is_empty(), "{linked:?}");
}

#[test]
fn the_api_lists_runs_predicts_and_refuses_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    runs_and_a_model(d);
    std::os::unix::fs::symlink("/etc", d.join("runs/outside")).unwrap();
    let (_server, url) = start_server(d, &["--max-upload-mb", "1"]);
    let http = client();

    let api_runs = || -> Vec<Value> {
        http.get(format!("{url}/api/runs"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let runs = api_runs();
    let ids: Vec<&str> = runs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{runs:?}");
    assert!(ids.contains(&"alpha") && ids.contains(&"beta"));
    let alpha = runs.iter().find(|r| r["id"] == "alpha").unwrap();
    assert_eq!(alpha["status"], "finished");
    assert!(alpha["test"]["micro_f1"].is_number() && alpha["best"]["val_loss"].is_number());
    let top1_ci = &alpha["test_confidence"]["intervals"]["top1"];
    assert!(
        top1_ci[0].as_f64().unwrap() <= alpha["test"]["top1"].as_f64().unwrap(),
        "{alpha}"
    );
    let page = http.get(format!("{url}/")).send().unwrap().text().unwrap();
    assert!(
        page.contains("title=\"95 % CI "),
        "the runs table shows the intervals: {page}"
    );
    let metrics: Vec<Value> = http
        .get(format!("{url}/api/runs/alpha/metrics"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        metrics
            .iter()
            .map(|m| m["epoch"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    // A damaged metrics file is named, by the API and on the run's page, not shown as no
    // epochs; the runs list still shows the run.
    let beta_metrics = d.join("runs/beta/metrics.jsonl");
    let mut text = std::fs::read_to_string(&beta_metrics).unwrap();
    text.push_str("<b>garbage</b>\n");
    std::fs::write(&beta_metrics, text).unwrap();
    let r = http
        .get(format!("{url}/api/runs/beta/metrics"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 500);
    let body: Value = r.json().unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("metrics.jsonl:"),
        "{body}"
    );
    let beta_page = || {
        http.get(format!("{url}/runs/beta"))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    let page = beta_page();
    assert!(
        page.contains("class=\"error\"") && page.contains("not an epoch&#x27;s metrics")
            || page.contains("not an epoch's metrics"),
        "{page}"
    );
    assert!(!page.contains("<b>garbage"), "echoed unescaped");
    // So is a damaged eval.json: named on the run's page and in the API, not shown as "not
    // evaluated yet".
    std::fs::write(d.join("runs/beta/eval.json"), "{\"genres\": <i>cut").unwrap();
    let page = beta_page();
    assert!(
        page.contains("eval.json") && !page.contains("Not evaluated yet"),
        "{page}"
    );
    assert!(!page.contains("<i>cut"), "echoed unescaped");
    let runs = api_runs();
    let beta = runs.iter().find(|r| r["id"] == "beta").unwrap();
    assert!(
        beta["test_error"].as_str().unwrap().contains("eval.json"),
        "{beta}"
    );

    // Ids and paths can never reach outside the runs folder.
    for bad in [
        "..%2Fdemo",
        "%2Fetc%2Fpasswd",
        "..",
        "outside",
        ".hidden",
        "nope",
    ] {
        let r = http
            .get(format!("{url}/api/runs/{bad}/metrics"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 404, "{bad}");
        let body: Value = r.json().unwrap();
        assert!(body["error"].is_string(), "{bad}: {body}");
    }

    let predict = |body: Value| {
        http.post(format!("{url}/api/predict"))
            .json(&body)
            .send()
            .unwrap()
    };
    let movie = json!({"title": "x", "plot": "a family grief story", "year": 1999});
    let r = predict(json!({"movie": movie, "poster_base64": poster_base64(d)}));
    assert_eq!(r.status(), 200);
    let body: Value = r.json().unwrap();
    let p = &body["prediction"];
    assert_eq!(body["model"], "m");
    // The server predicts what `cinefuse predict` predicts for the same movie and poster.
    let poster = first_poster(d);
    let cli = super::ok(
        d,
        &[
            "predict",
            "--model",
            "models/m",
            "--movie",
            &movie.to_string(),
            "--poster",
            poster.to_str().unwrap(),
            "--json",
        ],
    );
    let cli: Value =
        serde_json::from_str(cli.lines().find(|l| l.starts_with('{')).unwrap()).unwrap();
    let (a, b) = (
        p["rating"].as_f64().unwrap(),
        cli["rating"].as_f64().unwrap(),
    );
    assert!((a - b).abs() < 1e-5, "server {a} vs cli {b}");
    let scores = |v: &Value| -> Vec<(String, f64)> {
        v["genres"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["genre"].as_str().unwrap().to_string(),
                    g["probability"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    for ((ga, pa), (gb, pb)) in scores(p).iter().zip(&scores(&cli)) {
        assert!(ga == gb && (pa - pb).abs() < 1e-6, "{ga} {pa} vs {gb} {pb}");
    }
    assert!(!p["genres"].as_array().unwrap().is_empty());
    assert_eq!(p["contributions"].as_array().unwrap().len(), 3);
    assert!(body["warnings"].is_array(), "{body}");
    // A movie with a plot alone is predicted, with the warning `predict` prints, on the page
    // too (escaped like everything it echoes).
    let r = predict(json!({"movie": {"plot": "a family grief story"}}));
    let body: Value = r.json().unwrap();
    let warned = body["warnings"][0].as_str().unwrap_or_default();
    assert!(warned.starts_with("input: no metadata"), "{body}");
    let form = reqwest::blocking::multipart::Form::new().text("plot", "a <b>grief</b> story");
    let page = http
        .post(format!("{url}/predict"))
        .multipart(form)
        .send()
        .unwrap();
    let html = page.text().unwrap();
    assert!(
        html.contains("class=\"warning\">Warning: input: no metadata"),
        "{html}"
    );
    assert!(!html.contains("<b>grief"), "the plot is echoed escaped");

    for (body, says) in [
        (json!({"movie": {"ratng": 5}}), "ratng"),
        (json!({"movie": {"year": 99999}}), "year"),
        (
            json!({"movie": {"poster": "/etc/passwd"}}),
            "reads no paths",
        ),
        (
            json!({"movie": {}, "poster_base64": "%%%"}),
            "poster_base64",
        ),
        (
            json!({"movie": {}, "poster_base64": "bm90IGFuIGltYWdl"}),
            "poster",
        ),
        (json!({"model": "../m", "movie": {}}), "no model"),
        (json!({"movie": {}, "colour": 1}), "colour"),
    ] {
        let r = predict(body.clone());
        assert!(r.status().is_client_error(), "{body}: {}", r.status());
        let e: Value = r.json().unwrap();
        assert!(e["error"].as_str().unwrap().contains(says), "{body}: {e}");
    }
    let r = http
        .post(format!("{url}/api/predict"))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    // On its own client: the server answers 413 without reading the body and closes that
    // connection, which a pooled client could otherwise pick for the next request.
    let big = vec![b'x'; 2 << 20];
    let r = client()
        .post(format!("{url}/api/predict"))
        .body(big)
        .header("content-type", "application/json")
        .send()
        .unwrap();
    assert_eq!(r.status(), 413, "the upload limit");

    // A multipart upload, and eight concurrent clients: the model is shared and consistent.
    let form = reqwest::blocking::multipart::Form::new()
        .text("plot", "a family grief story")
        .file("poster", first_poster(d))
        .unwrap();
    let r = http
        .post(format!("{url}/api/predict"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let reference = p["rating"].as_f64().unwrap();
    let body = json!({"movie": movie, "poster_base64": poster_base64(d)});
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..4 {
                    // Concurrent requests are batched: the same prediction within 1e-5.
                    let r: Value = predict(body.clone()).json().unwrap();
                    let rating = r["prediction"]["rating"].as_f64().unwrap();
                    assert!((rating - reference).abs() < 1e-5, "{rating} vs {reference}");
                }
            });
        }
    });

    // The pages.
    let page = |path: &str| http.get(format!("{url}{path}")).send().unwrap();
    let runs_page = page("/").text().unwrap();
    assert!(
        runs_page.contains("alpha") && runs_page.contains("beta") && runs_page.contains("finished")
    );
    let run_page = page("/runs/alpha").text().unwrap();
    assert!(
        run_page.contains("<svg")
            && run_page.contains("Per-genre F1")
            && run_page.contains("Predicted vs actual rating")
            && run_page.contains("Mean fusion weight"),
        "run page"
    );
    let compare = page("/compare?run=alpha&run=beta").text().unwrap();
    assert!(
        compare.contains("model.fusion.kind") && compare.contains("concat"),
        "config diff"
    );
    assert!(!compare.contains("train.epochs"), "only keys that differ");
    // One run repeated (each repeat read its files again) and too many runs are refused.
    let twice = page("/compare?run=alpha&run=beta&run=alpha");
    assert_eq!(twice.status(), 400);
    assert!(twice.text().unwrap().contains("picked twice"));
    let many: Vec<String> = (0..21).map(|i| format!("run=r{i}")).collect();
    let many = page(&format!("/compare?{}", many.join("&")));
    assert_eq!(many.status(), 400);
    assert!(many.text().unwrap().contains("at most 20 runs"));
    assert_eq!(page("/runs/..%2F..%2Fetc").status(), 404);
    assert_eq!(page("/no/such/page").status(), 404);
    let evil_run = d.join("runs/<img src=x onerror=alert(1)>");
    std::fs::create_dir(&evil_run).unwrap();
    std::fs::write(evil_run.join(".cinefuse-output"), "run\n").unwrap();
    std::fs::copy(
        d.join("runs/alpha/config.toml"),
        evil_run.join("config.toml"),
    )
    .unwrap();
    // A model linked in from outside and a folder that is no model are said, not hidden.
    std::fs::create_dir(d.join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(d.join("elsewhere"), d.join("models/linked")).unwrap();
    std::fs::create_dir(d.join("models/notes")).unwrap();
    std::fs::create_dir(d.join("models/.m.partial-1")).unwrap();
    let health: Value = page("/health").json().unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["models"][0]["id"], "m");
    assert_eq!(health["models"][0]["state"], "ready", "{health}");
    let skipped = health["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 2, "{health}");
    assert_eq!(skipped[0]["name"], "linked");
    assert!(
        skipped[0]["why"]
            .as_str()
            .unwrap()
            .contains("symbolic link")
    );
    assert_eq!(skipped[1]["name"], "notes");
    assert!(
        skipped[1]["why"]
            .as_str()
            .unwrap()
            .contains("manifest.json")
    );
    markup_is_escaped_on_every_route(&http, &url);
    non_finite_form_numbers_are_refused(&http, &url);
    the_form_offers_and_reads_every_field_of_the_model(&http, &url);
}

/// The predict form shows every field the model reads, and a form with all of them predicts
/// what the JSON API predicts for the same movie.
fn the_form_offers_and_reads_every_field_of_the_model(http: &reqwest::blocking::Client, url: &str) {
    let page = http.get(format!("{url}/predict?model=m")).send().unwrap();
    let html = page.text().unwrap();
    // The tiny model fuses poster, plot and metadata: every metadata field it encodes is there.
    for field in [
        "title",
        "plot",
        "year",
        "runtime_min",
        "votes",
        "certificate",
        "directors",
        "cast",
        "languages",
        "countries",
    ] {
        assert!(
            html.contains(&format!("name=\"{field}\"")),
            "no {field} field"
        );
    }
    let movie = json!({"title": "Heat", "plot": "a thief and a detective", "year": 1995,
        "runtime_min": 170, "votes": 700000, "certificate": "R",
        "directors": ["Michael Mann"], "cast": ["Al Pacino", "Robert De Niro"],
        "languages": ["English"], "countries": ["USA"]});
    let form = reqwest::blocking::multipart::Form::new()
        .text("model", "m")
        .text("title", "Heat")
        .text("plot", "a thief and a detective")
        .text("year", "1995")
        .text("runtime_min", "170")
        .text("votes", "700000")
        .text("certificate", "R")
        .text("directors", "Michael Mann")
        .text("cast", "Al Pacino, Robert De Niro")
        .text("languages", "English")
        .text("countries", "USA");
    let from_form: Value = http
        .post(format!("{url}/api/predict"))
        .multipart(form)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let from_json: Value = http
        .post(format!("{url}/api/predict"))
        .json(&json!({"model": "m", "movie": movie}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(from_form["prediction"], from_json["prediction"]);
    // The votes matter: a different count gives a different rating.
    let other: Value = http
        .post(format!("{url}/api/predict"))
        .multipart(
            reqwest::blocking::multipart::Form::new()
                .text("model", "m")
                .text("title", "Heat")
                .text("votes", "12"),
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_ne!(
        other["prediction"]["rating"],
        from_json["prediction"]["rating"]
    );
    let r = http
        .post(format!("{url}/api/predict"))
        .multipart(reqwest::blocking::multipart::Form::new().text("ratng", "7"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("unknown form field"));
}

/// Markup sent through every route (path, query, form fields, a model name, a run folder
/// named with markup) never comes back as markup.
fn markup_is_escaped_on_every_route(http: &reqwest::blocking::Client, url: &str) {
    const EVIL: &str = "<script>alert(1)</script>";
    const EVIL_URL: &str = "%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    // HTML must escape it; JSON may carry it as data, but only as JSON that is never sniffed.
    let raw = |r: reqwest::blocking::Response, route: &str| {
        let kind = r.headers()["content-type"].to_str().unwrap().to_string();
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{route}");
        let body = r.text().unwrap();
        if kind.starts_with("application/json") {
            return;
        }
        assert!(
            !body.contains("<script>alert") && !body.contains("<img src=x"),
            "{route} ({kind}) echoes markup unescaped:\n{body}"
        );
    };
    for route in [
        format!("/runs/{EVIL_URL}"),
        format!("/compare?run={EVIL_URL}&run=alpha"),
        format!("/compare?run=alpha&run={EVIL_URL}"),
        format!("/compare?run={EVIL_URL}"),
        format!("/?sort={EVIL_URL}"),
        format!("/?sort=id&desc={EVIL_URL}"),
        format!("/api/runs/{EVIL_URL}/metrics"),
        format!("/{EVIL_URL}"),
        "/".to_string(),
        "/predict".to_string(),
        "/compare?run=alpha&run=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E".to_string(),
        "/runs/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E".to_string(),
    ] {
        let r = http.get(format!("{url}{route}")).send().unwrap();
        raw(r, &route);
    }
    for (field, value) in [
        ("title", EVIL),
        ("plot", EVIL),
        ("year", EVIL),
        ("runtime_min", EVIL),
        ("model", EVIL),
    ] {
        let form = reqwest::blocking::multipart::Form::new().text(field, value);
        let r = http
            .post(format!("{url}/predict"))
            .multipart(form)
            .send()
            .unwrap();
        raw(r, &format!("POST /predict {field}"));
        let r = http
            .post(format!("{url}/api/predict"))
            .json(&json!({"movie": {field: value}}))
            .send()
            .unwrap();
        let kind = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(kind.starts_with("application/json"), "{field}: {kind}");
    }
}

/// Form numbers that JSON cannot carry are refused by name, not read as missing.
fn non_finite_form_numbers_are_refused(http: &reqwest::blocking::Client, url: &str) {
    for value in ["NaN", "inf", "-inf", "1e999"] {
        for field in ["year", "runtime_min"] {
            let form = reqwest::blocking::multipart::Form::new().text(field, value);
            let r = http
                .post(format!("{url}/api/predict"))
                .multipart(form)
                .send()
                .unwrap();
            assert_eq!(r.status(), 400, "{field}={value}");
            let e: Value = r.json().unwrap();
            assert!(e["error"].as_str().unwrap().contains(field), "{e}");
        }
    }
}

/// A raw TCP client: what the server does with connections that send slowly or nothing.
mod slow_clients {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    use super::start_server;

    /// Reads until the server closes the connection; the bytes it sent, or `None` if it was
    /// still open after `wait`.
    fn until_closed(stream: &mut TcpStream, wait: Duration) -> Option<String> {
        stream.set_read_timeout(Some(wait)).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Some(String::from_utf8_lossy(&got).into_owned());
                }
                Err(_) => return None,
            }
        }
    }

    #[test]
    fn idle_slow_and_excess_connections_are_closed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("runs")).unwrap();
        std::fs::create_dir_all(d.join("models")).unwrap();
        let limits = [
            "--header-timeout-s",
            "1",
            "--request-timeout-s",
            "2",
            "--max-connections",
            "3",
        ];
        let (_server, url) = start_server(d, &limits);
        let addr = url.strip_prefix("http://").unwrap().to_string();
        let connect = || TcpStream::connect(&addr).unwrap();
        // Three connections at the cap: each is closed by its own deadline, not left open.
        let started = Instant::now();
        let mut idle = connect();
        let mut slow_header = connect();
        slow_header
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let mut slow_body = connect();
        slow_body
            .write_all(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        // A fourth over the cap is closed at once, without an answer.
        let mut excess = connect();
        let _ = excess.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let answer = until_closed(&mut excess, Duration::from_secs(5));
        assert_eq!(answer.as_deref(), Some(""), "over the cap");
        for (name, stream) in [("idle", &mut idle), ("slow header", &mut slow_header)] {
            let closed = until_closed(stream, Duration::from_secs(10));
            assert!(closed.is_some(), "{name}: still open after 10 s");
        }
        let answer = until_closed(&mut slow_body, Duration::from_secs(10))
            .expect("slow body: still open after 10 s");
        assert!(answer.starts_with("HTTP/1.1 408"), "slow body: {answer}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // The slots are free again.
        let mut fresh = connect();
        fresh
            .write_all(b"GET /api/runs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let answer = until_closed(&mut fresh, Duration::from_secs(10)).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}

/// A WebDriver session on headless Chromium (chromedriver), closed with the test.
struct Browser {
    http: reqwest::blocking::Client,
    session: String,
    _driver: Killed,
}

impl Browser {
    fn start() -> Option<Self> {
        let (chromium, driver) = (
            Path::new("/usr/bin/chromium"),
            Path::new("/usr/bin/chromedriver"),
        );
        if !chromium.exists() || !driver.exists() {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: no chromium/chromedriver (.ci/run installs them)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let driver = Killed(child);
        let http = client();
        let base = format!("http://127.0.0.1:{port}");
        let ready = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            http.get(format!("{base}/status"))
                .send()
                .is_ok_and(|r| r.status().is_success())
        });
        assert!(ready, "chromedriver did not start");
        let profile = tempfile::tempdir().unwrap().keep();
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": chromium, "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--window-size=1200,1000",
            format!("--user-data-dir={}", profile.display())]}}}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"))
            .to_string();
        Some(Self {
            http,
            session: format!("{base}/session/{session}"),
            _driver: driver,
        })
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.session);
        let r = match method {
            "GET" => self.http.get(url).send(),
            _ => self.http.post(url).json(&body).send(),
        };
        r.unwrap().json::<Value>().unwrap()["value"].clone()
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", json!({"url": url}));
    }

    /// Opens `url` and returns its source once it contains `needle`, opening it again while it
    /// does not (on a loaded machine the browser's renderer can time out a navigation).
    fn open_until(&self, url: &str, needle: &str) -> String {
        for _ in 0..10 {
            self.open(url);
            let html = self.page();
            if html.contains(needle) {
                return html;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("{url} never showed {needle:?}: {}", self.page());
    }

    fn element(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{css}: {v}"))
            .to_string()
    }

    fn page(&self) -> String {
        self.call("GET", "/source", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Saves a screenshot when `CINEFUSE_SCREENSHOTS` names a folder (for the docs).
    fn screenshot(&self, name: &str) {
        if let Some(dir) = std::env::var_os("CINEFUSE_SCREENSHOTS") {
            let png = self.call("GET", "/screenshot", Value::Null);
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(png.as_str().unwrap())
                .unwrap();
            std::fs::write(Path::new(&dir).join(format!("{name}.png")), bytes).unwrap();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.session).send();
    }
}

#[test]
fn a_real_browser_predicts_from_the_form_and_sees_the_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    runs_and_a_model(d);
    let (_server, url) = start_server(d, &[]);
    let Some(browser) = Browser::start() else {
        return;
    };
    browser.open(&format!("{url}/predict"));
    let plot = browser.element("#plot");
    browser.call(
        "POST",
        &format!("/element/{plot}/value"),
        json!({"text": "a family grief story"}),
    );
    let poster = browser.element("#poster");
    let file = first_poster(d).display().to_string();
    browser.call(
        "POST",
        &format!("/element/{poster}/value"),
        json!({"text": file}),
    );
    let submit = browser.element("#submit");
    browser.call("POST", &format!("/element/{submit}/click"), json!({}));
    let genres: Vec<String> =
        serde_json::from_slice::<Value>(&std::fs::read(d.join("models/m/manifest.json")).unwrap())
            .unwrap()["genres"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap().to_string())
            .collect();
    let found = (0..50).find_map(|_| {
        std::thread::sleep(Duration::from_millis(200));
        let html = browser.page();
        html.contains("id=\"result\"").then_some(html)
    });
    let html = found.expect("the result appears after submitting the form");
    assert!(
        html.contains("Predicted genres") && html.contains("Rating"),
        "{html}"
    );
    assert!(
        genres.iter().any(|g| html.contains(&format!(">{g}<"))),
        "a genre name in the result"
    );
    browser.screenshot("serve-predict");

    let html = browser.open_until(&format!("{url}/"), "id=\"runs\"");
    assert!(
        html.contains("alpha") && html.contains("beta"),
        "the runs page lists the runs: {html}"
    );
    browser.screenshot("serve-runs");
    browser.open_until(&format!("{url}/runs/alpha"), "Learning curves");
    browser.screenshot("serve-run");
    let compare = format!("{url}/compare?run=alpha&run=beta");
    browser.open_until(&compare, "Config keys that differ");
    browser.screenshot("serve-compare");
}

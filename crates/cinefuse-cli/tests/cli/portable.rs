//! (imported into the `cli` test binary)
//! An export's portable files against `cinefuse predict`: `scripts/cinefuse_torch.py`
//! rebuilds the model from `config.json` and `model.safetensors` in plain PyTorch, and again
//! through ONNX in onnxruntime; both must give `predict`'s probabilities, ratings and
//! intervals within 1e-4. SKIPPED without a Python that has those packages
//! (`scripts/setup_python.sh --torch`, which `.ci/run` calls).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::ok;

const TOLERANCE: f64 = 1e-4;

fn repo_root() -> PathBuf {
    crate::manifest_dir().join("../..")
}

/// A Python with the reference implementation's packages: `CINEFUSE_PYTHON`, else the
/// scripts' venv.
fn torch_python() -> Option<PathBuf> {
    let python = std::env::var_os("CINEFUSE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("scripts/.venv/bin/python"));
    let ok = Command::new(&python)
        .args([
            "-c",
            "import torch, safetensors, tokenizers, PIL, onnx, onnxruntime",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(python)
}

pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The largest difference between two `predict --json` outputs of the same movies, over the
/// genre probabilities and the rating.
pub fn prediction_difference(a: &[Value], b: &[Value]) -> f64 {
    assert_eq!(a.len(), b.len());
    let f = |v: &Value| v.as_f64().unwrap();
    let probs = |m: &Value| -> Vec<(String, f64)> {
        let mut p: Vec<(String, f64)> = m["genres"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["genre"].as_str().unwrap().to_string(),
                    f(&g["probability"]),
                )
            })
            .collect();
        p.sort_by(|x, y| x.0.cmp(&y.0));
        p
    };
    let mut worst: f64 = 0.0;
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x["id"], y["id"]);
        for ((gx, px), (gy, py)) in probs(x).iter().zip(&probs(y)) {
            assert_eq!(gx, gy);
            worst = worst.max((px - py).abs());
        }
        worst = worst.max((f(&x["rating"]) - f(&y["rating"])).abs());
    }
    worst
}

/// The largest difference between `predict --json`'s movies and the reference's.
fn max_difference(cinefuse: &[Value], reference: &[Value]) -> f64 {
    assert_eq!(cinefuse.len(), reference.len(), "{reference:?}");
    let f = |v: &Value| v.as_f64().unwrap();
    let mut worst: f64 = 0.0;
    for (c, r) in cinefuse.iter().zip(reference) {
        assert_eq!(c["id"], r["id"]);
        for g in c["genres"].as_array().unwrap() {
            let name = g["genre"].as_str().unwrap();
            worst = worst.max((f(&g["probability"]) - f(&r["probabilities"][name])).abs());
        }
        worst = worst.max((f(&c["rating"]) - f(&r["rating"])).abs());
        match (
            c["rating_interval"].as_array(),
            r["rating_interval"].as_array(),
        ) {
            (Some(a), Some(b)) => {
                for (x, y) in a.iter().zip(b) {
                    worst = worst.max((f(x) - f(y)).abs());
                }
            }
            (a, b) => assert_eq!(a.is_none(), b.is_none(), "{c} vs {r}"),
        }
    }
    worst
}

/// Checks the export `model` (inside `d`) on the movies of `movies` (a JSONL file in `d`), in
/// PyTorch and, unless `model` is a blend (the reference exports one bag at a time), ONNX.
pub fn check_portable(d: &Path, model: &str, movies: &str) {
    let Some(python) = torch_python() else {
        // CI installs them (.ci/run): there, their absence is a broken install, not a skip.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no Python with torch, safetensors, tokenizers, pillow, onnx and \
             onnxruntime: .ci/run's scripts/setup_python.sh --torch did not install them"
        );
        eprintln!(
            "SKIPPED: the PyTorch/ONNX round trip of {model}: no Python with torch, safetensors, \
             tokenizers, pillow, onnx and onnxruntime (scripts/setup_python.sh --torch)"
        );
        return;
    };
    let blend = d.join(model).join("part-0").is_dir();
    let first = if blend {
        format!("{model}/part-0")
    } else {
        model.to_string()
    };
    for file in ["config.json", "tokenizer.json"] {
        assert!(d.join(&first).join(file).is_file(), "{first}/{file}");
    }
    // One model, or a bag's first member.
    assert!(
        ["model.safetensors", "model-0.safetensors"]
            .iter()
            .any(|f| d.join(&first).join(f).is_file()),
        "{first}: no weights"
    );
    let cinefuse = json_lines(&ok(
        d,
        &["predict", "--model", model, "--jsonl", movies, "--json"],
    ));
    let script = repo_root().join("scripts/cinefuse_torch.py");
    let reference = |args: &[&str]| -> Vec<Value> {
        // One thread: a correctness check that must not starve the tests running beside it.
        let out = Command::new(&python)
            .arg(&script)
            .args(args)
            .current_dir(d)
            .env("OMP_NUM_THREADS", "1")
            .env("MKL_NUM_THREADS", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "cinefuse_torch.py {args:?}: {stderr}");
        json_lines(&String::from_utf8_lossy(&out.stdout))
    };
    let torch = reference(&["predict", model, movies]);
    let worst = max_difference(&cinefuse, &torch);
    assert!(worst <= TOLERANCE, "PyTorch differs by {worst}");
    if blend {
        return;
    }
    let onnx_file = format!("{model}.onnx");
    let onnx = reference(&["onnx", model, &onnx_file, movies]);
    let worst = max_difference(&cinefuse, &onnx);
    assert!(worst <= TOLERANCE, "ONNX differs by {worst}");
    assert!(d.join(&onnx_file).is_file());
}

/// A poster one byte over the export's `max_bytes` (recorded in its portable spec): refused by
/// `predict` and by the PyTorch reference alike, each naming the file. SKIPPED like the round
/// trip without the reference's Python.
pub fn check_poster_limit(d: &Path, model: &str) {
    let Some(python) = torch_python() else {
        eprintln!("SKIPPED: the reference's poster limit: no Python with torch (see above)");
        return;
    };
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join(model).join("config.json")).unwrap())
            .unwrap();
    let max_bytes = config["preprocess"]["poster"]["max_bytes"]
        .as_u64()
        .unwrap();
    let folder = d.join("big-poster");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("big.jpg"), vec![0u8; max_bytes as usize + 1]).unwrap();
    let movies = folder.join("movies.jsonl");
    std::fs::write(&movies, r#"{"id":"big","title":"Big","poster":"big.jpg"}"#).unwrap();
    let movies = movies.to_str().unwrap();
    let e = super::fails(d, &["predict", "--model", model, "--jsonl", movies]);
    assert!(e.contains("big.jpg") && e.contains("oversized"), "{e}");
    let out = Command::new(&python)
        .arg(repo_root().join("scripts/cinefuse_torch.py"))
        .args(["predict", model, movies])
        .current_dir(d)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the reference read an oversized poster"
    );
    assert!(
        stderr.contains("big.jpg") && stderr.contains(&format!("limit of {max_bytes} bytes")),
        "{stderr}"
    );
}

/// The peer's genre-prompt vote (`scripts/baselines_sklearn.py --genre-prompts`) against the
/// reference's on the export `model` (inside `d`), and the flag's refusals:
/// `scripts/check_peer_prompts.py`. SKIPPED like the round trip, without the scripts' Python.
pub fn check_peer_prompts(d: &Path, model: &str) {
    // The peer script imports scikit-learn at the top; the round trip's Python may lack it.
    let python = torch_python().filter(|p| {
        Command::new(p)
            .args(["-c", "import sklearn"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(python) = python else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no Python with torch, safetensors and scikit-learn \
             (scripts/setup_python.sh --torch)"
        );
        eprintln!(
            "SKIPPED: the peer's prompt vote on {model}: no Python with torch, safetensors and \
             scikit-learn (scripts/setup_python.sh --torch)"
        );
        return;
    };
    let out = Command::new(python)
        .arg(repo_root().join("scripts/check_peer_prompts.py"))
        .arg(model)
        .current_dir(d)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "check_peer_prompts.py {model}: {stderr}"
    );
}

//! Training-loop tests on tiny generated data: resume equivalence, interruption and resume,
//! early stopping, and export/predict agreeing with the in-process model.

#[path = "train/bag.rs"]
mod bag;
#[path = "train/blend.rs"]
mod blend;
#[path = "train/extra.rs"]
mod extra;
#[cfg(feature = "wgpu")]
#[path = "train/fixture.rs"]
mod fixture;
#[path = "train/gpu.rs"]
mod gpu;
#[path = "train/tensorboard.rs"]
mod tensorboard;
#[path = "train/without_extras.rs"]
mod without_extras;

use std::path::Path;

use cinefuse_data::split::Split;
use cinefuse_train::config::BackendKind;
use cinefuse_train::evaluate::{LoadedRun, evaluate};
use cinefuse_train::metrics::conformal_quantile;
use cinefuse_train::predictor::Predictor;
use cinefuse_train::run_dir::{
    CHECKPOINTS_DIR, EpochMetrics, Phase, checkpoints_newest_first, latest_checkpoint, read_metrics,
};
use cinefuse_train::{TrainConfig, TrainOptions, train};

/// This package's folder: Cargo's value when it runs the test (right even when the binary was
/// built from another checkout sharing the target folder), else the one compiled in.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}

/// A Python that can `import {modules}`: `CINEFUSE_PYTHON`, else the scripts' venv; `None`
/// when it cannot (the test then says SKIPPED).
fn python_with(modules: &str) -> Option<std::path::PathBuf> {
    let python = std::env::var_os("CINEFUSE_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("../../scripts/.venv/bin/python"));
    let ok = std::process::Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(python)
}

/// Runs `python` with `args` and returns its stdout; fails the test, with both outputs, when
/// the script fails.
fn run_python<S: AsRef<std::ffi::OsStr>>(python: &Path, args: &[S]) -> Vec<u8> {
    let out = std::process::Command::new(python)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Burn seeds one global RNG per backend: tests that compare runs must not interleave.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn tiny_config(root: &Path, extra: &str) -> TrainConfig {
    let text = format!(
        r#"
name = "tiny"
seed = 3
[data]
dataset = "{root}/demo"
prepared = "{root}/prepared"
synth_if_missing = 120
synth_seed = 5
[data.preprocess]
image_width = 16
image_height = 24
tokenizer = "wordlevel"
vocab_size = 300
max_tokens = 16
min_genre_count = 2
val_ratio = 0.25
test_ratio = 0.2
[model]
embed_dim = 16
[model.poster]
widths = [4, 8]
[model.text]
kind = "bag"
d_model = 16
d_ff = 32
[model.meta]
hidden = 16
[model.fusion]
kind = "gmu"
hidden = 16
[optim]
lr = 3e-3
[schedule]
warmup_steps = 2
[train]
epochs = 2
batch_size = 16
num_workers = 0
early_stopping_patience = 0
[backend]
kind = "flex"
[output]
runs_dir = "{root}/runs"
{extra}
"#,
        root = root.display()
    );
    TrainConfig::from_toml_str(&text, "tiny.toml", &[]).unwrap()
}

/// Trains `config` into a fresh run directory.
fn train_into(config: &TrainConfig, run: &Path) -> anyhow::Result<cinefuse_train::RunSummary> {
    train(
        config,
        &TrainOptions {
            out: Some(run.to_path_buf()),
            ..Default::default()
        },
    )
}

/// Trains `config` into a fresh `run`, stopping (with a checkpoint) after `steps` steps.
fn train_interrupted(config: &TrainConfig, run: &Path, steps: usize) -> cinefuse_train::RunSummary {
    let part = train(
        config,
        &TrainOptions {
            out: Some(run.to_path_buf()),
            stop_after_steps: Some(steps),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(part.interrupted, "stopped after {steps} steps");
    part
}

/// Continues the run in `run` from its last checkpoint.
fn try_resume(config: &TrainConfig, run: &Path) -> anyhow::Result<cinefuse_train::RunSummary> {
    train(
        config,
        &TrainOptions {
            resume: Some(run.to_path_buf()),
            ..Default::default()
        },
    )
}

fn resume(config: &TrainConfig, run: &Path) -> cinefuse_train::RunSummary {
    try_resume(config, run).unwrap()
}

/// The movies with these ids from `dataset`, encoded by an exported model for prediction.
fn items_of(
    predictor: &Predictor,
    dataset: &Path,
    ids: &[String],
) -> Vec<cinefuse_train::predictor::ModelInput> {
    let movies = cinefuse_data::movie::read_movies(dataset).unwrap();
    let by_id: std::collections::HashMap<_, _> = movies.iter().map(|m| (m.id.clone(), m)).collect();
    ids.iter()
        .map(|id| predictor.item(by_id[id], None, dataset).unwrap())
        .collect()
}

fn run_info(run: &Path) -> cinefuse_train::run_dir::RunInfo {
    cinefuse_train::run_dir::read_json(&run.join(cinefuse_train::run_dir::RUN_FILE)).unwrap()
}

/// A value of an epoch's metrics, by name.
type Metric = (&'static str, fn(&EpochMetrics) -> f64);

/// The two losses of an epoch.
const LOSSES: [Metric; 2] = [
    ("train_loss", |m| m.train_loss),
    ("val_loss", |m| m.val_loss),
];

/// Both losses of every epoch agree to 1e-6: a continued run followed the uninterrupted one.
fn assert_same_losses(full: &cinefuse_train::RunSummary, done: &cinefuse_train::RunSummary) {
    assert_eq!(full.history.len(), done.history.len(), "epochs compared");
    for (key, value) in LOSSES {
        for (a, b) in full.history.iter().zip(&done.history) {
            let (a, b) = (value(a), value(b));
            assert!(
                (a - b).abs() < 1e-6,
                "{key}: uninterrupted {a} vs continued {b}"
            );
        }
    }
}

fn last(history: &[EpochMetrics], value: fn(&EpochMetrics) -> f64) -> f64 {
    value(history.last().unwrap())
}

#[test]
fn resuming_after_one_epoch_matches_an_uninterrupted_run() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path(), "");
    let full = train_into(&config, &dir.path().join("full")).unwrap();
    assert_eq!(full.epochs_completed, 2);

    // Stopped exactly at the end of epoch 1, then resumed for epoch 2.
    let steps_per_epoch = full.history[0].step;
    let part = train_interrupted(&config, &dir.path().join("split"), steps_per_epoch);
    assert!(part.interrupted);
    assert_eq!(part.epochs_completed, 1);
    let resumed = resume(&config, &dir.path().join("split"));
    assert_eq!(resumed.epochs_completed, 2);
    assert_eq!(
        resumed.history.len(),
        2,
        "metrics.jsonl has one line per epoch"
    );
    let (a, b) = (
        last(&full.history, |m| m.val_loss),
        last(&resumed.history, |m| m.val_loss),
    );
    assert!((a - b).abs() < 1e-4, "uninterrupted {a} vs resumed {b}");
    let (a, b) = (
        last(&full.history, |m| m.train_loss),
        last(&resumed.history, |m| m.train_loss),
    );
    assert!((a - b).abs() < 1e-4, "uninterrupted {a} vs resumed {b}");
    // The weights themselves, through what they predict: every output agrees.
    let open = |run: &str| LoadedRun::open(&dir.path().join(run), Some(BackendKind::Flex)).unwrap();
    let (x, y) = (open("full"), open("split"));
    let (px, py) = (
        x.predict(&x.prepared, Some(Split::Test)),
        y.predict(&y.prepared, Some(Split::Test)),
    );
    for (a, b) in px
        .probs
        .iter()
        .zip(&py.probs)
        .chain(px.rating.iter().zip(&py.rating))
    {
        assert!((a - b).abs() < 1e-5, "uninterrupted {a} vs resumed {b}");
    }
}

#[test]
fn an_interrupt_mid_epoch_resumes_exactly() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config(dir.path(), "");
    // Plenty of randomness for a resume to get wrong: dropout masks differ per batch.
    config.model.fusion.dropout = 0.3;
    config.model.modality_dropout = 0.2;
    let full = train_into(&config, &dir.path().join("full")).unwrap();
    let steps_per_epoch = full.history[0].step;
    assert!(steps_per_epoch > 3, "step 2 is mid-epoch");
    let run = dir.path().join("run");
    let part = train_interrupted(&config, &run, 2);
    assert!(part.interrupted);
    assert_eq!(part.epochs_completed, 0);
    let ckpt = latest_checkpoint(&run).expect("checkpoint written on interrupt");
    assert!(ckpt.join("model.bpk").exists() && ckpt.join("optim.bpk").exists());
    let done = resume(&config, &run);
    assert_eq!(done.epochs_completed, 2);
    assert_same_losses(&full, &done);
    assert!(run.join("best/model.bpk").exists());
    assert!(
        !run.join(CHECKPOINTS_DIR)
            .join(".epoch-0002.partial")
            .exists()
    );
    // A second fresh run into the same directory is refused instead of overwriting it.
    let err = train(
        &config,
        &TrainOptions {
            out: Some(run.clone()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");
}

#[test]
fn a_damaged_latest_checkpoint_falls_back_to_the_one_before() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path(), "");
    let full = train_into(&config, &dir.path().join("full")).unwrap();
    let steps_per_epoch = full.history[0].step;
    // Stopped two steps into the second epoch: the checkpoints of epoch 1 and of the stop.
    let run = dir.path().join("run");
    train_interrupted(&config, &run, steps_per_epoch + 2);
    let checkpoints = checkpoints_newest_first(&run);
    assert_eq!(checkpoints.len(), 2, "{checkpoints:?}");
    std::fs::write(checkpoints[0].join("model.bpk"), b"damaged").unwrap();
    // The resume continues from epoch 1's checkpoint (it failed on the damaged one before),
    // and ends where the uninterrupted run did.
    let done = resume(&config, &run);
    assert_eq!(done.epochs_completed, full.epochs_completed);
    assert_same_losses(&full, &done);
    // With every checkpoint damaged, the error names the file.
    let run = dir.path().join("run2");
    train_interrupted(&config, &run, 2);
    let only = latest_checkpoint(&run).unwrap();
    std::fs::write(only.join("model.bpk"), b"damaged").unwrap();
    let e = format!("{:#}", try_resume(&config, &run).unwrap_err());
    assert!(e.contains("model.bpk"), "{e}");
}

/// `config` with a tiny BERT as its plot encoder, its top layer fine-tuned and its embeddings
/// frozen. The BERT (in `root/ckpt/bert`) reads the word-level tokenizer `prepare` trains.
fn partly_fine_tuned_config(root: &Path) -> TrainConfig {
    top_layer_fine_tuned(root, 1)
}

/// `partly_fine_tuned_config` with a BERT of `layers` layers, all but the top one frozen.
fn top_layer_fine_tuned(root: &Path, layers: usize) -> TrainConfig {
    use cinefuse_data::tokenizer::TokenizerKind;
    use cinefuse_model::encoders::text::TextEncoderKind;
    use cinefuse_model::pretrained::testing::TinyBert;
    let plain = tiny_config(root, "");
    cinefuse_train::data_setup::ensure_prepared(&plain, None).unwrap();
    let bert = root.join("ckpt/bert");
    std::fs::create_dir_all(&bert).unwrap();
    std::fs::copy(
        root.join("prepared/tokenizer.json"),
        bert.join("tokenizer.json"),
    )
    .unwrap();
    let tiny = TinyBert {
        layers,
        ..TinyBert::OVER_TINY_DATASETS
    };
    tiny.write(&bert, &tiny.tensors(1)).unwrap();
    let mut config = plain;
    config.data.prepared = Some(root.join("prepared-bert"));
    config.data.preprocess.tokenizer = TokenizerKind::Pretrained;
    config.data.preprocess.tokenizer_path = Some(bert.clone());
    let text = &mut config.model.text;
    text.kind = TextEncoderKind::Bert;
    text.pretrained = Some(bert);
    text.freeze = false;
    text.trainable_layers = Some(1);
    config
}

/// Checkpoints of a partly fine-tuned backbone leave its frozen layers out (they are the
/// checkpoint folder's): a resume must read them from there again, not train the top layer
/// on the random ones a fresh model starts with.
#[test]
fn a_partly_fine_tuned_backbone_resumes_exactly() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = partly_fine_tuned_config(dir.path());
    let full = train_into(&config, &dir.path().join("full")).unwrap();
    let run = dir.path().join("run");
    train_interrupted(&config, &run, 2);
    let ckpt = latest_checkpoint(&run).expect("checkpoint written on interrupt");
    assert!(
        ckpt.join("model.frozen.json").is_file(),
        "the checkpoint leaves the frozen embeddings out"
    );
    let done = resume(&config, &run);
    assert_same_losses(&full, &done);
}

/// Each epoch validates a partly fine-tuned backbone from its frozen layers' states (here the
/// embeddings and the first of two layers), computed once per run: the validation loss the
/// best epoch recorded must be the one the saved model gives on the same movies running its
/// whole backbone: equal to the last digit here, 1e-6 apart with two movies' states swapped.
#[test]
fn validation_from_the_frozen_layers_states_matches_whole_passes() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut config = top_layer_fine_tuned(dir.path(), 2);
    config.train.epochs = 2;
    let run = dir.path().join("run");
    let summary = train_into(&config, &run).unwrap();
    let recorded = summary.history[summary.best_epoch - 1].val_loss;
    let loaded = LoadedRun::open(&run, Some(BackendKind::Flex)).unwrap();
    let (_, whole) = loaded.tuned_thresholds();
    assert!(
        (recorded - whole.loss).abs() < 1e-8,
        "validation during training {recorded} vs the saved model {}",
        whole.loss
    );
}

/// A run killed before it wrote any checkpoint (a bag member stopped in its first epoch) is
/// started over by `--resume`, from the same seed, and ends where an uninterrupted run does.
#[test]
fn resuming_a_run_without_a_checkpoint_starts_it_over() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path(), "");
    let full = train_into(&config, &dir.path().join("full")).unwrap();
    let run = dir.path().join("run");
    train_interrupted(&config, &run, 2);
    std::fs::remove_dir_all(run.join(CHECKPOINTS_DIR)).unwrap();
    assert!(latest_checkpoint(&run).is_none());
    let done = resume(&config, &run);
    assert_eq!(done.epochs_completed, 2);
    assert_eq!(done.history.len(), 2, "one metrics line per epoch");
    assert_same_losses(&full, &done);
    // Killed during its setup (no run.json yet): nothing to resume, and it says so.
    std::fs::remove_file(run.join(cinefuse_train::run_dir::RUN_FILE)).unwrap();
    let e = try_resume(&config, &run).unwrap_err().to_string();
    assert!(
        e.contains("stopped during its setup") && e.contains("run.json"),
        "{e}"
    );
}

#[test]
fn training_reduces_loss_and_early_stopping_stops() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path(), "");
    let mut c = config.clone();
    c.train.epochs = 4;
    let r = train_into(&c, &dir.path().join("a")).unwrap();
    let h = read_metrics(&r.run_dir).unwrap();
    assert_eq!(h.len(), 4);
    assert!(h[3].train_loss < h[0].train_loss);
    // With a negligible learning rate top-1 accuracy cannot improve: stop after `patience`.
    let mut c = config.clone();
    c.train.epochs = 6;
    c.train.early_stopping_patience = 1;
    c.train.monitor = cinefuse_train::config::Monitor::ValTop1;
    c.optim.lr = 1e-9;
    c.schedule.warmup_steps = 0;
    for patience in [1, 2] {
        c.train.early_stopping_patience = patience;
        let r = train_into(&c, &dir.path().join(format!("b{patience}"))).unwrap();
        assert!(r.stopped_early, "{:?}", r.history);
        assert_eq!(r.best_epoch, 1, "nothing improves on the first epoch");
        assert_eq!(
            r.epochs_completed,
            1 + patience,
            "stops after `patience` flat epochs"
        );
    }
}

#[test]
fn the_best_model_kept_between_checkpoints_is_the_best_epochs() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut c = tiny_config(dir.path(), "");
    // One checkpoint, at the end: the best model waits in memory from its epoch until then,
    // while later epochs keep updating the weights it was taken from.
    (c.train.epochs, c.train.checkpoint_every) = (8, 100);
    (c.train.early_stopping_patience, c.optim.lr) = (0, 3e-2);
    let r = train_into(&c, &dir.path().join("run")).unwrap();
    assert!(
        r.best_epoch < r.epochs_completed,
        "the test needs a best epoch before the last: {:?}",
        r.history
    );
    let best = &r.history[r.best_epoch - 1];
    let report = evaluate(&r.run_dir, Split::Val, None, None).unwrap();
    assert_eq!(report.best_epoch, r.best_epoch);
    assert!(
        (report.rating.mae - best.val_mae).abs() < 1e-5,
        "{} vs {}",
        report.rating.mae,
        best.val_mae
    );
    assert!((report.genres.top1 - best.val_top1).abs() < 1e-9);
    let checkpoints = std::fs::read_dir(r.run_dir.join("checkpoints"))
        .unwrap()
        .count();
    assert_eq!(checkpoints, 1, "only the last epoch's checkpoint");
}

#[test]
fn predictions_from_the_export_match_the_in_process_model() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path(), "");
    let r = train_into(&config, &dir.path().join("run")).unwrap();
    let report = evaluate(&r.run_dir, Split::Test, None, None).unwrap();
    assert!(report.movies > 0);
    assert!(r.run_dir.join("eval.json").exists());
    let model_dir = dir.path().join("model");
    cinefuse_train::export::export(&r.run_dir, &model_dir, None).unwrap();
    for f in [
        "model.bpk",
        "config.toml",
        "preprocess.json",
        "tokenizer.json",
        "manifest.json",
        "README.md",
    ] {
        assert!(model_dir.join(f).exists(), "{f}");
    }
    // The model card: the data it saw, its test scores beside the baselines, the interval.
    let card = std::fs::read_to_string(model_dir.join("README.md")).unwrap();
    let exported: cinefuse_train::export::Manifest =
        cinefuse_train::run_dir::read_json(&model_dir.join("manifest.json")).unwrap();
    // A second export of the run digests the same weights (the files differ in parameter ids).
    cinefuse_train::export::export(&r.run_dir, &dir.path().join("again"), None).unwrap();
    let again: cinefuse_train::export::Manifest =
        cinefuse_train::run_dir::read_json(&dir.path().join("again/manifest.json")).unwrap();
    assert_eq!(again.weights_sha256, exported.weights_sha256);
    let counts = cinefuse_data::Prepared::open(&run_info(&r.run_dir).prepared_dir)
        .unwrap()
        .samples
        .iter()
        .fold([0; 3], |mut n, s| {
            n[s.split as usize] += 1;
            n
        });
    for needle in [
        exported.data_hash.clone(),
        format!(
            "{} train, {} validation and {} test movies",
            counts[0], counts[1], counts[2]
        ),
        format!(
            "| genre micro-F1 | {:.3} | {:.3} |",
            exported.test.micro_f1, report.baselines.majority.micro_f1
        ),
        format!(
            "measured {:.1} %",
            report.interval.as_ref().unwrap().coverage * 100.0
        ),
        "cinefuse train --config config.toml".into(),
        "decision thresholds, chosen on held-out predictions: each genre's own F1-best \
         threshold, pulled 25 % of the way to one shared threshold"
            .into(),
    ] {
        assert!(card.contains(&needle), "the card lacks {needle:?}:\n{card}");
    }

    let run = LoadedRun::open(&r.run_dir, Some(BackendKind::Flex)).unwrap();
    let reference = run.predict(&run.prepared, Some(Split::Test));
    let predictor = Predictor::load(&model_dir, Some(BackendKind::Flex)).unwrap();

    // Thresholds and the interval are calibrated on validation and travel in the manifest.
    let (val_thresholds, val) = run.tuned_thresholds();
    let manifest = &predictor.manifest;
    assert_eq!(manifest.thresholds, val_thresholds);
    let (vp, vt) = val.labelled_ratings();
    let residuals: Vec<f32> = vp.iter().zip(&vt).map(|(p, t)| p - t).collect();
    let half_width = conformal_quantile(&residuals, manifest.interval_coverage);
    assert!(half_width.is_finite() && half_width > 0.0, "{half_width}");
    assert_eq!(manifest.interval_half_width, Some(half_width));
    let items = items_of(&predictor, &dir.path().join("demo"), &reference.ids);
    let preds = predictor.predict(&items);
    // A batch predicts what each movie alone predicts (the server batches requests).
    for (i, batched) in preds.iter().enumerate() {
        let alone = &predictor.predict(&items[i..=i])[0];
        assert!((alone.rating - batched.rating).abs() < 1e-5, "movie {i}");
        for (a, b) in alone.genres.iter().zip(&batched.genres) {
            assert_eq!(a.genre, b.genre);
            assert!((a.probability - b.probability).abs() < 1e-5, "movie {i}");
        }
    }
    let g = reference.n_genres;
    for (i, p) in preds.iter().enumerate() {
        assert_eq!(p.id, reference.ids[i]);
        assert!(
            (p.rating - reference.rating[i]).abs() < 1e-4,
            "{} vs {}",
            p.rating,
            reference.rating[i]
        );
        for gs in &p.genres {
            let k = predictor
                .manifest
                .genres
                .iter()
                .position(|n| *n == gs.genre)
                .unwrap();
            assert!((gs.probability - reference.probs[i * g + k]).abs() < 1e-4);
            assert_eq!(
                gs.predicted,
                gs.probability >= manifest.thresholds[k],
                "{}",
                gs.genre
            );
        }
        let expected = [
            (p.rating - half_width).max(0.0),
            (p.rating + half_width).min(10.0),
        ];
        assert_eq!(p.rating_interval, Some(expected));
        let total: f32 = p.contributions.iter().map(|c| c.share).sum();
        assert!((total - 1.0).abs() < 1e-3, "contributions sum to 1");
        assert_eq!(p.contribution_method, "gate");
    }
}

#[test]
fn per_modality_pretraining_then_fusion_fine_tuning() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config(dir.path(), "");
    config.train.epochs = 3;
    config.train.pretrain_epochs = 1;
    config.train.keep_checkpoints = 3;
    let r = train_into(&config, &dir.path().join("run")).unwrap();
    let phases: Vec<Phase> = r.history.iter().map(|h| h.phase).collect();
    assert_eq!(phases, vec![Phase::Pretrain, Phase::Train, Phase::Train]);
    assert!(
        r.best_epoch >= 2,
        "the best model is chosen after pre-training"
    );

    // Pre-training weighs only the per-modality heads: the fusion head is left as initialized
    // (compared with a run whose learning rate is too small to move anything), the encoders
    // learn, and fine-tuning then moves the fusion head too.
    let mut frozen = config.clone();
    frozen.train.epochs = 1;
    frozen.train.pretrain_epochs = 0;
    frozen.optim.lr = 1e-30;
    let init = train_into(&frozen, &dir.path().join("init")).unwrap();
    let at = |run: &Path, epoch: usize| checkpoint_model(run, epoch);
    let (initial, pretrained, tuned) = (at(&init.run_dir, 1), at(&r.run_dir, 1), at(&r.run_dir, 3));
    let fusion = |m: &cinefuse_model::CinefuseModel| param_values(m.fusion.as_ref().unwrap());
    let poster = |m: &cinefuse_model::CinefuseModel| param_values(m.poster.as_ref().unwrap());
    assert_eq!(
        fusion(&pretrained),
        fusion(&initial),
        "pre-training leaves the fusion head"
    );
    assert_ne!(
        poster(&pretrained),
        poster(&initial),
        "pre-training trains the encoders"
    );
    assert_ne!(
        fusion(&tuned),
        fusion(&initial),
        "fine-tuning trains the fusion head"
    );
}

/// Every float parameter's values, in visiting order.
fn param_values<M: burn::module::Module>(module: &M) -> Vec<Vec<f32>> {
    struct Values(Vec<Vec<f32>>);
    impl burn::module::ModuleVisitor for Values {
        fn visit_float<const D: usize>(
            &mut self,
            param: &burn::module::Param<burn::prelude::Tensor<D>>,
        ) {
            self.0.push(
                param
                    .val()
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec()
                    .unwrap(),
            );
        }
    }
    let mut v = Values(Vec::new());
    module.visit(&mut v);
    v.0
}

/// The model of a run's periodic checkpoint after `epoch`.
fn checkpoint_model(run: &Path, epoch: usize) -> cinefuse_model::CinefuseModel {
    use burn::module::Module;
    let info: cinefuse_train::run_dir::RunInfo =
        cinefuse_train::run_dir::read_json(&run.join("run.json")).unwrap();
    let config = TrainConfig::load(&run.join("config.toml"), &[]).unwrap();
    let file = run
        .join(CHECKPOINTS_DIR)
        .join(format!("epoch-{epoch:04}"))
        .join("model.bpk");
    config
        .model
        .init(&info.shapes, &burn::prelude::Device::flex())
        .try_load_file(&file)
        .unwrap()
}

#[test]
fn a_run_refuses_prepared_data_that_changed_under_it() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config(dir.path(), "");
    config.train.epochs = 1;
    let r = train_into(&config, &dir.path().join("run")).unwrap();
    assert!(evaluate(&r.run_dir, Split::Test, None, None).is_ok());
    let mut other = config.data.preprocess.clone();
    other.max_tokens = 8;
    cinefuse_data::prepare_dataset(
        &dir.path().join("demo"),
        &dir.path().join("prepared"),
        &other,
    )
    .unwrap();
    let err = evaluate(&r.run_dir, Split::Test, None, None).err().unwrap();
    assert!(format!("{err:#}").contains("prepared again"), "{err:#}");
}

/// An export trained on plots and metadata only, with the rating routed to the metadata head:
/// the rating ignores the plot, a missing plot contributes nothing, a poster is ignored, and
/// the leave-one-out shares say so; for a single model and for a repeated bag, whose shares
/// must compare its first member with itself, not with the mean of its sets.
#[test]
fn exports_of_modality_subsets_handle_missing_inputs_and_explain_predictions() {
    use cinefuse_model::Modality;
    use cinefuse_model::fusion::FusionKind;
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config(dir.path(), "");
    config.model.modalities = vec![Modality::Text, Modality::Meta];
    config.model.fusion.kind = FusionKind::Concat;
    config.model.rating_modality = Some(Modality::Meta);
    explains_missing_inputs(&config, dir.path(), "single");
    config.train.folds = 2;
    config.train.bag_sets = 2;
    explains_missing_inputs(&config, dir.path(), "repeated-bag");
}

/// Trains `config` into `root/NAME`, exports it and checks its predictions of one movie and
/// of the same movie lacking each input (see the test above).
fn explains_missing_inputs(config: &TrainConfig, root: &Path, name: &str) {
    use cinefuse_model::Modality;
    let r = train_into(config, &root.join(name)).unwrap();
    let model_dir = root.join(format!("{name}-model"));
    cinefuse_train::export::export(&r.run_dir, &model_dir, None).unwrap();
    let predictor = Predictor::load(&model_dir, Some(BackendKind::Flex)).unwrap();
    assert_eq!(
        predictor.manifest.modalities,
        vec![Modality::Text, Modality::Meta]
    );

    let base = root.join("demo");
    let movies = cinefuse_data::movie::read_movies(&base).unwrap();
    let full = movies
        .iter()
        .find(|m| m.plot.is_some() && m.poster.is_some())
        .unwrap()
        .clone();
    let variant = |id: &str, change: &dyn Fn(&mut cinefuse_data::Movie)| {
        let mut m = full.clone();
        m.id = id.into();
        change(&mut m);
        m
    };
    let movies = [
        full.clone(),
        variant("no-plot", &|m| m.plot = None),
        variant("other-plot", &|m| {
            m.plot = Some("astronauts drift through a silent frozen station".into())
        }),
        variant("no-poster", &|m| m.poster = None),
    ];
    let items: Vec<_> = movies
        .iter()
        .map(|m| predictor.item(m, None, &base).unwrap())
        .collect();
    let preds = predictor.predict(&items);
    let probs = |i: usize| -> Vec<(String, f32)> {
        let mut g: Vec<_> = preds[i]
            .genres
            .iter()
            .map(|g| (g.genre.clone(), g.probability))
            .collect();
        g.sort_by(|a, b| a.0.cmp(&b.0));
        g
    };
    let share = |i: usize, md: Modality| {
        preds[i]
            .contributions
            .iter()
            .find(|c| c.modality == md)
            .unwrap()
            .share
    };

    assert_eq!(
        preds[1].rating, preds[0].rating,
        "the rating comes from metadata"
    );
    assert_eq!(
        preds[2].rating, preds[0].rating,
        "the rating comes from metadata"
    );
    assert_ne!(probs(2), probs(0), "the genres read the plot");
    assert_eq!(
        probs(3),
        probs(0),
        "no poster encoder: the poster is ignored"
    );
    for p in &preds {
        assert_eq!(p.contribution_method, "leave-one-out");
        let total: f32 = p.contributions.iter().map(|c| c.share).sum();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
    }
    assert_eq!(
        share(1, Modality::Text),
        0.0,
        "{name}: a missing plot contributes nothing"
    );
    assert_eq!(share(1, Modality::Meta), 1.0);
    assert!(share(0, Modality::Text) > 0.0 && share(0, Modality::Meta) > 0.0);
}

#[test]
fn a_run_whose_dataset_changed_is_not_resumed_on_re_prepared_data() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path(), "");
    let run = dir.path().join("run");
    train_interrupted(&config, &run, 2);
    let prepared = dir.path().join("prepared");
    let before = std::fs::read(prepared.join("samples.jsonl")).unwrap();
    // The dataset is edited after the run started: one movie fewer.
    let movies = dir.path().join("demo/movies.jsonl");
    let text = std::fs::read_to_string(&movies).unwrap();
    let kept: Vec<&str> = text.lines().skip(1).collect();
    std::fs::write(&movies, kept.join("\n") + "\n").unwrap();
    let e = try_resume(&config, &run).unwrap_err();
    assert!(format!("{e:#}").contains("no longer matches"), "{e:#}");
    assert_eq!(
        std::fs::read(prepared.join("samples.jsonl")).unwrap(),
        before,
        "the run's prepared data is left as it was"
    );
}

/// With several loader threads batches may be assembled out of order; a mid-epoch interrupt
/// and resume must still reproduce the uninterrupted run (each batch is seeded by its index).
#[test]
fn a_mid_epoch_resume_with_several_loader_workers_is_exact() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config(dir.path(), "");
    config.train.num_workers = 3;
    config.model.fusion.dropout = 0.3;
    let full = train_into(&config, &dir.path().join("full")).unwrap();
    let run = dir.path().join("run");
    train_interrupted(&config, &run, 3);
    let done = resume(&config, &run);
    assert_same_losses(&full, &done);
}

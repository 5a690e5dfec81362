//! (imported into the `train` test binary)
//! The GPU training paths, run on wgpu's lavapipe adapter: data-parallel training on two
//! devices and mixed precision. Both compare against one-device f32 training on flex.

use std::path::Path;

use cinefuse_model::Modality;
use cinefuse_train::config::{BackendKind, Precision};
use cinefuse_train::run_dir::{EpochMetrics, RUN_FILE, TrainState, latest_checkpoint, read_json};
use cinefuse_train::{TrainConfig, TrainOptions, train};

use super::{resume, serial, tiny_config, train_interrupted, train_into};

/// Plot + metadata without dropout: no batch norm (whose batch statistics are per replica)
/// and no random draws after the seeded initialization, so runs can be compared step by step.
fn deterministic_config(root: &Path) -> TrainConfig {
    let mut config = tiny_config(root, "");
    config.model.modalities = vec![Modality::Text, Modality::Meta];
    config.model.modality_dropout = 0.0;
    config.model.fusion.dropout = 0.0;
    config.model.meta.dropout = 0.0;
    config.model.text.dropout = 0.0;
    config.train.max_steps_per_epoch = 3;
    config
}

/// Why lavapipe's two devices cannot be tested here, if they cannot: without a Vulkan driver
/// wgpu runs on OpenGL (llvmpipe), which opens one device only.
fn no_second_device() -> Option<String> {
    let env_icd = ["VK_ICD_FILENAMES", "VK_DRIVER_FILES"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|p| !p.is_empty()));
    let icd = env_icd
        || [
            "/usr/share/vulkan/icd.d",
            "/etc/vulkan/icd.d",
            "/usr/local/share/vulkan/icd.d",
        ]
        .iter()
        .any(|d| std::fs::read_dir(d).is_ok_and(|mut e| e.next().is_some()));
    let loader = [
        "/usr/lib/x86_64-linux-gnu/libvulkan.so.1",
        "/usr/lib/aarch64-linux-gnu/libvulkan.so.1",
        "/usr/lib64/libvulkan.so.1",
        "/usr/lib/libvulkan.so.1",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    (!(icd && loader)).then(|| {
        "no Vulkan driver (wgpu runs on OpenGL here, which has one device); .ci/run installs \
         mesa-vulkan-drivers and libvulkan1"
            .to_string()
    })
}

/// Why f16 training cannot be tested on this adapter, if it cannot.
fn no_f16() -> Option<String> {
    use cinefuse_train::backend::{check_precision, select_device};
    let cfg = cinefuse_train::config::BackendConfig {
        kind: BackendKind::Lavapipe,
        ..Default::default()
    };
    let selected = match select_device(&cfg) {
        Ok(s) => s,
        Err(e) => return Some(format!("no wgpu adapter: {e:#}")),
    };
    check_precision(&selected, Precision::F16)
        .err()
        .map(|e| format!("this adapter has no f16: {e:#}"))
}

fn skipped(test: &str, why: Option<String>) -> bool {
    if let Some(why) = why {
        // Straight to stderr, past the test harness's capture: a skip must be visible.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
        return true;
    }
    false
}

/// `config` trained data-parallel on lavapipe's two devices.
fn on_two_lavapipe_devices(config: &TrainConfig) -> TrainConfig {
    let mut parallel = config.clone();
    parallel.backend.kind = BackendKind::Lavapipe;
    parallel.backend.devices = vec![0, 1];
    parallel
}

fn losses(history: &[EpochMetrics]) -> Vec<(f64, f64)> {
    history.iter().map(|h| (h.train_loss, h.val_loss)).collect()
}

fn assert_close(a: &[(f64, f64)], b: &[(f64, f64)], tolerance: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: epochs");
    for (epoch, (x, y)) in a.iter().zip(b).enumerate() {
        for (name, p, q) in [("train", x.0, y.0), ("val", x.1, y.1)] {
            assert!(
                (p - q).abs() <= tolerance * p.abs(),
                "{what}, epoch {}: {name} loss {p} vs {q}",
                epoch + 1
            );
        }
    }
}

/// Two replicas on two wgpu devices (two handles on lavapipe) follow the one-device learning
/// curve, also when interrupted mid-epoch and resumed; the lead device writes the run.
#[test]
fn data_parallel_on_two_devices_follows_one_device_and_resumes() {
    if skipped("data_parallel_on_two_devices", no_second_device()) {
        return;
    }
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = deterministic_config(dir.path());
    let one = train_into(&config, &dir.path().join("one")).unwrap();

    let parallel = on_two_lavapipe_devices(&config);
    let run = dir.path().join("two");
    let part = train_interrupted(&parallel, &run, 4);
    assert!(part.interrupted && part.epochs_completed == 1);
    let done = resume(&parallel, &run);
    assert_eq!(done.epochs_completed, 2);
    // Flex and wgpu differ in f32 rounding only (the single-device wgpu test's tolerance).
    assert_close(
        &losses(&one.history),
        &losses(&done.history),
        1e-3,
        "two devices",
    );
    let info: serde_json::Value = read_json(&run.join(RUN_FILE)).unwrap();
    assert!(
        info["backend"]
            .as_str()
            .unwrap()
            .contains("× 2 (data parallel)"),
        "{info}"
    );
}

/// A run interrupted on two devices resumes on one (and lands where one device would).
#[test]
fn a_two_device_run_resumes_on_one_device() {
    if skipped("resume_on_fewer_devices", no_second_device()) {
        return;
    }
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = deterministic_config(dir.path());
    let one = train_into(&config, &dir.path().join("one")).unwrap();
    let parallel = on_two_lavapipe_devices(&config);
    let run = dir.path().join("two-then-one");
    let part = train_interrupted(&parallel, &run, 4);
    assert!(part.interrupted);
    let done = train(
        &parallel,
        &TrainOptions {
            resume: Some(run.clone()),
            devices: Some(vec![0]),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(done.epochs_completed, 2);
    assert_close(
        &losses(&one.history),
        &losses(&done.history),
        1e-3,
        "two devices, then one",
    );
}

#[test]
fn data_parallel_refuses_flex_and_repeated_devices() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = deterministic_config(dir.path());
    config.backend.devices = vec![0, 1];
    let err = train_into(&config, &dir.path().join("flex")).unwrap_err();
    assert!(
        format!("{err:#}").contains("flex is one CPU device"),
        "{err:#}"
    );
    let err = train(
        &config,
        &TrainOptions {
            out: Some(dir.path().join("twice")),
            backend: Some(BackendKind::Lavapipe),
            devices: Some(vec![1, 1]),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("listed twice"), "{err:#}");
}

/// f16 on lavapipe, interrupted and resumed: the f32 masters train through the half-precision
/// copy, land near the f32 run, and the loss scale travels with the checkpoint.
#[test]
fn f16_training_follows_f32_keeps_f32_masters_and_resumes() {
    if skipped("f16_training", no_f16()) {
        return;
    }
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = deterministic_config(dir.path());
    let full = train_into(&config, &dir.path().join("f32")).unwrap();
    let mut half = config.clone();
    half.backend.kind = BackendKind::Lavapipe;
    half.train.precision = Precision::F16;
    half.train.tensorboard = true;
    let run = dir.path().join("f16");
    let part = train_interrupted(&half, &run, 2);
    assert!(part.interrupted);
    let ckpt = latest_checkpoint(&run).unwrap();
    let state: TrainState = read_json(&ckpt.join("state.json")).unwrap();
    assert!(state.loss_scale.is_some(), "f16 saves its loss scale");
    let done = resume(&half, &run);
    // f16 keeps about 3 significant digits: a few steps stay within a few percent. (That the
    // step really computes in f16 is checked in trainer::step's unit tests.)
    assert_close(&losses(&full.history), &losses(&done.history), 0.03, "f16");
    let last = done.history.last().unwrap();
    // Measured: no step of this run overflows at the initial scale of 2¹⁶ (a skipped step
    // would show here and leave the loss scale lowered).
    let skipped = last.skipped_steps.unwrap();
    assert_eq!(skipped, 0, "{skipped} of 6 steps overflowed");
    let state: TrainState =
        read_json(&latest_checkpoint(&run).unwrap().join("state.json")).unwrap();
    assert_eq!(last.loss_scale, state.loss_scale.map(|s| s.scale));
    // TensorBoard gets the loss scale of every step (both invocations wrote an event file).
    let events: Vec<Vec<u8>> = std::fs::read_dir(run.join("tensorboard"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "one event file per invocation");
    for bytes in &events {
        assert!(bytes.windows(15).any(|w| w == b"step/loss_scale"));
    }
    // The saved weights are the f32 masters: an f32 model on flex loads them as they are.
    let model = cinefuse_train::evaluate::LoadedRun::open(&run, Some(BackendKind::Flex));
    assert!(model.is_ok(), "{:?}", model.err());
}

/// A forced overflow inside the loop: a loss so large that its f16 gradients overflow at the
/// initial scale. Each such step is skipped, the scale halves, and training goes on.
#[test]
fn an_f16_overflow_skips_the_step_and_halves_the_scale() {
    if skipped("f16_overflow", no_f16()) {
        return;
    }
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut half = deterministic_config(dir.path());
    half.backend.kind = BackendKind::Lavapipe;
    half.train.precision = Precision::F16;
    half.train.epochs = 1;
    // A genre loss of thousands, times the initial scale 2¹⁶, is far beyond f16's 65,504.
    half.loss.genre_weight = 1e4;
    let r = train_into(&half, &dir.path().join("overflow")).unwrap();
    let last = r.history.last().unwrap();
    let skipped = last.skipped_steps.unwrap();
    let scale = last.loss_scale.unwrap();
    assert!(skipped >= 1, "no step overflowed: {last:?}");
    assert_eq!(
        scale,
        65536.0 / 2f64.powi(skipped as i32),
        "the scale halves once per skipped step"
    );
    assert!(last.train_loss.is_finite(), "{last:?}");
}

#[test]
fn a_precision_the_backend_cannot_compute_in_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = deterministic_config(dir.path());
    config.train.precision = Precision::F16;
    let err = train_into(&config, &dir.path().join("flex")).unwrap_err();
    assert!(format!("{err:#}").contains("flex trains in f32"), "{err:#}");
    config.train.precision = Precision::Bf16;
    config.backend.kind = BackendKind::Lavapipe;
    let err = train_into(&config, &dir.path().join("bf16")).unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot compute in bf16"),
        "{err:#}"
    );
}

/// On a GPU backend (wgpu on lavapipe here) plot batches are padded to a multiple of
/// `GPU_TOKEN_BUCKET`, so its kernels meet few shapes; flex pads to the longest plot.
#[test]
fn gpu_batches_pad_plots_to_a_bucket() {
    use burn::data::dataloader::batcher::Batcher;
    use cinefuse_data::{MovieBatcher, MovieItem, batch::GPU_TOKEN_BUCKET};
    let cfg = cinefuse_train::config::BackendConfig {
        kind: BackendKind::Lavapipe,
        ..Default::default()
    };
    let device = match cinefuse_train::backend::select_device(&cfg) {
        Ok(s) => s.device,
        Err(e) => {
            skipped(
                "gpu_batches_pad_plots",
                Some(format!("no wgpu adapter: {e:#}")),
            );
            return;
        }
    };
    let plot = MovieItem {
        id: "p".into(),
        tokens: vec![4, 5, 6],
        plot_present: true,
        ..MovieItem::default()
    };
    let batcher = MovieBatcher::new(2, 2, 40);
    let on = |d: &burn::prelude::Device| batcher.batch(vec![plot.clone()], d).tokens.dims();
    assert_eq!(on(&device), [1, GPU_TOKEN_BUCKET]);
    assert_eq!(on(&burn::prelude::Device::flex()), [1, 3]);
}

/// f16 training of a model with batch norm (the poster CNN) on lavapipe: the masters' running
/// statistics stay f32, in memory and in the saved model. Each half-precision step's cast
/// copy shares them with the masters, and the cast was written into them in place.
#[test]
fn f16_training_keeps_batch_norm_statistics_in_f32() {
    if skipped("f16_batch_norm", no_f16()) {
        return;
    }
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config(dir.path(), "");
    config.model.modalities = vec![Modality::Poster, Modality::Meta];
    config.backend.kind = BackendKind::Lavapipe;
    config.train.precision = Precision::F16;
    config.train.epochs = 1;
    config.train.max_steps_per_epoch = 2;
    let run = dir.path().join("run");
    train_into(&config, &run).unwrap();
    use burn::store::ModuleStore;
    let mut store = burn::store::BurnpackStore::from_file(run.join("best/model.bpk"));
    let tensors = store.get_all_tensors().unwrap();
    let stats: Vec<_> = tensors
        .iter()
        .filter(|(name, _)| name.contains("running_"))
        .collect();
    assert!(stats.len() >= 4, "{:?}", tensors.keys());
    for (name, t) in stats {
        assert_eq!(t.dtype, burn::tensor::DType::F32, "{name}");
    }
}

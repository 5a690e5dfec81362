//! The training loop: AdamW with warmup + decay, gradient clipping, per-epoch validation,
//! early stopping, atomic checkpoints, exact resume and a checkpoint on Ctrl-C.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::Dataset;
use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use cinefuse_data::output_dir::{OutputKind, check_output, marked_kind, write_marker};
use cinefuse_data::split::Split;
use cinefuse_data::{MovieBatcher, Prepared};
use cinefuse_model::head::RatingScale;
use cinefuse_model::{CinefuseModel, ModelShapes};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde_json::json;

use crate::backend::select_device;
use crate::config::{BackendKind, TrainConfig};
use crate::data_setup::{ensure_prepared, ensure_prepared_in, prepared_fingerprint};
use crate::inference::{Scorer, predict_dataset};
use crate::run_dir::*;
use crate::schedule::learning_rate;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static HANDLER: Once = Once::new();

/// Installs the Ctrl-C / SIGTERM handler once per process.
pub fn install_interrupt_handler() {
    HANDLER.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond interrupt: exiting without a checkpoint");
                std::process::exit(130);
            }
            eprintln!("\ninterrupt: writing a checkpoint, then stopping (Ctrl-C again to abort)");
        });
    });
}

#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    pub data_override: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub resume: Option<PathBuf>,
    pub backend: Option<BackendKind>,
    /// Stop (as if interrupted, with a checkpoint) after this many optimizer steps in this
    /// invocation.
    pub stop_after_steps: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub epochs_completed: usize,
    pub best_epoch: usize,
    pub best_value: Option<f64>,
    pub stopped_early: bool,
    pub interrupted: bool,
    pub history: Vec<serde_json::Value>,
}

pub fn shapes_of(prepared: &Prepared) -> ModelShapes {
    let pre = &prepared.preprocessor;
    ModelShapes {
        n_genres: pre.state.genres.len(),
        vocab_size: pre.state.tokenizer_vocab_size.max(3),
        max_tokens: pre.state.config.max_tokens,
        n_numeric: pre.n_numeric(),
        categorical_sizes: pre.categorical_sizes(),
        categorical_dims: pre.categorical_dims(),
        text_backbone: None,
    }
}

pub fn batcher_of(prepared: &Prepared) -> MovieBatcher {
    let c = &prepared.preprocessor.state.config;
    MovieBatcher::new(
        c.image_height as usize,
        c.image_width as usize,
        c.max_tokens,
    )
}

pub fn rating_scale_of(prepared: &Prepared) -> RatingScale {
    RatingScale {
        mean: prepared.preprocessor.state.rating_mean,
        std: prepared.preprocessor.state.rating_std,
    }
}

fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// Burn initializes parameters lazily, on the device a module is on when a value is first
/// read, and moving a module retargets that pending initialization. Reading every value here
/// runs it now, on the device the module was created on.
fn initialized_now(model: CinefuseModel) -> CinefuseModel {
    struct ReadEveryValue;
    impl burn::module::ModuleVisitor for ReadEveryValue {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            drop(param.val());
        }
    }
    model.visit(&mut ReadEveryValue);
    model
}

/// The random state of one training batch, from the run seed and the batch's position only.
fn batch_seed(seed: u64, epoch: usize, batch: usize) -> u64 {
    epoch_seed(seed, epoch) ^ (batch as u64 + 1).wrapping_mul(0x94D0_49BB_1331_11EB)
}

fn progress(len: u64) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{prefix} [{bar:28}] {pos}/{len} {msg} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb
}

fn save_model(model: &CinefuseModel, path: &Path) -> Result<()> {
    model
        .clone()
        .save_file(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot save model: {e}", path.display()))
}

/// Trains according to `config` (or resumes the run in `opts.resume`).
/// A new run goes into a new or empty folder, never one that holds a run or any of the data
/// it reads.
fn check_new_run_dir(dir: &Path, config: &TrainConfig, opts: &TrainOptions) -> Result<()> {
    let holds_run = marked_kind(dir).as_deref() == Some(OutputKind::Run.name())
        || dir.join(METRICS_FILE).exists()
        || dir.join(CHECKPOINTS_DIR).exists();
    if holds_run {
        bail!(
            "{}: already holds a run; use --resume {} to continue it or choose another --out",
            dir.display(),
            dir.display()
        );
    }
    let dataset = opts
        .data_override
        .as_deref()
        .unwrap_or(&config.data.dataset);
    let mut inputs = vec![dataset];
    inputs.extend(config.data.prepared.as_deref());
    check_output(dir, OutputKind::Run, &inputs)?;
    Ok(())
}

pub fn train(config: &TrainConfig, opts: &TrainOptions) -> Result<RunSummary> {
    install_interrupt_handler();
    // The lock is taken before anything in the run folder is read or written.
    let (config, run_dir, resuming, _lock) = match &opts.resume {
        Some(dir) => {
            if !dir.join(CONFIG_FILE).is_file() {
                bail!(
                    "{}: not a resumable run directory (no {CONFIG_FILE})",
                    dir.display()
                );
            }
            let lock = RunLock::acquire(dir)?;
            let cfg = TrainConfig::load(&dir.join(CONFIG_FILE), &[])
                .with_context(|| format!("{}: not a resumable run directory", dir.display()))?;
            (cfg, dir.clone(), true, lock)
        }
        None => {
            let dir = opts.out.clone().unwrap_or_else(|| {
                config
                    .output
                    .runs_dir
                    .join(format!("{}-{}", config.name, timestamp()))
            });
            check_new_run_dir(&dir, config, opts)?;
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let lock = RunLock::acquire(&dir)?;
            write_marker(&dir, OutputKind::Run)?;
            (config.clone(), dir, false, lock)
        }
    };

    let info_path = run_dir.join(RUN_FILE);
    let (dataset_dir, mut prepared) = if resuming {
        // The run's own prepared data, never a re-prepared copy (token ids must not change).
        let info: RunInfo = read_json(&info_path)?;
        let opened = ensure_prepared_in(&config, &info.dataset_dir, &info.prepared_dir, false)?;
        check_fingerprint(&info, &opened.1.dir)?;
        opened
    } else {
        ensure_prepared(&config, opts.data_override.as_deref())?
    };

    let mut backend_cfg = config.backend.clone();
    if let Some(k) = opts.backend {
        backend_cfg.kind = k;
    }
    let selected = select_device(&backend_cfg)?;
    let device = selected.device.clone();
    println!("backend: {} ({:?})", selected.description, device);

    crate::feature_cache::attach_cached_features(&config.model, &mut prepared, &device)?;
    let mut shapes = shapes_of(&prepared);
    shapes.text_backbone = if resuming {
        read_json::<RunInfo>(&info_path)?.shapes.text_backbone
    } else {
        crate::feature_cache::text_backbone_of(&config.model)?
    };
    if shapes.n_genres == 0 {
        bail!("the prepared data has no genres; lower data.preprocess.min_genre_count");
    }
    let scale = rating_scale_of(&prepared);
    let batcher = batcher_of(&prepared);
    let train_ds = prepared.dataset(Split::Train);
    let val_ds = prepared.dataset(Split::Val);
    if train_ds.len() == 0 || val_ds.len() == 0 {
        bail!(
            "need movies in both train ({}) and val ({}) splits",
            train_ds.len(),
            val_ds.len()
        );
    }

    // Initialized on the CPU and then moved, so a seed gives the same starting weights on every
    // backend (each backend's own generator would draw different ones).
    let init_device = Device::flex().autodiff();
    init_device.seed(config.seed);
    device.seed(config.seed);
    let train_device = device.clone().autodiff();
    let model = if resuming {
        config.model.init(&shapes, &init_device)
    } else {
        config.model.init_pretrained(&shapes, &init_device)?
    };
    let mut model = initialized_now(model).fork(&train_device);
    let param_counts: Vec<(String, usize)> = model
        .param_counts()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    println!("parameters:");
    for (name, n) in &param_counts {
        println!("  {name:<16} {n:>10}");
    }
    println!("  {:<16} {:>10}", "total", model.num_params());

    let mut adamw = AdamWConfig::new()
        .with_beta_1(config.optim.beta1)
        .with_beta_2(config.optim.beta2)
        .with_epsilon(config.optim.epsilon)
        .with_weight_decay(config.optim.weight_decay);
    if config.optim.grad_clip_norm > 0.0 {
        adamw = adamw.with_grad_clipping(Some(GradientClippingConfig::Norm(
            config.optim.grad_clip_norm,
        )));
    }
    let mut optim = adamw.init();

    let mut state = TrainState::default();
    if resuming {
        let ckpt = latest_checkpoint(&run_dir).with_context(|| {
            format!(
                "{}: no complete checkpoint to resume from",
                run_dir.display()
            )
        })?;
        model = model
            .try_load_file(ckpt.join(MODEL_FILE))
            .map_err(|e| anyhow::anyhow!("{}: {e}", ckpt.display()))?;
        optim = optim
            .load(ckpt.join(OPTIM_FILE))
            .map_err(|e| anyhow::anyhow!("{}: cannot load optimizer state: {e}", ckpt.display()))?;
        state = read_json(&ckpt.join(STATE_FILE))?;
        truncate_metrics(&run_dir, state.epoch)?;
        println!(
            "resuming {} from {} (epoch {} done, {} batches into the next, step {})",
            run_dir.display(),
            ckpt.file_name().unwrap_or_default().to_string_lossy(),
            state.epoch,
            state.batches_into_epoch,
            state.step
        );
    } else {
        std::fs::write(run_dir.join(CONFIG_FILE), config.to_toml())?;
        write_json(
            &info_path,
            &RunInfo {
                name: config.name.clone(),
                dataset_dir: dataset_dir.clone(),
                prepared_dir: prepared.dir.clone(),
                backend: selected.description.clone(),
                shapes: shapes.clone(),
                rating_scale: scale,
                genres: prepared.preprocessor.genre_names().to_vec(),
                param_counts: param_counts.clone(),
                prepared_fingerprint: prepared_fingerprint(&prepared.dir)?,
                started_unix: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            },
        )?;
    }
    println!("run directory: {}", run_dir.display());

    let t = &config.train;
    let full_steps = train_ds.len().div_ceil(t.batch_size);
    let steps_per_epoch = if t.max_steps_per_epoch > 0 {
        full_steps.min(t.max_steps_per_epoch)
    } else {
        full_steps
    };
    let total_steps = steps_per_epoch * t.epochs;
    let pos_weight = config.loss.pos_weights(
        &prepared.preprocessor.state.genres.train_counts,
        train_ds.len(),
    );
    let scorer = Scorer {
        loss: &config.loss,
        scale,
        pos_weight,
    };
    let fused = model.is_fused();
    let backbone_scales = BackboneScales::of(&config);
    let mut interrupted = false;
    let mut stopped_early = false;
    let mut steps_this_call = 0usize;

    while state.epoch < t.epochs && !interrupted && !stopped_early {
        let epoch = state.epoch + 1;
        let started = Instant::now();
        let pretraining = fused && epoch <= t.pretrain_epochs;
        let (main_w, aux_w) = if pretraining {
            (0.0, 1.0)
        } else {
            (1.0, config.model.aux_loss_weight)
        };
        // Same seed and epoch → same order, also after a resume.
        let mut order: Vec<usize> = (0..train_ds.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(epoch_seed(config.seed, epoch)));
        order.truncate(steps_per_epoch * t.batch_size);
        let skip = state.batches_into_epoch * t.batch_size;
        let epoch_ds = train_ds.reordered(&order[skip.min(order.len())..]);
        let loader = DataLoaderBuilder::new(batcher.clone())
            .batch_size(t.batch_size)
            .num_workers(t.num_workers)
            .set_device(device.clone())
            .build(epoch_ds);
        let pb = progress(steps_per_epoch as u64);
        pb.set_prefix(format!(
            "epoch {epoch}/{}{}",
            t.epochs,
            if pretraining { " (pretrain)" } else { "" }
        ));
        pb.set_position(state.batches_into_epoch as u64);
        let (mut sum_total, mut sum_genre, mut sum_rating, mut seen) = state.partial_sums;
        let mut lr = 0.0;
        for batch in loader.iter() {
            let batch = batch.map_err(|e| anyhow::anyhow!("data loading failed: {e}"))?;
            let b = batch.len();
            lr = learning_rate(
                &config.schedule,
                config.optim.lr,
                state.step,
                total_steps,
                steps_per_epoch,
            );
            // Seeded per batch, so a resume at any batch draws the same dropout masks.
            device.seed(batch_seed(config.seed, epoch, state.batches_into_epoch));
            let out = model.forward_with(&batch, true);
            let parts = scorer.loss(&out, &batch, main_w, aux_w);
            let [total, genre, rating] = parts.values();
            if !total.is_finite() {
                bail!(
                    "loss became {total} at step {}; lower optim.lr or check the data",
                    state.step
                );
            }
            sum_total += f64::from(total) * b as f64;
            sum_genre += f64::from(genre) * b as f64;
            sum_rating += f64::from(rating) * b as f64;
            seen += b;
            let mut grads = parts.total.backward();
            if pretraining && let Some(fusion) = &model.fusion {
                // The fusion head takes no part in pre-training. Its gradients are zero, but
                // AdamW's weight decay would still shrink it: drop them so it is left as is.
                drop(GradientsParams::from_module(&mut grads, fusion));
            }
            model = step_with_lr_scales(&mut optim, model, grads, lr, backbone_scales);
            state.step += 1;
            state.batches_into_epoch += 1;
            steps_this_call += 1;
            let elapsed = started.elapsed().as_secs_f64().max(1e-9);
            pb.set_message(format!(
                "loss {:.4} lr {lr:.2e} {:.0} samples/s",
                sum_total / seen as f64,
                seen as f64 / elapsed
            ));
            pb.inc(1);
            let step_budget_spent = opts.stop_after_steps.is_some_and(|n| steps_this_call >= n);
            if step_budget_spent || INTERRUPTED.load(Ordering::SeqCst) {
                interrupted = true;
                break;
            }
        }
        pb.finish_and_clear();
        if interrupted && state.batches_into_epoch < steps_per_epoch {
            state.partial_sums = (sum_total, sum_genre, sum_rating, seen);
            // Burn's RunningState keeps a batch-norm statistic's latest update aside until the
            // next sync, and saving reads the synced value: without this the checkpoint holds
            // statistics one batch old. `valid()` syncs the shared state in place.
            drop(model.valid());
            save_checkpoint(
                &run_dir,
                &model,
                &optim,
                &state,
                &format!("epoch-{:04}-step-{:07}", state.epoch, state.step),
            )?;
            println!(
                "checkpoint written at step {}; resume with: cinefuse train --resume {}",
                state.step,
                run_dir.display()
            );
            break;
        }

        // End of epoch: validate.
        let valid_model = model.valid();
        let val = predict_dataset(
            &valid_model,
            val_ds.clone(),
            &batcher,
            t.eval_batch_size,
            &device,
            &scorer,
            &[],
        );
        let gm = val.genre_metrics(
            &vec![0.5; shapes.n_genres],
            prepared.preprocessor.genre_names(),
        );
        let rm = val.rating_metrics();
        let secs = started.elapsed().as_secs_f64();
        let n = seen.max(1) as f64;
        let line = json!({
            "epoch": epoch,
            "step": state.step,
            "lr": lr,
            "phase": if pretraining { "pretrain" } else { "train" },
            "train_loss": sum_total / n,
            "train_genre_loss": sum_genre / n,
            "train_rating_loss": sum_rating / n,
            "val_loss": val.loss,
            "val_genre_loss": val.genre_loss,
            "val_rating_loss": val.rating_loss,
            "val_micro_f1": gm.micro_f1,
            "val_macro_f1": gm.macro_f1,
            "val_samples_f1": gm.samples_f1,
            "val_map": gm.map,
            "val_top1": gm.top1,
            "val_mae": rm.mae,
            "val_rmse": rm.rmse,
            "val_r2": rm.r2,
            "val_within_10pct": rm.within_10pct,
            "epoch_seconds": secs,
            "samples_per_sec": n / secs.max(1e-9),
        });
        append_metrics(&run_dir, &line)?;
        println!(
            "epoch {epoch:>3}/{}  train {:.4}  val {:.4} (genre {:.4}, rating {:.4})  micro-F1 {:.3}  top-1 {:.3}  MAE {:.3}  {:.1}s  {:.0} samples/s",
            t.epochs,
            sum_total / n,
            val.loss,
            val.genre_loss,
            val.rating_loss,
            gm.micro_f1,
            gm.top1,
            rm.mae,
            secs,
            n / secs.max(1e-9)
        );
        state.epoch = epoch;
        state.batches_into_epoch = 0;
        state.partial_sums = (0.0, 0.0, 0.0, 0);

        // Early stopping and the best model (not during per-modality pre-training).
        if !pretraining {
            let value = line[t.monitor.key()].as_f64().unwrap_or(f64::NAN);
            let better = match state.best_value {
                None => true,
                Some(b) if t.monitor.higher_is_better() => value > b + 1e-6,
                Some(b) => value < b - 1e-6,
            };
            if better {
                state.best_value = Some(value);
                state.best_epoch = epoch;
                state.epochs_without_improvement = 0;
                let w = CheckpointWriter::new(&run_dir.join(BEST_DIR))?;
                save_model(&model, &w.staging.join(MODEL_FILE))?;
                write_json(&w.staging.join(STATE_FILE), &state)?;
                w.commit()?;
            } else {
                state.epochs_without_improvement += 1;
                if t.early_stopping_patience > 0
                    && state.epochs_without_improvement >= t.early_stopping_patience
                {
                    println!(
                        "early stopping: {} did not improve for {} epochs (best {:.4} at epoch {})",
                        t.monitor.key(),
                        state.epochs_without_improvement,
                        state.best_value.unwrap_or(f64::NAN),
                        state.best_epoch
                    );
                    stopped_early = true;
                }
            }
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            interrupted = true;
        }
        if epoch % t.checkpoint_every == 0 || epoch == t.epochs || stopped_early || interrupted {
            save_checkpoint(
                &run_dir,
                &model,
                &optim,
                &state,
                &format!("epoch-{epoch:04}"),
            )?;
            prune_checkpoints(&run_dir, t.keep_checkpoints)?;
        }
        if interrupted {
            println!(
                "stopped after epoch {epoch}; resume with: cinefuse train --resume {}",
                run_dir.display()
            );
        }
    }
    Ok(RunSummary {
        run_dir: run_dir.clone(),
        epochs_completed: state.epoch,
        best_epoch: state.best_epoch,
        best_value: state.best_value,
        stopped_early,
        interrupted,
        history: read_metrics(&run_dir)?,
    })
}

/// Learning-rate factors of the fine-tuned pretrained backbones (`None`: frozen or absent).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BackboneScales {
    pub text: Option<f64>,
    pub poster: Option<f64>,
}

impl BackboneScales {
    pub(crate) fn of(config: &TrainConfig) -> Self {
        let m = &config.model;
        Self {
            text: (!m.text.freeze).then_some(m.text.lr_scale),
            poster: (!m.poster.freeze).then_some(m.poster.lr_scale),
        }
    }
}

/// One optimizer step; fine-tuned pretrained backbones step with their own learning rate
/// (`lr × lr_scale`), the rest of the model with `lr`. AdamW keeps its moments per parameter,
/// so stepping disjoint parameter sets separately is the same as one step with two rates.
pub(crate) fn step_with_lr_scales(
    optim: &mut burn::optim::ModuleOptimizer,
    model: CinefuseModel,
    mut grads: burn::tensor::Gradients,
    lr: f64,
    scales: BackboneScales,
) -> CinefuseModel {
    let text = match (&model.text_pretrained, scales.text) {
        (Some(e), Some(scale)) => Some((GradientsParams::from_module(&mut grads, &e.bert), scale)),
        _ => None,
    };
    let poster = match (&model.poster_pretrained, scales.poster) {
        (Some(e), Some(scale)) => Some((GradientsParams::from_module(&mut grads, &e.net), scale)),
        _ => None,
    };
    let rest = GradientsParams::from_grads(grads, &model);
    let mut model = optim.step(lr, model, rest);
    for (g, scale) in [text, poster].into_iter().flatten() {
        model = optim.step(lr * scale, model, g);
    }
    model
}

/// Refuses to use prepared data that changed since the run trained on it.
pub fn check_fingerprint(info: &RunInfo, prepared_dir: &Path) -> Result<()> {
    let now = prepared_fingerprint(prepared_dir)?;
    if !info.prepared_fingerprint.is_empty() && info.prepared_fingerprint != now {
        bail!(
            "{} was prepared again since this run trained on it (different preprocessing or tokenizer); \
             export runs to keep them self-contained, or retrain",
            prepared_dir.display()
        );
    }
    Ok(())
}

fn save_checkpoint(
    run_dir: &Path,
    model: &CinefuseModel,
    optim: &burn::optim::ModuleOptimizer,
    state: &TrainState,
    name: &str,
) -> Result<()> {
    let w = CheckpointWriter::new(&run_dir.join(CHECKPOINTS_DIR).join(name))?;
    save_model(model, &w.staging.join(MODEL_FILE))?;
    optim
        .save(w.staging.join(OPTIM_FILE))
        .map_err(|e| anyhow::anyhow!("cannot save optimizer state: {e}"))?;
    write_json(&w.staging.join(STATE_FILE), state)?;
    w.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::data::dataloader::batcher::Batcher;
    use burn::store::ModuleSnapshot;
    use cinefuse_data::MovieItem;
    use cinefuse_model::pretrained::testing::{TinyBert, module_values};
    use cinefuse_model::text::TextEncoderKind;
    use cinefuse_model::{Modality, ModelConfig};

    /// Largest |change| of any value between two snapshots of a module.
    fn max_change<M: ModuleSnapshot>(before: &M, after: &M) -> f32 {
        let (a, b) = (module_values(before), module_values(after));
        a.iter()
            .flat_map(|(k, (_, v))| v.iter().zip(&b[k].1).map(|(x, y)| (x - y).abs()))
            .fold(0.0, f32::max)
    }

    #[test]
    fn a_fine_tuned_backbone_steps_with_the_scaled_learning_rate() {
        let dir = tempfile::tempdir().unwrap();
        let tiny = TinyBert {
            vocab: 30,
            hidden: 8,
            intermediate: 16,
            positions: 16,
            layers: 1,
            heads: 2,
        };
        tiny.write(dir.path(), &tiny.tensors(3)).unwrap();
        let mut config = ModelConfig::new()
            .with_modalities(vec![Modality::Text])
            .with_embed_dim(8);
        config.text.kind = TextEncoderKind::Bert;
        config.text.pretrained = Some(dir.path().to_path_buf());
        config.text.freeze = false;
        config.text.feature_dropout = 0.0;
        config.fusion.dropout = 0.0;
        let shapes = ModelShapes {
            n_genres: 3,
            vocab_size: 30,
            max_tokens: 8,
            n_numeric: 1,
            categorical_sizes: vec![],
            categorical_dims: vec![],
            text_backbone: Some(cinefuse_model::TextBackbone {
                config: cinefuse_model::pretrained::BertConfig::from_dir(dir.path()).unwrap(),
                pooling: cinefuse_model::text::Pooling::Mean,
            }),
        };
        let device = Device::flex().autodiff();
        let model = config.init_pretrained(&shapes, &device).unwrap();
        let items: Vec<MovieItem> = (0..4u32)
            .map(|i| MovieItem {
                id: format!("m{i}"),
                poster: None,
                tokens: vec![2, 5 + i, 9, 11 + i],
                plot_present: true,
                numeric: vec![0.0],
                numeric_missing: vec![0.0],
                categorical: vec![],
                genres: vec![1.0, 0.0, (i % 2) as f32],
                genres_present: true,
                rating: Some(5.0),
                poster_features: None,
                plot_features: None,
            })
            .collect();
        let batch = MovieBatcher::new(2, 2, 8).batch(items, &Device::flex());
        let (lr, scale) = (1e-2, 0.01);
        let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
        let before = model.clone();
        let loss = model.forward(&batch).genre_logits.sum();
        let after = step_with_lr_scales(
            &mut optim,
            model,
            loss.backward(),
            lr,
            BackboneScales {
                text: Some(scale),
                poster: None,
            },
        );
        let (b, a) = (
            before.text_pretrained.as_ref().unwrap(),
            after.text_pretrained.as_ref().unwrap(),
        );
        // Adam's first step moves each parameter by about lr (its update is ~sign(gradient)).
        let backbone = max_change(&b.bert, &a.bert);
        let head = max_change(&before, &after);
        assert!(backbone > 0.0, "the backbone trains");
        assert!(
            backbone <= 1.01 * (lr * scale) as f32,
            "backbone moved {backbone}"
        );
        assert!(head > 0.5 * lr as f32, "the rest moves by about lr: {head}");
    }
}

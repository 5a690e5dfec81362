//! The gradients of one training step, on one device or data-parallel on several.
//!
//! Data parallel: the lead model (on `devices[0]`) is forked to every other device, each
//! replica runs the forward and backward pass of its shard in its own thread, and the
//! replicas' gradients are copied to the lead device and summed there. Each shard divides its
//! loss sums by the whole batch's row counts, so the shards' gradients add up to the gradient
//! of the batch's mean loss: the optimizer steps once, on the lead, as with one device. Burn 0.22's
//! collective `all_reduce` exists only on CUDA (NCCL); wgpu refuses it ("no transport between
//! its devices"), so the gradients travel through `to_device`, which works on every backend.

use anyhow::{Result, anyhow, bail};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::FloatDType;
use cinefuse_data::MovieBatch;
use cinefuse_model::{CinefuseModel, LossRows};

use super::grads::add_grads;
use super::precision::{cast_inputs, cast_params, outputs_to_f32, running_statistics_to_f32};
use super::shards::ShardedBatch;
use crate::predictions::Scorer;

/// What is the same for every shard of a step.
pub(crate) struct StepSpec<'a> {
    pub scorer: Scorer<'a>,
    /// Weights of the fused loss and of the per-modality losses.
    pub loss_weights: (f64, f64),
    /// Half-precision compute type (`None`: f32).
    pub compute: Option<FloatDType>,
    /// The f16 loss scale (1 otherwise).
    pub loss_scale: f64,
    /// Dropout seed of the step; replica `i` draws from `seed` mixed with `i`.
    pub seed: u64,
}

/// A step's gradients (on the lead device, multiplied by the loss scale) and its losses.
pub(crate) struct StepGrads {
    pub grads: GradientsParams,
    /// Total, genre and rating loss, each summed over the batch's rows.
    pub loss_sums: [f64; 3],
    pub rows: usize,
}

fn replica_seed(seed: u64, replica: usize) -> u64 {
    seed ^ (replica as u64).wrapping_mul(0xA24B_AED4_963E_E407)
}

/// Forward and backward pass of one shard on the device `model` lives on; with `rows` (the
/// whole batch's counts) its losses are this shard's part of the batch's mean losses.
fn shard_grads(
    model: &CinefuseModel,
    batch: &MovieBatch,
    device: &Device,
    rows: Option<LossRows>,
    spec: &StepSpec,
    replica: usize,
) -> ([f32; 3], GradientsParams) {
    device.seed(replica_seed(spec.seed, replica));
    let out = match spec.compute {
        None => model.forward_with(batch, true),
        Some(dtype) => {
            outputs_to_f32(cast_params(model, dtype).forward_with(&cast_inputs(batch, dtype), true))
        }
    };
    let parts = spec.scorer.loss_over(&out, batch, spec.loss_weights, rows);
    let values = parts.values();
    let loss = if spec.loss_scale == 1.0 {
        parts.total
    } else {
        parts.total * spec.loss_scale
    };
    (values, GradientsParams::from_grads(loss.backward(), model))
}

/// The step's gradients for `batch` (a shard per device in use, lead first).
pub(crate) fn step_grads(
    model: &CinefuseModel,
    batch: ShardedBatch,
    devices: &[Device],
    spec: &StepSpec,
) -> Result<StepGrads> {
    let step = shard_step_grads(model, batch, devices, spec);
    if spec.compute.is_some() {
        running_statistics_to_f32(model);
    }
    step
}

/// `step_grads` on one device, or on one replica per device summed on the lead.
fn shard_step_grads(
    model: &CinefuseModel,
    batch: ShardedBatch,
    devices: &[Device],
    spec: &StepSpec,
) -> Result<StepGrads> {
    let rows: usize = batch.shards.iter().map(MovieBatch::len).sum();
    let per_row = |values: [f32; 3]| values.map(|v| f64::from(v) * rows as f64);
    if let [shard] = batch.shards.as_slice() {
        let (values, grads) = shard_grads(model, shard, &devices[0], None, spec, 0);
        return Ok(StepGrads {
            grads,
            loss_sums: per_row(values),
            rows,
        });
    }
    let results = run_replicas(model, batch, devices, spec);
    let lead = &devices[0];
    let (mut grads, mut values) = (GradientsParams::new(), [0f32; 3]);
    for result in results {
        let (part, replica_grads, replica) = result?;
        for (v, p) in values.iter_mut().zip(part) {
            *v += p;
        }
        add_grads(&mut grads, replica_grads.to_device(lead, &replica), model);
    }
    Ok(StepGrads {
        grads,
        loss_sums: per_row(values),
        rows,
    })
}

type ReplicaResult = Result<([f32; 3], GradientsParams, CinefuseModel)>;

/// Runs every shard on its own replica, one thread per device. A replica that fails (Burn
/// panics on device and shape errors) becomes an error naming its device; the others finish their pass first (no
/// replica waits on another, so nothing can hang).
fn run_replicas(
    model: &CinefuseModel,
    batch: ShardedBatch,
    devices: &[Device],
    spec: &StepSpec,
) -> Vec<ReplicaResult> {
    let rows = Some(batch.rows);
    std::thread::scope(|scope| {
        let handles: Vec<_> = batch
            .shards
            .into_iter()
            .zip(devices)
            .enumerate()
            .map(|(i, (batch, device))| {
                scope.spawn(move || {
                    cinefuse_model::cpu_kernels::flush_denormals_on_this_thread();
                    let replica = if i == 0 {
                        model.clone()
                    } else {
                        model.clone().fork(&device.clone().autodiff())
                    };
                    let (values, grads) = shard_grads(&replica, &batch, device, rows, spec, i);
                    (values, grads, replica)
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(devices)
            .enumerate()
            .map(|(i, (handle, device))| {
                handle.join().map_err(|panic| {
                    anyhow!(
                        "replica {i} on {device:?} failed: {}",
                        panic_message(&panic)
                    )
                })
            })
            .collect()
    })
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}

/// Refuses a non-finite loss, with a hint for the precision in use.
pub(crate) fn check_loss(total: f64, step: usize, compute: Option<FloatDType>) -> Result<()> {
    if total.is_finite() {
        return Ok(());
    }
    match compute {
        Some(FloatDType::F16) => bail!(
            "loss became {total} at step {step}: the f16 forward pass overflowed; \
             use train.precision = \"bf16\" or \"f32\", or lower optim.lr"
        ),
        _ => bail!("loss became {total} at step {step}; lower optim.lr or check the data"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::data::dataloader::batcher::Batcher;
    use burn::module::{ModuleVisitor, Param};
    use cinefuse_data::{MovieBatcher, MovieItem};
    use cinefuse_model::head::RatingScale;
    use cinefuse_model::{LossConfig, Modality, ModelConfig, ModelShapes};

    use crate::trainer::shards::ShardBatcher;

    /// A dropout-free plot + metadata model: its gradients depend on the data only.
    fn model(device: &Device) -> CinefuseModel {
        let mut config = ModelConfig::new()
            .with_modalities(vec![Modality::Text, Modality::Meta])
            .with_embed_dim(8);
        config.modality_dropout = 0.0;
        config.text.dropout = 0.0;
        config.meta.dropout = 0.0;
        config.fusion.dropout = 0.0;
        let shapes = ModelShapes {
            n_genres: 3,
            vocab_size: 40,
            max_tokens: 6,
            n_numeric: 2,
            categorical_sizes: vec![],
            categorical_dims: vec![],
            text_backbone: None,
        };
        device.seed(5);
        config.init(&shapes, device)
    }

    fn items(n: usize) -> Vec<MovieItem> {
        (0..n)
            .map(|i| MovieItem {
                id: format!("m{i}"),
                poster: None,
                tokens: vec![2, 4 + i as u32 % 30, 7, 9 + i as u32 % 20],
                plot_present: i % 5 != 0,
                numeric: vec![i as f32 / n as f32, 1.0 - i as f32 / 7.0],
                numeric_missing: vec![0.0, 0.0],
                categorical: vec![],
                genres: vec![(i % 2) as f32, (i % 3 == 0) as u8 as f32, 1.0],
                genres_present: true,
                // Some rows without a rating: the shards' masked means must still add up.
                rating: (i % 4 != 1).then_some(4.0 + (i % 6) as f32),
                poster_features: None,
                plot_features: None,
                plot_states: None,
                poster_states: None,
                credits: Vec::new(),
                extras_absent: false,
            })
            .collect()
    }

    fn values_of(grads: &GradientsParams, model: &CinefuseModel) -> Vec<f32> {
        struct Collect<'a>(&'a GradientsParams, Vec<f32>);
        impl ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                if let Some(g) = self.0.get::<D>(p.id) {
                    self.1.extend(g.into_data().try_to_vec::<f32>().unwrap());
                }
            }
        }
        let mut c = Collect(grads, Vec::new());
        model.visit(&mut c);
        c.1
    }

    fn spec(loss: &LossConfig) -> StepSpec<'_> {
        StepSpec {
            scorer: Scorer {
                loss,
                scale: RatingScale {
                    mean: 6.0,
                    std: 1.5,
                },
                pos_weight: None,
                genre_shift: &[],
            },
            loss_weights: (1.0, 0.3),
            compute: None,
            loss_scale: 1.0,
            seed: 3,
        }
    }

    /// The core promise of data parallelism: two replicas on two shards produce the gradient
    /// of the whole batch. Flex has no collectives, but the gradients travel by `to_device`,
    /// so two replicas on flex run exactly the multi-device code path.
    #[test]
    fn two_replicas_give_the_whole_batch_gradient() {
        let device = Device::flex();
        let model = model(&device.clone().autodiff());
        let loss = LossConfig::new();
        let batcher = MovieBatcher::new(2, 2, 6);
        let step_on = |devices: Vec<Device>| {
            let batch =
                ShardBatcher::new(batcher.clone(), devices.clone()).batch(items(13), &device);
            let step = step_grads(&model, batch, &devices, &spec(&loss)).unwrap();
            (step.loss_sums, step.rows, values_of(&step.grads, &model))
        };
        let (one_loss, one_rows, one) = step_on(vec![device.clone()]);
        let (two_loss, two_rows, two) = step_on(vec![device.clone(), device.clone()]);
        assert_eq!((one_rows, two_rows), (13, 13));
        assert_eq!(one.len(), two.len());
        assert!(
            one.iter().any(|&g| g.abs() > 1e-4),
            "the model has gradients"
        );
        let worst = one
            .iter()
            .zip(&two)
            .map(|(a, b)| (a - b).abs() / a.abs().max(1e-3))
            .fold(0.0, f32::max);
        // Equal up to f32 summation order, also with rows without a rating unevenly spread
        // over the shards (the rating loss is a mean over the rows that have one).
        assert!(worst < 1e-4, "largest relative gradient difference {worst}");
        for (a, b) in one_loss.iter().zip(&two_loss) {
            assert!((a - b).abs() < 1e-4 * a.abs(), "loss sums {a} vs {b}");
        }
    }

    /// The half-precision step computes in the half type and still hands f32 gradients to
    /// the f32 masters, close to the f32 step's but not equal to them.
    #[test]
    fn a_half_precision_step_computes_in_half_and_returns_f32_gradients() {
        use crate::trainer::precision::{cast_inputs, cast_params};
        let device = Device::flex();
        let model = model(&device.clone().autodiff());
        let batch = MovieBatcher::new(2, 2, 6).batch(items(8), &device);
        let loss = LossConfig::new();
        let mut spec = spec(&loss);
        let (_, full) = shard_grads(&model, &batch, &device, None, &spec, 0);
        let full = values_of(&full, &model);
        for dtype in [FloatDType::F16, FloatDType::BF16] {
            let out = cast_params(&model, dtype).forward_with(&cast_inputs(&batch, dtype), true);
            assert_eq!(out.genre_logits.dtype(), dtype.into());
            spec.compute = Some(dtype);
            let (_, half) = shard_grads(&model, &batch, &device, None, &spec, 0);
            // `values_of` reads f32 values: a gradient in another type would fail here.
            let half = values_of(&half, &model);
            let scale = full.iter().fold(0f32, |m, g| m.max(g.abs()));
            let worst = full
                .iter()
                .zip(&half)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst > 0.0, "{dtype:?}: gradients equal the f32 ones");
            assert!(worst < 0.05 * scale, "{dtype:?}: {worst} vs scale {scale}");
        }
    }

    /// A replica that fails (here: its shard does not fit the model) ends the step with an
    /// error naming it, instead of a panic or a hang.
    #[test]
    fn a_failing_replica_is_an_error_naming_it() {
        let device = Device::flex();
        let model = model(&device.clone().autodiff());
        let loss = LossConfig::new();
        let good = MovieBatcher::new(2, 2, 6).batch(items(4), &device);
        let rows = LossRows {
            genres: 8,
            rating: 6,
        };
        let mut bad_items = items(4);
        for it in &mut bad_items {
            it.numeric = vec![0.0; 5];
            it.numeric_missing = vec![0.0; 5];
        }
        let bad = MovieBatcher::new(2, 2, 6).batch(bad_items, &device);
        let devices = vec![device.clone(), device.clone()];
        let batch = ShardedBatch {
            shards: vec![good, bad],
            rows,
        };
        let err = match step_grads(&model, batch, &devices, &spec(&loss)) {
            Ok(_) => panic!("a replica with mismatched input must fail the step"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("replica 1"), "{err}");
    }
}

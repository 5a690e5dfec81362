//! The training loop: AdamW with warmup + decay, gradient clipping, per-epoch validation,
//! early stopping, atomic checkpoints, exact resume and a checkpoint on Ctrl-C.
//!
//! `Trainer::setup` (setup.rs) opens the run folder, the data, the device, the model and the
//! optimizer, fresh or from the last checkpoint; `Trainer::fit` (fit.rs) runs the epochs: one
//! pass over the training data, validation, the metrics line, the best model, checkpoints.

mod fit;
pub(crate) mod grads;
mod interrupt;
pub(crate) mod learner;
pub(crate) mod precision;
mod setup;
pub(crate) mod shards;
pub(crate) mod step;

pub use interrupt::install_interrupt_handler;
pub use precision::LossScale;

pub(crate) use setup::{Trainer, check_new_run_dir, datasets_for};

use std::path::PathBuf;

use anyhow::Result;
use burn::optim::GradientsParams;
use burn::prelude::*;
use cinefuse_model::CinefuseModel;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{BackendKind, TrainConfig};

#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    pub data_override: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub resume: Option<PathBuf>,
    pub backend: Option<BackendKind>,
    /// Device indices for data-parallel training, overriding `backend.devices`.
    pub devices: Option<Vec<usize>>,
    /// Stop (as if interrupted, with a checkpoint) after this many optimizer steps in this
    /// invocation.
    pub stop_after_steps: Option<usize>,
    /// Which labelled movies a new run trains on (a resumed run keeps its own).
    pub rows: crate::run_dir::TrainRows,
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub epochs_completed: usize,
    pub best_epoch: usize,
    pub best_value: Option<f64>,
    pub stopped_early: bool,
    pub interrupted: bool,
    pub history: Vec<crate::run_dir::EpochMetrics>,
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

pub fn train(config: &TrainConfig, opts: &TrainOptions) -> Result<RunSummary> {
    install_interrupt_handler();
    if !config.train.blend_with.is_empty() {
        return crate::blend_train::train_blend(config, opts);
    }
    if config.train.folds >= 2 {
        return crate::bag::train_bag(config, opts);
    }
    Trainer::setup(config, opts)?.fit()
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
    mut grads: GradientsParams,
    lr: f64,
    scales: BackboneScales,
) -> CinefuseModel {
    let text = match (model.pretrained_text(), scales.text) {
        (Some(e), Some(scale)) => Some((grads::take_grads_of(&mut grads, &e.backbone), scale)),
        _ => None,
    };
    let poster = match (model.pretrained_poster(), scales.poster) {
        (Some(e), Some(scale)) => Some((grads::take_grads_of(&mut grads, &e.backbone), scale)),
        _ => None,
    };
    let mut model = optim.step(lr, model, grads);
    for (g, scale) in [text, poster].into_iter().flatten() {
        model = optim.step(lr * scale, model, g);
    }
    model
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::data::dataloader::batcher::Batcher;
    use burn::optim::AdamWConfig;
    use burn::store::ModuleSnapshot;
    use cinefuse_data::{MovieBatcher, MovieItem};
    use cinefuse_model::encoders::text::TextEncoderKind;
    use cinefuse_model::pretrained::testing::{TinyBert, module_values};
    use cinefuse_model::{Modality, ModelConfig, ModelShapes};

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
                pooling: cinefuse_model::encoders::text::Pooling::Mean,
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
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let after = step_with_lr_scales(
            &mut optim,
            model,
            grads,
            lr,
            BackboneScales {
                text: Some(scale),
                poster: None,
            },
        );
        let (b, a) = (
            before.pretrained_text().unwrap(),
            after.pretrained_text().unwrap(),
        );
        // Adam's first step moves each parameter by about lr (its update is ~sign(gradient)).
        let backbone = max_change(&b.backbone, &a.backbone);
        let head = max_change(&before, &after);
        assert!(backbone > 0.0, "the backbone trains");
        assert!(
            backbone <= 1.01 * (lr * scale) as f32,
            "backbone moved {backbone}"
        );
        assert!(head > 0.5 * lr as f32, "the rest moves by about lr: {head}");
    }
}

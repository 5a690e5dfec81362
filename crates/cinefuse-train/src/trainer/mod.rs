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
mod val_states;

pub(crate) use interrupt::stop_if_interrupted;
pub use interrupt::{LearningInterrupted, install_interrupt_handler, interrupt_requested};
pub use precision::LossScale;

pub(crate) use setup::{Trainer, check_new_run_dir, datasets_for};

use std::path::PathBuf;

use anyhow::Result;
use burn::optim::GradientsParams;
use burn::prelude::*;
use cinefuse_model::CinefuseModel;
use cinefuse_model::pretrained::Backbone;
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
    let t = &config.train;
    let votes = t.plot_neighbours.is_some()
        || t.metadata_neighbours.is_some()
        || t.credit_neighbours.is_some()
        || t.genre_prompts.is_some();
    let rating_parts = t.rating_trees.is_some() || t.content_rating.is_some();
    if !t.blend_with.is_empty() || rating_parts || votes {
        return crate::blend_train::train_blend(config, opts);
    }
    if config.train.folds >= 2 {
        return crate::bag::train_bag(config, opts);
    }
    Trainer::setup(config, opts)?.fit()
}

/// The learning rate of a fine-tuned backbone relative to the rest of the model: `scale` at
/// its top layer, `decay` times less per layer below.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BackboneRate {
    pub scale: f64,
    pub decay: f64,
}

/// Learning rates of the fine-tuned pretrained backbones (`None`: frozen or absent).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BackboneScales {
    pub text: Option<BackboneRate>,
    pub poster: Option<BackboneRate>,
}

impl BackboneScales {
    pub(crate) fn of(config: &TrainConfig) -> Self {
        let m = &config.model;
        let rate = |t: cinefuse_model::pretrained::Tuning| {
            (!t.freeze).then_some(BackboneRate {
                scale: t.lr_scale,
                decay: t.layer_decay,
            })
        };
        Self {
            text: rate(m.text.tuning()),
            poster: rate(m.poster.tuning()),
        }
    }
}

/// A fine-tuned backbone's gradients split off `grads`, each set with its learning-rate
/// factor: one set at `scale`, or one per depth with layer-wise decay.
fn backbone_groups<B: Backbone>(
    grads: &mut GradientsParams,
    backbone: &B,
    rate: BackboneRate,
) -> Vec<(GradientsParams, f64)> {
    if rate.decay == 1.0 {
        return vec![(grads::take_grads_of(grads, backbone), rate.scale)];
    }
    let top = backbone.depth();
    grads::take_grads_by_depth(grads, backbone)
        .into_iter()
        .map(|(depth, g)| {
            let below_top = top.saturating_sub(depth) as i32;
            (g, rate.scale * rate.decay.powi(below_top))
        })
        .collect()
}

/// One optimizer step; fine-tuned pretrained backbones step with their own learning rates
/// (`lr × lr_scale`, decayed per layer), the rest of the model with `lr`. AdamW keeps its
/// moments per parameter, so stepping disjoint parameter sets separately is the same as one
/// step with several rates.
pub(crate) fn step_with_lr_scales(
    optim: &mut burn::optim::ModuleOptimizer,
    model: CinefuseModel,
    mut grads: GradientsParams,
    lr: f64,
    scales: BackboneScales,
) -> CinefuseModel {
    let mut groups = Vec::new();
    if let (Some(e), Some(rate)) = (model.pretrained_text(), scales.text) {
        groups.extend(backbone_groups(&mut grads, &e.backbone, rate));
    }
    if let (Some(e), Some(rate)) = (model.pretrained_poster(), scales.poster) {
        groups.extend(backbone_groups(&mut grads, &e.backbone, rate));
    }
    let mut model = optim.step(lr, model, grads);
    for (g, scale) in groups {
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
    use cinefuse_model::{Modality, ModelConfig};

    /// Largest |change| of any value between two snapshots of a module.
    fn max_change<M: ModuleSnapshot>(before: &M, after: &M) -> f32 {
        let (a, b) = (module_values(before), module_values(after));
        a.iter()
            .flat_map(|(k, (_, v))| v.iter().zip(&b[k].1).map(|(x, y)| (x - y).abs()))
            .fold(0.0, f32::max)
    }

    /// One optimizer step at `LR` of a tiny BERT plot model with `layers` layers whose
    /// backbone is fine-tuned at `rate`: the model before and after.
    fn fine_tune_step(layers: usize, rate: BackboneRate) -> (CinefuseModel, CinefuseModel) {
        let dir = tempfile::tempdir().unwrap();
        let tiny = TinyBert {
            vocab: 30,
            hidden: 8,
            intermediate: 16,
            positions: 16,
            layers,
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
        let shapes = tiny.plot_model_shapes(dir.path(), 3);
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
                plot_states: None,
                poster_states: None,
                credits: Vec::new(),
                extras_absent: false,
            })
            .collect();
        let batch = MovieBatcher::new(2, 2, 8).batch(items, &Device::flex());
        let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
        let before = model.clone();
        let loss = model.forward(&batch).genre_logits.sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let scales = BackboneScales {
            text: Some(rate),
            poster: None,
        };
        let after = step_with_lr_scales(&mut optim, model, grads, LR, scales);
        (before, after)
    }

    const LR: f64 = 1e-2;

    /// Checks that the largest change of `part` is about `rate × LR`: Adam's first step moves
    /// each parameter by about its learning rate (its update is ~sign(gradient)).
    fn assert_moved_at<M: ModuleSnapshot>(before: &M, after: &M, rate: f64, what: &str) {
        let moved = max_change(before, after);
        let expected = (LR * rate) as f32;
        assert!(
            moved > 0.5 * expected && moved <= 1.01 * expected,
            "{what} moved {moved}, expected about {expected}"
        );
    }

    #[test]
    fn a_fine_tuned_backbone_steps_with_the_scaled_learning_rate() {
        let rate = BackboneRate {
            scale: 0.01,
            decay: 1.0,
        };
        let (before, after) = fine_tune_step(1, rate);
        let (b, a) = (
            before.pretrained_text().unwrap(),
            after.pretrained_text().unwrap(),
        );
        assert_moved_at(&b.backbone, &a.backbone, 0.01, "the backbone");
        assert_moved_at(&before, &after, 1.0, "the whole model");
    }

    #[test]
    fn layer_wise_decay_slows_each_layer_below_the_top() {
        let rate = BackboneRate {
            scale: 0.1,
            decay: 0.2,
        };
        let (before, after) = fine_tune_step(2, rate);
        let (b, a) = (
            &before.pretrained_text().unwrap().backbone,
            &after.pretrained_text().unwrap().backbone,
        );
        assert_moved_at(&b.layers[1], &a.layers[1], 0.1, "the top layer");
        assert_moved_at(&b.layers[0], &a.layers[0], 0.1 * 0.2, "the layer below");
        assert_moved_at(&b.embeddings, &a.embeddings, 0.1 * 0.04, "the embeddings");
    }
}

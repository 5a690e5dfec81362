//! The training step: one `Learner` holds the model, its optimizer and what a step needs
//! besides the batch. `fit` (on one device or data parallel) and `cinefuse bench` both step
//! through it, so a benchmark's samples/s is the training step's, with the config's AdamW
//! (betas, epsilon, clipping), learning rate, per-backbone rates and pre-training.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::FloatDType;
use cinefuse_model::CinefuseModel;
use cinefuse_model::head::RatingScale;

use super::grads::take_grads_of;
use super::precision::compute_dtype;
use super::shards::ShardedBatch;
use super::step::{StepSpec, step_grads};
use super::{BackboneScales, LossScale, step_with_lr_scales};
use crate::config::TrainConfig;
use crate::predictions::Scorer;
use crate::run_dir::{MODEL_FILE, OPTIM_FILE, load_weights};

/// The model being trained and its optimizer.
pub(crate) struct Learner {
    /// Always present between steps; each optimizer step consumes the model and returns it.
    model: Option<CinefuseModel>,
    pub optim: ModuleOptimizer,
    /// Every training device, lead first.
    devices: Vec<Device>,
    config: TrainConfig,
    scale: RatingScale,
    pos_weight: Option<Vec<f32>>,
    /// `RunInfo::genre_logit_shift`: applied to the validation predictions.
    pub genre_shift: Vec<f32>,
    backbone_scales: BackboneScales,
    compute: Option<FloatDType>,
}

/// What one step did.
pub(crate) struct StepReport {
    /// Total, genre and rating loss, each summed over the batch's rows.
    pub loss_sums: [f64; 3],
    pub rows: usize,
    /// False when f16 gradients overflowed: the step was skipped and the loss scale lowered.
    pub applied: bool,
}

/// The optimizer `config.optim` describes: AdamW with its betas, epsilon, weight decay and
/// gradient clipping.
pub(crate) fn optimizer(config: &TrainConfig) -> ModuleOptimizer {
    let o = &config.optim;
    let mut adamw = AdamWConfig::new()
        .with_beta_1(o.beta1)
        .with_beta_2(o.beta2)
        .with_epsilon(o.epsilon)
        .with_weight_decay(o.weight_decay);
    if o.grad_clip_norm > 0.0 {
        adamw = adamw.with_grad_clipping(Some(GradientClippingConfig::Norm(o.grad_clip_norm)));
    }
    adamw.init()
}

impl Learner {
    pub fn new(
        config: &TrainConfig,
        model: CinefuseModel,
        devices: Vec<Device>,
        scale: RatingScale,
        (pos_weight, genre_shift): (Option<Vec<f32>>, Vec<f32>),
    ) -> Self {
        Self {
            model: Some(model),
            optim: optimizer(config),
            devices,
            scale,
            pos_weight,
            genre_shift,
            backbone_scales: BackboneScales::of(config),
            compute: compute_dtype(config.train.precision),
            config: config.clone(),
        }
    }

    pub fn model(&self) -> &CinefuseModel {
        self.model
            .as_ref()
            .expect("the model is in place between steps")
    }

    /// The model and optimizer state of the checkpoint folder `ckpt`.
    pub fn restore(&mut self, ckpt: &Path) -> Result<()> {
        let model = load_weights(
            self.model().clone(),
            &ckpt.join(MODEL_FILE),
            &self.config.model,
        )?;
        let fresh = optimizer(&self.config);
        let optim = std::mem::replace(&mut self.optim, fresh);
        self.optim = optim
            .load(ckpt.join(OPTIM_FILE))
            .map_err(|e| anyhow!("{}: cannot load optimizer state: {e}", ckpt.display()))?;
        self.model = Some(model);
        Ok(())
    }

    pub fn compute(&self) -> Option<FloatDType> {
        self.compute
    }

    pub fn scorer(&self) -> Scorer<'_> {
        Scorer {
            loss: &self.config.loss,
            scale: self.scale,
            pos_weight: self.pos_weight.clone(),
            genre_shift: &self.genre_shift,
        }
    }

    /// One optimizer step on `batch` at learning rate `lr`. In pre-training only the
    /// per-modality losses count and the fusion is left as it is. Under f16, `loss_scale`
    /// scales the loss and is lowered (the step skipped) when the gradients overflow. `seed`
    /// draws the step's dropout masks.
    pub fn step(
        &mut self,
        batch: ShardedBatch,
        lr: f64,
        pretraining: bool,
        seed: u64,
        loss_scale: &mut Option<LossScale>,
    ) -> Result<StepReport> {
        let model = self
            .model
            .take()
            .context("the model is in place between steps")?;
        let spec = StepSpec {
            scorer: self.scorer(),
            loss_weights: if pretraining {
                (0.0, 1.0)
            } else {
                (1.0, self.config.model.aux_loss_weight)
            },
            compute: self.compute,
            loss_scale: loss_scale.map_or(1.0, |s| s.scale),
            seed,
        };
        let step = match step_grads(&model, batch, &self.devices, &spec) {
            Ok(step) => step,
            Err(e) => {
                self.model = Some(model);
                return Err(e);
            }
        };
        let mut grads = step.grads;
        if pretraining && let Some(fusion) = &model.fusion {
            // The fusion head takes no part in pre-training. Its gradients are zero, but
            // AdamW's weight decay would still shrink it: drop them so it is left as is.
            drop(take_grads_of(&mut grads, fusion));
        }
        let applied = match loss_scale.as_mut() {
            Some(s) => s.unscale(&mut grads, &model),
            None => true,
        };
        self.model = Some(if applied {
            step_with_lr_scales(&mut self.optim, model, grads, lr, self.backbone_scales)
        } else {
            model
        });
        Ok(StepReport {
            loss_sums: step.loss_sums,
            rows: step.rows,
            applied,
        })
    }
}

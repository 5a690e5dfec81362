//! The cinefuse model: the configured modality encoders, one head per modality, and a fusion
//! module when more than one modality is used.

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::Distribution;
use cinefuse_data::MovieBatch;

use crate::branch::{Branch, ModalityBranch};
use crate::config::{Modality, ModelConfig, ModelShapes};
use crate::encoders::meta::MetaEncoder;
use crate::encoders::poster::PosterEncoder;
use crate::encoders::text::TextEncoder;
use crate::fusion::{Fusion, FusionInput};
use crate::head::OutputHead;
use crate::linear_skip::LinearSkip;
use crate::pretrained::{Bert, EfficientNetLite, PretrainedEncoder, PretrainedError};

/// The modality branches the config chose (the others are `None`) and, with more than one
/// modality, the fusion module.
#[derive(Module, Debug)]
pub struct CinefuseModel {
    pub poster: Option<Branch<PosterEncoder>>,
    pub text: Option<Branch<TextEncoder>>,
    pub meta: Option<Branch<MetaEncoder>>,
    pub fusion: Option<Fusion>,
    /// `model.linear_skip`: genre logits straight from the branches' skip features.
    pub skip: Option<LinearSkip>,
    #[module(skip)]
    modalities: Vec<Modality>,
    #[module(skip)]
    modality_dropout: f64,
    #[module(skip)]
    rating_modality: Option<Modality>,
}

/// What one modality alone predicts.
#[derive(Debug, Clone)]
pub struct ModalityOutput {
    pub modality: Modality,
    pub genre_logits: Tensor<2>,
    pub rating: Tensor<1>,
    pub present: Tensor<1>,
}

/// Model outputs. `rating` is standardized (see `RatingScale`).
#[derive(Debug, Clone)]
pub struct ModelOutput {
    pub genre_logits: Tensor<2>,
    pub rating: Tensor<1>,
    /// Per-movie modality weights `[B, M]` (late and GMU fusion), in `modalities` order.
    pub weights: Option<Tensor<2>>,
    pub per_modality: Vec<ModalityOutput>,
}

impl ModelConfig {
    /// The model for data of `shapes`, with random weights (a pretrained backbone's too:
    /// `init_pretrained` reads them; checkpoints and exports carry them).
    pub fn init(&self, shapes: &ModelShapes, device: &Device) -> CinefuseModel {
        let d = self.embed_dim;
        let has = |m| self.modalities.contains(&m);
        let poster = has(Modality::Poster).then(|| self.poster.init(d, device));
        let text = has(Modality::Text).then(|| self.text.init(shapes, d, device));
        self.assemble(poster, text, shapes, device)
    }

    /// `init`, then the pretrained backbones' weights from their checkpoint folders (a new
    /// run; checkpoints and exports carry the weights themselves).
    pub fn init_pretrained(
        &self,
        shapes: &ModelShapes,
        device: &Device,
    ) -> Result<CinefuseModel, PretrainedError> {
        let d = self.embed_dim;
        let has = |m| self.modalities.contains(&m);
        let poster = match has(Modality::Poster) {
            true => Some(self.poster.init_pretrained(d, device)?),
            false => None,
        };
        let text = match has(Modality::Text) {
            true => Some(self.text.init_pretrained(shapes, d, device)?),
            false => None,
        };
        Ok(self.assemble(poster, text, shapes, device))
    }

    /// The model around its poster and plot encoders: the metadata encoder, one head per
    /// modality and the fusion.
    fn assemble(
        &self,
        poster: Option<PosterEncoder>,
        text: Option<TextEncoder>,
        shapes: &ModelShapes,
        device: &Device,
    ) -> CinefuseModel {
        let d = self.embed_dim;
        let has = |m| self.modalities.contains(&m);
        let meta = has(Modality::Meta).then(|| {
            self.meta.init(
                shapes.n_numeric,
                &shapes.categorical_sizes,
                &shapes.categorical_dims,
                d,
                device,
            )
        });
        let head = || OutputHead::new(d, shapes.n_genres, self.fusion.dropout, device);
        let mut model = CinefuseModel {
            poster: poster.map(|encoder| Branch::new(encoder, head())),
            text: text.map(|encoder| Branch::new(encoder, head())),
            meta: meta.map(|encoder| Branch::new(encoder, head())),
            fusion: (self.modalities.len() > 1).then(|| {
                Fusion::new(
                    &self.fusion,
                    self.modalities.len(),
                    d,
                    shapes.n_genres,
                    device,
                )
            }),
            skip: None,
            modalities: Modality::ALL.into_iter().filter(|m| has(*m)).collect(),
            modality_dropout: self.modality_dropout,
            rating_modality: self.rating_modality,
        };
        let skip_dim: usize = model.branches().iter().map(|(_, b)| b.skip_dim()).sum();
        model.skip = (self.linear_skip && skip_dim > 0)
            .then(|| LinearSkip::new(skip_dim, shapes.n_genres, device));
        model.initialize_in_seed_order();
        model
    }
}

impl CinefuseModel {
    /// Burn draws a parameter's initial values when it is first used. Drawing them here, in
    /// one fixed order (encoders trained from scratch, metadata, heads, fusion, then the
    /// adapters of pretrained encoders: the order of the model's first layout), makes a
    /// seed's initial weights independent of how the struct is laid out, so that published
    /// results reproduce. Pretrained backbones are left alone: a new run reads them from
    /// their checkpoint, and loading a saved model replaces them without drawing them.
    fn initialize_in_seed_order(&self) {
        let mut init = InitializeParams;
        if let Some(b) = self
            .poster
            .as_ref()
            .filter(|b| b.encoder.pretrained().is_none())
        {
            b.encoder.visit(&mut init);
        }
        if let Some(b) = self
            .text
            .as_ref()
            .filter(|b| b.encoder.pretrained().is_none())
        {
            b.encoder.visit(&mut init);
        }
        if let Some(b) = &self.meta {
            b.encoder.visit(&mut init);
        }
        for b in [
            self.poster.as_ref().map(|b| &b.head),
            self.text.as_ref().map(|b| &b.head),
            self.meta.as_ref().map(|b| &b.head),
        ]
        .into_iter()
        .flatten()
        {
            b.visit(&mut init);
        }
        if let Some(f) = &self.fusion {
            f.visit(&mut init);
        }
        if let Some(e) = self.pretrained_poster() {
            e.adapter().visit(&mut init);
        }
        if let Some(e) = self.pretrained_text() {
            e.adapter().visit(&mut init);
        }
        // Last, so that models without the skip draw what they drew before it existed.
        if let Some(s) = &self.skip {
            s.visit(&mut init);
        }
    }

    /// The modalities in the canonical order used by `weights`.
    pub fn modalities(&self) -> &[Modality] {
        &self.modalities
    }

    pub fn is_fused(&self) -> bool {
        self.fusion.is_some()
    }

    /// Parameter count per top-level part, for the training log.
    pub fn param_counts(&self) -> Vec<(&'static str, usize)> {
        let mut out = Vec::new();
        if let Some(b) = &self.poster {
            let name = match b.encoder.pretrained() {
                Some(_) => "poster (pretrained)",
                None => "poster encoder",
            };
            out.push((name, b.encoder.num_params()));
        }
        if let Some(b) = &self.text {
            let name = match b.encoder.pretrained() {
                Some(_) => "text (pretrained)",
                None => "text encoder",
            };
            out.push((name, b.encoder.num_params()));
        }
        if let Some(b) = &self.meta {
            out.push(("meta encoder", b.encoder.num_params()));
        }
        let heads = [
            self.poster.as_ref().map(|b| b.head.num_params()),
            self.text.as_ref().map(|b| b.head.num_params()),
            self.meta.as_ref().map(|b| b.head.num_params()),
        ];
        out.push(("modality heads", heads.into_iter().flatten().sum()));
        if let Some(f) = &self.fusion {
            out.push(("fusion", f.num_params()));
        }
        if let Some(s) = &self.skip {
            out.push(("linear skip", s.num_params()));
        }
        out
    }

    /// The plot encoder on a pretrained backbone, when the model has one.
    pub fn pretrained_text(&self) -> Option<&PretrainedEncoder<Bert>> {
        self.text.as_ref()?.encoder.pretrained()
    }

    /// The poster encoder on a pretrained backbone, when the model has one.
    pub fn pretrained_poster(&self) -> Option<&PretrainedEncoder<EfficientNetLite>> {
        self.poster.as_ref()?.encoder.pretrained()
    }

    /// The configured branches, in `modalities` order.
    fn branches(&self) -> Vec<(Modality, &dyn ModalityBranch)> {
        let mut out: Vec<(Modality, &dyn ModalityBranch)> = Vec::new();
        if let Some(b) = &self.poster {
            out.push((Modality::Poster, b));
        }
        if let Some(b) = &self.text {
            out.push((Modality::Text, b));
        }
        if let Some(b) = &self.meta {
            out.push((Modality::Meta, b));
        }
        out
    }

    /// Forward pass. `drop_modalities` applies modality dropout (training only); metadata
    /// is never dropped so every movie keeps at least one input.
    pub fn forward_with(&self, batch: &MovieBatch, drop_modalities: bool) -> ModelOutput {
        self.forward_impl(batch, drop_modalities, &[])
    }

    /// Forward pass with the listed modalities treated as missing for every movie (used for
    /// leave-one-modality-out contributions).
    pub fn forward_masked(&self, batch: &MovieBatch, absent: &[Modality]) -> ModelOutput {
        self.forward_impl(batch, false, absent)
    }

    fn forward_impl(
        &self,
        batch: &MovieBatch,
        drop_modalities: bool,
        absent: &[Modality],
    ) -> ModelOutput {
        let mut embeddings = Vec::new();
        let mut present = Vec::new();
        let mut per_modality = Vec::new();
        let mut skips = Vec::new();
        for (m, branch) in self.branches() {
            let mut p = branch.present(batch);
            if absent.contains(&m) {
                p = p.zeros_like();
            }
            if drop_modalities && self.modality_dropout > 0.0 && m != Modality::Meta {
                let keep = p.random_like(Distribution::Bernoulli(1.0 - self.modality_dropout));
                p = p * keep;
            }
            let out = branch.forward(batch, p.clone(), self.skip.is_some());
            per_modality.push(ModalityOutput {
                modality: m,
                genre_logits: out.genre_logits,
                rating: out.rating,
                present: p.clone(),
            });
            embeddings.push(out.embedding);
            skips.extend(out.skip);
            present.push(p);
        }
        let mut output = self.combine(embeddings, present, per_modality);
        if let Some(skip) = &self.skip {
            output.genre_logits = output.genre_logits + skip.forward(skips);
        }
        output
    }

    /// The fused (or only) branch's predictions.
    fn combine(
        &self,
        embeddings: Vec<Tensor<2>>,
        present: Vec<Tensor<1>>,
        per_modality: Vec<ModalityOutput>,
    ) -> ModelOutput {
        match &self.fusion {
            Some(f) => {
                let out = f.forward(FusionInput {
                    embeddings,
                    present,
                    genre_logits: per_modality
                        .iter()
                        .map(|o| o.genre_logits.clone())
                        .collect(),
                    ratings: per_modality.iter().map(|o| o.rating.clone()).collect(),
                });
                let routed = self
                    .rating_modality
                    .and_then(|m| per_modality.iter().find(|o| o.modality == m))
                    .map(|o| o.rating.clone());
                ModelOutput {
                    genre_logits: out.genre_logits,
                    rating: routed.unwrap_or(out.rating),
                    weights: out.weights,
                    per_modality,
                }
            }
            None => {
                let only = per_modality[0].clone();
                ModelOutput {
                    genre_logits: only.genre_logits,
                    rating: only.rating,
                    weights: None,
                    per_modality,
                }
            }
        }
    }

    pub fn forward(&self, batch: &MovieBatch) -> ModelOutput {
        self.forward_with(batch, false)
    }
}

/// Draws every parameter's initial values (see `initialize_in_seed_order`).
struct InitializeParams;

impl ModuleVisitor for InitializeParams {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }

    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
        let _ = param.val();
    }
}

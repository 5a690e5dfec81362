//! The cinefuse model: the configured modality encoders, one head per modality, and a fusion
//! module when more than one modality is used.

use burn::prelude::*;
use burn::tensor::Distribution;
use cinefuse_data::MovieBatch;

use crate::config::{Modality, ModelConfig, ModelShapes};
use crate::encoder::ModalityEncoder;
use crate::fusion::{Fusion, FusionInput};
use crate::head::OutputHead;
use crate::meta::MetaEncoder;
use crate::poster::{PosterEncoder, PosterEncoderKind};
use crate::poster_efficientnet::EfficientNetPosterEncoder;
use crate::pretrained::{Bert, EfficientNetLite, PretrainedError};
use crate::text::{TextEncoder, TextEncoderKind};
use crate::text_bert::BertTextEncoder;

#[derive(Module, Debug)]
pub struct CinefuseModel {
    pub poster: Option<PosterEncoder>,
    pub text: Option<TextEncoder>,
    pub meta: Option<MetaEncoder>,
    poster_head: Option<OutputHead>,
    text_head: Option<OutputHead>,
    meta_head: Option<OutputHead>,
    pub fusion: Option<Fusion>,
    /// Pretrained encoders, in place of `poster` / `text` when configured.
    pub poster_pretrained: Option<EfficientNetPosterEncoder>,
    pub text_pretrained: Option<BertTextEncoder>,
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
    pub fn init(&self, shapes: &ModelShapes, device: &Device) -> CinefuseModel {
        let d = self.embed_dim;
        let has = |m| self.modalities.contains(&m);
        let head_dropout = self.fusion.dropout;
        let head = || OutputHead::new(d, shapes.n_genres, head_dropout, device);
        let poster_pretrained = self.poster.kind == PosterEncoderKind::EfficientnetLite0;
        let text_pretrained = self.text.kind == TextEncoderKind::Bert;
        CinefuseModel {
            poster: (has(Modality::Poster) && !poster_pretrained)
                .then(|| self.poster.init(d, device)),
            text: (has(Modality::Text) && !text_pretrained).then(|| {
                self.text
                    .init(shapes.vocab_size, shapes.max_tokens, d, device)
            }),
            poster_pretrained: (has(Modality::Poster) && poster_pretrained)
                .then(|| self.poster_encoder_on(EfficientNetLite::lite0(device), device)),
            text_pretrained: (has(Modality::Text) && text_pretrained).then(|| {
                let arch = shapes
                    .text_backbone
                    .as_ref()
                    .expect("ModelShapes::text_backbone is set for model.text.kind = \"bert\"");
                self.text_encoder_on(Bert::new(&arch.config, arch.pooling, device), device)
            }),
            meta: has(Modality::Meta).then(|| {
                self.meta.init(
                    shapes.n_numeric,
                    &shapes.categorical_sizes,
                    &shapes.categorical_dims,
                    d,
                    device,
                )
            }),
            poster_head: has(Modality::Poster).then(head),
            text_head: has(Modality::Text).then(head),
            meta_head: has(Modality::Meta).then(head),
            fusion: (self.modalities.len() > 1).then(|| {
                Fusion::new(
                    &self.fusion,
                    self.modalities.len(),
                    d,
                    shapes.n_genres,
                    device,
                )
            }),
            modalities: Modality::ALL.into_iter().filter(|m| has(*m)).collect(),
            modality_dropout: self.modality_dropout,
            rating_modality: self.rating_modality,
        }
    }

    /// `init`, then the pretrained backbones' weights from their checkpoint folders (a new
    /// run; checkpoints and exports carry the weights themselves).
    pub fn init_pretrained(
        &self,
        shapes: &ModelShapes,
        device: &Device,
    ) -> Result<CinefuseModel, PretrainedError> {
        let mut model = self.init(shapes, device);
        if let (Some(enc), Some(dir)) = (&mut model.poster_pretrained, &self.poster.pretrained) {
            *enc = self.poster_encoder_on(EfficientNetLite::from_dir(dir, device)?, device);
        }
        if let (Some(enc), Some(dir)) = (&mut model.text_pretrained, &self.text.pretrained) {
            *enc = self.text_encoder_on(Bert::from_dir(dir, device)?, device);
        }
        Ok(model)
    }

    /// The configured pretrained poster encoder (adapter, tuning) on top of `net`.
    fn poster_encoder_on(
        &self,
        net: EfficientNetLite,
        device: &Device,
    ) -> EfficientNetPosterEncoder {
        let p = &self.poster;
        EfficientNetPosterEncoder::new(net, self.embed_dim, p.feature_dropout, &p.tuning(), device)
    }

    /// The configured pretrained plot encoder (adapter, tuning) on top of `bert`.
    fn text_encoder_on(&self, bert: Bert, device: &Device) -> BertTextEncoder {
        let t = &self.text;
        BertTextEncoder::new(bert, self.embed_dim, t.feature_dropout, &t.tuning(), device)
    }
}

impl CinefuseModel {
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
        let mut add = |name, n: Option<usize>| {
            if let Some(n) = n {
                out.push((name, n));
            }
        };
        add(
            "poster encoder",
            self.poster.as_ref().map(|m| m.num_params()),
        );
        add(
            "poster (pretrained)",
            self.poster_pretrained.as_ref().map(|m| m.num_params()),
        );
        add("text encoder", self.text.as_ref().map(|m| m.num_params()));
        add(
            "text (pretrained)",
            self.text_pretrained.as_ref().map(|m| m.num_params()),
        );
        add("meta encoder", self.meta.as_ref().map(|m| m.num_params()));
        let heads = [&self.poster_head, &self.text_head, &self.meta_head]
            .iter()
            .filter_map(|h| h.as_ref().map(|h| h.num_params()))
            .sum::<usize>();
        add("modality heads", Some(heads));
        add("fusion", self.fusion.as_ref().map(|m| m.num_params()));
        out
    }

    fn encoder(&self, m: Modality) -> (&dyn ModalityEncoder, &OutputHead) {
        fn pick<'a>(
            e: Option<&'a dyn ModalityEncoder>,
            h: &'a Option<OutputHead>,
        ) -> (&'a dyn ModalityEncoder, &'a OutputHead) {
            (
                e.expect("configured modality"),
                h.as_ref().expect("configured head"),
            )
        }
        match m {
            Modality::Poster => pick(
                self.poster
                    .as_ref()
                    .map(|e| e as _)
                    .or(self.poster_pretrained.as_ref().map(|e| e as _)),
                &self.poster_head,
            ),
            Modality::Text => pick(
                self.text
                    .as_ref()
                    .map(|e| e as _)
                    .or(self.text_pretrained.as_ref().map(|e| e as _)),
                &self.text_head,
            ),
            Modality::Meta => pick(self.meta.as_ref().map(|e| e as _), &self.meta_head),
        }
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
        for &m in &self.modalities {
            let (enc, head) = self.encoder(m);
            let mut p = enc.present(batch);
            if absent.contains(&m) {
                p = p.zeros_like();
            }
            if drop_modalities && self.modality_dropout > 0.0 && m != Modality::Meta {
                let keep = p.random_like(Distribution::Bernoulli(1.0 - self.modality_dropout));
                p = p * keep;
            }
            // A missing modality contributes nothing: its embedding is zeroed before any head.
            let e = enc.embed(batch) * p.clone().unsqueeze_dim::<2>(1);
            let (g, r) = head.forward(e.clone());
            per_modality.push(ModalityOutput {
                modality: m,
                genre_logits: g,
                rating: r,
                present: p.clone(),
            });
            embeddings.push(e);
            present.push(p);
        }
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

//! Model configuration (the `[model]` section) and the data-dependent shapes it is built with.

use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::encoders::meta::MetaEncoderConfig;
use crate::encoders::poster::{PosterEncoderConfig, PosterEncoderKind};
use crate::encoders::text::{Pooling, TextEncoderConfig, TextEncoderKind};
use crate::fusion::FusionConfig;
use crate::pretrained::BertConfig;
use crate::size_limits::{
    MAX_GENRES, MAX_NUMERIC, MAX_TABLE_ROWS, MAX_WIDTH, check_at_most, check_size,
};
use cinefuse_data::prepare::MAX_TOKENS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Poster,
    Text,
    Meta,
}

impl Modality {
    pub const ALL: [Modality; 3] = [Modality::Poster, Modality::Text, Modality::Meta];

    pub fn name(self) -> &'static str {
        match self {
            Modality::Poster => "poster",
            Modality::Text => "text",
            Modality::Meta => "meta",
        }
    }
}

/// The `[model]` section.
#[derive(Config, Debug)]
pub struct ModelConfig {
    /// Which modalities the model uses; a single one trains a per-modality model.
    #[config(default = "vec![Modality::Poster, Modality::Text, Modality::Meta]")]
    pub modalities: Vec<Modality>,
    /// Size of every modality embedding.
    #[config(default = 64)]
    pub embed_dim: usize,
    /// Probability of dropping a whole (present) modality per sample during training.
    #[config(default = 0.0)]
    pub modality_dropout: f64,
    /// Weight of the per-modality heads' auxiliary losses in fused models.
    #[config(default = 0.3)]
    pub aux_loss_weight: f64,
    #[config(default = "PosterEncoderConfig::new()")]
    pub poster: PosterEncoderConfig,
    #[config(default = "TextEncoderConfig::new()")]
    pub text: TextEncoderConfig,
    #[config(default = "MetaEncoderConfig::new()")]
    pub meta: MetaEncoderConfig,
    #[config(default = "FusionConfig::new()")]
    pub fusion: FusionConfig,
    /// Take the fused model's rating from this modality's own head instead of the fusion head
    /// (per-task routing: on small data the rating is best predicted from metadata alone).
    #[config(default = "None")]
    pub rating_modality: Option<Modality>,
    /// Add a linear map from the pretrained backbones' features and the metadata encoder's
    /// input straight to the genre logits (`crate::linear_skip`).
    #[config(default = false)]
    pub linear_skip: bool,
}

/// Sizes that come from the prepared data, not from the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelShapes {
    pub n_genres: usize,
    pub vocab_size: usize,
    pub max_tokens: usize,
    pub n_numeric: usize,
    pub categorical_sizes: Vec<usize>,
    /// Embedding size of each categorical input (0 or absent: `model.meta.cat_dim`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categorical_dims: Vec<usize>,
    /// The architecture of a pretrained plot encoder (`model.text.kind = "bert"`), read from
    /// its checkpoint when training starts and kept with the run, so that checkpoints and
    /// exports rebuild it without the checkpoint folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_backbone: Option<TextBackbone>,
}

impl ModelShapes {
    /// The sizes the prepared data `pre` gives a model (no pretrained plot encoder: the
    /// caller sets `text_backbone` from the checkpoint or the run).
    pub fn of(pre: &cinefuse_data::prepared::Preprocessor) -> Self {
        Self {
            n_genres: pre.state.genres.len(),
            vocab_size: pre.state.tokenizer_vocab_size.max(3),
            max_tokens: pre.state.config.max_tokens,
            n_numeric: pre.n_numeric(),
            categorical_sizes: pre.categorical_sizes(),
            categorical_dims: pre.categorical_dims(),
            text_backbone: None,
        }
    }

    /// Whether the sizes are within `size_limits`: a saved model's shapes come from a file
    /// the user may have edited, and they are allocated before any weight is read.
    pub fn check(&self) -> Result<(), String> {
        check_size("shapes.n_genres", self.n_genres, MAX_GENRES)?;
        check_size("shapes.vocab_size", self.vocab_size, MAX_TABLE_ROWS)?;
        check_size("shapes.max_tokens", self.max_tokens, MAX_TOKENS)?;
        check_at_most("shapes.n_numeric", self.n_numeric, MAX_NUMERIC)?;
        let n = self.categorical_sizes.len();
        check_at_most("shapes.categorical_sizes: the count", n, MAX_NUMERIC)?;
        check_at_most(
            "shapes.categorical_dims: the count",
            self.categorical_dims.len(),
            n,
        )?;
        for (k, s) in self.categorical_sizes.iter().enumerate() {
            check_at_most(
                &format!("shapes.categorical_sizes[{k}]"),
                *s,
                MAX_TABLE_ROWS,
            )?;
        }
        for (k, d) in self.categorical_dims.iter().enumerate() {
            check_at_most(&format!("shapes.categorical_dims[{k}]"), *d, MAX_WIDTH)?;
        }
        match &self.text_backbone {
            Some(b) => b
                .config
                .check()
                .map_err(|e| format!("shapes.text_backbone.config.{e}")),
            None => Ok(()),
        }
    }

    /// The first data-dependent size on which `self` and `other` disagree, as
    /// `(field, self's, other's)`; the pretrained plot backbone is not compared.
    pub fn first_difference(&self, other: &Self) -> Option<(&'static str, String, String)> {
        let fields: [(&'static str, &dyn std::fmt::Debug, &dyn std::fmt::Debug); 6] = [
            ("n_genres", &self.n_genres, &other.n_genres),
            ("vocab_size", &self.vocab_size, &other.vocab_size),
            ("max_tokens", &self.max_tokens, &other.max_tokens),
            ("n_numeric", &self.n_numeric, &other.n_numeric),
            (
                "categorical_sizes",
                &self.categorical_sizes,
                &other.categorical_sizes,
            ),
            (
                "categorical_dims",
                &self.categorical_dims,
                &other.categorical_dims,
            ),
        ];
        fields
            .into_iter()
            .map(|(key, a, b)| (key, format!("{a:?}"), format!("{b:?}")))
            .find(|(_, a, b)| a != b)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextBackbone {
    pub config: BertConfig,
    pub pooling: Pooling,
    /// `model.text.concat_layers` (absent in runs saved before it: none).
    #[serde(default)]
    pub concat_layers: Vec<usize>,
}

impl ModelConfig {
    /// Whether any configured branch gives skip features (`crate::linear_skip`).
    fn has_skip_features(&self) -> bool {
        let has = |m| self.modalities.contains(&m);
        has(Modality::Meta)
            || (has(Modality::Text) && self.text.kind == TextEncoderKind::Bert)
            || (has(Modality::Poster) && self.poster.kind == PosterEncoderKind::EfficientnetLite0)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.modalities.is_empty() {
            return Err(
                "model.modalities: expected at least one of \"poster\", \"text\", \"meta\"".into(),
            );
        }
        let mut seen = self.modalities.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.modalities.len() {
            return Err(format!(
                "model.modalities = {:?}: a modality is listed twice",
                self.modalities
            ));
        }
        check_size("model.embed_dim", self.embed_dim, MAX_WIDTH)?;
        if !(0.0..1.0).contains(&self.modality_dropout) {
            return Err(format!(
                "model.modality_dropout = {}: expected a probability in [0, 1)",
                self.modality_dropout
            ));
        }
        if self.aux_loss_weight < 0.0 {
            return Err(format!(
                "model.aux_loss_weight = {}: expected >= 0",
                self.aux_loss_weight
            ));
        }
        if let Some(m) = self
            .rating_modality
            .filter(|m| !self.modalities.contains(m))
        {
            return Err(format!(
                "model.rating_modality = {:?}: not one of model.modalities {:?}",
                m.name(),
                self.modalities.iter().map(|m| m.name()).collect::<Vec<_>>()
            ));
        }
        if self.linear_skip && !self.has_skip_features() {
            return Err(
                "model.linear_skip = true needs the meta modality or a pretrained \
                 poster or plot encoder (the skip reads their features)"
                    .into(),
            );
        }
        self.poster.validate()?;
        self.text.validate()?;
        self.meta.validate()?;
        self.fusion.validate()?;
        Ok(())
    }
}

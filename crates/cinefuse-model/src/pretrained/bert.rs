//! A BERT-family text encoder built from a Hugging Face checkpoint folder (`config.json`,
//! `model.safetensors`, `tokenizer.json`, optionally `1_Pooling/config.json`): token, position
//! and segment embeddings, post-norm encoder layers with exact GELU, then masked mean (or
//! `[CLS]`) pooling as the checkpoint's pooling config says. all-MiniLM-L6-v2, MiniLM-L12,
//! bge-small and BERT-base all have this layout; an MPNet checkpoint (all-mpnet-base-v2) is the
//! same with the additions of `mpnet.rs`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::prelude::*;
use serde::Deserialize;

use crate::cpu_kernels::{dropout, gelu, softmax};
use crate::encoders::text::{Pooling, masked_mean};
use crate::pretrained::frozen_part::param_ids;
use crate::pretrained::load::{
    PretrainedError, load_safetensors, load_safetensors_absent, read_json,
};
use crate::pretrained::mpnet;
use crate::pretrained::portable_file::{
    TEXT_BACKBONE_PREFIX, is_portable, load_portable, weights_or_portable,
};
use crate::size_limits::{MAX_LAYERS, MAX_TABLE_ROWS, MAX_WIDTH, check_size, check_table};

/// The fields of a Hugging Face `config.json` that define a BERT encoder.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "one")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    /// `"bert"` or `"mpnet"` (relative attention bias, positions after the padding id).
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// MPNet: buckets of the relative attention bias.
    #[serde(default)]
    pub relative_attention_num_buckets: usize,
    /// MPNet: positions start after this id.
    #[serde(default)]
    pub pad_token_id: usize,
}

fn one() -> usize {
    1
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_model_type() -> String {
    "bert".into()
}

#[derive(Debug, Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
}

impl BertConfig {
    /// Reads and checks `DIR/config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self, PretrainedError> {
        let path = dir.join("config.json");
        let config: BertConfig = read_json(&path)?;
        config.check().map_err(|message| PretrainedError::Config {
            path: path.clone(),
            message,
        })?;
        Ok(config)
    }

    /// Whether cinefuse can build this encoder: the exact GELU, heads that divide the width,
    /// and sizes within `size_limits` (a checkpoint's config, or a saved run's copy of it).
    pub fn check(&self) -> Result<(), String> {
        match self.model_type.as_str() {
            "bert" => {}
            "mpnet" => {
                let buckets = self.relative_attention_num_buckets;
                if !(4..=MAX_BUCKETS).contains(&buckets) || !buckets.is_multiple_of(4) {
                    return Err(format!(
                        "relative_attention_num_buckets = {buckets}: an MPNet needs a multiple \
                         of 4 from 4 to {MAX_BUCKETS}"
                    ));
                }
                if self.pad_token_id + 1 >= self.max_position_embeddings {
                    return Err(format!(
                        "pad_token_id = {} leaves no positions of max_position_embeddings = {}",
                        self.pad_token_id, self.max_position_embeddings
                    ));
                }
            }
            other => {
                return Err(format!(
                    "model_type = {other:?}: only \"bert\" and \"mpnet\" are supported"
                ));
            }
        }
        if self.hidden_act != "gelu" {
            return Err(format!(
                "hidden_act = {:?}: only the exact \"gelu\" is supported",
                self.hidden_act
            ));
        }
        check_size("hidden_size", self.hidden_size, MAX_WIDTH)?;
        check_size("intermediate_size", self.intermediate_size, MAX_WIDTH)?;
        check_size("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS)?;
        let heads = self.num_attention_heads;
        if heads == 0 || !self.hidden_size.is_multiple_of(heads) {
            return Err(format!(
                "num_attention_heads = {heads} does not divide hidden_size = {}",
                self.hidden_size
            ));
        }
        check_size("vocab_size", self.vocab_size, MAX_TABLE_ROWS)?;
        check_table(
            "vocab_size × hidden_size",
            self.vocab_size,
            self.hidden_size,
        )?;
        check_size(
            "max_position_embeddings",
            self.max_position_embeddings,
            MAX_TABLE_ROWS,
        )?;
        check_table(
            "max_position_embeddings × hidden_size",
            self.max_position_embeddings,
            self.hidden_size,
        )?;
        check_size("type_vocab_size", self.type_vocab_size, MAX_TABLE_ROWS)
    }

    pub fn is_mpnet(&self) -> bool {
        self.model_type == "mpnet"
    }

    /// The most tokens a plot may have: the position table's rows after the first position.
    pub fn max_tokens(&self) -> usize {
        self.max_position_embeddings
            .saturating_sub(self.position_offset())
    }

    /// The position of a plot's first token: MPNet numbers positions after the padding id.
    fn position_offset(&self) -> usize {
        if self.is_mpnet() {
            self.pad_token_id + 1
        } else {
            0
        }
    }
}

/// The most relative-distance buckets an MPNet config may ask for.
const MAX_BUCKETS: usize = 1024;

/// The pooling of `DIR/1_Pooling/config.json` (sentence-transformers); mean when absent.
pub fn pooling_from_dir(dir: &Path) -> Result<Pooling, PretrainedError> {
    let path = dir.join("1_Pooling").join("config.json");
    if !path.exists() {
        return Ok(Pooling::Mean);
    }
    let p: PoolingFile = read_json(&path)?;
    match (p.pooling_mode_mean_tokens, p.pooling_mode_cls_token) {
        (true, false) => Ok(Pooling::Mean),
        (false, true) => Ok(Pooling::Cls),
        _ => Err(PretrainedError::Config {
            path,
            message: "expected exactly one of pooling_mode_mean_tokens and \
                      pooling_mode_cls_token (other poolings are not supported)"
                .into(),
        }),
    }
}

#[derive(Module, Debug)]
pub struct BertEmbeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
}

/// One post-norm layer: `x = norm(x + attention(x))`, `x = norm(x + ffn(x))`.
#[derive(Module, Debug)]
pub struct BertLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    dropout: Dropout,
    #[module(skip)]
    n_heads: usize,
}

#[derive(Module, Debug)]
pub struct Bert {
    pub embeddings: BertEmbeddings,
    pub layers: Vec<BertLayer>,
    /// MPNet: the attention bias by relative distance, shared by every layer; none for BERT.
    pub relative_bias: Option<Embedding>,
    #[module(skip)]
    pooling: Pooling,
    /// Position of the first token (MPNet: after the padding id).
    #[module(skip)]
    position_offset: usize,
    /// Whether segment embeddings are added (BERT; an MPNet has none).
    #[module(skip)]
    segments: bool,
    #[module(skip)]
    hidden: usize,
    /// Layers whose mean-pooled token states follow the pooled output in the features
    /// (`model.text.concat_layers`; 0 is the embeddings, `k` the output of layer `k`).
    #[module(skip)]
    concat_layers: Vec<usize>,
}

/// Hugging Face names → the field paths above (applied to the checkpoint's keys), with
/// `FEED_FORWARD_KEY_MAP` after them. A leading `bert.` (task-head checkpoints) is dropped.
pub const BERT_KEY_MAP: &[(&str, &str)] = &[
    (r"^bert\.", ""),
    (r"^embeddings\.word_embeddings\.", "embeddings.word."),
    (
        r"^embeddings\.position_embeddings\.",
        "embeddings.position.",
    ),
    (
        r"^embeddings\.token_type_embeddings\.",
        "embeddings.token_type.",
    ),
    (r"^embeddings\.LayerNorm\.", "embeddings.norm."),
    (
        r"^encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.",
        "layers.$1.$2.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.",
        "layers.$1.attention_out.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.",
        "layers.$1.attention_norm.",
    ),
];

/// Each layer's feed-forward block and its norm: the same names in BERT and MPNet checkpoints.
pub const FEED_FORWARD_KEY_MAP: &[(&str, &str)] = &[
    (
        r"^encoder\.layer\.(\d+)\.intermediate\.dense\.",
        "layers.$1.intermediate.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.output\.dense\.",
        "layers.$1.output.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.",
        "layers.$1.output_norm.",
    ),
];

/// Checkpoint tensors a sentence encoder does not use.
pub const BERT_IGNORED: &[&str] = &[r"^(bert\.)?pooler\.", r"position_ids$", r"^cls\."];

impl Bert {
    /// A randomly initialized encoder of the checkpoint's architecture.
    pub fn new(config: &BertConfig, pooling: Pooling, device: &Device) -> Self {
        let d = config.hidden_size;
        let norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(config.layer_norm_eps)
                .init(device)
        };
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let layers = (0..config.num_hidden_layers)
            .map(|_| BertLayer {
                query: linear(d, d),
                key: linear(d, d),
                value: linear(d, d),
                attention_out: linear(d, d),
                attention_norm: norm(),
                intermediate: linear(d, config.intermediate_size),
                output: linear(config.intermediate_size, d),
                output_norm: norm(),
                dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
                n_heads: config.num_attention_heads,
            })
            .collect();
        let segments = !config.is_mpnet();
        let token_type = EmbeddingConfig::new(config.type_vocab_size.max(1), d);
        let token_type = if segments {
            token_type
        } else {
            token_type.with_initializer(burn::nn::Initializer::Zeros)
        };
        Bert {
            embeddings: BertEmbeddings {
                word: EmbeddingConfig::new(config.vocab_size, d).init(device),
                position: EmbeddingConfig::new(config.max_position_embeddings, d).init(device),
                token_type: token_type.init(device),
                norm: norm(),
            },
            layers,
            relative_bias: config.is_mpnet().then(|| {
                mpnet::relative_bias_table(
                    config.relative_attention_num_buckets,
                    config.num_attention_heads,
                    device,
                )
            }),
            pooling,
            position_offset: config.position_offset(),
            segments,
            hidden: d,
            concat_layers: Vec::new(),
        }
    }

    /// The same encoder whose features also carry the mean-pooled token states after each of
    /// `layers` (0: the embeddings). A sentence encoder's last layer is trained for similarity
    /// and drops lexical detail that a genre classifier can use; earlier layers keep it.
    /// `layers` must be strictly increasing and at most the number of layers.
    pub fn with_concat_layers(mut self, layers: Vec<usize>) -> Self {
        debug_assert!(layers.windows(2).all(|w| w[0] < w[1]));
        self.concat_layers = layers;
        self
    }

    /// Width of `forward`'s features: the pooled output, then one block per concatenated layer.
    pub fn pooled_width(&self) -> usize {
        self.hidden * (1 + self.concat_layers.len())
    }

    /// Builds the encoder from a checkpoint folder and loads its weights.
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, PretrainedError> {
        let config = BertConfig::from_dir(dir)?;
        let pooling = pooling_from_dir(dir)?;
        let bert = Bert::new(&config, pooling, device);
        let weights = Self::weights_file(dir);
        if is_portable(&weights) {
            load_portable(bert, &weights, TEXT_BACKBONE_PREFIX)
        } else if config.is_mpnet() {
            let map = [mpnet::MPNET_KEY_MAP, FEED_FORWARD_KEY_MAP].concat();
            let (ignored, absent) = (mpnet::MPNET_IGNORED, mpnet::MPNET_ABSENT);
            load_safetensors_absent(bert, &weights, &map, ignored, absent)
        } else {
            let map = [BERT_KEY_MAP, FEED_FORWARD_KEY_MAP].concat();
            load_safetensors(bert, &weights, &map, BERT_IGNORED)
        }
    }

    /// Freezes the embeddings and all but the last `n` layers.
    pub fn freeze_all_but_last_layers(mut self, n: usize) -> Self {
        // The same layers as `ids_below_last_layers` names.
        let below = self.layers.len().saturating_sub(n);
        self.embeddings = self.embeddings.no_grad();
        self.layers = self
            .layers
            .into_iter()
            .enumerate()
            .map(|(i, l)| if i < below { l.no_grad() } else { l })
            .collect();
        self
    }

    /// The ids of what `freeze_all_but_last_layers(n)` freezes.
    pub fn ids_below_last_layers(&self, n: usize) -> Vec<burn::module::ParamId> {
        let below = self.layers.len().saturating_sub(n);
        let mut ids = param_ids(&self.embeddings);
        self.layers[..below]
            .iter()
            .for_each(|l| ids.extend(param_ids(l)));
        ids
    }

    /// The weights file of a checkpoint folder: `model.safetensors`, or an export's portable
    /// file when only that is there.
    pub fn weights_file(dir: &Path) -> PathBuf {
        weights_or_portable(dir, "model.safetensors")
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Token states `[B, L, hidden]`. `mask` is `[B, L]`, 1.0 on real tokens.
    pub fn hidden_states(&self, tokens: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<3> {
        self.states_before(self.layers.len(), tokens, mask)
    }

    /// The token states entering layer `layer`: the embeddings, then layers `0..layer`.
    pub fn states_before(
        &self,
        layer: usize,
        tokens: Tensor<2, Int>,
        mask: Tensor<2>,
    ) -> Tensor<3> {
        let [b, l] = tokens.dims();
        let device = tokens.device();
        let first = self.position_offset as i64;
        let positions = Tensor::<1, Int>::arange(first..first + l as i64, &device)
            .unsqueeze::<2>()
            .expand([b, l]);
        let e = &self.embeddings;
        let mut x = e.word.forward(tokens.clone()) + e.position.forward(positions);
        if self.segments {
            x = x + e.token_type.forward(tokens.zeros_like());
        }
        self.run_layers(e.norm.forward(x), 0..layer, mask)
    }

    /// Pooled sentence embedding `[B, pooled_width]`: the checkpoint's pooling of the last
    /// layer, then the mean of each of `concat_layers`' token states.
    pub fn forward(&self, tokens: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        let states = self.states_before(0, tokens, mask.clone());
        self.forward_from(0, states, mask)
    }

    /// The features from token states entering layer `layer` (`states_before`): the layers
    /// from there on, then the pooling. Equals `forward` on the same tokens. Panics if a
    /// concatenated layer lies below `layer` (its states are gone; the config refuses that).
    pub fn forward_from(&self, layer: usize, states: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        let below = self.concat_layers.iter().find(|&&k| k < layer);
        assert!(
            below.is_none(),
            "concatenated layer {below:?} lies below the cached layer {layer}"
        );
        let padding = mask.clone().equal_elem(0.0);
        let bias = self.attention_bias(&states);
        let mut pooled = Vec::with_capacity(self.concat_layers.len());
        let mut h = states;
        for k in layer..=self.layers.len() {
            if self.concat_layers.contains(&k) {
                pooled.push(masked_mean(h.clone(), mask.clone()));
            }
            if k < self.layers.len() {
                h = self.layers[k].forward(h, padding.clone(), bias.clone());
            }
        }
        // `concat_layers` is increasing (the config checks), so `pooled` is in its order.
        let mut blocks = vec![self.pool(h, mask)];
        blocks.extend(pooled);
        if blocks.len() == 1 {
            return blocks.remove(0);
        }
        Tensor::cat(blocks, 1)
    }

    fn run_layers(&self, x: Tensor<3>, layers: Range<usize>, mask: Tensor<2>) -> Tensor<3> {
        if layers.is_empty() {
            return x; // `forward` starts here with no layer: no mask or bias to build
        }
        let padding = mask.equal_elem(0.0);
        let bias = self.attention_bias(&x);
        self.layers[layers].iter().fold(x, |h, layer| {
            layer.forward(h, padding.clone(), bias.clone())
        })
    }

    /// MPNet's relative attention bias for the length of `states` (`[B, L, hidden]`).
    fn attention_bias(&self, states: &Tensor<3>) -> Option<Tensor<4>> {
        let table = self.relative_bias.as_ref()?;
        Some(mpnet::relative_bias(
            table,
            states.dims()[1],
            &states.device(),
        ))
    }

    fn pool(&self, states: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        match self.pooling {
            Pooling::Mean => masked_mean(states, mask),
            Pooling::Cls => {
                let [b, _, d] = states.dims();
                states.slice([0..b, 0..1, 0..d]).reshape([b, d])
            }
        }
    }
}

/// Hugging Face's additive mask value for padding keys (`finfo(float32).min` there; any value
/// this negative gives them zero weight after softmax).
const MASKED_SCORE: f32 = -1.0e4;

impl BertLayer {
    fn forward(
        &self,
        x: Tensor<3>,
        padding: Tensor<2, Bool>,
        bias: Option<Tensor<4>>,
    ) -> Tensor<3> {
        let attended = dropout(&self.dropout, self.attention(x.clone(), padding, bias));
        let x = self.attention_norm.forward(x + attended);
        let h = gelu(self.intermediate.forward(x.clone()));
        let h = dropout(&self.dropout, self.output.forward(h));
        self.output_norm.forward(x + h)
    }

    fn attention(
        &self,
        x: Tensor<3>,
        padding: Tensor<2, Bool>,
        bias: Option<Tensor<4>>,
    ) -> Tensor<3> {
        let [b, l, d] = x.dims();
        let (h, dk) = (self.n_heads, d / self.n_heads);
        let heads = |t: Tensor<3>| t.reshape([b, l, h, dk]).swap_dims(1, 2);
        let q = heads(self.query.forward(x.clone()));
        let k = heads(self.key.forward(x.clone()));
        let v = heads(self.value.forward(x));
        let mut scores = q.matmul(k.transpose()).div_scalar((dk as f32).sqrt());
        if let Some(bias) = bias {
            scores = scores + bias;
        }
        let scores = scores.mask_fill(padding.reshape([b, 1, 1, l]), MASKED_SCORE);
        let weights = dropout(&self.dropout, softmax(scores, 3));
        let context = weights.matmul(v).swap_dims(1, 2).reshape([b, l, d]);
        self.attention_out.forward(context)
    }
}

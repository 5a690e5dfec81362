//! Small checkpoints with random weights in the real checkpoints' layouts, written by tests
//! (loading, freezing, the embedding cache, end-to-end runs) so that they need no download.

use std::collections::BTreeMap;
use std::path::Path;

use burn::prelude::*;
use burn::store::ModuleSnapshot;

use crate::pretrained::EfficientNetLite;

/// Checkpoint tensors by name: shape and row-major values (PyTorch layout).
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Writes a safetensors file (8-byte header length, JSON header, f32 data).
pub fn write_safetensors(path: &Path, tensors: &Tensors) -> std::io::Result<()> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, (shape, values)) in tensors {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "{name}");
        let start = data.len();
        for v in values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let header = serde_json::to_vec(&header)?;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&data);
    std::fs::write(path, bytes)
}

/// Deterministic pseudo-random values in [-0.5, 0.5).
pub fn random_values(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// Relative-distance buckets of a tiny MPNet: few, so that a short plot reaches its wider
/// buckets too.
pub const MPNET_BUCKETS: usize = 8;

/// Sizes of a tiny BERT.
#[derive(Debug, Clone, Copy)]
pub struct TinyBert {
    pub vocab: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub positions: usize,
    pub layers: usize,
    pub heads: usize,
}

impl TinyBert {
    /// One layer over the word-level vocabulary (320 words) that the tests' tiny datasets
    /// train: a BERT that reads their prepared token ids.
    pub const OVER_TINY_DATASETS: TinyBert = TinyBert {
        vocab: 320,
        hidden: 8,
        intermediate: 16,
        positions: 32,
        layers: 1,
        heads: 2,
    };

    /// Two layers over 30 token ids: one layer to freeze and one to fine-tune, for unit tests
    /// that build models in memory.
    pub const TWO_LAYERS: TinyBert = TinyBert {
        vocab: 30,
        hidden: 8,
        intermediate: 16,
        positions: 16,
        layers: 2,
        heads: 2,
    };

    /// Its tensors with Hugging Face names (and the pooler a sentence encoder ignores).
    pub fn tensors(&self, seed: u64) -> Tensors {
        let (h, ff) = (self.hidden, self.intermediate);
        let mut t = Tensors::new();
        let mut seed = seed;
        let mut add = |name: String, shape: Vec<usize>| {
            seed += 1;
            let n = shape.iter().product();
            t.insert(name, (shape, random_values(n, seed)));
        };
        add(
            "embeddings.word_embeddings.weight".into(),
            vec![self.vocab, h],
        );
        add(
            "embeddings.position_embeddings.weight".into(),
            vec![self.positions, h],
        );
        add("embeddings.token_type_embeddings.weight".into(), vec![2, h]);
        add("embeddings.LayerNorm.weight".into(), vec![h]);
        add("embeddings.LayerNorm.bias".into(), vec![h]);
        for l in 0..self.layers {
            let pre = format!("encoder.layer.{l}");
            for (name, o, i) in [
                ("attention.self.query", h, h),
                ("attention.self.key", h, h),
                ("attention.self.value", h, h),
                ("attention.output.dense", h, h),
                ("intermediate.dense", ff, h),
                ("output.dense", h, ff),
            ] {
                add(format!("{pre}.{name}.weight"), vec![o, i]);
                add(format!("{pre}.{name}.bias"), vec![o]);
            }
            for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
                add(format!("{pre}.{norm}.weight"), vec![h]);
                add(format!("{pre}.{norm}.bias"), vec![h]);
            }
        }
        add("pooler.dense.weight".into(), vec![h, h]);
        t
    }

    /// Writes `config.json`, `1_Pooling/config.json` (mean) and `model.safetensors` into `dir`.
    pub fn write(&self, dir: &Path, tensors: &Tensors) -> std::io::Result<()> {
        std::fs::create_dir_all(dir.join("1_Pooling"))?;
        let config = serde_json::json!({
            "hidden_size": self.hidden, "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads, "intermediate_size": self.intermediate,
            "max_position_embeddings": self.positions, "vocab_size": self.vocab,
            "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu"
        });
        std::fs::write(dir.join("config.json"), config.to_string())?;
        std::fs::write(
            dir.join("1_Pooling/config.json"),
            r#"{"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": false}"#,
        )?;
        write_safetensors(&dir.join("model.safetensors"), tensors)
    }

    /// The same encoder as an MPNet checkpoint: `tensors` under MPNet's names, without the
    /// segment embedding, with a relative attention bias of `MPNET_BUCKETS` buckets.
    pub fn mpnet_tensors(&self, tensors: &Tensors, seed: u64) -> Tensors {
        let mut t: Tensors = (tensors.iter())
            .filter(|(name, _)| !name.contains("token_type") && !name.starts_with("pooler."))
            .map(|(name, v)| {
                let name = name
                    .replace("attention.self.query", "attention.attn.q")
                    .replace("attention.self.key", "attention.attn.k")
                    .replace("attention.self.value", "attention.attn.v")
                    .replace("attention.output.dense", "attention.attn.o")
                    .replace("attention.output.LayerNorm", "attention.LayerNorm");
                (format!("mpnet.{name}"), v.clone())
            })
            .collect();
        let shape = vec![MPNET_BUCKETS, self.heads];
        let bias = random_values(MPNET_BUCKETS * self.heads, seed)
            .into_iter()
            .map(|v| 4.0 * v)
            .collect();
        t.insert(
            "mpnet.encoder.relative_attention_bias.weight".into(),
            (shape, bias),
        );
        t
    }

    /// Writes an MPNet checkpoint (`mpnet_tensors`) into `dir`, as `write` a BERT one.
    pub fn write_mpnet(&self, dir: &Path, tensors: &Tensors) -> std::io::Result<()> {
        self.write(dir, tensors)?;
        let config = serde_json::json!({
            "model_type": "mpnet", "hidden_size": self.hidden,
            "num_hidden_layers": self.layers, "num_attention_heads": self.heads,
            "intermediate_size": self.intermediate, "max_position_embeddings": self.positions,
            "vocab_size": self.vocab, "layer_norm_eps": 1e-5, "hidden_act": "gelu",
            "relative_attention_num_buckets": MPNET_BUCKETS, "pad_token_id": 1
        });
        std::fs::write(dir.join("config.json"), config.to_string())
    }

    /// The shapes of a plot-only model on the BERT written into `dir` (mean pooling,
    /// `max_tokens` 8, one numeric column, no categories).
    pub fn plot_model_shapes(&self, dir: &Path, n_genres: usize) -> crate::ModelShapes {
        crate::ModelShapes {
            n_genres,
            vocab_size: self.vocab,
            max_tokens: 8,
            n_numeric: 1,
            categorical_sizes: vec![],
            categorical_dims: vec![],
            text_backbone: Some(crate::TextBackbone {
                config: crate::pretrained::BertConfig::from_dir(dir).expect("written by `write`"),
                pooling: crate::encoders::text::Pooling::Mean,
                concat_layers: vec![],
            }),
        }
    }
}

/// A module's tensors by Burn path, as f32 values.
pub fn module_values<M: ModuleSnapshot>(module: &M) -> Tensors {
    module
        .collect(None, None, false)
        .into_iter()
        .map(|t| {
            let shape = t.shape.to_vec();
            let bytes = t.to_bytes().expect("tensor bytes");
            let v = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (t.name.clone(), (shape, v))
        })
        .collect()
}

/// The `efficientnet_pytorch` port's name of an EfficientNet module path.
pub fn efficientnet_port_name(burn_name: &str) -> String {
    let mut n = burn_name.to_string();
    for (from, to) in [
        ("stem_norm.", "_bn0."),
        ("stem.conv.", "_conv_stem."),
        ("head_norm.", "_bn1."),
        ("head.conv.", "_conv_head."),
        (".expand_norm.", "._bn0."),
        (".expand.conv.", "._expand_conv."),
        (".depthwise_norm.", "._bn1."),
        (".depthwise.conv.", "._depthwise_conv."),
        (".project_norm.", "._bn2."),
        (".project.conv.", "._project_conv."),
        ("blocks.", "_blocks."),
        (".gamma", ".weight"),
        (".beta", ".bias"),
    ] {
        n = n.replace(from, to);
    }
    n
}

/// The tensors of a randomly initialized EfficientNet-Lite0 under the port's names, with an
/// ImageNet-style `_fc` classifier (which loading ignores).
pub fn efficientnet_tensors(device: &Device) -> Tensors {
    let mut t: Tensors = module_values(&lively_lite0(device))
        .into_iter()
        .map(|(k, v)| (efficientnet_port_name(&k), v))
        .collect();
    t.insert("_fc.weight".into(), (vec![2, 1280], random_values(2560, 9)));
    t.insert("_fc.bias".into(), (vec![2], vec![0.0, 0.0]));
    t
}

/// A random EfficientNet-Lite0 whose features depend on the image. Fresh batch norms hold zero
/// means and unit variances, under which the activations of small random weights die out over
/// sixteen blocks: every poster gave the same features, so no test could tell one poster from
/// another. Training-mode passes over random images give them running statistics that keep
/// the activations alive, as a trained network's do.
fn lively_lite0(device: &Device) -> EfficientNetLite {
    let train = device.clone().autodiff();
    train.seed(11);
    let net = EfficientNetLite::lite0(&train);
    let (b, h, w) = (8, 32, 32);
    for pass in 0..40u64 {
        let pixels: Vec<f32> = random_values(b * 3 * h * w, 100 + pass)
            .into_iter()
            .map(|v| 2.0 * v)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(pixels, [b, 3, h, w]), &train);
        let _ = net.forward(x);
    }
    net.valid()
}

/// Writes a random EfficientNet-Lite0 as `dir/model.safetensors`.
pub fn write_random_efficientnet(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tensors = efficientnet_tensors(&Device::flex());
    write_safetensors(&dir.join("model.safetensors"), &tensors)
}

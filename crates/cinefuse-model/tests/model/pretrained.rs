//! Pretrained encoders: the real checkpoints against PyTorch reference outputs (when
//! `models/pretrained` holds them), and tiny checkpoints written here for loading, errors and
//! freezing.

use std::path::{Path, PathBuf};

use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::Distribution;
use cinefuse_data::MovieBatch;
use cinefuse_data::MovieItem;
use cinefuse_data::batch::PosterStates;
use cinefuse_data::dataset::TokenBlock;
use cinefuse_data::poster_states::PosterMap;
use cinefuse_model::encoders::ModalityEncoder;
use cinefuse_model::encoders::text::keep_first;
use cinefuse_model::pretrained::backbone::to_checkpoint_scale;
use cinefuse_model::pretrained::efficientnet::{LITE0_BLOCKS, same_padding};
use cinefuse_model::pretrained::testing::{
    Tensors, TinyBert, efficientnet_port_name, module_values, write_safetensors,
};
use cinefuse_model::pretrained::{Bert, EfficientNetLite, PretrainedError};
use cinefuse_model::pretrained::{PretrainedEncoder, Tuning};

use super::{batch, items};

const TINY: TinyBert = TinyBert {
    vocab: 40,
    hidden: 8,
    intermediate: 16,
    positions: 16,
    layers: 2,
    heads: 2,
};
const FF: usize = 16;

fn tiny_bert_tensors() -> Tensors {
    TINY.tensors(1)
}

fn write_tiny_bert(dir: &Path, tensors: &Tensors) {
    TINY.write(dir, tensors).unwrap();
}

fn transpose(shape: &[usize], v: &[f32]) -> Vec<f32> {
    let (r, c) = (shape[0], shape[1]);
    let mut out = vec![0.0; v.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = v[i * c + j];
        }
    }
    out
}

#[test]
fn a_tiny_bert_checkpoint_loads_every_tensor_into_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let written = tiny_bert_tensors();
    write_tiny_bert(dir.path(), &written);
    let bert = Bert::from_dir(dir.path(), &Device::flex()).unwrap();
    let loaded = module_values(&bert);
    // Where each checkpoint tensor must land, and whether it is a (transposed) Linear weight.
    let expect = |hf: &str| -> (String, bool) {
        let linear =
            hf.ends_with(".weight") && !hf.contains("LayerNorm") && !hf.contains("embeddings");
        let name = hf
            .replace("embeddings.word_embeddings", "embeddings.word")
            .replace("embeddings.position_embeddings", "embeddings.position")
            .replace("embeddings.token_type_embeddings", "embeddings.token_type")
            .replace("embeddings.LayerNorm", "embeddings.norm")
            .replace("encoder.layer.", "layers.")
            .replace(".attention.self.", ".")
            .replace(".attention.output.dense", ".attention_out")
            .replace(".attention.output.LayerNorm", ".attention_norm")
            .replace(".intermediate.dense", ".intermediate")
            .replace(".output.dense", ".output")
            .replace(".output.LayerNorm", ".output_norm")
            .replace("norm.weight", "norm.gamma")
            .replace("norm.bias", "norm.beta");
        (name, linear)
    };
    let mut checked = 0;
    for (hf, (shape, v)) in &written {
        if hf.starts_with("pooler") {
            continue;
        }
        let (name, linear) = expect(hf);
        let (_, got) = loaded
            .get(&name)
            .unwrap_or_else(|| panic!("{hf} → {name} not in the module: {:?}", loaded.keys()));
        let want = if linear {
            transpose(shape, v)
        } else {
            v.clone()
        };
        assert_eq!(got, &want, "{hf} → {name}");
        checked += 1;
    }
    assert_eq!(
        checked,
        loaded.len(),
        "every module tensor comes from the checkpoint"
    );
}

/// A tiny MPNet: its tensors land where a BERT's do (the relative attention bias in its own
/// place, the segment embedding left zero), its features ignore padding as a BERT's do, and the
/// bias counts: the same weights read as a BERT give other features.
#[test]
fn a_tiny_mpnet_loads_its_tensors_and_its_bias_counts() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let written = TINY.mpnet_tensors(&tiny_bert_tensors(), 5);
    TINY.write_mpnet(dir.path(), &written).unwrap();
    let mpnet = Bert::from_dir(dir.path(), &device).unwrap();
    let loaded = module_values(&mpnet);
    let bias = &written["mpnet.encoder.relative_attention_bias.weight"].1;
    assert_eq!(&loaded["relative_bias.weight"].1, bias);
    let q = &written["mpnet.encoder.layer.1.attention.attn.q.weight"];
    assert_eq!(loaded["layers.1.query.weight"].1, transpose(&q.0, &q.1));
    assert!(
        loaded["embeddings.token_type.weight"]
            .1
            .iter()
            .all(|v| *v == 0.0)
    );

    let (a, b) = super::tight_and_padded(6, &device);
    let values = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
    let tight = values(mpnet.forward(a.tokens.clone(), a.token_mask.clone()));
    let padded = values(mpnet.forward(b.tokens, b.token_mask));
    assert!(
        super::rel_diff(&tight, &padded) < 1e-5,
        "{tight:?} vs {padded:?}"
    );
    let bert_dir = tempfile::tempdir().unwrap();
    write_tiny_bert(bert_dir.path(), &tiny_bert_tensors());
    let bert = Bert::from_dir(bert_dir.path(), &device).unwrap();
    let as_bert = values(bert.forward(a.tokens, a.token_mask));
    assert!(
        super::rel_diff(&tight, &as_bert) > 1e-2,
        "the bias and positions change nothing"
    );
}

/// Config errors of an MPNet are refused by name.
#[test]
fn unsupported_model_types_and_buckets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    TINY.write_mpnet(dir.path(), &TINY.mpnet_tensors(&tiny_bert_tensors(), 5))
        .unwrap();
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    for (from, to, says) in [
        ("\"mpnet\"", "\"roberta\"", "model_type = \"roberta\""),
        (
            "\"relative_attention_num_buckets\":8",
            "\"relative_attention_num_buckets\":6",
            "relative_attention_num_buckets = 6",
        ),
        (
            "\"pad_token_id\":1",
            "\"pad_token_id\":15",
            "pad_token_id = 15",
        ),
    ] {
        assert!(text.contains(from), "{text}");
        std::fs::write(&config, text.replace(from, to)).unwrap();
        let e = cinefuse_model::pretrained::BertConfig::from_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains(says) && e.contains("config.json"), "{says}: {e}");
    }
}

fn load_error(tensors: &Tensors) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path(), tensors);
    match Bert::from_dir(dir.path(), &Device::flex()) {
        Ok(_) => panic!("loading should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn loading_errors_name_the_tensor_and_both_shapes() {
    let mut missing = tiny_bert_tensors();
    missing.remove("encoder.layer.1.attention.self.key.bias");
    let e = load_error(&missing);
    assert!(
        e.contains("layers.1.key.bias") && e.contains("model.safetensors"),
        "{e}"
    );

    let mut extra = tiny_bert_tensors();
    extra.insert(
        "encoder.layer.9.surprise.weight".into(),
        (vec![2], vec![0.0, 1.0]),
    );
    let e = load_error(&extra);
    assert!(
        e.contains("does not expect") && e.contains("encoder.layer.9.surprise.weight"),
        "{e}"
    );

    let mut wrong = tiny_bert_tensors();
    wrong.insert(
        "encoder.layer.0.intermediate.dense.bias".into(),
        (vec![FF + 1], vec![0.0; FF + 1]),
    );
    let e = load_error(&wrong);
    assert!(e.contains("layers.0.intermediate.bias"), "{e}");
    assert!(
        e.contains(&format!("[{}]", FF + 1)) && e.contains(&format!("[{FF}]")),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    let e = Bert::from_dir(dir.path(), &Device::flex()).unwrap_err();
    assert!(matches!(e, PretrainedError::Io { .. }), "{e}");
    assert!(e.to_string().contains("config.json"), "{e}");
}

/// Parameters with a gradient, and those without, of a module.
fn grads_of<M: burn::module::Module>(
    module: &M,
    grads: &burn::tensor::Gradients,
) -> (usize, usize) {
    struct V<'a> {
        grads: &'a burn::tensor::Gradients,
        with: usize,
        without: usize,
    }
    impl burn::module::ModuleVisitor for V<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            match param.val().grad(self.grads) {
                Some(_) => self.with += 1,
                None => self.without += 1,
            }
        }
    }
    let mut v = V {
        grads,
        with: 0,
        without: 0,
    };
    module.visit(&mut v);
    (v.with, v.without)
}

/// A backbone that does not train.
const FROZEN: Tuning = Tuning {
    freeze: true,
    lr_scale: 1.0,
    trainable_layers: None,
    layer_decay: 1.0,
};

fn tiny_text_encoder(
    tuning: Tuning,
    device: &Device,
) -> (tempfile::TempDir, PretrainedEncoder<Bert>) {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path(), &tiny_bert_tensors());
    let bert = Bert::from_dir(dir.path(), device).unwrap();
    let enc = PretrainedEncoder::new(bert, 6, 0.0, &tuning, device);
    (dir, enc)
}

fn text_batch() -> MovieBatch {
    batch(items(6), &Device::flex())
}

/// BERT masks padding in attention and pooling: its features of a batch padded past the
/// longest plot (as on a GPU backend) are those of the tight batch.
#[test]
fn bert_features_ignore_padding_past_the_longest_plot() {
    let device = Device::flex();
    let (_dir, enc) = tiny_text_encoder(FROZEN, &device);
    let (a, b) = super::tight_and_padded(6, &device);
    assert!(a.tokens.dims()[1] < b.tokens.dims()[1]);
    let values = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
    let (a, b) = (
        values(enc.backbone_features(&a)),
        values(enc.backbone_features(&b)),
    );
    assert!(super::rel_diff(&a, &b) < 1e-5, "{a:?} vs {b:?}");
}

#[test]
fn a_frozen_backbone_gets_no_gradient_and_keeps_its_weights() {
    let device = Device::flex().autodiff();
    let (_dir, enc) = tiny_text_encoder(FROZEN, &device);
    let before = module_values(&enc.backbone);
    let b = text_batch();
    let loss = enc.embed(&b).powf_scalar(2.0).sum();
    let grads = loss.backward();
    let (with, without) = grads_of(&enc.backbone, &grads);
    assert_eq!(with, 0, "no frozen parameter gets a gradient");
    assert!(without > 0);
    let params = GradientsParams::from_grads(grads, &enc);
    assert!(!params.is_empty(), "the adapter trains");
    let mut optim = AdamWConfig::new().init();
    let enc = optim.step(1e-2, enc, params);
    assert_eq!(
        module_values(&enc.backbone),
        before,
        "backbone unchanged by a step"
    );
}

#[test]
fn fine_tuning_the_last_layers_leaves_the_others_frozen() {
    let device = Device::flex().autodiff();
    let tuning = Tuning {
        freeze: false,
        lr_scale: 0.1,
        trainable_layers: Some(1),
        layer_decay: 1.0,
    };
    let (_dir, enc) = tiny_text_encoder(tuning, &device);
    let loss = enc.embed(&text_batch()).powf_scalar(2.0).sum();
    let grads = loss.backward();
    assert_eq!(
        grads_of(&enc.backbone.embeddings, &grads).0,
        0,
        "embeddings frozen"
    );
    assert_eq!(
        grads_of(&enc.backbone.layers[0], &grads).0,
        0,
        "first layer frozen"
    );
    let (with, without) = grads_of(&enc.backbone.layers[1], &grads);
    assert!(
        with > 0 && without == 0,
        "last layer trains: {with} with, {without} without"
    );
}

/// `cache_frozen_layers`: batches carrying the frozen layer's output (plots of different
/// lengths, a movie without a plot, laid out as the batcher lays out tokens) give the
/// backbone's own features, and a step from them trains the last layer only.
#[test]
fn cached_frozen_layer_states_give_the_backbones_features() {
    let tuning = Tuning {
        freeze: false,
        lr_scale: 0.1,
        trainable_layers: Some(1),
        layer_decay: 1.0,
    };
    let mut its = items(8);
    its[1].tokens.truncate(2);
    its[2].tokens.extend([5, 9]);
    assert!(its[6].tokens.is_empty(), "one movie without a plot");
    let with_states = |enc: &PretrainedEncoder<Bert>, mut its: Vec<MovieItem>| {
        let b = batch(its.clone(), &Device::flex());
        let from = enc.backbone.n_layers() - 1;
        let states =
            enc.backbone
                .states_before(from, b.tokens.clone(), keep_first(b.token_mask.clone()));
        let [_, len, dim] = states.dims();
        let values = states
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        for (k, it) in its.iter_mut().enumerate() {
            let rows = it.tokens.len().max(1);
            it.plot_states = Some(TokenBlock {
                from_layer: from,
                dim,
                values: values[k * len * dim..(k * len + rows) * dim].to_vec(),
            });
        }
        (b, batch(its, &Device::flex()))
    };
    // Inference mode (no dropout): the same features either way.
    let (_dir, enc) = tiny_text_encoder(tuning, &Device::flex());
    let (plain, cached) = with_states(&enc, its.clone());
    assert_eq!(cached.plot_states.as_ref().unwrap().from_layer, 1);
    enc.backbone_features(&plain)
        .into_data()
        .assert_approx_eq::<f32>(
            &enc.backbone_features(&cached).into_data(),
            Default::default(),
        );
    // Training: the states are an input, so the frozen layer takes no gradient.
    let (_dir, enc) = tiny_text_encoder(tuning, &Device::flex().autodiff());
    let (_, cached) = with_states(&enc, its);
    let grads = enc.embed(&cached).powf_scalar(2.0).sum().backward();
    assert_eq!(grads_of(&enc.backbone.layers[0], &grads).0, 0);
    let (with, without) = grads_of(&enc.backbone.layers[1], &grads);
    assert!(with > 0 && without == 0, "{with} with, {without} without");
}

/// `model.text.concat_layers`: the features are the checkpoint's pooled output, then the masked
/// mean of each listed layer's token states (0: the embeddings), in that order, and an encoder
/// built on them takes the wider input.
#[test]
fn concatenated_layers_follow_the_pooled_output() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path(), &tiny_bert_tensors());
    let device = Device::flex();
    let plain = Bert::from_dir(dir.path(), &device).unwrap();
    let wide = Bert::from_dir(dir.path(), &device)
        .unwrap()
        .with_concat_layers(vec![0, 1]);
    assert_eq!(wide.pooled_width(), 3 * plain.pooled_width());
    let mut its = items(4);
    its[1].tokens.truncate(2);
    let b = batch(its, &device);
    let mask = keep_first(b.token_mask.clone());
    let got = wide.forward(b.tokens.clone(), mask.clone());
    let d = plain.hidden_size();
    let block = |k: usize| {
        let states = plain.states_before(k, b.tokens.clone(), mask.clone());
        cinefuse_model::encoders::text::masked_mean(states, mask.clone())
    };
    let [n, _] = got.dims();
    let parts = [
        plain.forward(b.tokens.clone(), mask.clone()),
        block(0),
        block(1),
    ];
    for (i, want) in parts.into_iter().enumerate() {
        got.clone()
            .slice([0..n, i * d..(i + 1) * d])
            .into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Default::default());
    }
    // The same features from the states entering layer 0.
    let from = wide.states_before(0, b.tokens.clone(), mask.clone());
    wide.forward_from(0, from, mask)
        .into_data()
        .assert_approx_eq::<f32>(&got.into_data(), Default::default());
}

/// `model.poster.cache_frozen_layers`: the maps entering a block (`states_before`) give the
/// backbone's own features through `forward_from`, at the shape `states_shape` promises;
/// batches carrying them give the encoder's features for every movie with a poster, and a
/// step from them trains only the blocks above.
#[test]
fn cached_frozen_block_maps_give_the_backbones_features() {
    let device = Device::flex();
    device.seed(3);
    let net = EfficientNetLite::lite0(&device);
    let x = Tensor::<4>::random([2, 3, 40, 33], Distribution::Default, &device);
    assert_eq!(net.n_blocks(), LITE0_BLOCKS);
    let whole = net.forward(x.clone());
    for k in [0, 1, 5, 11, 14, 16] {
        let maps = net.states_before(k, x.clone());
        let [c, h, w] = EfficientNetLite::states_shape(k, 40, 33);
        assert_eq!(maps.dims(), [2, c, h, w], "block {k}");
        net.forward_from(k, maps)
            .into_data()
            .assert_approx_eq::<f32>(&whole.clone().into_data(), Default::default());
    }

    let tuning = Tuning {
        freeze: false,
        lr_scale: 0.1,
        trainable_layers: Some(2),
        layer_decay: 1.0,
    };
    let with_maps = |enc: &PretrainedEncoder<EfficientNetLite>, mut its: Vec<MovieItem>| {
        let b = batch(its.clone(), &Device::flex());
        let maps = enc
            .backbone
            .states_before(14, to_checkpoint_scale(b.posters.clone()));
        let [_, c, h, w] = maps.dims();
        let values = maps
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        let size = c * h * w;
        for (k, it) in its.iter_mut().enumerate() {
            it.poster_states = it.poster.take().map(|_| PosterMap {
                from_block: 14,
                shape: [c, h, w],
                values: values[k * size..(k + 1) * size].to_vec(),
            });
        }
        (b, batch(its, &Device::flex()))
    };
    let its = items(10);
    let with_poster: Vec<i64> = (0..10)
        .filter(|i| its[*i as usize].poster.is_some())
        .collect();
    assert!(with_poster.len() < 10, "some movies without a poster");
    let enc = PretrainedEncoder::new(EfficientNetLite::lite0(&device), 6, 0.0, &tuning, &device);
    let (plain, cached) = with_maps(&enc, its.clone());
    assert_eq!(cached.posters.dims(), [10, 3, 1, 1], "no pixels copied");
    assert_eq!(
        plain.poster_present.to_data(),
        cached.poster_present.to_data()
    );
    let rows = Tensor::<1, Int>::from_ints(with_poster.as_slice(), &device);
    enc.backbone_features(&plain)
        .select(0, rows.clone())
        .into_data()
        .assert_approx_eq::<f32>(
            &enc.backbone_features(&cached).select(0, rows).into_data(),
            Default::default(),
        );
    // Training: the maps are an input, so the frozen blocks take no gradient.
    let device = Device::flex().autodiff();
    let enc = PretrainedEncoder::new(EfficientNetLite::lite0(&device), 6, 0.0, &tuning, &device);
    let (_, cached) = with_maps(&enc, its);
    let cached = MovieBatch {
        poster_states: cached.poster_states.map(|s| PosterStates {
            from_block: s.from_block,
            maps: s.maps.to_device(&device),
        }),
        ..batch(items(10), &device)
    };
    let grads = enc.embed(&cached).powf_scalar(2.0).sum().backward();
    assert_eq!(grads_of(&enc.backbone.blocks[13], &grads).0, 0);
    // Every weight of the last block learns (its BatchNorm running statistics take none).
    let (with, _) = grads_of(&enc.backbone.blocks[15], &grads);
    assert_eq!(with, 9, "3 convolutions and 3 norms' scale and shift");
}

#[test]
fn cached_features_replace_the_backbone() {
    let device = Device::flex();
    let (_dir, enc) = tiny_text_encoder(FROZEN, &device);
    let mut b = text_batch();
    let direct = enc.embed(&b);
    b.plot_features = Some(enc.backbone_features(&b));
    let cached = enc.embed(&b);
    direct
        .into_data()
        .assert_approx_eq::<f32>(&cached.into_data(), Default::default());
    // And the features really are used: other features, other embeddings.
    b.plot_features = Some(b.plot_features.clone().unwrap().zeros_like());
    let zeroed = enc.embed(&b);
    let changed: f32 = (zeroed - enc.embed(&text_batch()))
        .abs()
        .sum()
        .into_scalar();
    assert!(changed > 1e-4);
}

#[test]
fn same_padding_matches_tensorflow() {
    assert_eq!(same_padding(224, 3, 2), (0, 1));
    assert_eq!(same_padding(112, 5, 2), (1, 2));
    assert_eq!(same_padding(56, 3, 1), (1, 1));
    assert_eq!(same_padding(7, 3, 2), (1, 1));
}

#[test]
fn efficientnet_loads_from_the_pytorch_port_names() {
    let device = Device::flex();
    device.seed(5);
    let source = EfficientNetLite::lite0(&device);
    let tensors: Tensors = module_values(&source)
        .into_iter()
        .map(|(k, v)| (efficientnet_port_name(&k), v))
        .collect();
    assert!(tensors.contains_key("_blocks.15._project_conv.weight"));
    assert!(
        !tensors.contains_key("_blocks.0._expand_conv.weight"),
        "block 0 does not expand"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut with_fc = tensors.clone();
    with_fc.insert("_fc.weight".into(), (vec![2, 1280], vec![0.0; 2560]));
    write_safetensors(&dir.path().join("model.safetensors"), &with_fc).unwrap();
    let loaded = EfficientNetLite::from_dir(dir.path(), &device).unwrap();
    let x = Tensor::<4>::random([2, 3, 40, 33], burn::tensor::Distribution::Default, &device);
    let a = source.forward(x.clone());
    assert_eq!(a.dims(), [2, 1280]);
    a.into_data()
        .assert_approx_eq::<f32>(&loaded.forward(x).into_data(), Default::default());

    let mut missing = tensors;
    missing.remove("_conv_head.weight");
    write_safetensors(&dir.path().join("model.safetensors"), &missing).unwrap();
    let e = EfficientNetLite::from_dir(dir.path(), &device)
        .unwrap_err()
        .to_string();
    assert!(e.contains("head.conv.weight"), "{e}");
}

/// `models/pretrained` of the workspace (or `CINEFUSE_PRETRAINED`), when the weights are there.
fn real_checkpoints() -> Option<PathBuf> {
    let dir = std::env::var_os("CINEFUSE_PRETRAINED")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::manifest_dir().join("../../models/pretrained"));
    let ok = dir.join("minilm-l6/model.safetensors").exists()
        && dir.join("efficientnet-lite0/model.pth").exists();
    if !ok {
        announce_skip(&format!(
            "no pretrained weights in {} (run scripts/fetch_pretrained.sh)",
            dir.display()
        ));
    }
    ok.then_some(dir)
}

fn reference() -> serde_json::Value {
    let path = crate::manifest_dir().join("tests/fixtures/pretrained_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Max |difference| at the fixture's positions, and the difference of the L2 norms.
fn compare(got: &[f32], want: &serde_json::Value) -> (f64, f64) {
    let idx: Vec<usize> = serde_json::from_value(want["index"].clone()).unwrap();
    let vals: Vec<f64> = serde_json::from_value(want["values"].clone()).unwrap();
    assert_eq!(got.len(), want["dim"].as_u64().unwrap() as usize);
    let max = idx
        .iter()
        .zip(&vals)
        .map(|(&i, &v)| (f64::from(got[i]) - v).abs())
        .fold(0.0, f64::max);
    let norm = got
        .iter()
        .map(|v| f64::from(*v).powi(2))
        .sum::<f64>()
        .sqrt();
    (max, (norm - want["norm"].as_f64().unwrap()).abs())
}

#[test]
fn real_minilm_matches_pytorch() {
    let Some(dir) = real_checkpoints() else {
        return;
    };
    let r = reference();
    let device = Device::flex();
    let max_tokens = r["max_tokens"].as_u64().unwrap() as usize;
    let tok =
        cinefuse_data::tokenizer::pretrained_tokenizer(&dir.join("minilm-l6"), max_tokens).unwrap();
    let bert = Bert::from_dir(&dir.join("minilm-l6"), &device).unwrap();
    for case in r["minilm"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids = cinefuse_data::tokenizer::encode_plot(&tok, text, max_tokens).unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(ids, want, "token ids of {text:?}");
        let l = ids.len();
        let t = Tensor::<2, Int>::from_data(
            TensorData::new(ids.iter().map(|&i| i64::from(i)).collect(), [1, l]),
            &device,
        );
        let pooled = bert.forward(t, Tensor::ones([1, l], &device));
        let got: Vec<f32> = pooled.into_data().try_to_vec::<f32>().unwrap();
        let (max, norm) = compare(&got, &case["embedding"]);
        assert!(
            max <= 1e-4 && norm <= 1e-4,
            "{text:?}: max diff {max:e}, norm diff {norm:e}"
        );
    }
}

/// all-mpnet-base-v2 (`models/pretrained/mpnet-base`) against Hugging Face's MPNetModel: the
/// fixture's plots as one batch padded with id 0 (as cinefuse pads), one of them longer than
/// the relative-distance buckets reach.
#[test]
fn real_mpnet_matches_pytorch() {
    let Some(dir) = real_checkpoints() else {
        return;
    };
    let dir = dir.join("mpnet-base");
    if !dir.join("model.safetensors").exists() {
        announce_skip(&format!(
            "no MPNet weights in {} (run scripts/fetch_pretrained.sh)",
            dir.display()
        ));
        return;
    }
    let r = reference();
    let device = Device::flex();
    let max_tokens = r["max_tokens"].as_u64().unwrap() as usize;
    let tok = cinefuse_data::tokenizer::pretrained_tokenizer(&dir, max_tokens).unwrap();
    let bert = Bert::from_dir(&dir, &device).unwrap();
    let cases = r["mpnet"].as_array().unwrap();
    let ids: Vec<Vec<u32>> = cases
        .iter()
        .map(|case| {
            let text = case["text"].as_str().unwrap();
            let ids = cinefuse_data::tokenizer::encode_plot(&tok, text, max_tokens).unwrap();
            let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
            assert_eq!(ids, want, "token ids of {text:?}");
            ids
        })
        .collect();
    let width = ids.iter().map(Vec::len).max().unwrap();
    let (mut tokens, mut mask) = (Vec::new(), Vec::new());
    for plot in &ids {
        tokens.extend((0..width).map(|j| plot.get(j).map_or(0, |&t| i64::from(t))));
        mask.extend((0..width).map(|j| if j < plot.len() { 1f32 } else { 0.0 }));
    }
    let shape = [ids.len(), width];
    let pooled = bert.forward(
        Tensor::from_data(TensorData::new(tokens, shape), &device),
        Tensor::from_data(TensorData::new(mask, shape), &device),
    );
    let got: Vec<f32> = pooled.into_data().try_to_vec::<f32>().unwrap();
    let dim = bert.pooled_width();
    for (k, case) in cases.iter().enumerate() {
        let (max, norm) = compare(&got[k * dim..(k + 1) * dim], &case["embedding"]);
        assert!(
            max <= 1e-4 && norm <= 1e-4,
            "plot {k}: max diff {max:e}, norm diff {norm:e}"
        );
    }
}

/// The fixture's generated image `k`, scaled as the checkpoint expects, `[1, 3, 224, 224]`.
fn reference_image(k: usize, device: &Device) -> Tensor<4> {
    let mut v = vec![0f32; 3 * 224 * 224];
    for c in 0..3 {
        for y in 0..224 {
            for x in 0..224 {
                let p = (x * (3 + k) + y * (5 + 2 * k) + c * 70 + 40 * k) % 256;
                v[c * 224 * 224 + y * 224 + x] = (p as f32 - 127.0) / 128.0;
            }
        }
    }
    Tensor::from_data(TensorData::new(v, [1, 3, 224, 224]), device)
}

#[test]
fn real_efficientnet_lite0_matches_pytorch() {
    let Some(dir) = real_checkpoints() else {
        return;
    };
    let r = reference();
    let device = Device::flex();
    let net = EfficientNetLite::from_dir(&dir.join("efficientnet-lite0"), &device).unwrap();
    for case in r["efficientnet_lite0"].as_array().unwrap() {
        let k = case["image"].as_u64().unwrap() as usize;
        let got: Vec<f32> = net
            .forward(reference_image(k, &device))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let (max, norm) = compare(&got, &case["features"]);
        assert!(
            max <= 1e-4 && norm <= 1e-3,
            "image {k}: max diff {max:e}, norm diff {norm:e}"
        );
    }
}

/// Runs on lavapipe (software Vulkan) where there is no GPU.
#[cfg(feature = "wgpu")]
#[test]
fn a_tiny_bert_runs_on_wgpu_like_on_flex() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path(), &tiny_bert_tensors());
    let wgpu = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
    let flex = Device::flex();
    let on = |device: &Device| {
        let bert = Bert::from_dir(dir.path(), device).unwrap();
        let b = batch(items(4), device);
        let out: Vec<f32> = bert
            .forward(b.tokens, b.token_mask)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        out
    };
    let (a, b) = (on(&flex), on(&wgpu));
    let max = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(max < 1e-4, "flex vs wgpu: max diff {max}");
}

/// Says why a test was skipped where `cargo test` shows it even for a passing test (libtest
/// captures the print macros, not direct writes to stderr).
fn announce_skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

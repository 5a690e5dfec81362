//! Tensor names in files: every encoder kind's tensors have distinct published names in the
//! first layout's naming, and a Burn file written with those names (as every checkpoint and
//! export before the `Branch` layout was) loads every value back into its place.

use std::collections::BTreeSet;

use burn::prelude::*;
use burn::store::ModuleSnapshot;
use burn::store::burn_pack::Writer;
use cinefuse_model::encoders::poster::PosterEncoderKind;
use cinefuse_model::encoders::text::{Pooling, TextEncoderKind};
use cinefuse_model::fusion::FusionKind;
use cinefuse_model::pretrained::BertConfig;
use cinefuse_model::pretrained::testing::{TinyBert, module_values};
use cinefuse_model::tensor_names::{internal_names, load_published_burnpack, published_name};
use cinefuse_model::{CinefuseModel, Modality, ModelConfig, TextBackbone};

use super::{shapes, tiny_config};

/// A fused model of every modality with the given encoder kinds (BERT: a tiny random one).
fn model(text: TextEncoderKind, poster: PosterEncoderKind, seed: u64) -> CinefuseModel {
    let mut config = tiny_config(Modality::ALL.to_vec(), FusionKind::Gmu, text);
    config.poster.kind = poster;
    build(&config, seed, &Device::flex())
}

/// `config`'s model drawn from `seed` on `device`; a BERT plot encoder gets a tiny random
/// checkpoint.
pub(super) fn build(config: &ModelConfig, seed: u64, device: &Device) -> CinefuseModel {
    device.seed(seed);
    let mut s = shapes();
    if config.text.kind == TextEncoderKind::Bert {
        let dir = tempfile::tempdir().unwrap();
        let tiny = TinyBert {
            vocab: 50,
            hidden: 8,
            intermediate: 16,
            positions: 16,
            layers: 1,
            heads: 2,
        };
        tiny.write(dir.path(), &tiny.tensors(seed)).unwrap();
        s.text_backbone = Some(TextBackbone {
            config: BertConfig::from_dir(dir.path()).unwrap(),
            pooling: Pooling::Mean,
            concat_layers: vec![],
        });
    }
    config.init(&s, device)
}

const KINDS: [(TextEncoderKind, PosterEncoderKind); 5] = [
    (TextEncoderKind::Transformer, PosterEncoderKind::Resnet),
    (TextEncoderKind::Bag, PosterEncoderKind::Resnet),
    (TextEncoderKind::Cnn, PosterEncoderKind::Resnet),
    (TextEncoderKind::Ngram, PosterEncoderKind::Resnet),
    (TextEncoderKind::Bert, PosterEncoderKind::EfficientnetLite0),
];

#[test]
fn published_names_are_the_first_layouts_and_distinct() {
    let first_layout = [
        "poster.",
        "poster_head.",
        "poster_pretrained.net.",
        "poster_pretrained.adapter.",
        "text.transformer.",
        "text.bag.",
        "text.cnn.",
        "text.ngram.",
        "text_pretrained.bert.",
        "text_pretrained.adapter.",
        "text_head.",
        "meta.",
        "meta_head.",
        "fusion.",
    ];
    for (text, poster) in KINDS {
        let names = internal_names(&model(text, poster, 1), None);
        let published: BTreeSet<String> = names.iter().map(|n| published_name(n)).collect();
        assert_eq!(published.len(), names.len(), "{text:?}: two names collide");
        for p in &published {
            assert!(
                first_layout.iter().any(|prefix| p.starts_with(prefix))
                    && !p
                        .split('.')
                        .any(|segment| segment.starts_with(char::is_uppercase)),
                "{text:?}: {p} is not in the first layout"
            );
        }
    }
    assert_eq!(
        published_name("text.encoder.Bert.backbone.layers.0.attention.query.weight"),
        "text_pretrained.bert.layers.0.attention.query.weight"
    );
    assert_eq!(
        published_name("poster.encoder.Resnet.stem.weight"),
        "poster.stem.weight"
    );
    assert_eq!(published_name("fusion.gate.weight"), "fusion.gate.weight");
}

#[test]
fn a_file_with_published_names_loads_every_value() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (text, poster)) in KINDS.into_iter().enumerate() {
        let written = model(text, poster, 1);
        let path = dir.path().join(format!("legacy-{i}.bpk"));
        let mut tensors = written.collect(None, None, false);
        for t in &mut tensors {
            t.name = published_name(&t.name);
        }
        Writer::new(tensors).write_to_file(&path).unwrap();

        // Without the table the names do not match today's layout.
        assert!(
            model(text, poster, 2).try_load_file(&path).is_err(),
            "{text:?}"
        );
        let fresh = model(text, poster, 2);
        assert_ne!(module_values(&fresh), module_values(&written), "{text:?}");
        let bytes = burn::tensor::Bytes::from_bytes_vec(std::fs::read(&path).unwrap());
        let loaded = load_published_burnpack(fresh, bytes, &path).unwrap();
        assert_eq!(module_values(&loaded), module_values(&written), "{text:?}");
    }
}

//! (imported into the `model` test binary)
//! The linear skip (`model.linear_skip`): it adds a linear map of the backbones' features and
//! the metadata encoder's input to the genre logits, missing modalities add nothing through
//! it, and it trains. (That it is drawn after every other parameter cannot be tested here:
//! flex's random generator is global, and the tests of this binary run in parallel.)

use burn::prelude::*;
use cinefuse_data::MovieItem;
use cinefuse_model::encoders::poster::PosterEncoderKind;
use cinefuse_model::encoders::text::TextEncoderKind;
use cinefuse_model::fusion::FusionKind;
use cinefuse_model::head::RatingScale;
use cinefuse_model::pretrained::testing::module_values;
use cinefuse_model::{Modality, ModelConfig};

use super::tensor_names::build;
use super::{batch, items, loss_of, outputs, tiny_config};

const POSTER_DIM: usize = 1280;
const PLOT_DIM: usize = 8;

fn config(linear_skip: bool) -> ModelConfig {
    let mut c = tiny_config(
        Modality::ALL.to_vec(),
        FusionKind::Concat,
        TextEncoderKind::Bert,
    );
    c.poster.kind = PosterEncoderKind::EfficientnetLite0;
    c.linear_skip = linear_skip;
    c
}

/// `items` with cached backbone features, so that the backbones do not run.
fn cached_items(n: usize) -> Vec<MovieItem> {
    items(n)
        .into_iter()
        .enumerate()
        .map(|(i, mut it)| {
            let f = |d: usize, k: usize| {
                (0..d)
                    .map(|j| ((i * 7 + j * k) % 13) as f32 * 0.1)
                    .collect()
            };
            it.poster_features = Some(f(POSTER_DIM, 3));
            it.plot_features = Some(f(PLOT_DIM, 5));
            it
        })
        .collect()
}

#[test]
fn the_skip_reads_every_block_and_adds_to_the_logits() {
    let device = Device::flex();
    let model = build(&config(true), 3, &device);
    let values = module_values(&model);
    let skip: Vec<&String> = values.keys().filter(|n| n.starts_with("skip.")).collect();
    assert_eq!(skip, ["skip.linear.bias", "skip.linear.weight"]);
    // Poster and plot features, then the metadata input: 3 numbers, 3 flags, 2 embeddings.
    let width = POSTER_DIM + PLOT_DIM + 2 * 3 + 2 * 8;
    assert_eq!(values["skip.linear.weight"].0, vec![width, 4]);

    let b = batch(cached_items(8), &device);
    let mut without = model.clone();
    without.skip = None;
    let (with, plain) = (outputs(&model, &b), outputs(&without, &b));
    let genres = 8 * 4;
    assert!(
        with[..genres]
            .iter()
            .zip(&plain)
            .any(|(x, y)| (x - y).abs() > 1e-4)
    );
    assert_eq!(
        with[genres..],
        plain[genres..],
        "the rating does not read the skip"
    );
    assert!(build(&config(false), 3, &device).skip.is_none());
}

#[test]
fn missing_modalities_add_nothing_through_the_skip() {
    let device = Device::flex();
    let model = build(&config(true), 4, &device);
    let reference = outputs(&model, &batch(cached_items(6), &device));
    let mut changed = cached_items(6);
    changed[2].poster_features = Some(vec![9.0; POSTER_DIM]);
    changed[3].plot_features = Some(vec![-4.0; PLOT_DIM]);
    let mut b = batch(changed, &device);
    b.poster_present = b.poster_present.slice_fill(2..3, 0.0);
    b.plot_present = b.plot_present.slice_fill(3..4, 0.0);
    let mut absent = batch(cached_items(6), &device);
    absent.poster_present = absent.poster_present.slice_fill(2..3, 0.0);
    absent.plot_present = absent.plot_present.slice_fill(3..4, 0.0);
    let (got, want) = (outputs(&model, &b), outputs(&model, &absent));
    for (x, y) in got.iter().zip(&want) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
    assert!(
        reference
            .iter()
            .zip(&got)
            .any(|(x, y)| (x - y).abs() > 1e-5)
    );
}

#[test]
fn the_skip_trains_and_the_frozen_backbones_do_not() {
    let device = Device::flex().autodiff();
    let model = build(&config(true), 5, &device);
    let b = batch(cached_items(8), &Device::flex());
    let scale = RatingScale {
        mean: 5.0,
        std: 2.0,
    };
    let grads = loss_of(model.forward(&b), &b, scale).total.backward();
    let skip = model.skip.as_ref().unwrap();
    let (total, missing) = super::grad_counts(skip, &grads);
    assert_eq!((total, missing), (2, 0));
    let backbone = &model.pretrained_poster().unwrap().backbone;
    assert_eq!(
        super::grad_counts(backbone, &grads).0,
        0,
        "no trainable tensor"
    );
}

#[test]
fn the_skip_needs_features_to_read() {
    let mut c = tiny_config(
        vec![Modality::Poster, Modality::Text],
        FusionKind::Concat,
        TextEncoderKind::Bag,
    );
    c.linear_skip = true;
    assert!(c.validate().unwrap_err().contains("model.linear_skip"));
    c.modalities.push(Modality::Meta);
    assert!(c.validate().is_ok());
}

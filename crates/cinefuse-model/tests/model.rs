//! Model tests: shapes for every fusion × modality subset, masking of missing modalities,
//! gradient flow into every encoder, overfitting a tiny batch, the CPU-kernel route on flex, and
//! wgpu against flex (outputs and gradients).

use burn::data::dataloader::batcher::Batcher;
use burn::module::{ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::Gradients;
use cinefuse_data::{MovieBatch, MovieBatcher, MovieItem};
use cinefuse_model::encoders::text::TextEncoderKind;
use cinefuse_model::fusion::FusionKind;
use cinefuse_model::head::RatingScale;
use cinefuse_model::{LossConfig, LossTargets, Modality, ModelConfig, ModelShapes};

/// This package's folder: Cargo's value when it runs the test (right even when the binary was
/// built from another checkout sharing the target folder), else the one compiled in.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}

#[path = "model/linear_skip.rs"]
mod linear_skip;
#[path = "model/pretrained.rs"]
mod pretrained;
#[path = "model/tensor_names.rs"]
mod tensor_names;

const H: usize = 24;
const W: usize = 16;
const G: usize = 4;

fn shapes() -> ModelShapes {
    ModelShapes {
        n_genres: G,
        vocab_size: 50,
        max_tokens: 12,
        n_numeric: 3,
        categorical_sizes: vec![5, 7],
        categorical_dims: vec![],
        text_backbone: None,
    }
}

fn tiny_config(
    modalities: Vec<Modality>,
    fusion: FusionKind,
    text: TextEncoderKind,
) -> ModelConfig {
    let mut c = ModelConfig::new()
        .with_modalities(modalities)
        .with_embed_dim(16);
    c.poster.widths = vec![4, 8];
    c.text.kind = text;
    c.text.d_model = 16;
    c.text.n_heads = 2;
    c.text.d_ff = 32;
    c.text.n_layers = 1;
    c.text.dropout = 0.0;
    c.meta.hidden = 16;
    c.fusion.kind = fusion;
    c.fusion.hidden = 16;
    c.fusion.n_heads = 2;
    c.fusion.dropout = 0.0;
    c.meta.dropout = 0.0;
    c
}

/// Items with a learnable pattern: genre k ↔ token k+3 and the poster's brightness.
fn items(n: usize) -> Vec<MovieItem> {
    (0..n)
        .map(|i| {
            let k = i % G;
            let mut genres = vec![0.0; G];
            genres[k] = 1.0;
            MovieItem {
                id: format!("m{i}"),
                poster: (i % 5 != 4).then(|| vec![(k * 60) as u8; 3 * H * W]),
                tokens: if i % 7 == 6 {
                    vec![]
                } else {
                    vec![2, (k + 3) as u32, 10 + (i % 3) as u32, (k + 3) as u32]
                },
                plot_present: i % 7 != 6,
                numeric: vec![k as f32 - 1.5, 0.3, -0.2],
                numeric_missing: vec![0.0, 0.0, if i % 3 == 0 { 1.0 } else { 0.0 }],
                categorical: vec![(k + 1) as u32, (i % 7) as u32],
                genres,
                genres_present: true,
                rating: Some(3.0 + k as f32),
                poster_features: None,
                plot_features: None,
                plot_states: None,
                poster_states: None,
                credits: Vec::new(),
                extras_absent: false,
            }
        })
        .collect()
}

fn batch(items: Vec<MovieItem>, device: &Device) -> MovieBatch {
    MovieBatcher::new(H, W, 12).batch(items, device)
}

/// The default loss of a forward pass on `b`.
fn loss_of(
    out: cinefuse_model::ModelOutput,
    b: &MovieBatch,
    scale: RatingScale,
) -> cinefuse_model::LossParts {
    let targets = LossTargets {
        genres: b.genres.clone(),
        genres_present: b.genres_present.clone(),
        rating_std: scale.standardize(b.rating.clone()),
        rating_present: b.rating_present.clone(),
        pos_weight: None,
        rows: None,
    };
    LossConfig::new().compute(out.genre_logits, out.rating, &targets)
}

fn subsets() -> Vec<Vec<Modality>> {
    use Modality::*;
    vec![
        vec![Poster],
        vec![Text],
        vec![Meta],
        vec![Poster, Text],
        vec![Poster, Meta],
        vec![Text, Meta],
        vec![Poster, Text, Meta],
    ]
}

const FUSIONS: [FusionKind; 4] = [
    FusionKind::Late,
    FusionKind::Concat,
    FusionKind::Gmu,
    FusionKind::Attention,
];

#[test]
fn output_shapes_for_every_fusion_and_modality_subset() {
    let device = Device::flex();
    let b = batch(items(6), &device);
    for fusion in FUSIONS {
        for mods in subsets() {
            let model = tiny_config(mods.clone(), fusion, TextEncoderKind::Transformer)
                .init(&shapes(), &device);
            let out = model.forward(&b);
            assert_eq!(out.genre_logits.dims(), [6, G], "{fusion:?} {mods:?}");
            assert_eq!(out.rating.dims(), [6], "{fusion:?} {mods:?}");
            assert_eq!(out.per_modality.len(), mods.len());
            let has_weights =
                mods.len() > 1 && matches!(fusion, FusionKind::Late | FusionKind::Gmu);
            assert_eq!(out.weights.is_some(), has_weights, "{fusion:?} {mods:?}");
            if let Some(w) = out.weights {
                assert_eq!(w.dims(), [6, mods.len()]);
                let rows = w
                    .sum_dim(1)
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .unwrap();
                assert!(
                    rows.iter().all(|r| (r - 1.0).abs() < 1e-4),
                    "weights sum to 1: {rows:?}"
                );
            }
            let v = out
                .genre_logits
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap();
            assert!(v.iter().all(|x| x.is_finite()), "{fusion:?} {mods:?}");
            // The movies differ, so must their outputs: a model that ignored its input (or
            // a modality mask that zeroed everything) would give six equal rows.
            let rows: Vec<&[f32]> = v.chunks(G).collect();
            assert!(
                rows.iter()
                    .any(|r| r.iter().zip(rows[0]).any(|(a, b)| (a - b).abs() > 1e-6)),
                "{fusion:?} {mods:?}: every movie gets the same logits"
            );
        }
    }
    for text in [
        TextEncoderKind::Bag,
        TextEncoderKind::Cnn,
        TextEncoderKind::Ngram,
    ] {
        let model =
            tiny_config(vec![Modality::Text], FusionKind::Gmu, text).init(&shapes(), &device);
        let logits = model.forward(&b).genre_logits;
        assert_eq!(logits.dims(), [6, G]);
        let v = logits
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{text:?}");
    }
}

fn outputs(model: &cinefuse_model::CinefuseModel, b: &MovieBatch) -> Vec<f32> {
    let out = model.forward(b);
    let mut v = out
        .genre_logits
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    v.extend(
        out.rating
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap(),
    );
    v
}

#[test]
fn masked_modalities_do_not_change_the_outputs() {
    let device = Device::flex();
    let base = items(10);
    for fusion in FUSIONS {
        for text in [
            TextEncoderKind::Transformer,
            TextEncoderKind::Bag,
            TextEncoderKind::Cnn,
            TextEncoderKind::Ngram,
        ] {
            let model = tiny_config(Modality::ALL.to_vec(), fusion, text).init(&shapes(), &device);
            let reference = outputs(&model, &batch(base.clone(), &device));
            // Item 4 has no poster and item 6 no plot; give them garbage that must be ignored.
            let mut changed = base.clone();
            changed[4].poster = Some(vec![255; 3 * H * W]);
            let mut b = batch(changed, &device);
            let present = b
                .poster_present
                .clone()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap();
            assert_eq!(present[4], 1.0);
            b.poster_present = b.poster_present.slice_fill(4..5, 0.0);
            b.tokens = b.tokens.slice_fill([6..7, 0..4], 33);
            let after = outputs(&model, &b);
            for (x, y) in reference.iter().zip(&after) {
                assert!((x - y).abs() < 1e-5, "{fusion:?}/{text:?}: {x} vs {y}");
            }
            // Sanity: unmasking the garbage poster does change the outputs.
            b.poster_present = b.poster_present.slice_fill(4..5, 1.0);
            let leaked = outputs(&model, &b);
            assert!(
                reference
                    .iter()
                    .zip(&leaked)
                    .any(|(x, y)| (x - y).abs() > 1e-5),
                "{fusion:?}"
            );
        }
    }
}

struct GradCheck<'a> {
    grads: &'a Gradients,
    total: usize,
    missing: usize,
}

impl ModuleVisitor for GradCheck<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        // Batch-norm running statistics are state, not trainable parameters.
        if !param.val().is_require_grad() {
            return;
        }
        self.total += 1;
        match param.val().grad(self.grads) {
            Some(g) if g.clone().abs().sum().into_scalar::<f32>() > 0.0 => {}
            _ => self.missing += 1,
        }
    }
}

/// (trainable parameters, those without a non-zero gradient) of one module.
fn grad_counts<M: burn::module::Module>(module: &M, grads: &Gradients) -> (usize, usize) {
    let mut v = GradCheck {
        grads,
        total: 0,
        missing: 0,
    };
    module.visit(&mut v);
    (v.total, v.missing)
}

#[test]
fn gradients_reach_every_encoder() {
    let device = Device::flex().autodiff();
    let b = batch(items(12), &Device::flex());
    for fusion in FUSIONS {
        let model = tiny_config(Modality::ALL.to_vec(), fusion, TextEncoderKind::Transformer)
            .init(&shapes(), &device);
        let out = model.forward(&b);
        let scale = RatingScale {
            mean: 5.0,
            std: 2.0,
        };
        let loss = loss_of(out, &b, scale);
        let grads = loss.total.backward();
        for (name, check) in [
            (
                "poster",
                model
                    .poster
                    .as_ref()
                    .map(|m| grad_counts(&m.encoder, &grads)),
            ),
            (
                "text",
                model.text.as_ref().map(|m| grad_counts(&m.encoder, &grads)),
            ),
            (
                "meta",
                model.meta.as_ref().map(|m| grad_counts(&m.encoder, &grads)),
            ),
        ] {
            let (total, missing) = check.unwrap();
            assert!(total > 0);
            assert_eq!(
                missing, 0,
                "{fusion:?}: {missing} of {total} {name} parameters got no gradient"
            );
        }
    }
}

#[test]
fn a_tiny_model_overfits_a_tiny_batch() {
    let device = Device::flex().autodiff();
    device.seed(3);
    let b = batch(items(16), &Device::flex());
    let config = tiny_config(
        Modality::ALL.to_vec(),
        FusionKind::Gmu,
        TextEncoderKind::Transformer,
    );
    let mut model = config.init(&shapes(), &device);
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    let scale = RatingScale {
        mean: 4.5,
        std: 1.2,
    };
    let mut losses = Vec::new();
    for _ in 0..150 {
        let out = model.forward(&b);
        let parts = loss_of(out, &b, scale);
        losses.push(parts.total.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(parts.total.backward(), &model);
        model = optim.step(5e-3, model, grads);
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(
        last < first / 10.0,
        "loss should fall by >10×: {first} → {last}"
    );
}

#[test]
fn loss_components_match_hand_computation() {
    let device = Device::flex();
    let logits = Tensor::<2>::from_data([[0.0f32, 2.0]], &device);
    let targets = Tensor::<2>::from_data([[1.0f32, 0.0]], &device);
    let rating_pred = Tensor::<1>::from_data([0.5f32], &device);
    let rating_true = Tensor::<1>::from_data([3.0f32], &device);
    let ones = Tensor::<1>::ones([1], &device);
    let c = LossConfig::new().with_huber_delta(1.0);
    let mut truth = LossTargets {
        genres: targets,
        genres_present: ones.clone(),
        rating_std: rating_true,
        rating_present: ones,
        pos_weight: None,
        rows: None,
    };
    let parts = c.compute(logits.clone(), rating_pred.clone(), &truth);
    // BCE: [-ln σ(0), -ln(1-σ(2))] = [ln 2, ln(1+e²)], mean over genres.
    let expected = ((2f32).ln() + (1.0 + 2f32.exp()).ln()) / 2.0;
    let [total, genre, rating] = parts.values();
    assert!((parts.genre.into_scalar::<f32>() - expected).abs() < 1e-5);
    assert!((genre - expected).abs() < 1e-5 && (rating - 2.0).abs() < 1e-5);
    assert!(
        (total - (genre + rating)).abs() < 1e-5,
        "default weights are 1 and 1"
    );
    // Huber(2.5, δ=1) = 0.5 + 1.5 = 2.0
    assert!((parts.rating.into_scalar::<f32>() - 2.0).abs() < 1e-5);
    // pos_weight 3 on genre 0 triples its term.
    let pw = Tensor::<1>::from_data([3.0f32, 1.0], &device);
    truth.pos_weight = Some(pw);
    let weighted = c.compute(logits, rating_pred, &truth);
    let expected = (3.0 * (2f32).ln() + (1.0 + 2f32.exp()).ln()) / 2.0;
    assert!((weighted.genre.into_scalar::<f32>() - expected).abs() < 1e-5);
}

/// Runs on lavapipe (software Vulkan) where there is no GPU.
/// Every trainable parameter's gradient, in visiting order.
struct GradValues<'a> {
    grads: &'a Gradients,
    out: Vec<(usize, Vec<f32>)>,
}

impl ModuleVisitor for GradValues<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !param.val().is_require_grad() {
            return;
        }
        let g = param
            .val()
            .grad(self.grads)
            .map(|g| g.into_data().convert::<f32>());
        let values = g
            .map(|g| g.try_to_vec::<f32>().unwrap())
            .unwrap_or_default();
        self.out.push((self.out.len(), values));
    }
}

fn grad_values<M: burn::module::Module>(module: &M, grads: &Gradients) -> Vec<(usize, Vec<f32>)> {
    let mut v = GradValues {
        grads,
        out: Vec::new(),
    };
    module.visit(&mut v);
    v.out
}

/// Max |a − b| relative to the largest |b| (slices).
fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

/// Genre logits, ratings and every parameter's gradient of one pass.
type PassValues = (Vec<f32>, Vec<f32>, Vec<(usize, Vec<f32>)>);

/// The model's outputs and gradients for one batch on `device` (weights moved there first).
fn outputs_and_grads(
    model: cinefuse_model::CinefuseModel,
    items: Vec<MovieItem>,
    device: &Device,
) -> PassValues {
    let model = model.to_device(&device.clone().autodiff());
    let b = batch(items, device);
    let out = model.forward(&b);
    let logits = out
        .genre_logits
        .clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .unwrap();
    let rating = out
        .rating
        .clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .unwrap();
    let scale = RatingScale {
        mean: 5.0,
        std: 2.0,
    };
    let grads = loss_of(out, &b, scale).total.backward();
    let g = grad_values(&model, &grads);
    (logits, rating, g)
}

#[test]
fn the_flex_path_runs_the_cpu_kernels() {
    let device = Device::flex();
    let mut config = tiny_config(
        Modality::ALL.to_vec(),
        FusionKind::Attention,
        TextEncoderKind::Transformer,
    );
    config.fusion.dropout = 0.2;
    let model = config.init(&shapes(), &device.clone().autodiff());
    let before = cinefuse_model::cpu_kernels::kernel_routes();
    let b = batch(items(6), &device);
    let out = model.forward(&b);
    let scale = RatingScale {
        mean: 5.0,
        std: 2.0,
    };
    let _ = loss_of(out, &b, scale).total.backward();
    let after = cinefuse_model::cpu_kernels::kernel_routes();
    assert!(after.conv2d > before.conv2d, "{before:?} → {after:?}");
    assert!(
        after.batch_norm > before.batch_norm,
        "{before:?} → {after:?}"
    );
    assert!(after.dropout > before.dropout, "{before:?} → {after:?}");
    assert!(after.softmax > before.softmax, "{before:?} → {after:?}");
    assert!(after.gelu > before.gelu, "{before:?} → {after:?}");

    // The counts are this thread's and this model's: a model without a poster CNN takes no
    // convolution or batch-norm route, and its text transformer still takes the softmax.
    let text_only = tiny_config(
        vec![Modality::Text],
        FusionKind::Concat,
        TextEncoderKind::Transformer,
    )
    .init(&shapes(), &device.clone().autodiff());
    let before = cinefuse_model::cpu_kernels::kernel_routes();
    let out = text_only.forward(&b);
    let _ = loss_of(out, &b, scale).total.backward();
    let after = cinefuse_model::cpu_kernels::kernel_routes();
    assert_eq!(after.conv2d, before.conv2d, "{before:?} → {after:?}");
    assert_eq!(
        after.batch_norm, before.batch_norm,
        "{before:?} → {after:?}"
    );
    assert!(after.softmax > before.softmax, "{before:?} → {after:?}");
}

/// The GPU code path (lavapipe on machines without a GPU) computes what flex computes: the
/// same weights and batch give the same outputs and gradients, within f32 rounding of two
/// different kernel sets. The kernel routes are never taken on wgpu.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_matches_flex_outputs_and_gradients() {
    // Measured: outputs within 7e-7 and every gradient within 1e-5 (relative) on lavapipe.
    const TOLERANCE: f32 = 1e-4;
    let flex = Device::flex();
    let wgpu = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
    for fusion in [FusionKind::Attention, FusionKind::Gmu] {
        let model = tiny_config(Modality::ALL.to_vec(), fusion, TextEncoderKind::Transformer)
            .init(&shapes(), &flex.clone().autodiff());
        let (fl, fr, fg) = outputs_and_grads(model.clone(), items(8), &flex);
        let routes = cinefuse_model::cpu_kernels::kernel_routes();
        let (wl, wr, wg) = outputs_and_grads(model, items(8), &wgpu);
        assert_eq!(
            cinefuse_model::cpu_kernels::kernel_routes(),
            routes,
            "no kernels on wgpu"
        );
        assert!(
            rel_diff(&wl, &fl) < TOLERANCE,
            "{fusion:?} logits: {}",
            rel_diff(&wl, &fl)
        );
        assert!(
            rel_diff(&wr, &fr) < TOLERANCE,
            "{fusion:?} rating: {}",
            rel_diff(&wr, &fr)
        );
        assert_eq!(fg.len(), wg.len());
        let worst = fg
            .iter()
            .zip(&wg)
            .map(|((i, f), (_, w))| (rel_diff(w, f), *i))
            .fold((0.0f32, 0), |a, b| if b.0 > a.0 { b } else { a });
        assert!(
            worst.0 < TOLERANCE,
            "{fusion:?}: gradient of parameter {} differs by {}",
            worst.1,
            worst.0
        );
        assert!(
            fg.iter().all(|(_, g)| !g.is_empty()),
            "every parameter has a gradient"
        );
    }
}

#[test]
fn the_rating_can_be_routed_to_one_modality() {
    let device = Device::flex();
    let b = batch(items(6), &device);
    let mut config = tiny_config(
        Modality::ALL.to_vec(),
        FusionKind::Gmu,
        TextEncoderKind::Bag,
    );
    config.rating_modality = Some(Modality::Meta);
    assert!(config.validate().is_ok());
    let model = config.init(&shapes(), &device);
    let out = model.forward(&b);
    let meta = out
        .per_modality
        .iter()
        .find(|o| o.modality == Modality::Meta)
        .unwrap();
    let (a, m) = (
        out.rating
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap(),
        meta.rating
            .clone()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap(),
    );
    assert_eq!(a, m);
    let mut bad = tiny_config(
        vec![Modality::Poster, Modality::Text],
        FusionKind::Gmu,
        TextEncoderKind::Bag,
    );
    bad.rating_modality = Some(Modality::Meta);
    assert!(
        bad.validate()
            .unwrap_err()
            .contains("model.rating_modality")
    );
}

/// Max |a − b| relative to the largest |b|.
fn max_rel_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    let (a, b) = (
        a.into_data().try_to_vec::<f32>().unwrap(),
        b.into_data().try_to_vec::<f32>().unwrap(),
    );
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

#[test]
fn cpu_kernel_convolutions_match_burn_values_and_gradients() {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;
    use cinefuse_model::cpu_kernels;

    let device = Device::flex().autodiff();
    device.seed(11);
    // (c_in, c_out, kernel, stride, padding, height, width)
    for (c_in, c_out, k, stride, pad, h, w) in [
        (3, 8, 3, 2, 1, 14, 10),
        (8, 8, 3, 1, 1, 7, 5),
        (8, 16, 1, 2, 0, 7, 5),
    ] {
        let conv = Conv2dConfig::new([c_in, c_out], [k, k])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_bias(false)
            .init(&device);
        let x = Tensor::<4>::random([3, c_in, h, w], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let target = Tensor::<4>::random(
            conv.forward(x.clone()).dims(),
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let run = |fast: bool| {
            let y = if fast {
                cpu_kernels::conv2d(&conv, x.clone())
            } else {
                conv.forward(x.clone())
            };
            let grads = (y.clone() * target.clone()).sum().backward();
            let dx = x.grad(&grads).unwrap();
            let dw = conv.weight.grad(&grads).unwrap();
            (y.inner(), dx, dw)
        };
        let (y_fast, dx_fast, dw_fast) = run(true);
        let (y_burn, dx_burn, dw_burn) = run(false);
        let what = format!("conv {c_in}->{c_out} k{k} s{stride}");
        assert!(max_rel_diff(y_fast, y_burn) < 1e-5, "{what}: output");
        assert!(
            max_rel_diff(dx_fast, dx_burn) < 1e-5,
            "{what}: input gradient"
        );
        assert!(
            max_rel_diff(dw_fast, dw_burn) < 1e-5,
            "{what}: weight gradient"
        );
    }
}

#[test]
fn cpu_kernel_batch_norm_matches_burn_values_gradients_and_running_stats() {
    use burn::nn::BatchNormConfig;
    use burn::tensor::Distribution;
    use cinefuse_model::cpu_kernels;

    let device = Device::flex().autodiff();
    device.seed(12);
    let x =
        Tensor::<4>::random([4, 6, 5, 7], Distribution::Normal(2.0, 3.0), &device).require_grad();
    let target = Tensor::<4>::random([4, 6, 5, 7], Distribution::Normal(0.0, 1.0), &device);
    let run = |fast: bool| {
        // A fresh layer per run: clones of a layer share their running statistics. Non-trivial
        // affine parameters, so the gamma/beta paths are exercised.
        let norm = burn::nn::BatchNorm {
            gamma: Param::from_tensor(Tensor::from_floats(
                [1.5, -0.3, 0.8, 2.0, 1.0, 0.1],
                &device,
            )),
            beta: Param::from_tensor(Tensor::from_floats(
                [0.4, 0.0, -1.0, 0.2, 3.0, -0.5],
                &device,
            )),
            ..BatchNormConfig::new(6).init(&device)
        };
        let y = if fast {
            cpu_kernels::batch_norm(&norm, x.clone())
        } else {
            norm.forward(x.clone())
        };
        let grads = (y.clone() * target.clone()).sum().backward();
        (
            y.inner(),
            x.grad(&grads).unwrap(),
            norm.gamma.grad(&grads).unwrap(),
            norm.beta.grad(&grads).unwrap(),
            norm.running_mean.value(),
            norm.running_var.value(),
        )
    };
    let fast = run(true);
    let burn = run(false);
    assert!(max_rel_diff(fast.0, burn.0) < 1e-5, "output");
    assert!(max_rel_diff(fast.1, burn.1) < 1e-4, "input gradient");
    assert!(max_rel_diff(fast.2, burn.2) < 1e-4, "gamma gradient");
    assert!(max_rel_diff(fast.3, burn.3) < 1e-5, "beta gradient");
    assert!(max_rel_diff(fast.4, burn.4) < 1e-5, "running mean");
    assert!(max_rel_diff(fast.5, burn.5) < 1e-5, "running variance");
}

#[test]
fn cpu_kernel_dropout_drops_the_right_fraction_and_only_in_training() {
    use burn::nn::DropoutConfig;
    use cinefuse_model::cpu_kernels;

    // Mask reproducibility for a given seed is tested on the kernel (cinefuse-kernels); here
    // the seed comes from flex's process-wide RNG, which tests running in parallel share.
    let layer = DropoutConfig::new(0.25).init();
    let train = Device::flex().autodiff();
    let x = Tensor::<2>::ones([200, 300], &train).require_grad();
    let y = cpu_kernels::dropout(&layer, x.clone());
    let grad = x.grad(&y.clone().sum().backward()).unwrap();
    let (y, grad) = (
        y.into_data().try_to_vec::<f32>().unwrap(),
        grad.into_data().try_to_vec::<f32>().unwrap(),
    );
    let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
    assert!((dropped - 0.25).abs() < 0.01, "dropped {dropped}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    assert!(
        grad == y,
        "the gradient of a dropped-out ones tensor is its mask"
    );
    let again = cpu_kernels::dropout(&layer, x.clone().detach());
    assert!(
        again.into_data().try_to_vec::<f32>().unwrap() != y,
        "each call draws a new mask"
    );

    let eval = Device::flex();
    let x = Tensor::<2>::ones([4, 5], &eval);
    let y = cpu_kernels::dropout(&layer, x.clone());
    assert_eq!(
        y.into_data(),
        x.into_data(),
        "dropout is the identity outside training"
    );
}

/// `n` test movies batched to their longest plot, and padded to the 12-token cap as a GPU
/// backend's token bucket pads them.
fn tight_and_padded(n: usize, device: &Device) -> (MovieBatch, MovieBatch) {
    let tight = MovieBatcher::new(H, W, 12);
    let padded = MovieBatcher {
        token_bucket: Some(12),
        ..tight.clone()
    };
    (
        tight.batch(items(n), device),
        padded.batch(items(n), device),
    )
}

/// GPU backends pad plot batches past their longest plot (`GPU_TOKEN_BUCKET`): every text
/// encoder masks the padding, so its outputs are those of the batch padded to the longest.
#[test]
fn padding_past_the_longest_plot_leaves_every_text_encoder_unchanged() {
    let device = Device::flex();
    let kinds = [
        TextEncoderKind::Transformer,
        TextEncoderKind::Bag,
        TextEncoderKind::Cnn,
        TextEncoderKind::Ngram,
    ];
    for kind in kinds {
        device.seed(5);
        let config = tiny_config(vec![Modality::Text, Modality::Meta], FusionKind::Gmu, kind);
        let model = config.init(&shapes(), &device).valid();
        let (a, b) = tight_and_padded(8, &device);
        assert_eq!(a.tokens.dims(), [8, 4]);
        assert_eq!(b.tokens.dims(), [8, 12]);
        let (a, b) = (outputs(&model, &a), outputs(&model, &b));
        assert!(rel_diff(&a, &b) < 1e-5, "{kind:?}: {a:?} vs {b:?}");
    }
}

#[test]
fn encoder_layer_ignores_padding_tokens() {
    use burn::tensor::Distribution;
    use cinefuse_model::transformer_layer::EncoderLayer;

    let device = Device::flex();
    device.seed(3);
    let layer = EncoderLayer::new(16, 32, 4, 0.1, &device);
    let x = Tensor::<3>::random([2, 6, 16], Distribution::Normal(0.0, 1.0), &device);
    // Sample 0 has 4 real tokens, sample 1 has 6.
    let padding = Tensor::<2, Bool>::from_data(
        TensorData::from([[false, false, false, false, true, true], [false; 6]]),
        &device,
    );
    let noise = Tensor::<3>::random([1, 2, 16], Distribution::Normal(0.0, 5.0), &device);
    let changed = x.clone().slice_assign([0..1, 4..6, 0..16], noise);
    let a = layer.forward(x, padding.clone());
    let b = layer.forward(changed, padding);
    let real = |t: Tensor<3>| t.slice([0..1, 0..4, 0..16]);
    assert!(
        max_rel_diff(real(a.clone()), real(b.clone())) < 1e-5,
        "padding tokens changed real positions"
    );
    // Sample 1 is untouched; its outputs are exactly the same.
    assert!(max_rel_diff(a.slice([1..2, 0..6, 0..16]), b.slice([1..2, 0..6, 0..16])) < 1e-6);
}

#[test]
fn cpu_kernel_softmax_and_gelu_match_burn_values_and_gradients() {
    use burn::tensor::Distribution;
    use burn::tensor::activation;
    use cinefuse_model::cpu_kernels;

    let device = Device::flex().autodiff();
    let x = Tensor::<3>::random([3, 5, 9], Distribution::Normal(0.0, 3.0), &device).require_grad();
    let target = Tensor::<3>::random([3, 5, 9], Distribution::Normal(0.0, 1.0), &device);
    type Op = fn(Tensor<3>) -> Tensor<3>;
    let cases: [(&str, Op, Op); 2] = [
        (
            "softmax",
            |t| cpu_kernels::softmax(t, 2),
            |t| activation::softmax(t, 2),
        ),
        ("gelu", cpu_kernels::gelu, activation::gelu),
    ];
    for (name, fast, reference) in cases {
        let run = |f: Op| {
            let y = f(x.clone());
            let dx = x
                .grad(&(y.clone() * target.clone()).sum().backward())
                .unwrap();
            (y.inner(), dx)
        };
        let (y_fast, dx_fast) = run(fast);
        let (y_ref, dx_ref) = run(reference);
        assert!(max_rel_diff(y_fast, y_ref) < 2e-6, "{name}: output");
        assert!(max_rel_diff(dx_fast, dx_ref) < 2e-5, "{name}: gradient");
    }
    // A softmax over another axis takes Burn's path and still agrees.
    let a = cpu_kernels::softmax(x.clone().inner(), 1);
    assert!(max_rel_diff(a, activation::softmax(x.inner(), 1)) < 1e-6);
}

#[test]
fn ngram_encoder_hashes_adjacent_pairs_and_ignores_padding() {
    use cinefuse_model::encoders::text::NgramTextEncoder;
    use cinefuse_model::encoders::text::TextEncoderConfig;
    let device = Device::flex();
    let mut c = TextEncoderConfig::new();
    c.d_model = 8;
    c.ngram_buckets = 97;
    c.dropout = 0.0;
    let enc = NgramTextEncoder::new(&c, 50, 4, &device);
    let ids =
        |v: Vec<i64>, l: usize| Tensor::<2, Int>::from_data(TensorData::new(v, [1, l]), &device);
    let pairs: Vec<i64> = enc
        .bigram_ids(ids(vec![2, 7, 11, 7], 4))
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap();
    let hash = |a: i64, b: i64| (a * 46_337 + b) % 97;
    assert_eq!(pairs, vec![hash(2, 7), hash(7, 11), hash(11, 7)]);
    // Padding (and the pairs it forms) never changes the embedding.
    let mask = Tensor::<2>::from_data(
        TensorData::new(vec![1.0f32, 1.0, 1.0, 0.0, 0.0], [1, 5]),
        &device,
    );
    let a = enc.forward(ids(vec![2, 7, 11, 0, 0], 5), mask.clone());
    let b = enc.forward(ids(vec![2, 7, 11, 33, 4], 5), mask);
    a.clone()
        .into_data()
        .assert_approx_eq::<f32>(&b.into_data(), Default::default());
    // Word order matters through the bigrams (a bag of words alone would not see it).
    let ones = Tensor::<2>::ones([1, 3], &device);
    let swapped = enc.forward(ids(vec![2, 11, 7], 3), ones);
    let diff: f32 = (swapped - a).abs().sum().into_scalar();
    assert!(diff > 1e-5, "order-sensitive: {diff}");
}

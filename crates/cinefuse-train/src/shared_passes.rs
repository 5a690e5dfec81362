//! Backbone passes shared at prediction. The shipped blend runs the same frozen plot encoder
//! and EfficientNet in two of its parts, and a bag that fine-tunes MiniLM's last layers runs the
//! same frozen lower layers in each of its members. Each of those runs once per movie here
//! and its output is handed on, which predicts the same for a fraction of the work.

use std::sync::Arc;

use burn::data::dataset::{Dataset, DatasetError};
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use cinefuse_data::MovieBatcher;
use cinefuse_data::dataset::{MovieItem, TokenBlock};
use cinefuse_model::encoders::poster::PosterEncoder;
use cinefuse_model::encoders::text::{TextEncoder, TextEncoderKind};
use cinefuse_model::pretrained::Bert;
use cinefuse_model::{CinefuseModel, ModelConfig, ModelShapes};

use crate::backbone_features::BACKBONE_BATCH;
use crate::export_backbones::ManifestBackbone;
use crate::frozen_layer_states::states_of_batch;

/// What a part's frozen pretrained backbones compute, named by the checkpoint copy in the
/// export (its folder and the SHA-256 of its weights) and the settings that shape the
/// features: two parts with the same key turn the same input into the same features.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrozenFeatureKeys {
    pub poster: Option<String>,
    pub text: Option<String>,
}

impl FrozenFeatureKeys {
    /// The keys of `model` (built from `config` and `shapes`), loaded from an export whose
    /// manifest lists `backbones`; `None` for a backbone that is absent, fine-tuned, or not
    /// from a copy.
    pub fn of(
        (config, shapes): (&ModelConfig, &ModelShapes),
        model: &CinefuseModel,
        backbones: &[ManifestBackbone],
    ) -> Self {
        let copy = |section: &str| {
            backbones
                .iter()
                .find(|b| b.section == section)
                .map(|b| format!("{}|{}", b.dir.trim_start_matches("../"), b.sha256))
        };
        let poster = model.pretrained_poster().is_some() && config.poster.freeze;
        let text = model.pretrained_text().is_some()
            && config.text.freeze
            && config.text.kind == TextEncoderKind::Bert;
        Self {
            poster: poster.then(|| copy("model.poster")).flatten(),
            text: text.then(|| copy("model.text")).flatten().map(|c| {
                // The layers and pooling as the config and the saved sizes give them.
                let arch = serde_json::to_string(&shapes.text_backbone).unwrap_or_default();
                format!("{c}|{:?}|{arch}", config.text.concat_layers)
            }),
        }
    }
}

/// Points `model`'s frozen backbones at `lead`'s wherever their keys say they are the same
/// network, so that a blend's parts hold one copy in memory instead of one each (a module's
/// clone shares its tensors; frozen, nothing writes to them after loading).
pub fn share_frozen_backbones(
    model: &mut CinefuseModel,
    keys: &FrozenFeatureKeys,
    lead: (&CinefuseModel, &FrozenFeatureKeys),
) {
    let (lead, lead_keys) = lead;
    if keys.text.is_some() && keys.text == lead_keys.text {
        let mine = model.text.as_mut().map(|b| &mut b.encoder);
        if let (Some(TextEncoder::Bert(mine)), Some(theirs)) = (mine, lead.pretrained_text()) {
            mine.backbone = theirs.backbone.clone();
        }
    }
    if keys.poster.is_some() && keys.poster == lead_keys.poster {
        let mine = model.poster.as_mut().map(|b| &mut b.encoder);
        if let (Some(PosterEncoder::EfficientNet(mine)), Some(theirs)) =
            (mine, lead.pretrained_poster())
        {
            mine.backbone = theirs.backbone.clone();
        }
    }
}

/// Points a fine-tuned member's frozen lower layers (the embeddings and the layers below
/// `layer`) at `lead`'s plot backbone where they hold the same values: the same checkpoint,
/// kept whole by the lead and in part by the fine-tuned bag.
pub fn share_frozen_layers(member: &mut CinefuseModel, layer: usize, lead: &CinefuseModel) {
    let Some(theirs) = lead.pretrained_text().map(|e| &e.backbone) else {
        return;
    };
    let Some(TextEncoder::Bert(mine)) = member.text.as_mut().map(|b| &mut b.encoder) else {
        return;
    };
    if theirs.n_layers() < layer
        || !same_tensors(
            &frozen_part_tensors(&mine.backbone, layer),
            &frozen_part_tensors(theirs, layer),
        )
    {
        return;
    }
    mine.backbone.embeddings = theirs.embeddings.clone();
    for (l, shared) in mine.backbone.layers.iter_mut().zip(&theirs.layers[..layer]) {
        *l = shared.clone();
    }
}

/// Gives a partner's `items` the features the lead computed (`lead_items`, from the inputs
/// `lead_inputs`) wherever both parts' frozen backbone is the same and saw the same poster
/// pixels or plot tokens; the partner then computes only the rest.
pub fn share_frozen_features(
    lead: (&FrozenFeatureKeys, &[&MovieItem], &[MovieItem]),
    partner: (&FrozenFeatureKeys, &mut [MovieItem]),
) {
    let (lead_keys, lead_inputs, lead_items) = lead;
    let (keys, items) = partner;
    let same_poster = keys.poster.is_some() && keys.poster == lead_keys.poster;
    let same_text = keys.text.is_some() && keys.text == lead_keys.text;
    for ((item, &input), done) in items.iter_mut().zip(lead_inputs).zip(lead_items) {
        if same_poster
            && item.poster.is_some()
            && item.poster == input.poster
            && done.poster_features.is_some()
        {
            item.poster = None;
            item.poster_features = done.poster_features.clone();
        }
        if same_text
            && item.plot_present
            && !item.tokens.is_empty()
            && (item.tokens == input.tokens && item.plot_present == input.plot_present)
            && done.plot_features.is_some()
        {
            item.plot_features = done.plot_features.clone();
        }
    }
}

/// The layer below which every member's plot backbone is one and the same frozen network,
/// when the bag fine-tunes only the layers above it (`model.text.trainable_layers`): the
/// states entering that layer are then computed once per movie for all members. `None` when
/// the plot backbone is frozen or absent, every layer learns, a concatenated layer lies below,
/// or the members' frozen weights differ.
pub fn shared_frozen_layers(config: &ModelConfig, members: &[&CinefuseModel]) -> Option<usize> {
    let text = &config.text;
    if text.freeze || text.kind != TextEncoderKind::Bert {
        return None;
    }
    let berts: Vec<&Bert> = members
        .iter()
        .map(|m| m.pretrained_text().map(|e| &e.backbone))
        .collect::<Option<_>>()?;
    let layer = berts
        .first()?
        .n_layers()
        .saturating_sub(text.trainable_layers?);
    if text.concat_layers.iter().any(|&k| k < layer) {
        return None;
    }
    let first = frozen_part_tensors(berts[0], layer);
    berts[1..]
        .iter()
        .all(|b| same_tensors(&first, &frozen_part_tensors(b, layer)))
        .then_some(layer)
}

/// The tensors of the embeddings and of the layers below `layer`, in module order.
fn frozen_part_tensors(bert: &Bert, layer: usize) -> Vec<(Vec<usize>, Tensor<1>)> {
    let mut tensors = module_tensors(&bert.embeddings);
    for l in &bert.layers[..layer] {
        tensors.extend(module_tensors(l));
    }
    tensors
}

/// Every float tensor of `module` (parameters and running statistics) with its shape,
/// flattened, in module order: handles on the module's own values, not copies.
pub fn module_tensors<M: Module>(module: &M) -> Vec<(Vec<usize>, Tensor<1>)> {
    struct Collect(Vec<(Vec<usize>, Tensor<1>)>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let t = p.val();
            self.0.push((t.dims().to_vec(), t.flatten::<1>(0, D - 1)));
        }
    }
    let mut c = Collect(Vec::new());
    module.visit(&mut c);
    c.0
}

/// The two lists hold tensors of the same shapes with the same values, compared where they
/// live (a read that fails counts as a difference).
pub fn same_tensors(a: &[(Vec<usize>, Tensor<1>)], b: &[(Vec<usize>, Tensor<1>)]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((da, ta), (db, tb))| {
            da == db
                && ta
                    .clone()
                    .equal(tb.clone())
                    .all()
                    .try_into_scalar::<bool>()
                    .unwrap_or(false)
        })
}

/// Gives every item the states entering `layer` of `bert` (its `plot_states`), computed in
/// batches: each member then runs only the layers above. Every item gets them (a batch mixes
/// no items with and without states), a movie without a plot its one padding row.
pub fn attach_frozen_states(
    bert: &Bert,
    layer: usize,
    items: &mut [MovieItem],
    batcher: &MovieBatcher,
    device: &Device,
) -> anyhow::Result<()> {
    let dim = bert.hidden_size();
    for chunk in items.chunks_mut(BACKBONE_BATCH) {
        let blocks = states_of_batch(bert, layer, chunk.to_vec(), batcher, device)?;
        for (item, values) in chunk.iter_mut().zip(blocks) {
            item.plot_states = Some(TokenBlock {
                from_layer: layer,
                dim,
                values,
            });
        }
    }
    Ok(())
}

/// Movies in memory, held once, that several passes read in turn (the members of a bag, or
/// a run's validation after every epoch).
#[derive(Clone)]
pub struct SharedItems(Arc<Vec<MovieItem>>);

impl SharedItems {
    pub fn new(items: Vec<MovieItem>) -> Self {
        Self(Arc::new(items))
    }
}

impl Dataset<MovieItem> for SharedItems {
    fn get(&self, index: usize) -> Result<MovieItem, DatasetError> {
        self.0.get(index).cloned().ok_or_else(|| {
            let len = self.0.len();
            DatasetError::new(std::io::Error::other(format!("no movie {index} of {len}")))
        })
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    fn keys(poster: &str, text: &str) -> FrozenFeatureKeys {
        FrozenFeatureKeys {
            poster: Some(poster.into()),
            text: Some(text.into()),
        }
    }

    fn input(id: &str, pixel: u8, tokens: &[u32]) -> MovieItem {
        MovieItem {
            id: id.into(),
            poster: Some(vec![pixel; 3]),
            tokens: tokens.to_vec(),
            plot_present: !tokens.is_empty(),
            ..Default::default()
        }
    }

    fn refs(items: &[MovieItem]) -> Vec<&MovieItem> {
        items.iter().collect()
    }

    /// The lead's items after its backbones ran: pixels taken, features in their place.
    fn computed(inputs: &[MovieItem]) -> Vec<MovieItem> {
        inputs
            .iter()
            .enumerate()
            .map(|(i, it)| MovieItem {
                poster: None,
                poster_features: Some(vec![i as f32; 2]),
                plot_features: it.plot_present.then(|| vec![10.0 + i as f32; 2]),
                ..it.clone()
            })
            .collect()
    }

    #[test]
    fn features_pass_only_where_the_backbone_and_the_input_are_the_same() {
        let lead_in = vec![input("a", 1, &[5, 6]), input("b", 2, &[7])];
        let lead_done = computed(&lead_in);
        // Movie b: other pixels and other tokens (another image size, another max_tokens).
        let mut items = vec![input("a", 1, &[5, 6]), input("b", 3, &[7, 8])];
        let k = keys("p", "t");
        share_frozen_features((&k, &refs(&lead_in), &lead_done), (&k, &mut items));
        assert_eq!(items[0].poster, None);
        assert_eq!(items[0].poster_features, Some(vec![0.0; 2]));
        assert_eq!(items[0].plot_features, Some(vec![10.0; 2]));
        assert_eq!(items[1].poster, Some(vec![3; 3]));
        assert_eq!(
            (&items[1].poster_features, &items[1].plot_features),
            (&None, &None)
        );

        // Another backbone (or other concatenated layers): nothing passes.
        let mut items = vec![input("a", 1, &[5, 6]), input("b", 2, &[7])];
        let other = keys("p2", "t2");
        share_frozen_features((&k, &refs(&lead_in), &lead_done), (&other, &mut items));
        assert!(
            items
                .iter()
                .all(|i| i.poster.is_some() && i.plot_features.is_none())
        );

        // A part whose backbone is fine-tuned (no key) computes its own, even beside a lead
        // that has none either.
        let none = FrozenFeatureKeys::default();
        let mut items = vec![input("a", 1, &[5, 6])];
        share_frozen_features((&none, &refs(&lead_in), &lead_done), (&none, &mut items));
        assert!(items[0].poster.is_some() && items[0].plot_features.is_none());
    }

    #[test]
    fn a_movie_without_a_plot_gets_no_plot_features() {
        let lead_in = vec![input("a", 1, &[])];
        let mut lead_done = computed(&lead_in);
        lead_done[0].plot_features = Some(vec![1.0]);
        let mut items = vec![input("a", 1, &[])];
        let k = keys("p", "t");
        share_frozen_features((&k, &refs(&lead_in), &lead_done), (&k, &mut items));
        assert_eq!(items[0].plot_features, None);
        assert!(items[0].poster_features.is_some());
    }

    /// A plot-only model on the tiny two-layer BERT in `dir`: frozen, or fine-tuning its top
    /// layer.
    fn plot_model(dir: &std::path::Path, tuned: bool) -> CinefuseModel {
        use cinefuse_model::Modality;
        let mut config = ModelConfig::new()
            .with_modalities(vec![Modality::Text])
            .with_embed_dim(8);
        config.text.kind = TextEncoderKind::Bert;
        config.text.pretrained = Some(dir.to_path_buf());
        config.text.freeze = !tuned;
        config.text.trainable_layers = tuned.then_some(1);
        let shapes = TINY.plot_model_shapes(dir, 3);
        config.init_pretrained(&shapes, &Device::flex()).unwrap()
    }

    const TINY: cinefuse_model::pretrained::testing::TinyBert =
        cinefuse_model::pretrained::testing::TinyBert::TWO_LAYERS;

    /// Checkpoint `a` and `b`, the same but for one value of layer 0.
    fn two_checkpoints(root: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let (a, b) = (root.join("a"), root.join("b"));
        let tensors = TINY.tensors(3);
        TINY.write(&a, &tensors).unwrap();
        let mut other = tensors.clone();
        let query = other
            .get_mut("encoder.layer.0.attention.self.query.weight")
            .unwrap();
        query.1[0] += 1.0;
        TINY.write(&b, &other).unwrap();
        (a, b)
    }

    fn text_config(tuned: bool) -> ModelConfig {
        let mut config = ModelConfig::new();
        config.text.kind = TextEncoderKind::Bert;
        config.text.freeze = !tuned;
        config.text.trainable_layers = tuned.then_some(1);
        config
    }

    fn layer_0(model: &CinefuseModel) -> Vec<(Vec<usize>, Tensor<1>)> {
        module_tensors(&model.pretrained_text().unwrap().backbone.layers[0])
    }

    #[test]
    fn fine_tuned_members_share_their_frozen_layers_only_when_they_are_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = two_checkpoints(dir.path());
        let (m1, m2, other) = (
            plot_model(&a, true),
            plot_model(&a, true),
            plot_model(&b, true),
        );
        let tuned = text_config(true);
        assert_eq!(shared_frozen_layers(&tuned, &[&m1, &m2]), Some(1));
        assert_eq!(shared_frozen_layers(&tuned, &[&m1, &other]), None);
        assert_eq!(shared_frozen_layers(&text_config(false), &[&m1, &m2]), None);

        // Pointed at a frozen lead on the same checkpoint: the same values. On another one:
        // left as it was.
        let lead = plot_model(&a, false);
        let mut shared = plot_model(&a, true);
        share_frozen_layers(&mut shared, 1, &lead);
        assert!(same_tensors(&layer_0(&shared), &layer_0(&lead)));
        let mut kept = plot_model(&b, true);
        share_frozen_layers(&mut kept, 1, &lead);
        assert!(same_tensors(&layer_0(&kept), &layer_0(&other)));
        assert!(!same_tensors(&layer_0(&kept), &layer_0(&lead)));
    }

    #[test]
    fn frozen_backbones_are_shared_only_under_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = two_checkpoints(dir.path());
        let lead = plot_model(&a, false);
        let lead_keys = keys("p", "t");
        let mut other = plot_model(&b, false);
        share_frozen_backbones(&mut other, &keys("p", "t2"), (&lead, &lead_keys));
        assert!(!same_tensors(&layer_0(&other), &layer_0(&lead)));
        share_frozen_backbones(&mut other, &lead_keys, (&lead, &lead_keys));
        assert!(same_tensors(&layer_0(&other), &layer_0(&lead)));
    }

    #[test]
    fn same_tensors_tells_equal_weights_from_changed_ones() {
        let device = Device::flex();
        device.seed(3);
        let a: Linear = LinearConfig::new(3, 2).init(&device);
        let w = a.weight.val();
        let nine = Tensor::<2>::from_floats([[9.0]], &w.device());
        let mut changed = a.clone();
        changed.weight = Param::from_tensor(w.slice_assign([0..1, 0..1], nine));
        let wider: Linear = LinearConfig::new(3, 3).init(&device);
        let of = |m: &Linear| module_tensors(m);
        assert_eq!(of(&a).len(), 2, "weight and bias");
        assert!(same_tensors(&of(&a), &of(&a.clone())));
        assert!(!same_tensors(&of(&a), &of(&changed)));
        assert!(!same_tensors(&of(&a), &of(&wider)));
        assert!(!same_tensors(&of(&a), &of(&a)[..1]));
    }
}

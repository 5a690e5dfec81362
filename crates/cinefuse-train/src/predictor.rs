//! Loading an exported model and predicting genres, a rating with a calibrated interval, and
//! how much each modality contributed, for new movies.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use burn::prelude::*;
use cinefuse_data::MovieBatcher;
use cinefuse_data::dataset::MovieItem;
use cinefuse_data::movie::{FIELDS, Movie, movie_from_value};
use cinefuse_data::prepared::{PosterKey, Preprocessor};
use cinefuse_data::split::Split;
use cinefuse_data::validate::check_movie;
use cinefuse_model::{CinefuseModel, Modality, ModelShapes};
use serde::{Deserialize, Serialize};

use crate::backend::select_device;
use crate::bag_sets::{SetLayout, group_sets};
use crate::config::{BackendKind, TrainConfig};
use crate::content_rating::{ContentRating, lacks_metadata};
use crate::export::{MANIFEST_FILE, Manifest, ManifestNeighbours, ManifestVoteless};
use crate::genre_stacking::{combine, restack_movies};
use crate::neighbour_vote::{NeighbourVote, VoteSpace};
use crate::plotless_stacking::restack_without_plot;
use crate::predictions::{Predictions, predict_items};
use crate::rating_trees::{RatingTrees, blend_part, tree_row};
use crate::run_dir::{CONFIG_FILE, MODEL_FILE, load_members, read_json};
use crate::shared_passes::{
    FrozenFeatureKeys, attach_frozen_states, share_frozen_backbones, share_frozen_features,
    share_frozen_layers, shared_frozen_layers,
};
use crate::voteless_rating::{VotelessRow, VotelessTrees, may_rate_reduced};

/// Movies predicted together: bounds what a long input list holds at once beyond the inputs
/// themselves (features, a fine-tuned backbone's frozen states, every member's predictions).
pub const PREDICT_CHUNK: usize = 64;

/// A blend's rating trees from `file` in `dir`, checked against `lead`'s fields and members.
fn load_trees(dir: &Path, file: &str, lead: &Predictor) -> Result<RatingTrees> {
    let path = cinefuse_data::paths::resolve_inside(dir, file)
        .map_err(|e| anyhow::anyhow!("{}: rating_trees.file: {e}", dir.display()))?;
    let trees = RatingTrees::load(&path)?;
    check_tree_fields(&path, &trees, &lead.preprocessor)?;
    if trees.members.len() != lead.member_count() {
        bail!(
            "{}: {} forests for {} members",
            path.display(),
            trees.members.len(),
            lead.member_count()
        );
    }
    Ok(trees)
}

/// A blend's vote in `space` from `entry`'s file in `dir`, checked against `lead`'s members
/// and genres, and against what it reads: the lead's frozen plot embeddings, its
/// metadata encoding, or (the credits) nothing to check.
fn load_vote(
    dir: &Path,
    (space, entry): (VoteSpace, &ManifestNeighbours),
    lead: &Predictor,
) -> Result<NeighbourVote> {
    let key = format!("{}_neighbours.file", space.name());
    let path = cinefuse_data::paths::resolve_inside(dir, &entry.file)
        .map_err(|e| anyhow::anyhow!("{}: {key}: {e}", dir.display()))?;
    let vote = NeighbourVote::load(&path)?;
    if vote.space != space {
        bail!(
            "{}: {key} names a {} vote",
            path.display(),
            vote.space.name()
        );
    }
    match space {
        VoteSpace::Plot | VoteSpace::Prompts => check_plot_encoder(&path, &vote, lead)?,
        VoteSpace::Metadata => {
            crate::metadata_neighbours::check_fields(&vote, &lead.preprocessor)
                .with_context(|| path.display().to_string())?;
        }
        // Credits are names: any movie has some, or none (and then gets the frequencies).
        VoteSpace::Credits => {}
    }
    if vote.n_folds != lead.member_count() || vote.n_genres != lead.manifest.genres.len() {
        bail!(
            "{}: a vote of {} members on {} genres for {} members on {} genres",
            path.display(),
            vote.n_folds,
            vote.n_genres,
            lead.member_count(),
            lead.manifest.genres.len()
        );
    }
    Ok(vote)
}

/// A blend's content rating from `file` in `dir`: a ridge per member of `lead`, reading its
/// frozen plot features (the sentence embedding and the concatenated layers).
fn load_content(dir: &Path, file: &str, lead: &Predictor) -> Result<ContentRating> {
    let path = cinefuse_data::paths::resolve_inside(dir, file)
        .map_err(|e| anyhow::anyhow!("{}: content_rating.file: {e}", dir.display()))?;
    let content = ContentRating::load(&path)?;
    let text = &lead.config.model.text;
    let width = lead
        .manifest
        .shapes
        .text_backbone
        .as_ref()
        .filter(|_| text.freeze)
        .map(|b| b.config.hidden_size * (1 + text.concat_layers.len()));
    if width != Some(content.dim()) {
        bail!(
            "{}: the content rating reads {}-wide plot features; the first part's frozen plot \
             encoder makes {}",
            path.display(),
            content.dim(),
            width.map_or("none".to_string(), |w| w.to_string())
        );
    }
    if content.members.len() != lead.member_count() {
        bail!(
            "{}: {} ridges for {} members",
            path.display(),
            content.members.len(),
            lead.member_count()
        );
    }
    Ok(content)
}

/// A blend's trees for movies without a vote count, checked like its rating trees.
fn load_voteless(dir: &Path, entry: &ManifestVoteless, lead: &Predictor) -> Result<VotelessTrees> {
    let trees = VotelessTrees::load_files(dir, &entry.files, lead.member_count())?;
    for (file, t) in trees.files() {
        check_tree_fields(&dir.join(file), t, &lead.preprocessor)?;
    }
    Ok(trees)
}

/// Refuses trees that read other fields than `pre` encodes.
fn check_tree_fields(path: &Path, trees: &RatingTrees, pre: &Preprocessor) -> Result<()> {
    let genres = pre.genre_names().len();
    if trees.reads_other_genres(genres) {
        bail!(
            "{}: the trees read {} genre probabilities, the model predicts {genres} genres",
            path.display(),
            trees.n_genres
        );
    }
    let fields = (pre.n_numeric(), pre.categorical_sizes().len());
    if (trees.n_numeric, trees.n_categorical) != fields {
        bail!(
            "{}: the trees read {} numeric and {} categorical fields, the model has {} and {}",
            path.display(),
            trees.n_numeric,
            trees.n_categorical,
            fields.0,
            fields.1
        );
    }
    Ok(())
}

/// The plot vote reads the lead's frozen plot embeddings, of its width.
fn check_plot_encoder(path: &Path, vote: &NeighbourVote, lead: &Predictor) -> Result<()> {
    let text = &lead.config.model.text;
    if text.kind != cinefuse_model::encoders::text::TextEncoderKind::Bert || !text.freeze {
        bail!(
            "{}: the plot vote needs the first part to have a frozen pretrained plot encoder",
            path.display()
        );
    }
    let width = lead.manifest.shapes.text_backbone.as_ref();
    if width.is_some_and(|b| b.config.hidden_size != vote.dim) {
        bail!(
            "{}: the vote reads {}-wide plot embeddings, the first part's encoder makes {}",
            path.display(),
            vote.dim,
            width.map_or(0, |b| b.config.hidden_size)
        );
    }
    Ok(())
}

/// A movie encoded for every model of a predictor: with the model's own preprocessing and,
/// for a blend, with each partner bag's.
#[derive(Debug, Clone)]
pub struct ModelInput {
    item: MovieItem,
    partners: Vec<MovieItem>,
}

/// An exported model, ready to predict.
pub struct Predictor {
    pub manifest: Manifest,
    pub config: TrainConfig,
    pub preprocessor: Preprocessor,
    /// The model, or a bag's first member.
    pub model: CinefuseModel,
    /// A bag's other members (their mean is the prediction).
    pub others: Vec<CinefuseModel>,
    /// How the bag's repeated sets combine, from its own manifest (a blend's lead keeps its
    /// part's; the blend's manifest replaces `manifest`).
    layout: SetLayout,
    pub device: Device,
    batcher: MovieBatcher,
    /// A blend's other bags, each with its own preprocessing (weights in `manifest.parts`).
    partners: Vec<Predictor>,
    /// A blend's rating trees (weight in `manifest.rating_trees`); they read this model's fields.
    trees: Option<RatingTrees>,
    /// A blend's votes with their genre weights (`manifest.plot_neighbours`,
    /// `manifest.metadata_neighbours`, then `manifest.credit_neighbours`); they read this
    /// model's plot embeddings, metadata and the movies' credits.
    votes: Vec<(NeighbourVote, f32)>,
    /// A blend's rating of movies without metadata (`manifest.content_rating`); it reads this
    /// model's plot features.
    content: Option<ContentRating>,
    /// A blend's trees for movies without a vote count (`manifest.rating_without_votes`); they
    /// read this model's fields.
    voteless: Option<VotelessTrees>,
    /// What this part's frozen backbones compute: a blend's partner with the lead's keys
    /// takes the lead's features instead of computing them again.
    frozen_keys: FrozenFeatureKeys,
    /// A fine-tuned plot backbone's frozen lower layers, one network in every member: the
    /// states entering this layer are computed once per movie for all of them.
    shared_text_layer: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GenreScore {
    pub genre: String,
    pub probability: f32,
    pub predicted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Contribution {
    pub modality: Modality,
    pub share: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MoviePrediction {
    pub id: String,
    /// Every genre, most probable first.
    pub genres: Vec<GenreScore>,
    pub rating: f32,
    /// The rating interval with the manifest's coverage, clipped to 0–10; `null` when the
    /// model has none (too few rated movies to calibrate one).
    pub rating_interval: Option<[f32; 2]>,
    pub contributions: Vec<Contribution>,
    /// "gate" (fusion weights) or "leave-one-out".
    pub contribution_method: String,
}

impl Predictor {
    /// Loads an exported model: one run, a bag, or a blend of bags (`manifest.parts`).
    pub fn load(model_dir: &Path, backend: Option<BackendKind>) -> Result<Self> {
        let manifest = read_manifest(model_dir)?;
        if manifest.parts.is_empty() {
            return Self::load_one(model_dir, manifest, backend);
        }
        let mut parts: Vec<Predictor> = Vec::with_capacity(manifest.parts.len());
        for part in &manifest.parts {
            let dir = model_dir.join(&part.dir);
            let m = read_manifest(&dir)?;
            if !m.parts.is_empty() {
                bail!("{}: a blend's part is itself a blend", dir.display());
            }
            let mut loaded = Self::load_one(&dir, m, backend)?;
            // Before the next part loads, so that at most one extra copy is held at a time.
            if let Some(lead) = parts.first() {
                loaded.share_backbones_with(lead);
            }
            parts.push(loaded);
        }
        let mut lead = parts.remove(0);
        if let Some(p) = parts
            .iter()
            .find(|p| p.member_count() != lead.member_count())
        {
            bail!(
                "{}: the blend's parts have {} and {} members (one per fold); they must match",
                model_dir.display(),
                lead.member_count(),
                p.member_count()
            );
        }
        lead.trees = match &manifest.rating_trees {
            Some(t) => Some(load_trees(model_dir, &t.file, &lead)?),
            None => None,
        };
        lead.content = match &manifest.content_rating {
            Some(c) => Some(load_content(model_dir, &c.file, &lead)?),
            None => None,
        };
        lead.voteless = match &manifest.rating_without_votes {
            Some(v) => Some(load_voteless(model_dir, v, &lead)?),
            None => None,
        };
        let entries = [
            (VoteSpace::Plot, &manifest.plot_neighbours),
            (VoteSpace::Metadata, &manifest.metadata_neighbours),
            (VoteSpace::Credits, &manifest.credit_neighbours),
            (VoteSpace::Prompts, &manifest.genre_prompts),
        ];
        lead.votes = entries
            .into_iter()
            .filter_map(|(space, e)| e.as_ref().map(|e| (space, e)))
            .map(|(space, e)| Ok((load_vote(model_dir, (space, e), &lead)?, e.genre_weight)))
            .collect::<Result<_>>()?;
        lead.manifest = manifest;
        lead.partners = parts;
        Ok(lead)
    }

    fn load_one(
        model_dir: &Path,
        manifest: Manifest,
        backend: Option<BackendKind>,
    ) -> Result<Self> {
        let mut config = TrainConfig::load(&model_dir.join(CONFIG_FILE), &[])?;
        // The frozen backbones come from the export's copies, never from where it trained.
        crate::export_backbones::point_at(&mut config.model, model_dir, &manifest.backbones)?;
        let preprocessor = Preprocessor::load(model_dir)?;
        check_agreement(model_dir, &manifest, &config, &preprocessor)?;
        let device = select_device(&config.backend.with_kind(backend))?.device;
        let files = if manifest.members.is_empty() {
            vec![MODEL_FILE.to_string()]
        } else {
            manifest.members.clone()
        };
        let paths: Vec<PathBuf> = files.iter().map(|f| model_dir.join(f)).collect();
        let mut models = load_members(&config.model, &manifest.shapes, &paths, &device)?;
        let model = models.remove(0);
        let batcher = preprocessor.batcher();
        let frozen_keys = FrozenFeatureKeys::of(
            (&config.model, &manifest.shapes),
            &model,
            &manifest.backbones,
        );
        let members: Vec<&CinefuseModel> = std::iter::once(&model).chain(&models).collect();
        let shared_text_layer = shared_frozen_layers(&config.model, &members);
        Ok(Self {
            layout: SetLayout {
                sets: manifest.bag_sets,
                rating_over_sets: manifest.rating_over_sets,
            },
            manifest,
            config,
            preprocessor,
            model,
            others: models,
            device,
            batcher,
            partners: Vec::new(),
            trees: None,
            votes: Vec::new(),
            content: None,
            voteless: None,
            frozen_keys,
            shared_text_layer,
        })
    }

    /// Every member's frozen backbones that are the same network as `lead`'s become `lead`'s.
    fn share_backbones_with(&mut self, lead: &Predictor) {
        let members = std::iter::once(&mut self.model).chain(&mut self.others);
        let members: Vec<&mut CinefuseModel> = members.collect();
        for model in members {
            share_frozen_backbones(model, &self.frozen_keys, (&lead.model, &lead.frozen_keys));
            if let Some(layer) = self.shared_text_layer {
                share_frozen_layers(model, layer, &lead.model);
            }
        }
    }

    /// What the model rates in its own way: a movie without metadata from its plot (a
    /// blend's content rating), one without a vote count by trees that never saw one.
    pub fn handled(&self) -> crate::input_warnings::Handled {
        let voteless = self.manifest.rating_without_votes.as_ref();
        let info = self.voteless.as_ref().and(voteless).map(|v| &v.info);
        let plot = self.manifest.content_rating.as_ref();
        let plot_info = plot.and_then(|c| c.info.as_ref());
        crate::input_warnings::Handled::of(self.content.is_some(), plot_info, info)
    }

    /// This model and a blend's partner bags.
    pub(crate) fn parts(&self) -> impl Iterator<Item = &Predictor> {
        std::iter::once(self).chain(&self.partners)
    }

    /// Whether this model (or, for a blend, any of its bags) reads the input `m`.
    pub fn reads(&self, m: cinefuse_model::config::Modality) -> bool {
        self.parts().any(|p| p.manifest.modalities.contains(&m))
    }

    /// The extra columns of `movies` that this model does not read (sorted, each once). They
    /// are ignored: a dataset imported with `--extra-all` carries columns no model uses.
    pub fn unused_extras<'a>(&self, movies: impl IntoIterator<Item = &'a Movie>) -> Vec<String> {
        let known: Vec<&str> = std::iter::once(self)
            .chain(&self.partners)
            .flat_map(|p| p.preprocessor.state.extras.iter().map(|f| f.name()))
            .collect();
        let mut unused: Vec<String> = movies
            .into_iter()
            .flat_map(|m| m.extra.keys())
            .filter(|k| !known.contains(&k.as_str()))
            .cloned()
            .collect();
        unused.sort();
        unused.dedup();
        unused
    }

    fn sample(&self, movie: &Movie) -> Result<cinefuse_data::prepared::EncodedSample> {
        self.preprocessor
            .encode(movie, Split::Test)
            .with_context(|| movie.id.clone())
    }

    /// Encodes a movie with poster image bytes (an upload) instead of a poster path.
    pub fn item_with_poster_bytes(
        &self,
        movie: &Movie,
        poster: Option<&[u8]>,
    ) -> Result<ModelInput> {
        self.encode_each(movie, |p: &Predictor| {
            Ok(poster
                .map(|b| p.preprocessor.poster_from_bytes(b))
                .transpose()?)
        })
    }

    /// Encodes a movie; `poster` overrides the movie's own poster path (resolved against `base`).
    pub fn item(&self, movie: &Movie, poster: Option<&Path>, base: &Path) -> Result<ModelInput> {
        let (path, inside) = poster_file(movie, poster, base)?;
        self.encode_each(movie, |p: &Predictor| match &path {
            Some(path) => Ok(Some(p.preprocessor.poster_from_file(path, inside)?)),
            None => Ok(None),
        })
    }

    /// `item`'s checks of the movie's poster file, without reading it: a long list is
    /// checked whole before any of it is predicted.
    pub fn check_poster(&self, movie: &Movie, poster: Option<&Path>, base: &Path) -> Result<()> {
        if let (Some(path), inside) = poster_file(movie, poster, base)? {
            self.preprocessor.check_poster_file(&path, inside)?;
        }
        Ok(())
    }

    /// `movie` encoded by this model and each partner, with the poster `pixels` reads and fits:
    /// once per distinct fitting (`poster_key`), and not for a partner without the poster
    /// modality (the lead always reads it, so a bad poster is refused whatever the parts).
    fn encode_each(
        &self,
        movie: &Movie,
        pixels: impl Fn(&Predictor) -> Result<Option<Vec<u8>>>,
    ) -> Result<ModelInput> {
        let mut fitted: Vec<(PosterKey, Option<Vec<u8>>)> = Vec::new();
        let mut encode = |p: &Predictor, lead: bool| -> Result<MovieItem> {
            let sample = p.sample(movie)?;
            let poster = if lead || p.model.modalities().contains(&Modality::Poster) {
                let key = p.preprocessor.poster_key();
                match fitted.iter().find(|(k, _)| *k == key) {
                    Some((_, done)) => done.clone(),
                    None => {
                        let done = pixels(p)?;
                        fitted.push((key, done.clone()));
                        done
                    }
                }
            } else {
                None
            };
            Ok(MovieItem::from_sample(&sample, poster).with_credits(sample.credits))
        };
        let item = encode(self, true)?;
        let partners = self
            .partners
            .iter()
            .map(|p| encode(p, false))
            .collect::<Result<_>>()?;
        Ok(ModelInput { item, partners })
    }

    fn run(&self, items: &[MovieItem], drop: &[Modality]) -> Predictions {
        self.run_with(&self.model, items, drop)
    }

    fn run_with(
        &self,
        model: &CinefuseModel,
        items: &[MovieItem],
        drop: &[Modality],
    ) -> Predictions {
        predict_items(
            model,
            items.to_vec(),
            &self.batcher,
            &self.device,
            (self.manifest.rating_scale, &self.manifest.genre_logit_shift),
            drop,
        )
    }

    /// Every member's predictions (one for a single model; a repeated bag's grouped into one
    /// per fold, `bag_sets.rs`).
    fn run_members(&self, items: &[MovieItem]) -> Vec<Predictions> {
        self.run_first_and_members(items).1
    }

    /// The first member's own predictions (`self.model`'s, which the leave-one-out passes
    /// run), and `run_members`'s: in a repeated bag the first grouped member is a mean over
    /// the sets, which a pass of the first model alone would not match.
    fn run_first_and_members(&self, items: &[MovieItem]) -> (Predictions, Vec<Predictions>) {
        let each: Vec<Predictions> = std::iter::once(&self.model)
            .chain(&self.others)
            .map(|m| self.run_with(m, items, &[]))
            .collect();
        let first = each[0].clone();
        let grouped = group_sets(each, self.layout).expect("the manifest check divides the sets");
        (first, grouped)
    }

    /// The bag's members as its users see them: one per fold (one for a single model).
    pub fn member_count(&self) -> usize {
        (self.others.len() + 1) / self.layout.sets.max(1)
    }

    /// The interval of movie `i`: a bag's CV+ by vote count, or the split-conformal
    /// half-width around the prediction.
    fn interval_of(&self, each: &[Predictions], i: usize, rating: f32) -> Option<[f32; 2]> {
        if let Some(cal) = &self.manifest.interval {
            let member_ratings: Vec<f32> = each.iter().map(|p| p.rating[i]).collect();
            let without = each[0].given_without_of(i);
            return cal.interval_given(&member_ratings, each[0].votes[i], without);
        }
        let hw = self.manifest.interval_half_width?;
        Some([(rating - hw).max(0.0), (rating + hw).min(10.0)])
    }

    /// Items with their pretrained backbones' features computed once, in batches: they do not
    /// change when a modality is left out, so the full pass and every leave-one-out pass reuse
    /// them (four backbone passes become one).
    fn with_backbone_features(&self, mut items: Vec<MovieItem>) -> Vec<MovieItem> {
        use burn::data::dataloader::batcher::Batcher;
        // Only frozen backbones: every member of a bag shares their weights, so one pass
        // serves all. A fine-tuned backbone differs from member to member and runs inside each.
        let model = &self.config.model;
        let poster = self
            .model
            .pretrained_poster()
            .filter(|_| model.poster.freeze);
        let text = self.model.pretrained_text().filter(|_| model.text.freeze);
        let rows = |t: Tensor<2>| -> Vec<Vec<f32>> {
            let [n, d] = t.dims();
            let v = t
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default();
            (0..n).map(|i| v[i * d..(i + 1) * d].to_vec()).collect()
        };
        for chunk in items.chunks_mut(crate::backbone_features::BACKBONE_BATCH) {
            let needs_poster = poster.is_some() && chunk.iter().any(|i| i.poster.is_some());
            let needs_plot = text.is_some() && chunk.iter().any(needs_plot_features);
            if !(needs_poster || needs_plot) {
                continue;
            }
            let batch = self.batcher.batch(chunk.to_vec(), &self.device);
            if let (Some(enc), true) = (poster, needs_poster) {
                for (item, f) in chunk.iter_mut().zip(rows(enc.backbone_features(&batch))) {
                    if item.poster.take().is_some() {
                        item.poster_features = Some(f);
                    }
                }
            }
            if let (Some(enc), true) = (text, needs_plot) {
                for (item, f) in chunk.iter_mut().zip(rows(enc.backbone_features(&batch))) {
                    if needs_plot_features(item) {
                        item.plot_features = Some(f);
                    }
                }
            }
        }
        self.with_frozen_states(items)
    }

    /// Items with the states entering the shared fine-tuned layers (`shared_text_layer`), or
    /// as they were: then every member runs its whole plot backbone, as without sharing.
    fn with_frozen_states(&self, mut items: Vec<MovieItem>) -> Vec<MovieItem> {
        let (Some(layer), Some(enc)) = (self.shared_text_layer, self.model.pretrained_text())
        else {
            return items;
        };
        let attached = attach_frozen_states(
            &enc.backbone,
            layer,
            &mut items,
            &self.batcher,
            &self.device,
        );
        if attached.is_err() {
            // A batch mixes no items with and without states.
            items.iter_mut().for_each(|i| i.plot_states = None);
        }
        items
    }

    /// The rating trees as a blend part (member k: the lead's member k with forest k's
    /// ratings, from the lead's fields) and their rating weight.
    fn tree_part(
        &self,
        lead: &[Predictions],
        inputs: &[ModelInput],
    ) -> Option<(Vec<Predictions>, f32)> {
        let (trees, t) = (self.trees.as_ref()?, self.manifest.rating_trees.as_ref()?);
        let rows: Vec<Vec<f64>> = inputs
            .iter()
            .map(|i| {
                tree_row(
                    &i.item.numeric,
                    &i.item.numeric_missing,
                    &i.item.categorical,
                )
            })
            .collect();
        // `load_trees` checked the forests, fields and genres against the first part.
        let ratings = (0..lead.len())
            .map(|k| trees.rate_checked(k, &rows, &lead[k]))
            .collect();
        Some((blend_part(lead, ratings), t.rating_weight))
    }

    /// Each vote as a blend part (member k: the lead's member k with vote k's genre
    /// probabilities, from the lead's inputs `items`) with its genre weight.
    fn vote_parts<'a>(
        &'a self,
        lead: &'a [Predictions],
        items: &'a [MovieItem],
    ) -> impl Iterator<Item = (Vec<Predictions>, f32)> + 'a {
        self.votes.iter().map(move |(vote, weight)| {
            let part = lead
                .iter()
                .zip(vote.vote_items(items, &self.device))
                .map(|(p, probs)| Predictions {
                    probs,
                    genre_shift: Vec::new(),
                    ..p.clone()
                })
                .collect();
            (part, *weight)
        })
    }

    /// A blend's members: member k of every part, combined as the manifest says. `items` are
    /// the lead's inputs with their backbone features.
    fn blend_members(
        &self,
        lead: Vec<Predictions>,
        inputs: &[ModelInput],
        items: &[MovieItem],
    ) -> Vec<Predictions> {
        let mut per_part = vec![lead];
        let lead_inputs: Vec<&MovieItem> = inputs.iter().map(|i| &i.item).collect();
        for (k, partner) in self.partners.iter().enumerate() {
            let mut own: Vec<MovieItem> = inputs.iter().map(|i| i.partners[k].clone()).collect();
            share_frozen_features(
                (&self.frozen_keys, &lead_inputs, items),
                (&partner.frozen_keys, &mut own),
            );
            per_part.push(partner.run_members(&partner.with_backbone_features(own)));
        }
        let parts = &self.manifest.parts;
        let mut genre_w: Vec<f32> = parts.iter().map(|p| p.genre_weight).collect();
        let mut rating_w: Vec<f32> = parts.iter().map(|p| p.rating_weight).collect();
        let votes: Vec<_> = self.vote_parts(&per_part[0], items).collect();
        for (part, weight) in votes {
            per_part.push(part);
            genre_w.push(weight);
            rating_w.push(0.0);
        }
        if let Some((part, weight)) = self.tree_part(&per_part[0], inputs) {
            per_part.push(part);
            genre_w.push(0.0);
            rating_w.push(weight);
        }
        let manifest = &self.manifest;
        let has_plot: Vec<bool> = items
            .iter()
            .map(|i| i.plot_present && !i.tokens.is_empty())
            .collect();
        let bare: Vec<bool> = items
            .iter()
            .zip(&has_plot)
            .map(|(i, p)| *p && lacks_metadata(&i.categorical))
            .collect();
        let stacking = manifest.genre_stacking.as_ref();
        let mut members: Vec<Predictions> = (0..per_part[0].len())
            .map(|m| {
                let each: Vec<Predictions> = per_part.iter().map(|p| p[m].clone()).collect();
                let mut out = combine(&each, (&genre_w, &rating_w), stacking);
                if let Some(plotless) = &manifest.genre_stacking_without_plot {
                    restack_without_plot(&mut out, &each, plotless, &has_plot);
                }
                if let Some(s) = &manifest.genre_stacking_without_metadata {
                    restack_movies(&mut out, &each, s, |i| bare[i]);
                }
                out
            })
            .collect();
        if let Some((trees, v)) = self
            .voteless
            .as_ref()
            .zip(manifest.rating_without_votes.as_ref())
        {
            let cal = manifest.interval.as_ref();
            let models = trees.models(&v.info, self.content.as_ref(), cal);
            let bags = &per_part[..1 + self.partners.len()];
            models.apply(
                &mut members,
                bags,
                &voteless_rows(items, self.content.is_some()),
            );
        }
        if let Some(c) = &self.content {
            c.apply(&mut members, &content_rows(items, &bare));
        }
        if let Some(cal) = &manifest.interval {
            cal.key_members(&mut members, |i| &items[i].numeric_missing);
        }
        members
    }

    pub fn predict(&self, inputs: &[ModelInput]) -> Vec<MoviePrediction> {
        inputs
            .chunks(PREDICT_CHUNK)
            .flat_map(|chunk| self.predict_chunk(chunk))
            .collect()
    }

    /// Each member's predictions of `inputs` (at most `PREDICT_CHUNK` of them), their
    /// ratings and interval keys as the interval reads them: what `recalibrate.rs` fits an
    /// interval on.
    pub fn member_predictions(&self, inputs: &[ModelInput]) -> Vec<Predictions> {
        let items: Vec<MovieItem> = inputs.iter().map(|i| i.item.clone()).collect();
        let items = &self.with_backbone_features(items);
        self.members_of(inputs, items).1
    }

    /// The first member's own predictions of `items` and every member's, blended.
    fn members_of(
        &self,
        inputs: &[ModelInput],
        items: &[MovieItem],
    ) -> (Predictions, Vec<Predictions>) {
        let (lead, own) = self.run_first_and_members(items);
        // A blend of one bag (with trees or a vote) has no partners but is still a blend.
        if self.manifest.parts.is_empty() {
            (lead, own)
        } else {
            (lead, self.blend_members(own, inputs, items))
        }
    }

    fn predict_chunk(&self, inputs: &[ModelInput]) -> Vec<MoviePrediction> {
        let items: Vec<MovieItem> = inputs.iter().map(|i| i.item.clone()).collect();
        let items = &self.with_backbone_features(items);
        // Leave-one-out shares are measured against the first member alone.
        let (lead, each) = self.members_of(inputs, items);
        let full = Predictions::mean(&each);
        let modalities = self.model.modalities().to_vec();
        let g = full.n_genres;
        let m = modalities.len();
        // Leave-one-out only when the fusion has no gates (and there is something to leave out);
        // for a bag, on its first member.
        let loo: Vec<Predictions> = if full.weights.is_none() && m > 1 {
            modalities
                .iter()
                .map(|md| self.run(items, &[*md]))
                .collect()
        } else {
            Vec::new()
        };
        (0..full.ids.len())
            .map(|i| {
                let rating = full.rating[i];
                let (shares, method) = contribution_shares(&full, (&loo, &lead), i, m);
                MoviePrediction {
                    id: full.ids[i].clone(),
                    genres: self.genre_scores(&full.probs[i * g..(i + 1) * g]),
                    rating,
                    rating_interval: self.interval_of(&each, i, rating),
                    contributions: modalities
                        .iter()
                        .zip(shares)
                        .map(|(md, s)| Contribution {
                            modality: *md,
                            share: s,
                        })
                        .collect(),
                    contribution_method: method.into(),
                }
            })
            .collect()
    }

    /// One movie's genres, most probable first, each marked by its own threshold.
    fn genre_scores(&self, probs: &[f32]) -> Vec<GenreScore> {
        let mut genres: Vec<GenreScore> = probs
            .iter()
            .enumerate()
            .map(|(k, p)| GenreScore {
                genre: self.manifest.genres[k].clone(),
                probability: *p,
                predicted: *p >= self.manifest.thresholds[k],
            })
            .collect();
        genres.sort_by(|a, b| b.probability.total_cmp(&a.probability));
        genres
    }
}

/// The poster file of `movie` and the folder it must lie in: an explicit `poster` may be
/// anywhere; a movie's own poster stays inside `base`.
fn poster_file<'a>(
    movie: &Movie,
    poster: Option<&Path>,
    base: &'a Path,
) -> Result<(Option<PathBuf>, Option<&'a Path>)> {
    Ok(match poster {
        Some(p) => (Some(p.to_path_buf()), None),
        None => (
            cinefuse_data::movie::poster_path(base, movie).transpose()?,
            Some(base),
        ),
    })
}

/// The row of each item a reduced rating may rate (without a vote count, or without any
/// extra), with its plot features when it has a plot and `with_plot` (the blend has a content
/// rating to mix in).
fn voteless_rows(items: &[MovieItem], with_plot: bool) -> Vec<Option<VotelessRow<'_>>> {
    items
        .iter()
        .map(|i| {
            let has_plot = i.plot_present && !i.tokens.is_empty();
            may_rate_reduced(&i.numeric_missing, i.extras_absent).then(|| VotelessRow {
                numeric_missing: &i.numeric_missing,
                extras_absent: i.extras_absent,
                trees: tree_row(&i.numeric, &i.numeric_missing, &i.categorical),
                plot: i.plot_features.as_deref().filter(|_| has_plot && with_plot),
            })
        })
        .collect()
}

/// The plot features of each item the content rating rates: one with a plot and no metadata
/// (`bare`).
fn content_rows<'a>(items: &'a [MovieItem], bare: &[bool]) -> Vec<Option<&'a [f32]>> {
    items
        .iter()
        .zip(bare)
        .map(|(i, rated)| i.plot_features.as_deref().filter(|_| *rated))
        .collect()
}

/// The item has a plot whose frozen backbone features are still to be computed.
fn needs_plot_features(item: &MovieItem) -> bool {
    item.plot_present && !item.tokens.is_empty() && item.plot_features.is_none()
}

/// Movie `i`'s share of each modality in its prediction, and how it was measured: the fusion's
/// gates when it has them, else how far the prediction moves from `lead`'s when each modality
/// is left out (`loo`, one prediction per modality dropped). `m`: the model's modalities.
fn contribution_shares(
    full: &Predictions,
    (loo, lead): (&[Predictions], &Predictions),
    i: usize,
    m: usize,
) -> (Vec<f32>, &'static str) {
    if let Some(w) = &full.weights {
        return (w[i * m..(i + 1) * m].to_vec(), "gate");
    }
    if m == 1 {
        return (vec![1.0], "single modality");
    }
    let g = full.n_genres;
    let deltas: Vec<f32> = loo
        .iter()
        .map(|p| {
            let dp: f32 = (0..g)
                .map(|k| (p.probs[i * g + k] - lead.probs[i * g + k]).abs())
                .sum::<f32>()
                / g.max(1) as f32;
            dp + (p.rating[i] - lead.rating[i]).abs() / 10.0
        })
        .collect();
    let total: f32 = deltas.iter().sum();
    let shares = if total > 0.0 {
        deltas.iter().map(|d| d / total).collect()
    } else {
        vec![1.0 / m as f32; m]
    };
    (shares, "leave-one-out")
}

/// Whether the manifest, the config and the preprocessing of one exported model describe the
/// same model: a file copied in from another export must be refused by name, not feed a model
/// inputs of the wrong size.
fn check_agreement(
    dir: &Path,
    manifest: &Manifest,
    config: &TrainConfig,
    pre: &Preprocessor,
) -> Result<()> {
    if manifest.modalities != config.model.modalities {
        let names = |m: &[Modality]| m.iter().map(|m| m.name()).collect::<Vec<_>>();
        bail!(
            "{}: modalities {:?} but {CONFIG_FILE} has model.modalities = {:?}",
            dir.join(MANIFEST_FILE).display(),
            names(&manifest.modalities),
            names(&config.model.modalities)
        );
    }
    if let Some((field, saved, data)) = manifest.shapes.first_difference(&ModelShapes::of(pre)) {
        bail!(
            "{}: shapes.{field} = {saved} but {} gives {data}; the files are from different \
             models",
            dir.join(MANIFEST_FILE).display(),
            cinefuse_data::prepared::PREPROCESS_FILE
        );
    }
    Ok(())
}

/// The manifest of the exported model in `dir`, checked.
fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let manifest: Manifest = read_json(&path)
        .with_context(|| format!("{}: not an exported cinefuse model", dir.display()))?;
    manifest
        .check()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(manifest)
}

/// Checks a movie to predict for exactly as `prepare` checks a dataset record.
pub fn check_input(movie: &Movie, origin: &str) -> Result<()> {
    check_movie(movie).map_err(|(f, m)| anyhow!("{origin}: field `{f}`: {m}"))
}

/// Parses a movie given as JSON text (the dataset format; `id` may be omitted). A field the
/// format does not have is an error: a misspelt `ratng` must not be silently ignored.
pub fn movie_from_json(text: &str, origin: &str) -> Result<Movie> {
    let mut value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| anyhow!("{origin}: malformed JSON: {e}"))?;
    if let Some(obj) = value.as_object_mut() {
        if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            bail!(
                "{origin}: unknown field `{unknown}` (the fields are {})",
                FIELDS.join(", ")
            );
        }
        obj.entry("id")
            .or_insert_with(|| serde_json::Value::String("input".into()));
    }
    let movie = movie_from_value(&value).map_err(|(field, msg)| match field {
        Some(f) => anyhow!("{origin}: field `{f}`: {msg}"),
        None => anyhow!("{origin}: {msg}"),
    })?;
    check_input(&movie, origin)?;
    Ok(movie)
}

/// The ids given to more than one of `movies`, each with how often, in order of first
/// appearance: `predict` predicts every one and says so, since a reader matching its output by
/// id would take one for the other.
pub fn repeated_ids<'a>(movies: impl IntoIterator<Item = &'a Movie>) -> Vec<(String, usize)> {
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut order = Vec::new();
    for m in movies {
        let n = counts.entry(m.id.as_str()).or_insert(0);
        *n += 1;
        if *n == 2 {
            order.push(m.id.as_str());
        }
    }
    order
        .into_iter()
        .map(|id| (id.to_string(), counts[id]))
        .collect()
}

/// Reads a JSONL file of movies for batch prediction (line numbers in errors).
pub fn movies_from_jsonl(path: &Path) -> Result<Vec<Movie>> {
    Ok(movies_from_jsonl_lines(path)?
        .into_iter()
        .map(|(_, m)| m)
        .collect())
}

/// `movies_from_jsonl`, each movie with its line number (from 1), for errors found later, such
/// as in its poster file.
pub fn movies_from_jsonl_lines(path: &Path) -> Result<Vec<(usize, Movie)>> {
    let text = cinefuse_data::user_file::read_text_capped(
        path,
        cinefuse_data::user_file::MAX_JSONL_BYTES,
    )?;
    movies_from_jsonl_text(&text, path)
}

/// `movies_from_jsonl_lines` of `text`, already read from `path` (named in errors).
pub fn movies_from_jsonl_text(text: &str, path: &Path) -> Result<Vec<(usize, Movie)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let origin = format!("{}:{}", path.display(), i + 1);
        out.push((i + 1, movie_from_json(line, &origin)?));
    }
    if out.is_empty() {
        bail!("{}: no movies", path.display());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_ids_are_named_once_each_with_their_count() {
        let movie = |id: &str| Movie {
            id: id.into(),
            ..Movie::default()
        };
        let movies: Vec<Movie> = ["a", "b", "a", "c", "b", "a"].map(movie).to_vec();
        assert_eq!(
            repeated_ids(&movies),
            [("a".to_string(), 3), ("b".to_string(), 2)]
        );
        assert!(repeated_ids(&movies[..2]).is_empty());
    }
}

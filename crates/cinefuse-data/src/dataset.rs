//! A Burn `Dataset` over prepared samples; poster pixels come straight from the memory-mapped cache.

use std::sync::Arc;

use burn::data::dataset::Dataset;

use crate::feature_cache::CachedFeatures;
use crate::poster_cache::PosterCache;
use crate::poster_states::PosterMap;
use crate::prepared::EncodedSample;

/// One model-ready movie.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MovieItem {
    pub id: String,
    /// CHW `u8` poster, or `None` when the movie has no (usable) poster.
    pub poster: Option<Vec<u8>>,
    pub tokens: Vec<u32>,
    pub plot_present: bool,
    pub numeric: Vec<f32>,
    pub numeric_missing: Vec<f32>,
    pub categorical: Vec<u32>,
    pub genres: Vec<f32>,
    pub genres_present: bool,
    pub rating: Option<f32>,
    /// Cached backbone features of a frozen pretrained poster / plot encoder, when in use.
    pub poster_features: Option<Vec<f32>>,
    pub plot_features: Option<Vec<f32>>,
    /// A fine-tuned plot backbone's frozen layers' output for this movie's token rows, when
    /// the run caches them.
    pub plot_states: Option<TokenBlock>,
    /// A fine-tuned poster backbone's frozen blocks' output for this movie's poster, when the
    /// run caches them (then `poster` is left empty).
    pub poster_states: Option<PosterMap>,
    /// The movie's credits ("role:name"), for a credits vote: only a movie encoded for
    /// prediction carries them (`with_credits`); training and evaluation items leave them on
    /// the sample, so the batcher never copies them.
    pub credits: Vec<String>,
    /// The movie gives none of the declared extras (`EncodedSample::extras_absent`).
    pub extras_absent: bool,
}

impl MovieItem {
    pub fn from_sample(sample: &EncodedSample, poster: Option<Vec<u8>>) -> Self {
        MovieItem {
            id: sample.id.clone(),
            poster,
            tokens: sample.tokens.clone(),
            plot_present: sample.plot_present,
            numeric: sample.numeric.clone(),
            numeric_missing: sample.numeric_missing.clone(),
            categorical: sample.categorical.clone(),
            genres: sample.genres.clone(),
            genres_present: sample.genres_present,
            rating: sample.rating,
            poster_features: None,
            plot_features: None,
            plot_states: None,
            poster_states: None,
            credits: Vec::new(),
            extras_absent: sample.extras_absent,
        }
    }

    pub fn with_credits(mut self, credits: Vec<String>) -> Self {
        self.credits = credits;
        self
    }
}

/// One movie's token states entering layer `from_layer`: `values.len() / dim` token rows.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBlock {
    pub from_layer: usize,
    pub dim: usize,
    pub values: Vec<f32>,
}

/// The samples of one split (a list of indices into the shared sample table).
#[derive(Clone)]
pub struct MovieDataset {
    samples: Arc<Vec<EncodedSample>>,
    posters: Arc<PosterCache>,
    indices: Vec<usize>,
    features: Option<Arc<CachedFeatures>>,
}

impl MovieDataset {
    pub fn new(
        samples: Arc<Vec<EncodedSample>>,
        posters: Arc<PosterCache>,
        indices: Vec<usize>,
    ) -> Self {
        Self {
            samples,
            posters,
            indices,
            features: None,
        }
    }

    /// Items of this dataset carry the cached features (rows indexed like the sample table).
    pub fn with_features(mut self, features: Option<Arc<CachedFeatures>>) -> Self {
        self.features = features;
        self
    }

    /// A view of this dataset in another order (or a subset): `order` indexes into `self`.
    pub fn reordered(&self, order: &[usize]) -> Self {
        Self {
            samples: self.samples.clone(),
            posters: self.posters.clone(),
            indices: order.iter().map(|i| self.indices[*i]).collect(),
            features: self.features.clone(),
        }
    }

    pub fn sample(&self, index: usize) -> &EncodedSample {
        &self.samples[self.indices[index]]
    }

    pub fn item(&self, index: usize) -> MovieItem {
        let s = self.sample(index);
        let row = self.indices[index];
        let poster_table = self.features.as_deref().and_then(|f| f.poster.as_deref());
        let plot_table = self.features.as_deref().and_then(|f| f.plot.as_deref());
        let states = self
            .features
            .as_deref()
            .and_then(|f| f.plot_states.as_deref());
        let poster_states = self
            .features
            .as_deref()
            .and_then(|f| f.poster_states.as_deref());
        // With cached poster features (or maps) the pixels are neither needed nor copied.
        let poster = s
            .poster_slot
            .filter(|_| poster_table.is_none() && poster_states.is_none())
            .map(|slot| self.posters.get(slot as usize).to_vec());
        let mut item = MovieItem::from_sample(s, poster);
        if s.poster_slot.is_some() {
            item.poster_features = poster_table.map(|t| t.row(row).to_vec());
            item.poster_states = poster_states.map(|t| PosterMap {
                from_block: t.from_block,
                shape: t.shape,
                values: t.map(row).to_vec(),
            });
        }
        if item.plot_present {
            item.plot_features = plot_table.map(|t| t.row(row).to_vec());
        }
        // Every movie, with a plot or not: the backbone reads the same rows for both.
        item.plot_states = states.map(|t| TokenBlock {
            from_layer: t.from_layer,
            dim: t.dim,
            values: t.block(row).to_vec(),
        });
        item
    }
}

impl Dataset<MovieItem> for MovieDataset {
    fn get(&self, index: usize) -> Result<MovieItem, burn::data::dataset::DatasetError> {
        Ok(self.item(index))
    }

    fn len(&self) -> usize {
        self.indices.len()
    }
}

//! The fitted preprocessing state and a prepared dataset directory.
//!
//! `prepared/NAME/` holds `preprocess.json` (scalers, vocabularies, genres, rating stats),
//! `tokenizer.json`, `samples.jsonl` (every movie encoded, with its split), `posters.bin`
//! (the poster cache) and `summary.json`. Export and predict reuse exactly these transforms.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::DataError;
use crate::dataset::MovieDataset;
use crate::extra::{EncodedExtras, FittedFeature};
use crate::feature_cache::CachedFeatures;
use crate::movie::Movie;
use crate::poster_cache::{PosterCache, fit_poster_with, to_chw};
use crate::prepare::PrepareConfig;
use crate::scalers::{
    CATEGORICAL_FEATURES, NUMERIC_FEATURES, NumericScaler, raw_categorical, raw_numeric,
};
use crate::split::Split;
use crate::tokenizer::{encode_plot, load_tokenizer};
use crate::validate::{PosterLimits, decode_poster, load_poster};
use crate::vocab::{GenreVocab, Vocab};

pub const PREPROCESS_FILE: &str = "preprocess.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const SAMPLES_FILE: &str = "samples.jsonl";
pub const POSTERS_FILE: &str = "posters.bin";
pub const SUMMARY_FILE: &str = "summary.json";
pub const BAD_RECORDS_FILE: &str = "bad_records.json";
pub const FORMAT_VERSION: u32 = 1;
/// How `encode` reads a movie's absent fields: 1 reads those nearly every training movie had
/// as unknown (`absent_as_unknown`), 2 also marks a movie that gives none of the declared
/// extras (`EncodedSample::extras_absent`). A state fitted before records 0, and still loads
/// (exports keep predicting as they did); `train` prepares such a folder again.
pub const ENCODING_VERSION: u32 = 2;

/// Everything fitted on the training split.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreprocessState {
    pub format_version: u32,
    pub config: PrepareConfig,
    pub numeric: Vec<NumericScaler>,
    pub categorical: Vec<Vocab>,
    pub genres: GenreVocab,
    pub rating_mean: f64,
    pub rating_std: f64,
    pub tokenizer_vocab_size: usize,
    /// SHA-256 of the source `movies.jsonl`.
    pub dataset_hash: String,
    pub source: String,
    /// The declared extra features, fitted; their inputs follow the built-in ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extras: Vec<FittedFeature>,
    /// Fields (nearly) every training movie had, read as unknown where a movie lacks them
    /// (`absent_fields.rs`); empty in a state fitted before the rule, which reads every absence
    /// as missing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent_as_unknown: Vec<String>,
    /// The `ENCODING_VERSION` the samples were encoded with; 0 in a state from before it.
    #[serde(default)]
    pub encoding: u32,
}

/// One movie after preprocessing (poster pixels live in the cache, by slot).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EncodedSample {
    pub id: String,
    pub split: Split,
    pub tokens: Vec<u32>,
    pub plot_present: bool,
    pub numeric: Vec<f32>,
    pub numeric_missing: Vec<f32>,
    pub categorical: Vec<u32>,
    pub genres: Vec<f32>,
    pub genres_present: bool,
    pub rating: Option<f32>,
    pub poster_slot: Option<u32>,
    /// The movie's credits, "role:name" (`credits_of`): what a credits vote compares.
    /// Prepared folders from before the field read as none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credits: Vec<String>,
    /// The movie gives none of the declared extra features (`extras_absent`): a table without
    /// those columns, whose extras are unknown rather than missing. Prepared folders from
    /// before the field read as given.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub extras_absent: bool,
}

/// Whether a movie's encoded extras give none of them: every numeric, set and text column
/// flagged missing and every categorical extra missing (before `absent_as_unknown` reads some
/// as unknown). False when the extras leave no column at all.
fn extras_absent(extras: &EncodedExtras) -> bool {
    let columns = extras.numeric_missing.len() + extras.categorical.len();
    columns > 0
        && extras.numeric_missing.iter().all(|m| *m > 0.5)
        && extras
            .categorical
            .iter()
            .all(|c| *c == crate::vocab::MISSING_ID)
}

/// The fitted transforms plus the tokenizer: turns any movie into model inputs.
#[derive(Clone)]
pub struct Preprocessor {
    pub state: PreprocessState,
    pub tokenizer: Tokenizer,
}

/// How a preprocessor reads and fits posters (`Preprocessor::poster_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PosterKey {
    max_bytes: u64,
    max_pixels: u64,
    width: u32,
    height: u32,
    fit: crate::poster_cache::PosterFit,
}

impl Preprocessor {
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        let state: PreprocessState = crate::atomic::read_json(&dir.join(PREPROCESS_FILE))?;
        if state.format_version != FORMAT_VERSION {
            return Err(DataError::file(
                dir.join(PREPROCESS_FILE),
                format!(
                    "format version {} is not supported (expected {FORMAT_VERSION}); run prepare again",
                    state.format_version
                ),
            ));
        }
        if !(state.rating_std.is_finite()
            && state.rating_std > 0.0
            && state.rating_mean.is_finite())
        {
            return Err(DataError::file(
                dir.join(PREPROCESS_FILE),
                format!(
                    "rating_mean = {}, rating_std = {}: expected finite values, the std > 0 \
                     (a hand-edited file?)",
                    state.rating_mean, state.rating_std
                ),
            ));
        }
        // The sizes decide allocations (image buffers, token rows) before any input is read.
        state.config.validate().map_err(|e| {
            DataError::file(
                dir.join(PREPROCESS_FILE),
                format!("config: {e} (a hand-edited file?)"),
            )
        })?;
        let tokenizer = load_tokenizer(&dir.join(TOKENIZER_FILE))?;
        Ok(Self { state, tokenizer })
    }

    pub fn save(&self, dir: &Path) -> Result<(), DataError> {
        crate::atomic::write_json_atomic(&dir.join(PREPROCESS_FILE), &self.state)?;
        crate::tokenizer::save_tokenizer(&self.tokenizer, &dir.join(TOKENIZER_FILE))
    }

    pub fn n_numeric(&self) -> usize {
        self.state.numeric.len()
            + self
                .state
                .extras
                .iter()
                .map(FittedFeature::numeric_width)
                .sum::<usize>()
    }

    /// Vocabulary sizes of the built-in categorical fields, then of declared categorical extras.
    pub fn categorical_sizes(&self) -> Vec<usize> {
        let extras = self.state.extras.iter().filter_map(|f| match f {
            FittedFeature::Categorical { vocab, .. } => Some(vocab.size()),
            _ => None,
        });
        self.state
            .categorical
            .iter()
            .map(Vocab::size)
            .chain(extras)
            .collect()
    }

    /// Embedding sizes asked for by declared categorical extras (0: the model's default), in
    /// the order of `categorical_sizes`.
    pub fn categorical_dims(&self) -> Vec<usize> {
        let extras = self.state.extras.iter().filter_map(|f| match f {
            FittedFeature::Categorical { dim, .. } => Some(dim.unwrap_or(0)),
            _ => None,
        });
        self.state
            .categorical
            .iter()
            .map(|_| 0)
            .chain(extras)
            .collect()
    }

    /// The batcher for movies encoded by this preprocessor (its poster size and token limit).
    pub fn batcher(&self) -> crate::MovieBatcher {
        let c = &self.state.config;
        crate::MovieBatcher::new(
            c.image_height as usize,
            c.image_width as usize,
            c.max_tokens,
        )
    }

    pub fn genre_names(&self) -> &[String] {
        &self.state.genres.genres
    }

    /// Whether `movie` gives none of the declared extras (`EncodedSample::extras_absent`); a
    /// value of the wrong kind counts as given.
    pub fn extras_absent(&self, movie: &Movie) -> bool {
        let mut extras = EncodedExtras::default();
        let encoded = self
            .state
            .extras
            .iter()
            .all(|f| f.encode(movie, &mut extras).is_ok());
        encoded && extras_absent(&extras)
    }

    /// Encodes the non-image parts of a movie. `poster_slot` is filled by the caller.
    pub fn encode(&self, movie: &Movie, split: Split) -> Result<EncodedSample, DataError> {
        let mut numeric = Vec::with_capacity(NUMERIC_FEATURES.len());
        let mut numeric_missing = Vec::with_capacity(NUMERIC_FEATURES.len());
        for scaler in &self.state.numeric {
            let (v, m) = scaler.apply(raw_numeric(movie, &scaler.name));
            numeric.push(v);
            numeric_missing.push(m);
        }
        let mut categorical: Vec<u32> = self
            .state
            .categorical
            .iter()
            .map(|v| v.id(raw_categorical(movie, &v.name)))
            .collect();
        let mut extras = EncodedExtras::default();
        for f in &self.state.extras {
            f.encode(movie, &mut extras).map_err(|(field, reason)| {
                DataError::Invalid(format!("field `{field}`: {reason}"))
            })?;
        }
        let extras_absent = extras_absent(&extras);
        numeric.extend(extras.numeric);
        numeric_missing.extend(extras.numeric_missing);
        categorical.extend(extras.categorical);
        crate::absent_fields::read_absent_as_unknown(
            &self.state.absent_as_unknown,
            (&self.state.categorical, &self.state.extras),
            self.state.numeric.len(),
            (&mut numeric_missing, &mut categorical),
        );
        let plot = movie.plot.as_deref().filter(|p| !p.trim().is_empty());
        let tokens = match plot {
            Some(p) => {
                let text = match movie.title.as_deref() {
                    Some(t) if self.state.config.title_in_text && !t.trim().is_empty() => {
                        format!("{}. {p}", t.trim())
                    }
                    _ => p.to_string(),
                };
                encode_plot(&self.tokenizer, &text, self.state.config.max_tokens)?
            }
            None => Vec::new(),
        };
        let genre_list = movie.genres.clone().unwrap_or_default();
        Ok(EncodedSample {
            id: movie.id.clone(),
            split,
            plot_present: !tokens.is_empty(),
            tokens,
            numeric,
            numeric_missing,
            categorical,
            genres: self.state.genres.multi_hot(&genre_list),
            genres_present: !genre_list.is_empty(),
            rating: movie.rating,
            poster_slot: None,
            credits: self.credits_of(movie)?,
            extras_absent,
        })
    }

    /// "director:…", "cast:…" and "NAME:…" for the items of each declared set feature NAME
    /// (the writers): lower-cased names, a role in parentheses dropped, each once.
    pub fn credits_of(&self, movie: &Movie) -> Result<Vec<String>, DataError> {
        let mut out = Vec::new();
        let lists = [("director", &movie.directors), ("cast", &movie.cast)];
        for (role, names) in lists {
            for n in names.iter().flatten() {
                out.push(format!("{role}:{}", n.trim().to_lowercase()));
            }
        }
        for f in &self.state.extras {
            if let crate::extra::FittedFeature::Set { name, .. } = f {
                let items = crate::extra::set_items(movie, name).map_err(|(field, reason)| {
                    DataError::Invalid(format!("field `{field}`: {reason}"))
                })?;
                out.extend(items.into_iter().map(|i| format!("{name}:{i}")));
            }
        }
        out.retain(|c| !c.ends_with(':'));
        let mut seen = std::collections::HashSet::new();
        out.retain(|c| seen.insert(c.clone()));
        Ok(out)
    }

    /// Decodes a poster file and fits it to the configured size, as CHW bytes. `inside`: the
    /// dataset folder the file must lie in, if any (`validate::load_poster`).
    pub fn poster_from_file(
        &self,
        path: &Path,
        inside: Option<&Path>,
    ) -> Result<Vec<u8>, DataError> {
        let img = load_poster(path, inside, self.poster_limits())
            .map_err(|m| DataError::file(path, m))?;
        Ok(self.fit(&img))
    }

    /// `poster_from_file`'s checks of the file without reading or decoding it: the same
    /// refusals (missing, not a regular file, outside `inside`, oversized), the same errors.
    pub fn check_poster_file(&self, path: &Path, inside: Option<&Path>) -> Result<(), DataError> {
        crate::validate::open_poster(path, inside, self.poster_limits())
            .map(drop)
            .map_err(|m| DataError::file(path, m))
    }

    /// Like `poster_from_file`, for image bytes that are not a file (an upload).
    pub fn poster_from_bytes(&self, bytes: &[u8]) -> Result<Vec<u8>, DataError> {
        let img = decode_poster(bytes, self.poster_limits())
            .map_err(|m| DataError::Invalid(format!("poster: {m}")))?;
        Ok(self.fit(&img))
    }

    fn poster_limits(&self) -> PosterLimits {
        self.state.config.poster_limits()
    }

    /// Everything that decides the bytes `poster_from_file` and `poster_from_bytes` return
    /// for an image: two preprocessors with equal keys fit a poster alike.
    pub fn poster_key(&self) -> PosterKey {
        let c = &self.state.config;
        let limits = self.poster_limits();
        PosterKey {
            max_bytes: limits.max_bytes,
            max_pixels: limits.max_pixels,
            width: c.image_width,
            height: c.image_height,
            fit: c.poster_fit,
        }
    }

    fn fit(&self, img: &image::DynamicImage) -> Vec<u8> {
        let c = &self.state.config;
        to_chw(&fit_poster_with(
            img,
            c.image_width,
            c.image_height,
            c.poster_fit,
        ))
    }
}

/// Fits the numeric scalers, vocabularies, genre vocabulary and rating statistics on `train`.
pub fn fit_state(
    train: &[&Movie],
    config: &PrepareConfig,
    dataset_hash: String,
    source: String,
    tokenizer_vocab_size: usize,
) -> PreprocessState {
    let numeric = NUMERIC_FEATURES
        .iter()
        .map(|(name, t)| {
            NumericScaler::fit(name, *t, train.iter().filter_map(|m| raw_numeric(m, name)))
        })
        .collect();
    let categorical: Vec<Vocab> = CATEGORICAL_FEATURES
        .iter()
        .map(|name| {
            Vocab::fit(
                name,
                train.iter().filter_map(|m| raw_categorical(m, name)),
                config.min_category_freq,
            )
        })
        .collect();
    let genres = GenreVocab::fit(
        train.iter().filter_map(|m| m.genres.as_deref()),
        config.min_genre_count,
    );
    let (rating_mean, rating_std) = rating_moments(train);
    let extras = crate::extra::fit_features(&config.features, train);
    let absent_as_unknown = crate::absent_fields::rarely_absent(train, &categorical, &extras);
    PreprocessState {
        format_version: FORMAT_VERSION,
        encoding: ENCODING_VERSION,
        config: config.clone(),
        numeric,
        categorical,
        genres,
        rating_mean,
        rating_std,
        tokenizer_vocab_size,
        dataset_hash,
        source,
        extras,
        absent_as_unknown,
    }
}

/// The mean and sample standard deviation of the training ratings: 5 and 1 where there are
/// too few to say, and never a deviation below 1e-3 (ratings are divided by it).
fn rating_moments(train: &[&Movie]) -> (f64, f64) {
    let ratings: Vec<f64> = train
        .iter()
        .filter_map(|m| m.rating.map(f64::from))
        .collect();
    let mean = if ratings.is_empty() {
        5.0
    } else {
        ratings.iter().sum::<f64>() / ratings.len() as f64
    };
    let std = if ratings.len() < 2 {
        1.0
    } else {
        let squares: f64 = ratings.iter().map(|r| (r - mean).powi(2)).sum();
        (squares / (ratings.len() - 1) as f64).sqrt().max(1e-3)
    };
    (mean, std)
}

/// An opened prepared-dataset directory.
pub struct Prepared {
    pub dir: PathBuf,
    pub preprocessor: Preprocessor,
    pub samples: Arc<Vec<EncodedSample>>,
    pub posters: Arc<PosterCache>,
    /// Cached features of frozen pretrained encoders, handed to every dataset made here.
    pub features: Option<Arc<CachedFeatures>>,
}

impl Prepared {
    /// Another handle on the same encoded movies (nothing copied), without cached features:
    /// for a model whose frozen encoders differ from the ones the features came from.
    pub fn without_features(&self) -> Self {
        Self {
            dir: self.dir.clone(),
            preprocessor: self.preprocessor.clone(),
            samples: self.samples.clone(),
            posters: self.posters.clone(),
            features: None,
        }
    }

    /// Another handle on the same prepared data (posters and cached features shared) whose
    /// movies are `edit`'s copies of these: a movie as it would be encoded with some of its
    /// inputs taken away, say.
    pub fn with_samples_edited(&self, edit: impl FnMut(EncodedSample) -> EncodedSample) -> Self {
        Self {
            dir: self.dir.clone(),
            preprocessor: self.preprocessor.clone(),
            samples: Arc::new(self.samples.iter().cloned().map(edit).collect()),
            posters: self.posters.clone(),
            features: self.features.clone(),
        }
    }

    pub fn open(dir: &Path) -> Result<Self, DataError> {
        if !dir.join(PREPROCESS_FILE).exists() {
            return Err(DataError::file(
                dir,
                "not a prepared dataset (no preprocess.json); run `cinefuse prepare` first",
            ));
        }
        let preprocessor = Preprocessor::load(dir)?;
        let samples = read_samples(&dir.join(SAMPLES_FILE))?;
        let posters = PosterCache::open(&dir.join(POSTERS_FILE))?;
        for s in &samples {
            if let Some(slot) = s.poster_slot
                && slot as usize >= posters.count
            {
                return Err(DataError::file(
                    dir.join(SAMPLES_FILE),
                    format!(
                        "sample {} points at poster slot {slot} beyond the cache",
                        s.id
                    ),
                ));
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            preprocessor,
            samples: Arc::new(samples),
            posters: Arc::new(posters),
            features: None,
        })
    }

    pub fn indices(&self, split: Split) -> Vec<usize> {
        (0..self.samples.len())
            .filter(|i| self.samples[*i].split == split)
            .collect()
    }

    /// The movies a bag learns from, train and validation (never test), in fold `index` of
    /// `count` (`held`) or in the other folds.
    pub fn fold_indices(&self, seed: u64, index: usize, count: usize, held: bool) -> Vec<usize> {
        (0..self.samples.len())
            .filter(|i| {
                let s = &self.samples[*i];
                s.split != Split::Test
                    && (crate::split::fold_of(seed, &s.id, count) == index) == held
            })
            .collect()
    }

    /// Every train and validation movie.
    pub fn labelled_indices(&self) -> Vec<usize> {
        (0..self.samples.len())
            .filter(|i| self.samples[*i].split != Split::Test)
            .collect()
    }

    /// A Burn dataset over the movies at `indices`.
    pub fn dataset_of(&self, indices: Vec<usize>) -> MovieDataset {
        MovieDataset::new(self.samples.clone(), self.posters.clone(), indices)
            .with_features(self.features.clone())
    }

    /// A Burn dataset over one split.
    pub fn dataset(&self, split: Split) -> MovieDataset {
        MovieDataset::new(
            self.samples.clone(),
            self.posters.clone(),
            self.indices(split),
        )
        .with_features(self.features.clone())
    }

    /// A Burn dataset over every movie regardless of split.
    pub fn dataset_all(&self) -> MovieDataset {
        MovieDataset::new(
            self.samples.clone(),
            self.posters.clone(),
            (0..self.samples.len()).collect(),
        )
        .with_features(self.features.clone())
    }
}

pub fn read_samples(path: &Path) -> Result<Vec<EncodedSample>, DataError> {
    let file = crate::user_file::open_regular(path)?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| DataError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| DataError::Record {
            path: path.into(),
            line: i + 1,
            message: e.to_string(),
        })?);
    }
    Ok(out)
}

//! The rating trees of a blend: gradient-boosted trees on a movie's metadata (the prepared
//! numeric fields with their gaps, and the category ids as ordered codes), one forest per fold
//! of the blend's bags. Forest k learns from the rated movies of the other folds,
//! like each bag's member k, so its predictions on fold k are out of fold and the blend learns
//! the trees' rating weight, thresholds and interval exactly as it does a bag's. Trees are
//! the strongest rating peer on tabular metadata; blended, they cover what the networks miss.
//!
//! Training uses forust (pure-Rust histogram boosting, grown leaf by leaf, with the settings of
//! scikit-learn's rating peer); prediction walks the flattened forests of `tree_forest.rs`,
//! which is also what export writes.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use cinefuse_data::Prepared;
use cinefuse_data::prepared::EncodedSample;
use forust_ml::gradientbooster::GrowPolicy;
use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};
use safetensors::tensor::SafeTensors;
use serde::{Deserialize, Serialize};

use crate::predictions::Predictions;
use crate::tree_forest::{Forest, column_major, to_safetensors};

pub const TREES_FILE: &str = "rating_trees.safetensors";

/// How the trees train (`[train.rating_trees]`, `ensemble --rating-trees`). The defaults are
/// those of the gradient-boosting peer in `scripts/baselines_sklearn.py`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatingTreesConfig {
    /// Boosting rounds: each adds one tree.
    #[serde(default = "default_iterations")]
    pub iterations: usize,
    /// Shrinkage of each tree's values.
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f32,
    /// Leaves per tree (grown best split first).
    #[serde(default = "default_max_leaves")]
    pub max_leaves: usize,
    /// L2 penalty on leaf values.
    #[serde(default = "default_l2")]
    pub l2: f32,
    /// The fewest movies a leaf may hold (scikit-learn's `min_samples_leaf`; with the squared
    /// loss each movie weighs 1 in forust's `min_leaf_weight`).
    #[serde(default = "default_min_leaf")]
    pub min_leaf: usize,
    /// `false` turns a config's trees off (`--set train.rating_trees.enabled=false`).
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// The trees also read the first bag's genre probabilities: out of fold for the movies
    /// they learn from, member k's for the movies forest k rates. They carry what the plot
    /// and poster say about the rating into trees that read only metadata otherwise. Off for
    /// records written before it (absent means off).
    #[serde(default)]
    pub genre_probabilities: bool,
    /// The knob of the earlier booster (Perpetual): read so that earlier blends still load;
    /// never written, so a config naming it is refused as an unknown key.
    #[serde(default, skip_serializing)]
    pub budget: Option<f32>,
}

fn default_iterations() -> usize {
    400
}

fn default_learning_rate() -> f32 {
    0.05
}

fn default_max_leaves() -> usize {
    15
}

fn default_l2() -> f32 {
    1.0
}

fn default_min_leaf() -> usize {
    20
}

fn enabled() -> bool {
    true
}

impl Default for RatingTreesConfig {
    fn default() -> Self {
        Self {
            iterations: default_iterations(),
            learning_rate: default_learning_rate(),
            max_leaves: default_max_leaves(),
            l2: default_l2(),
            min_leaf: default_min_leaf(),
            enabled: true,
            genre_probabilities: false,
            budget: None,
        }
    }
}

impl RatingTreesConfig {
    /// The first bad setting, named by its key.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10_000).contains(&self.iterations) {
            return Err(format!(
                "iterations must be in 1..=10000, got {}",
                self.iterations
            ));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return Err(format!(
                "learning_rate must be in (0, 1], got {}",
                self.learning_rate
            ));
        }
        if !(2..=1024).contains(&self.max_leaves) {
            return Err(format!(
                "max_leaves must be in 2..=1024, got {}",
                self.max_leaves
            ));
        }
        if !(self.l2 >= 0.0 && self.l2.is_finite()) {
            return Err(format!("l2 must be a finite number >= 0, got {}", self.l2));
        }
        if !(1..=100_000).contains(&self.min_leaf) {
            return Err(format!(
                "min_leaf must be in 1..=100000, got {}",
                self.min_leaf
            ));
        }
        Ok(())
    }
}

/// The metadata entry of a trees file: its `Layout` as JSON.
const LAYOUT_KEY: &str = "layout";

/// How many forests a trees file holds and the width of the rows they read.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layout {
    members: usize,
    n_numeric: usize,
    n_categorical: usize,
    /// Genre probabilities after the metadata fields; absent (0) in files from before them,
    /// and left out when 0 so that such trees stay readable by earlier versions.
    #[serde(default, skip_serializing_if = "is_zero")]
    n_genres: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Layout {
    /// From the metadata: the `layout` entry, or the three entries files had before it.
    fn read(meta: Option<&HashMap<String, String>>) -> Result<Self> {
        let get = |key: &str| meta.and_then(|m| m.get(key));
        if let Some(json) = get(LAYOUT_KEY) {
            return serde_json::from_str(json).with_context(|| format!("`{LAYOUT_KEY}`: {json}"));
        }
        let field = |key: &str| -> Result<usize> {
            get(key)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("`{LAYOUT_KEY}` (or `{key}`) is missing"))
        };
        Ok(Self {
            members: field("members")?,
            n_numeric: field("n_numeric")?,
            n_categorical: field("n_categorical")?,
            n_genres: 0,
        })
    }
}

/// One forest per fold, and the width of the rows they read.
pub struct RatingTrees {
    pub members: Vec<Forest>,
    pub n_numeric: usize,
    pub n_categorical: usize,
    /// Genre probabilities each row ends with (0: the trees read metadata only).
    pub n_genres: usize,
}

/// Each labelled movie's out-of-fold genre probabilities from the first bag, by id: what the
/// trees read beside the metadata with `genre_probabilities`.
pub type GenreInputs = HashMap<String, Vec<f32>>;

/// `oof`'s genre probabilities by movie (every member's held-out movies).
pub fn genre_inputs(oof: &[Predictions]) -> GenreInputs {
    oof.iter()
        .flat_map(|p| {
            p.ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), p.probs_of(i).to_vec()))
        })
        .collect()
}

/// A movie's row for the trees: numeric fields, then category ids; NaN where a value is
/// missing (a numeric gap, or category id 0). The ids are split on as numbers (ordered codes):
/// scikit-learn's native categorical splits fitted no better here (docs/RESULTS.md).
pub fn tree_row(numeric: &[f32], numeric_missing: &[f32], categorical: &[u32]) -> Vec<f64> {
    let category = |c: &u32| if *c == 0 { f64::NAN } else { f64::from(*c) };
    numeric
        .iter()
        .zip(numeric_missing)
        .map(|(v, m)| if *m > 0.5 { f64::NAN } else { f64::from(*v) })
        .chain(categorical.iter().map(category))
        .collect()
}

/// `s`'s row, with the fields `blank` missing.
fn sample_row(s: &EncodedSample, blank: &[usize]) -> Vec<f64> {
    let mut row = tree_row(&s.numeric, &s.numeric_missing, &s.categorical);
    for c in blank {
        if let Some(cell) = row.get_mut(*c) {
            *cell = f64::NAN;
        }
    }
    row
}

/// Trains forest k on the rated movies outside fold k of `folds` (the bags' fold assignment,
/// seeded by `seed`); each row ends with the movie's `genres` when given (they must cover
/// every rated movie).
pub fn train_rating_trees(
    prepared: &Prepared,
    (seed, folds): (u64, usize),
    cfg: &RatingTreesConfig,
    genres: Option<&GenreInputs>,
) -> Result<RatingTrees> {
    train_rating_trees_without(prepared, (seed, folds), cfg, (&[], genres))
}

/// `train_rating_trees` with the numeric fields `blank` (columns of the rows) taken from every
/// movie, as if none had them.
pub fn train_rating_trees_without(
    prepared: &Prepared,
    (seed, folds): (u64, usize),
    cfg: &RatingTreesConfig,
    (blank, genres): (&[usize], Option<&GenreInputs>),
) -> Result<RatingTrees> {
    let start = std::time::Instant::now();
    let n_numeric = prepared.preprocessor.n_numeric();
    let n_categorical = prepared.preprocessor.categorical_sizes().len();
    let members = (0..folds)
        .map(|k| {
            let rows: Vec<&EncodedSample> = prepared
                .fold_indices(seed, k, folds, false)
                .into_iter()
                .map(|i| &prepared.samples[i])
                .filter(|s| s.rating.is_some_and(f32::is_finite))
                .collect();
            println!(
                "rating trees: fold {}/{folds}, {} rated movies",
                k + 1,
                rows.len()
            );
            let table = rows
                .iter()
                .map(|s| training_row(s, blank, genres))
                .collect::<Result<Vec<_>>>()?;
            let y: Vec<f64> = rows
                .iter()
                .map(|s| f64::from(s.rating.expect("rated")))
                .collect();
            fit_forest(&table, &y, seed, cfg)
                .with_context(|| format!("rating trees of fold {}", k + 1))
        })
        .collect::<Result<Vec<_>>>()?;
    let trees: usize = members.iter().map(|f| f.roots.len()).sum();
    println!(
        "rating trees: {folds} forests, {trees} trees, in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    Ok(RatingTrees {
        members,
        n_numeric,
        n_categorical,
        n_genres: genres.map_or(0, |_| prepared.preprocessor.genre_names().len()),
    })
}

/// `s`'s row with the fields `blank` missing, followed by its genre probabilities when the
/// trees read them.
fn training_row(
    s: &EncodedSample,
    blank: &[usize],
    genres: Option<&GenreInputs>,
) -> Result<Vec<f64>> {
    let mut row = sample_row(s, blank);
    if let Some(genres) = genres {
        let probs = genres
            .get(&s.id)
            .with_context(|| format!("movie {} has no out-of-fold genre probabilities", s.id))?;
        row.extend(probs.iter().map(|p| f64::from(*p)));
    }
    Ok(row)
}

fn fit_forest(table: &[Vec<f64>], y: &[f64], seed: u64, cfg: &RatingTreesConfig) -> Result<Forest> {
    if table.len() < 20 {
        bail!("only {} rated movies to learn from", table.len());
    }
    let cols = table[0].len();
    let data = column_major(table);
    let mut booster = GradientBooster::default()
        .set_objective_type(ObjectiveType::SquaredLoss)
        .set_iterations(cfg.iterations)
        .set_learning_rate(cfg.learning_rate)
        .set_max_leaves(cfg.max_leaves)
        // Leaf-wise growth is bounded by the leaf count; depth only by this backstop.
        .set_max_depth(cfg.max_leaves)
        .set_l2(cfg.l2)
        .set_min_leaf_weight(cfg.min_leaf as f32)
        .set_seed(seed);
    booster.grow_policy = GrowPolicy::LossGuide;
    booster
        .fit_unweighted(&Matrix::new(&data, table.len(), cols), y, None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Forest::from_booster(&booster)
}

impl RatingTrees {
    /// Whether these trees read genre probabilities of another number of genres than
    /// `genres`, the genres the model predicts.
    pub fn reads_other_genres(&self, genres: usize) -> bool {
        self.n_genres != 0 && self.n_genres != genres
    }

    fn width(&self) -> usize {
        self.n_numeric + self.n_categorical + self.n_genres
    }

    /// Forest `k`'s ratings of `rows` (each movie's `tree_row`, the movies of `lead_k` in its
    /// order), each row followed by `lead_k`'s genre probabilities of that movie when the
    /// trees read them; `lead_k` is the first bag's member k's prediction of the same movies.
    pub fn rate(&self, k: usize, rows: &[Vec<f64>], lead_k: &Predictions) -> Result<Vec<f32>> {
        if k >= self.members.len() {
            bail!("the rating trees have no forest {}", k + 1);
        }
        let fields = self.n_numeric + self.n_categorical;
        if let Some(r) = rows.iter().find(|r| r.len() != fields) {
            bail!(
                "the rating trees read {fields} metadata fields, a movie has {}",
                r.len()
            );
        }
        // No movies, nothing to rate: the predictions of an empty split (a model trained
        // without a test split) carry no genre count to check.
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        if self.n_genres > 0 && (lead_k.n_genres != self.n_genres || lead_k.ids.len() != rows.len())
        {
            bail!(
                "the rating trees read {} genre probabilities of {} movies, the first bag \
                 gives {} of {}",
                self.n_genres,
                rows.len(),
                lead_k.n_genres,
                lead_k.ids.len()
            );
        }
        Ok(self.rate_checked(k, rows, lead_k))
    }

    /// `rate` for rows and predictions already known to fit: an exported model checks its
    /// trees' fields and genres against its first part when it loads. A forest `k` that does
    /// not exist rates nothing.
    pub fn rate_checked(&self, k: usize, rows: &[Vec<f64>], lead_k: &Predictions) -> Vec<f32> {
        if k >= self.members.len() {
            return Vec::new();
        }
        rows.iter()
            .enumerate()
            .map(|(i, r)| {
                let genres = if self.n_genres > 0 {
                    lead_k.probs_of(i)
                } else {
                    &[]
                };
                self.predict_one(k, r, genres)
            })
            .collect()
    }

    /// Forest `k`'s rating of one movie's `row`, followed by `genres` (the first bag's member
    /// k's probabilities of the movie) when the trees read them.
    pub fn predict_one(&self, k: usize, row: &[f64], genres: &[f32]) -> f32 {
        let forest = &self.members[k];
        if self.n_genres == 0 {
            return clamp_rating(forest.predict_row(row));
        }
        let full: Vec<f64> = row
            .iter()
            .copied()
            .chain(genres.iter().map(|p| f64::from(*p)))
            .collect();
        clamp_rating(forest.predict_row(&full))
    }

    /// Forest `k`'s rating for the movies `ids` of `prepared` (trees of metadata alone).
    pub fn predict_member(
        &self,
        k: usize,
        prepared: &Prepared,
        ids: &[String],
    ) -> Result<Vec<f32>> {
        self.predict_member_without(k, prepared, ids, &[], None)
    }

    /// Forest `k`'s rating for the movies `ids` of `prepared` with the fields `blank` taken
    /// from every movie; `lead_k` (the first bag's member k's predictions of the same movies)
    /// gives the genre probabilities trees that read them need.
    pub fn predict_member_without(
        &self,
        k: usize,
        prepared: &Prepared,
        ids: &[String],
        blank: &[usize],
        lead_k: Option<&Predictions>,
    ) -> Result<Vec<f32>> {
        let at: HashMap<&str, &EncodedSample> = prepared
            .samples
            .iter()
            .map(|s| (s.id.as_str(), s))
            .collect();
        let rows = ids
            .iter()
            .map(|id| {
                at.get(id.as_str())
                    .map(|s| sample_row(s, blank))
                    .with_context(|| format!("movie {id} is not in {}", prepared.dir.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        match lead_k {
            Some(p) => self.rate(k, &rows, p),
            None if self.n_genres > 0 => {
                bail!("these rating trees read genre probabilities too, and none were given")
            }
            None => self.rate(k, &rows, &Predictions::default()),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        cinefuse_data::atomic::write_atomic(path, &self.to_bytes()?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The forests as safetensors, `member.{k}.{field}`, with the row width in the metadata.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let entries: Vec<_> = self
            .members
            .iter()
            .enumerate()
            .flat_map(|(k, f)| f.tensors(&format!("member.{k}")))
            .collect();
        let layout = Layout {
            members: self.members.len(),
            n_numeric: self.n_numeric,
            n_categorical: self.n_categorical,
            n_genres: self.n_genres,
        };
        to_safetensors(&entries, LAYOUT_KEY, &layout)
    }

    /// Reads `path`, checking each forest against `n_numeric` + `n_categorical` fields.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = cinefuse_data::user_file::read_capped(path, MAX_TREES_BYTES)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let st = SafeTensors::deserialize(&bytes)
            .with_context(|| format!("{}: not a safetensors file", path.display()))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes)?;
        let layout = Layout::read(meta.metadata().as_ref())
            .with_context(|| format!("{}: metadata", path.display()))?;
        let (n_numeric, n_categorical, n_genres) =
            (layout.n_numeric, layout.n_categorical, layout.n_genres);
        let members = (0..layout.members)
            .map(|k| Forest::from_tensors(&st, &format!("member.{k}")))
            .collect::<Result<Vec<_>>>()
            .with_context(|| path.display().to_string())?;
        let trees = Self {
            members,
            n_numeric,
            n_categorical,
            n_genres,
        };
        trees.check_features(path)?;
        Ok(trees)
    }

    fn check_features(&self, path: &Path) -> Result<()> {
        let width = self.width();
        for f in &self.members {
            if let Some(bad) = f.feature.iter().find(|j| **j >= width as i32) {
                bail!(
                    "{}: a tree splits on field {bad}, the rows have {width}",
                    path.display()
                );
            }
        }
        Ok(())
    }
}

/// The trees as a blend part: member k is `lead`'s member k (the part's genre weight is 0)
/// with `ratings[k]`, forest k's ratings of the same movies.
pub fn blend_part(lead: &[Predictions], ratings: Vec<Vec<f32>>) -> Vec<Predictions> {
    lead.iter()
        .zip(ratings)
        .map(|(p, rating)| Predictions {
            rating,
            ..p.clone()
        })
        .collect()
}

/// On the 0–10 scale, as the networks' ratings are.
fn clamp_rating(x: f64) -> f32 {
    x.clamp(0.0, 10.0) as f32
}

/// Far above any real forest (a 5-fold blend's is a few MB); a bound on what `load` reads.
const MAX_TREES_BYTES: u64 = 512 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_trees_are_the_same_file_and_earlier_files_still_read() -> Result<()> {
        let trees = RatingTrees {
            members: Vec::new(),
            n_numeric: 3,
            n_categorical: 2,
            n_genres: 0,
        };
        let bytes = trees.to_bytes()?;
        assert_eq!(trees.to_bytes()?, bytes, "byte for byte");
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(TREES_FILE);
        std::fs::write(&path, &bytes)?;
        let back = RatingTrees::load(&path)?;
        assert_eq!(
            (back.n_numeric, back.n_categorical, back.n_genres),
            (3, 2, 0)
        );
        let (_, meta) = SafeTensors::read_metadata(&bytes)?;
        let layout = &meta.metadata().as_ref().unwrap()[LAYOUT_KEY];
        assert!(
            !layout.contains("n_genres"),
            "readable by earlier versions: {layout}"
        );
        // Trees that read genre probabilities say how many.
        let genres = RatingTrees {
            n_genres: 4,
            ..trees
        };
        std::fs::write(&path, genres.to_bytes()?)?;
        assert_eq!(RatingTrees::load(&path)?.n_genres, 4);
        // A file written before the `layout` entry: three plain entries.
        let legacy = HashMap::from([
            ("members".to_string(), "0".to_string()),
            ("n_numeric".to_string(), "4".to_string()),
            ("n_categorical".to_string(), "1".to_string()),
        ]);
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = Vec::new();
        std::fs::write(&path, safetensors::tensor::serialize(views, Some(legacy))?)?;
        let back = RatingTrees::load(&path)?;
        assert_eq!((back.n_numeric, back.n_categorical), (4, 1));
        Ok(())
    }

    #[test]
    fn a_row_has_gaps_where_values_are_missing() {
        let row = tree_row(&[0.5, 0.0, -1.25], &[0.0, 1.0, 0.0], &[0, 1, 7]);
        assert_eq!(row.len(), 6);
        assert_eq!((row[0], row[2]), (0.5, -1.25));
        assert!(row[1].is_nan(), "a numeric gap is missing, not 0");
        assert!(row[3].is_nan(), "category id 0 is missing");
        assert_eq!(
            (row[4], row[5]),
            (1.0, 7.0),
            "unknown (1) is a category of its own"
        );
    }

    #[test]
    fn settings_outside_their_range_are_refused_by_key() {
        let base = RatingTreesConfig::default();
        assert!(base.validate().is_ok());
        let bad = [
            (
                "iterations",
                RatingTreesConfig {
                    iterations: 0,
                    ..base
                },
            ),
            (
                "learning_rate",
                RatingTreesConfig {
                    learning_rate: 0.0,
                    ..base
                },
            ),
            (
                "learning_rate",
                RatingTreesConfig {
                    learning_rate: f32::NAN,
                    ..base
                },
            ),
            (
                "max_leaves",
                RatingTreesConfig {
                    max_leaves: 1,
                    ..base
                },
            ),
            ("l2", RatingTreesConfig { l2: -1.0, ..base }),
            (
                "min_leaf",
                RatingTreesConfig {
                    min_leaf: 0,
                    ..base
                },
            ),
        ];
        for (key, cfg) in bad {
            let err = cfg.validate().unwrap_err();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn an_earlier_blends_budget_still_reads() {
        let old: RatingTreesConfig = serde_json::from_str(r#"{"budget": 1.0, "enabled": true}"#)
            .expect("an earlier blend.json's trees read");
        assert_eq!(old.iterations, default_iterations());
        let saved = serde_json::to_string(&RatingTreesConfig::default()).unwrap();
        assert!(!saved.contains("budget"), "{saved}");
    }
}

//! The rating of a movie given without metadata, read from its plot. The blend's rating comes
//! from the bags' metadata branch and from trees on the metadata, and every training movie has
//! metadata; a movie with a title and a plot alone was rated worse than the training mean, with
//! an interval that covered 70 % (docs/RESULTS.md, "What each missing input costs"). So a blend
//! also learns a ridge regression from the first bag's cached plot features to the rating, one
//! per fold of its bags (member k learns from the rated movies outside fold k), and a movie
//! without metadata (`lacks_metadata`) is rated by it, with a CV+ interval of its own from the
//! ridges' out-of-fold residuals. A movie with metadata is rated as before.

use anyhow::{Context, Result, bail};
use burn::linalg::svd;
use burn::prelude::*;
use burn::tensor::{DType, TensorCreationOptions};
use cinefuse_data::Prepared;
use cinefuse_data::vocab::MISSING_ID;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::interval::RATED_FROM_CONTENT;
use crate::predictions::Predictions;
use crate::tree_forest::{le, numbers, to_safetensors};

pub const CONTENT_RATING_FILE: &str = "content_rating.safetensors";

/// The largest content-rating file read: 64 members of 65,536 features.
const MAX_CONTENT_BYTES: u64 = 1 << 25;

/// The penalties tried, on features standardised and scaled by 1/√dim (each feature block then
/// has unit total variance); the one with the smallest out-of-fold error is kept.
const ALPHAS: [f64; 7] = [0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0];

/// `[train.content_rating]`, `ensemble --content-rating`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentRatingConfig {
    /// `false` turns a config's content rating off (`--set train.content_rating.enabled=false`).
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

impl Default for ContentRatingConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Whether a movie counts as given without metadata: every category missing (certificate,
/// director, language, country, lead actor, declared categorical extras), whatever its numeric
/// fields. None of the 2,959 dev movies lacks them all, and the blend leans on them: with the
/// year, runtime, votes and Metacritic score but no category it rated such movies worse than
/// from the plot alone (MAE 0.84 against 0.65; docs/RESULTS.md), so such a movie is rated from
/// its plot.
pub fn lacks_metadata(categorical: &[u32]) -> bool {
    categorical.iter().all(|c| *c == MISSING_ID)
}

/// One fold's ridge regression on the raw features (their standardisation folded in).
#[derive(Debug, Clone, PartialEq)]
pub struct Ridge {
    pub weights: Vec<f32>,
    pub bias: f32,
}

impl Ridge {
    /// The rating of a feature row, clipped to 0–10.
    pub fn predict(&self, row: &[f32]) -> f32 {
        let dot: f64 = self
            .weights
            .iter()
            .zip(row)
            .map(|(w, x)| f64::from(*w) * f64::from(*x))
            .sum();
        (f64::from(self.bias) + dot).clamp(0.0, 10.0) as f32
    }
}

/// One ridge per fold, and the penalty chosen for them.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentRating {
    pub members: Vec<Ridge>,
    pub alpha: f32,
}

/// What the blend records of its content rating (its interval's residuals are the content
/// bin of the blend's interval).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContentRatingInfo {
    pub alpha: f32,
    /// The rated movies with a plot scored out of fold: the ridges' MAE on them, and the
    /// blend's own rating's (with their metadata) on the same movies.
    pub movies: usize,
    pub out_of_fold_mae: f32,
    pub blend_out_of_fold_mae: f32,
}

/// The metadata entry of a content-rating file.
const LAYOUT_KEY: &str = "layout";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layout {
    members: usize,
    dim: usize,
    alpha: f32,
}

/// The labelled movies a ridge may learn from or be scored on: a plot and a rating.
fn rated_with_plot(prepared: &Prepared, indices: Vec<usize>) -> Vec<usize> {
    indices
        .into_iter()
        .filter(|i| {
            let s = &prepared.samples[*i];
            s.rating.is_some_and(f32::is_finite) && crate::plot_neighbours::has_plot(s)
        })
        .collect()
}

/// The ridges of the folds `(seed, folds)` of the first bag's `prepared` data on its cached
/// plot features (the whole row: the sentence embedding and any concatenated layers), with the
/// penalty of the smallest out-of-fold MAE.
pub fn train_content_rating(
    prepared: &Prepared,
    (seed, folds): (u64, usize),
) -> Result<ContentRating> {
    let table = crate::plot_neighbours::plot_table(prepared)?.0;
    let row = |i: usize| table.row(i);
    let mut per_alpha: Vec<Vec<Ridge>> = vec![Vec::new(); ALPHAS.len()];
    let mut errors = vec![0.0f64; ALPHAS.len()];
    for k in 0..folds {
        let fit = rated_with_plot(prepared, prepared.fold_indices(seed, k, folds, false));
        let held = rated_with_plot(prepared, prepared.fold_indices(seed, k, folds, true));
        if fit.len() < 20 {
            bail!(
                "content rating, fold {}: only {} rated movies with a plot",
                k + 1,
                fit.len()
            );
        }
        let rows: Vec<&[f32]> = fit.iter().map(|i| row(*i)).collect();
        let y: Vec<f64> = fit.iter().map(|i| rating_of(prepared, *i)).collect();
        let system = RidgePath::of(&rows, &y);
        for (a, alpha) in ALPHAS.iter().enumerate() {
            let ridge = system.solve(*alpha);
            errors[a] += held
                .iter()
                .map(|i| (f64::from(ridge.predict(row(*i))) - rating_of(prepared, *i)).abs())
                .sum::<f64>();
            per_alpha[a].push(ridge);
        }
    }
    let best = (0..ALPHAS.len())
        .min_by(|a, b| errors[*a].total_cmp(&errors[*b]))
        .expect("alphas");
    Ok(ContentRating {
        members: per_alpha.swap_remove(best),
        alpha: ALPHAS[best] as f32,
    })
}

fn rating_of(prepared: &Prepared, i: usize) -> f64 {
    f64::from(prepared.samples[i].rating.expect("a rated movie"))
}

/// SVD sweeps at most; the decomposition of a fold's features converges in far fewer.
const SVD_SWEEPS: usize = 100;

/// A fold's standardised features `Z` with `Zᵀ Z = V Λ Vᵀ` (Burn's SVD of the symmetric
/// `Zᵀ Z`, in f64), which solves the ridge for every penalty cheaply:
/// `β = V diag(1 / (λ + α)) Vᵀ Zᵀ (y − ȳ)`; with the standardisation to fold back into the
/// weights.
struct RidgePath {
    /// `V` `[dim, dim]`, the eigenvalues and `Vᵀ Zᵀ (y − ȳ)`, on the host.
    v: Vec<f64>,
    rank: usize,
    eigenvalues: Vec<f64>,
    projected: Vec<f64>,
    mean: Vec<f64>,
    /// Each column's factor: 1 / (standard deviation · √dim); 0 for a constant column.
    scale: Vec<f64>,
    y_mean: f64,
}

impl RidgePath {
    fn of(rows: &[&[f32]], y: &[f64]) -> Self {
        let (n, d) = (rows.len(), rows[0].len());
        let (mean, scale) = standardisation(rows);
        let z: Vec<f64> = rows
            .iter()
            .flat_map(|r| (0..d).map(|j| (f64::from(r[j]) - mean[j]) * scale[j]))
            .collect();
        let y_mean = y.iter().sum::<f64>() / n as f64;
        let centred: Vec<f64> = y.iter().map(|t| t - y_mean).collect();
        let f64s = |values: Vec<f64>, shape: Vec<usize>| {
            let options = TensorCreationOptions::new(Device::flex()).with_dtype(DType::F64);
            Tensor::<2>::from_data(TensorData::new(values, shape), options)
        };
        let z = f64s(z, vec![n, d]);
        let gram = z.clone().transpose().matmul(z.clone());
        let rhs = z.transpose().matmul(f64s(centred, vec![n, 1]));
        // A symmetric positive semi-definite matrix: its SVD is its eigendecomposition.
        let (u, s, _) = svd::<2, 1>(gram, SVD_SWEEPS);
        let projected = u.clone().transpose().matmul(rhs);
        let host = |t: Tensor<2>| -> Vec<f64> {
            let data = t.into_data().convert::<f64>();
            data.try_to_vec::<f64>().expect("f64 data")
        };
        Self {
            v: host(u),
            rank: s.dims()[0],
            eigenvalues: host(s.unsqueeze_dim(1)),
            projected: host(projected),
            mean,
            scale,
            y_mean,
        }
    }

    /// The ridge with penalty `alpha` (> 0), its weights on the raw features.
    fn solve(&self, alpha: f64) -> Ridge {
        let shrunk: Vec<f64> = self
            .eigenvalues
            .iter()
            .zip(&self.projected)
            .map(|(l, p)| p / (l.max(0.0) + alpha))
            .collect();
        let weights: Vec<f64> = self
            .v
            .chunks(self.rank)
            .zip(&self.scale)
            .map(|(row, scale)| row.iter().zip(&shrunk).map(|(v, c)| v * c).sum::<f64>() * scale)
            .collect();
        let offset: f64 = weights.iter().zip(&self.mean).map(|(w, m)| w * m).sum();
        Ridge {
            weights: weights.iter().map(|w| *w as f32).collect(),
            bias: (self.y_mean - offset) as f32,
        }
    }
}

/// Each column's mean and its factor 1 / (standard deviation · √dim), 0 for a constant column:
/// every feature block then has unit total variance, whatever its width.
fn standardisation(rows: &[&[f32]]) -> (Vec<f64>, Vec<f64>) {
    let (n, d) = (rows.len() as f64, rows[0].len());
    let mut mean = vec![0.0; d];
    let mut square = vec![0.0; d];
    for r in rows {
        for (j, x) in r.iter().enumerate() {
            mean[j] += f64::from(*x) / n;
            square[j] += f64::from(*x) * f64::from(*x) / n;
        }
    }
    let root_d = (d as f64).sqrt();
    let scale = mean
        .iter()
        .zip(&square)
        .map(|(m, sq)| sq - m * m)
        .map(|v| {
            if v > 1e-12 {
                1.0 / (v.sqrt() * root_d)
            } else {
                0.0
            }
        })
        .collect();
    (mean, scale)
}

impl ContentRating {
    pub fn dim(&self) -> usize {
        self.members.first().map_or(0, |r| r.weights.len())
    }

    /// Rates the movies `rows` marks (`Some`: its plot features; `None`: rated as before) in
    /// each member's predictions (member k by ridge k), and gives them the content interval's
    /// key.
    pub fn apply(&self, members: &mut [Predictions], rows: &[Option<&[f32]>]) {
        for (k, p) in members.iter_mut().enumerate() {
            let ridge = &self.members[k.min(self.members.len() - 1)];
            for (i, row) in rows.iter().enumerate() {
                if let Some(row) = row {
                    p.rating[i] = ridge.predict(row);
                    p.votes[i] = RATED_FROM_CONTENT;
                }
            }
        }
    }

    /// Fold k's movies of `oof` (the blend's out-of-fold members) rated by ridge k, where
    /// `rows` has their features: the two MAEs (ridges, blend) on the same movies, and the
    /// ridges' residuals, tagged with their member, for the content interval.
    pub fn out_of_fold(
        &self,
        oof: &[Predictions],
        rows: &[Vec<Option<&[f32]>>],
    ) -> (ContentRatingInfo, Vec<(u16, f32)>) {
        let mut residuals = Vec::new();
        let (mut own, mut blend) = (0.0f64, 0.0f64);
        for (k, (p, rows)) in oof.iter().zip(rows).enumerate() {
            for (i, row) in rows.iter().enumerate() {
                let Some(row) = row.filter(|_| p.rating_present[i]) else {
                    continue;
                };
                let r = self.members[k].predict(row) - p.rating_true[i];
                own += f64::from(r.abs());
                blend += f64::from((p.rating[i] - p.rating_true[i]).abs());
                residuals.push((k as u16, r));
            }
        }
        let n = residuals.len().max(1) as f64;
        let info = ContentRatingInfo {
            alpha: self.alpha,
            movies: residuals.len(),
            out_of_fold_mae: (own / n) as f32,
            blend_out_of_fold_mae: (blend / n) as f32,
        };
        (info, residuals)
    }

    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        cinefuse_data::atomic::write_atomic(path, &self.to_bytes()?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// As safetensors: `weights` `[members, dim]` and `bias` `[members]` (f32), the layout
    /// as JSON in the metadata entry `layout`.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let (k, d) = (self.members.len(), self.dim());
        let weights: Vec<f32> = self
            .members
            .iter()
            .flat_map(|r| r.weights.clone())
            .collect();
        let bias: Vec<f32> = self.members.iter().map(|r| r.bias).collect();
        let entries = vec![
            (
                "weights".to_string(),
                Dtype::F32,
                vec![k, d],
                le(&weights, f32::to_le_bytes),
            ),
            (
                "bias".to_string(),
                Dtype::F32,
                vec![k],
                le(&bias, f32::to_le_bytes),
            ),
        ];
        let layout = Layout {
            members: k,
            dim: d,
            alpha: self.alpha,
        };
        to_safetensors(&entries, LAYOUT_KEY, &layout)
    }

    /// Reads `path` and checks its tables against its layout.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let bytes = cinefuse_data::user_file::read_capped(path, MAX_CONTENT_BYTES)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_bytes(&bytes).with_context(|| path.display().to_string())
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).context("not a safetensors file")?;
        let (_, meta) = SafeTensors::read_metadata(bytes)?;
        let json = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(LAYOUT_KEY))
            .with_context(|| format!("metadata `{LAYOUT_KEY}` is missing"))?;
        let layout: Layout =
            serde_json::from_str(json).with_context(|| format!("`{LAYOUT_KEY}`: {json}"))?;
        let get = |name: &str| -> Result<TensorView<'_>> {
            st.tensor(name)
                .with_context(|| format!("tensor `{name}` is missing"))
        };
        let (k, d) = (layout.members, layout.dim);
        let weights = numbers(&get("weights")?, Dtype::F32, f32::from_le_bytes)?;
        let bias = numbers(&get("bias")?, Dtype::F32, f32::from_le_bytes)?;
        if k == 0 || d == 0 || weights.len() != k * d || bias.len() != k {
            bail!(
                "the layout says {k} members of {d} features; `weights` holds {} values and \
                 `bias` {}",
                weights.len(),
                bias.len()
            );
        }
        if !weights.iter().chain(&bias).all(|v| v.is_finite()) {
            bail!("a weight or bias is not a finite number");
        }
        let members = weights
            .chunks(d)
            .zip(bias)
            .map(|(w, b)| Ridge {
                weights: w.to_vec(),
                bias: b,
            })
            .collect();
        Ok(Self {
            members,
            alpha: layout.alpha,
        })
    }
}

/// The plot features of each movie `ids` of `prepared` that has a plot and, with
/// `without_metadata`, lacks metadata (`lacks_metadata`); `None` for the others.
pub fn feature_rows<'a>(
    prepared: &'a Prepared,
    ids: &[String],
    without_metadata: bool,
) -> Result<Vec<Option<&'a [f32]>>> {
    let table = crate::plot_neighbours::plot_table(prepared)?.0;
    let at = crate::plot_neighbours::sample_indices(prepared, ids)?;
    Ok(at
        .into_iter()
        .map(|i| {
            let s = &prepared.samples[i];
            let picked = match without_metadata {
                true => crate::metadataless_stacking::given_without_metadata(s),
                false => crate::plot_neighbours::has_plot(s),
            };
            picked.then(|| table.row(i))
        })
        .collect())
}

/// A blend's content rating just learnt: the ridges, what they scored out of fold, and their
/// residuals (tagged with their member) for the interval's content bin.
pub struct LearnedContent {
    pub ridges: ContentRating,
    pub info: ContentRatingInfo,
    pub residuals: Vec<(u16, f32)>,
}

/// The content rating of a blend whose out-of-fold members are `oof` (member k: fold k's
/// movies), trained on the first bag's `prepared` data and folds.
pub fn learn_for_blend(
    prepared: &Prepared,
    folds: (u64, usize),
    oof: &[Predictions],
) -> Result<LearnedContent> {
    let start = std::time::Instant::now();
    let content = train_content_rating(prepared, folds)?;
    let rows = oof
        .iter()
        .map(|p| feature_rows(prepared, &p.ids, false))
        .collect::<Result<Vec<_>>>()?;
    let (info, residuals) = content.out_of_fold(oof, &rows);
    println!(
        "content rating (for movies without metadata): out-of-fold MAE {:.4} on {} movies \
         (the blend, with their metadata: {:.4}), alpha {}, in {:.1}s",
        info.out_of_fold_mae,
        info.movies,
        info.blend_out_of_fold_mae,
        info.alpha,
        start.elapsed().as_secs_f64()
    );
    Ok(LearnedContent {
        ridges: content,
        info,
        residuals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of three features and their ratings `5 + 2·x₀ − x₁` (the third feature is noise
    /// the rating ignores, the fourth a constant).
    fn linear_data(n: usize) -> (Vec<Vec<f32>>, Vec<f64>) {
        let rows: Vec<Vec<f32>> = (0..n)
            .map(|i| {
                let t = i as f32;
                vec![
                    (t * 0.37).sin(),
                    (t * 0.11).cos(),
                    (t * 1.7).sin() * 0.5,
                    3.0,
                ]
            })
            .collect();
        let y = rows
            .iter()
            .map(|r| 5.0 + 2.0 * f64::from(r[0]) - f64::from(r[1]))
            .collect();
        (rows, y)
    }

    #[test]
    fn the_ridge_solves_its_normal_equations_and_recovers_a_linear_rating() {
        let (rows, y) = linear_data(200);
        let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
        let path = RidgePath::of(&refs, &y);
        // A tiny penalty: the weights are the generating ones, the constant column gets none.
        let ridge = path.solve(1e-6);
        let close = |a: f32, b: f32| (a - b).abs() < 1e-3;
        assert!(close(ridge.weights[0], 2.0), "{:?}", ridge.weights);
        assert!(close(ridge.weights[1], -1.0), "{:?}", ridge.weights);
        assert!(close(ridge.weights[2], 0.0), "{:?}", ridge.weights);
        assert_eq!(ridge.weights[3], 0.0);
        assert!(close(ridge.predict(&rows[7]), y[7] as f32));
        // A large penalty shrinks the weights toward the mean rating.
        let flat = path.solve(1e6);
        assert!(flat.weights.iter().all(|w| w.abs() < 1e-2), "{flat:?}");
        let mean = (y.iter().sum::<f64>() / y.len() as f64) as f32;
        assert!((flat.predict(&rows[7]) - mean).abs() < 0.05);
    }

    #[test]
    fn only_a_movie_without_any_category_lacks_metadata() {
        assert!(lacks_metadata(&[0, 0]));
        assert!(!lacks_metadata(&[0, 3]), "a known category");
        assert!(
            !lacks_metadata(&[1, 0]),
            "an unknown category is still given"
        );
    }

    #[test]
    fn only_the_marked_movies_are_rated_from_their_plot() {
        let content = ContentRating {
            members: vec![
                Ridge {
                    weights: vec![1.0, 0.0],
                    bias: 5.0,
                },
                Ridge {
                    weights: vec![0.0, 1.0],
                    bias: 6.0,
                },
            ],
            alpha: 1.0,
        };
        let member = || Predictions {
            ids: vec!["a".into(), "b".into()],
            rating: vec![7.0, 7.0],
            votes: vec![0.5, f32::NAN],
            ..Predictions::default()
        };
        let mut members = vec![member(), member()];
        let row = [1.0f32, 2.0];
        content.apply(&mut members, &[None, Some(&row[..])]);
        assert_eq!(members[0].rating, [7.0, 6.0]);
        assert_eq!(members[1].rating, [7.0, 8.0]);
        assert_eq!(members[0].votes[0], 0.5);
        assert_eq!(members[1].votes[1], RATED_FROM_CONTENT);
    }

    #[test]
    fn a_saved_content_rating_loads_back_and_a_damaged_one_is_refused() {
        let content = ContentRating {
            members: vec![
                Ridge {
                    weights: vec![0.5, -0.25, 1.0],
                    bias: 6.5
                };
                2
            ],
            alpha: 3.0,
        };
        let bytes = content.to_bytes().unwrap();
        assert_eq!(ContentRating::from_bytes(&bytes).unwrap(), content);
        // A layout that does not match the tables.
        let wide = ContentRating {
            members: vec![Ridge {
                weights: vec![0.0; 4],
                bias: 0.0,
            }],
            alpha: 1.0,
        };
        let entries = vec![
            (
                "weights".to_string(),
                Dtype::F32,
                vec![1, 4],
                le(&[0.0f32; 4], f32::to_le_bytes),
            ),
            (
                "bias".to_string(),
                Dtype::F32,
                vec![1],
                le(&[0.0f32], f32::to_le_bytes),
            ),
        ];
        let lying = Layout {
            members: 2,
            dim: 4,
            alpha: 1.0,
        };
        let bad = to_safetensors(&entries, LAYOUT_KEY, &lying).unwrap();
        let e = ContentRating::from_bytes(&bad).unwrap_err().to_string();
        assert!(e.contains("2 members of 4 features"), "{e}");
        assert!(ContentRating::from_bytes(&wide.to_bytes().unwrap()).is_ok());
    }
}

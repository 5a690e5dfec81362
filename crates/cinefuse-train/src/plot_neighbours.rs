//! The plot-neighbour vote of a blend: a movie's genres as the weighted vote of the labelled
//! movies whose plots read most alike, by cosine similarity of the frozen MiniLM embeddings the
//! first bag already computes. Neighbours are weighted by softmax(similarity / temperature) and
//! the vote is shrunk towards the genre frequencies by `prior` pseudo-neighbours.
//!
//! Like a bag's members, "member k" of the vote only sees the movies outside fold k, so its
//! votes on fold k are out of fold and the blend learns to combine them exactly as it combines
//! a bag (`genre_stacking.rs`). Out of fold on four seeds it raised top-1 and macro-F1 the most
//! of every extra member tried (docs/RESULTS.md): a linear head on pooled embeddings keeps what
//! is common to a genre, while a rare genre is often told by a few very similar plots.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use cinefuse_data::Prepared;
use cinefuse_data::prepared::EncodedSample;
use cinefuse_data::split::{Split, fold_of};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::tree_forest::{le, numbers, to_safetensors};

pub const NEIGHBOURS_FILE: &str = "plot_neighbours.safetensors";

/// How the vote is taken (`[train.plot_neighbours]`, `ensemble --plot-neighbours`). The
/// defaults were chosen out of fold on the bags' folds (`scripts/oof_probes.py`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlotNeighboursConfig {
    /// Neighbours per vote.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Softmax temperature on the cosine similarity: small trusts the closest plots most.
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    /// Pseudo-neighbours voting the genre frequencies (shrinks a vote with few near plots).
    #[serde(default = "default_prior")]
    pub prior: f32,
    /// `false` turns a config's vote off (`--set train.plot_neighbours.enabled=false`).
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn default_k() -> usize {
    50
}

fn default_temperature() -> f32 {
    0.05
}

fn default_prior() -> f32 {
    2.0
}

fn enabled() -> bool {
    true
}

impl Default for PlotNeighboursConfig {
    fn default() -> Self {
        Self {
            k: default_k(),
            temperature: default_temperature(),
            prior: default_prior(),
            enabled: true,
        }
    }
}

impl PlotNeighboursConfig {
    /// The first bad setting, named by its key.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10_000).contains(&self.k) {
            return Err(format!("k must be in 1..=10000, got {}", self.k));
        }
        if !(self.temperature > 0.0 && self.temperature <= 10.0) {
            return Err(format!(
                "temperature must be in (0, 10], got {}",
                self.temperature
            ));
        }
        if !(self.prior >= 0.0 && self.prior <= 1e6) {
            return Err(format!("prior must be in [0, 1e6], got {}", self.prior));
        }
        Ok(())
    }
}

/// The safetensors metadata key of a table's settings (JSON).
const SETTINGS_KEY: &str = "settings";

/// What a table file records besides its tensors.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    k: usize,
    temperature: f32,
    prior: f32,
    folds: usize,
}

/// The labelled movies that vote: their centred, unit-length plot embeddings, genres and folds.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotNeighbours {
    pub config: PlotNeighboursConfig,
    pub dim: usize,
    pub n_genres: usize,
    pub n_folds: usize,
    /// Subtracted from every embedding before the cosine (the labelled movies' mean plot).
    centre: Vec<f32>,
    /// `[N, dim]`.
    rows: Vec<f32>,
    /// `[N, n_genres]`, 0 or 1.
    labels: Vec<f32>,
    folds: Vec<u32>,
}

/// Whether a sample's plot went through the backbone (as `backbone_features.rs` decides).
pub fn has_plot(s: &EncodedSample) -> bool {
    s.plot_present && !s.tokens.is_empty()
}

impl PlotNeighbours {
    /// The vote of the train and validation movies of `prepared` with genres and a plot, on
    /// the bags' folds; their embeddings come from the prepared data's cached plot features.
    pub fn build(
        prepared: &Prepared,
        (seed, n_folds): (u64, usize),
        config: PlotNeighboursConfig,
    ) -> Result<Self> {
        let table = plot_table(prepared)?;
        let voters: Vec<usize> = (0..prepared.samples.len())
            .filter(|&i| {
                let s = &prepared.samples[i];
                s.split != Split::Test && s.genres_present && has_plot(s)
            })
            .collect();
        if voters.len() < 2 {
            bail!(
                "{}: the plot-neighbour vote needs labelled movies with plots, found {}",
                prepared.dir.display(),
                voters.len()
            );
        }
        let dim = table.dim;
        let mut centre = vec![0f32; dim];
        for &i in &voters {
            for (c, x) in centre.iter_mut().zip(table.row(i)) {
                *c += x / voters.len() as f32;
            }
        }
        let n_genres = prepared.samples[voters[0]].genres.len();
        let mut out = Self {
            config,
            dim,
            n_genres,
            n_folds,
            centre,
            rows: Vec::with_capacity(voters.len() * dim),
            labels: Vec::with_capacity(voters.len() * n_genres),
            folds: Vec::with_capacity(voters.len()),
        };
        for &i in &voters {
            let s = &prepared.samples[i];
            let unit = out.unit(table.row(i)).unwrap_or_else(|| vec![0.0; dim]);
            out.rows.extend(unit);
            out.labels.extend(&s.genres);
            out.folds.push(fold_of(seed, &s.id, n_folds) as u32);
        }
        Ok(out)
    }

    fn voters(&self) -> usize {
        self.folds.len()
    }

    /// `embedding` centred and scaled to unit length; `None` when it is (nearly) the centre.
    fn unit(&self, embedding: &[f32]) -> Option<Vec<f32>> {
        let centred: Vec<f32> = embedding
            .iter()
            .zip(&self.centre)
            .map(|(x, c)| x - c)
            .collect();
        let norm = centred.iter().map(|x| x * x).sum::<f32>().sqrt();
        (norm > 1e-6).then(|| centred.iter().map(|x| x / norm).collect())
    }

    /// Each genre's share among the voters outside fold `member`.
    fn frequencies(&self, member: usize) -> Vec<f32> {
        let g = self.n_genres;
        let mut freq = vec![0f32; g];
        let mut n = 0usize;
        for (r, fold) in self.folds.iter().enumerate() {
            if *fold as usize != member {
                n += 1;
                for (f, y) in freq.iter_mut().zip(&self.labels[r * g..(r + 1) * g]) {
                    *f += y;
                }
            }
        }
        freq.iter().map(|f| f / n.max(1) as f32).collect()
    }

    /// Cosine similarity of each query with every voter, `[B][N]` (`None` rows: no plot).
    fn similarities(&self, queries: &[Option<&[f32]>], device: &Device) -> Vec<Option<Vec<f32>>> {
        let units: Vec<Option<Vec<f32>>> = queries
            .iter()
            .map(|q| q.and_then(|q| self.unit(q)))
            .collect();
        let present: Vec<f32> = units.iter().flatten().flatten().copied().collect();
        let b = present.len() / self.dim;
        if b == 0 {
            return vec![None; queries.len()];
        }
        let n = self.voters();
        let q = Tensor::<2>::from_data(TensorData::new(present, [b, self.dim]), device);
        let r = Tensor::<2>::from_data(TensorData::new(self.rows.clone(), [n, self.dim]), device);
        let sims: Vec<f32> = q
            .matmul(r.transpose())
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 tensor");
        let mut next = sims.chunks_exact(n).map(<[f32]>::to_vec);
        units
            .iter()
            .map(|u| u.as_ref().and_then(|_| next.next()))
            .collect()
    }

    /// Every member's vote for each query embedding (`None`: the movie has no plot, and gets
    /// the genre frequencies): `[member][query × genre]`.
    pub fn vote(&self, queries: &[Option<&[f32]>], device: &Device) -> Vec<Vec<f32>> {
        let sims = self.similarities(queries, device);
        (0..self.n_folds)
            .map(|member| self.member_votes(member, &sims))
            .collect()
    }

    /// Member `member`'s vote for each query, `[query × genre]`, from their similarities.
    fn member_votes(&self, member: usize, sims: &[Option<Vec<f32>>]) -> Vec<f32> {
        let freq = self.frequencies(member);
        sims.iter()
            .flat_map(|s| match s {
                Some(s) => self.member_vote(member, s, &freq),
                None => freq.clone(),
            })
            .collect()
    }

    /// Member `member`'s vote from one query's similarities: its k nearest voters outside
    /// fold `member`, softmax-weighted, shrunk to `freq`.
    fn member_vote(&self, member: usize, sims: &[f32], freq: &[f32]) -> Vec<f32> {
        let mut near: Vec<(f32, usize)> = sims
            .iter()
            .enumerate()
            .filter(|(r, _)| self.folds[*r] as usize != member)
            .map(|(r, s)| (*s, r))
            .collect();
        let k = self.config.k.min(near.len());
        if k == 0 {
            return freq.to_vec();
        }
        if k < near.len() {
            near.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
            near.truncate(k);
        }
        // exp((s - 1) / T): the largest possible similarity is 1, so nothing overflows.
        let t = self.config.temperature;
        let weights: Vec<f32> = near.iter().map(|(s, _)| ((s - 1.0) / t).exp()).collect();
        let total = weights.iter().sum::<f32>().max(f32::MIN_POSITIVE);
        let g = self.n_genres;
        let mut vote = vec![0f32; g];
        for ((_, r), w) in near.iter().zip(&weights) {
            for (v, y) in vote.iter_mut().zip(&self.labels[r * g..(r + 1) * g]) {
                *v += w / total * y;
            }
        }
        let (n, prior) = (k as f32, self.config.prior);
        vote.iter()
            .zip(freq)
            .map(|(v, f)| (v * n + f * prior) / (n + prior))
            .collect()
    }

    /// Member k's votes for the movies `ids` of `prepared`, from its cached plot features.
    pub fn vote_member(
        &self,
        member: usize,
        prepared: &Prepared,
        ids: &[String],
        device: &Device,
    ) -> Result<Vec<f32>> {
        let table = plot_table(prepared)?;
        let at: HashMap<&str, usize> = prepared
            .samples
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let queries = ids
            .iter()
            .map(|id| {
                let i = *at
                    .get(id.as_str())
                    .with_context(|| format!("movie {id} is not in {}", prepared.dir.display()))?;
                Ok(has_plot(&prepared.samples[i]).then(|| table.row(i)))
            })
            .collect::<Result<Vec<_>>>()?;
        if table.dim != self.dim {
            bail!(
                "the plot vote reads {}-wide embeddings, {} has {}",
                self.dim,
                prepared.dir.display(),
                table.dim
            );
        }
        // Only this member's vote: the others' would be thrown away.
        Ok(self.member_votes(member, &self.similarities(&queries, device)))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        cinefuse_data::atomic::write_atomic(path, &self.to_bytes()?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// As safetensors: `centre`, `rows`, `labels` (f32), `folds` (u32); the settings as JSON in
    /// the metadata entry `settings`.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let n = self.voters();
        let entries = [
            (
                "centre".to_string(),
                Dtype::F32,
                vec![self.dim],
                le(&self.centre, f32::to_le_bytes),
            ),
            (
                "rows".to_string(),
                Dtype::F32,
                vec![n, self.dim],
                le(&self.rows, f32::to_le_bytes),
            ),
            (
                "labels".to_string(),
                Dtype::F32,
                vec![n, self.n_genres],
                le(&self.labels, f32::to_le_bytes),
            ),
            (
                "folds".to_string(),
                Dtype::U32,
                vec![n],
                le(&self.folds, u32::to_le_bytes),
            ),
        ];
        let settings = Settings {
            k: self.config.k,
            temperature: self.config.temperature,
            prior: self.config.prior,
            folds: self.n_folds,
        };
        to_safetensors(&entries, SETTINGS_KEY, &settings)
    }

    /// Reads `path` and checks that its tables agree.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = cinefuse_data::user_file::read_capped(path, MAX_NEIGHBOURS_BYTES)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_bytes(&bytes).with_context(|| path.display().to_string())
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).context("not a safetensors file")?;
        let (_, meta) = SafeTensors::read_metadata(bytes)?;
        let text = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(SETTINGS_KEY).cloned())
            .with_context(|| format!("metadata `{SETTINGS_KEY}` is missing"))?;
        let settings: Settings = serde_json::from_str(&text)
            .with_context(|| format!("metadata `{SETTINGS_KEY}`: {text}"))?;
        let config = PlotNeighboursConfig {
            k: settings.k,
            temperature: settings.temperature,
            prior: settings.prior,
            enabled: true,
        };
        config.validate().map_err(anyhow::Error::msg)?;
        let get = |name: &str| -> Result<TensorView<'_>> {
            st.tensor(name)
                .with_context(|| format!("tensor `{name}` is missing"))
        };
        let f32s = |name| numbers(&get(name)?, Dtype::F32, f32::from_le_bytes);
        let out = Self {
            config,
            dim: get("rows")?.shape().get(1).copied().unwrap_or(0),
            n_genres: get("labels")?.shape().get(1).copied().unwrap_or(0),
            n_folds: settings.folds,
            centre: f32s("centre")?,
            rows: f32s("rows")?,
            labels: f32s("labels")?,
            folds: numbers(&get("folds")?, Dtype::U32, u32::from_le_bytes)?,
        };
        out.check()?;
        Ok(out)
    }

    fn check(&self) -> Result<()> {
        let n = self.voters();
        if self.dim == 0 || self.n_genres == 0 || n == 0 {
            bail!("empty tables");
        }
        if self.centre.len() != self.dim
            || self.rows.len() != n * self.dim
            || self.labels.len() != n * self.n_genres
        {
            bail!("the tables' lengths disagree");
        }
        if self.folds.iter().any(|f| *f as usize >= self.n_folds) {
            bail!("a fold id is not below {}", self.n_folds);
        }
        if !self.rows.iter().chain(&self.centre).all(|x| x.is_finite()) {
            bail!("an embedding is not finite");
        }
        Ok(())
    }
}

/// The cached plot features of `prepared`, which the vote reads.
fn plot_table(prepared: &Prepared) -> Result<&cinefuse_data::feature_cache::FeatureTable> {
    prepared
        .features
        .as_ref()
        .and_then(|f| f.plot.as_deref())
        .with_context(|| {
            format!(
                "{}: the plot-neighbour vote needs the first bag's cached plot features (a \
                 frozen pretrained plot encoder, `model.text.kind = \"bert\"`)",
                prepared.dir.display()
            )
        })
}

/// Far above any real table (2,500 movies × 384 values is 4 MB); a bound on what `load` reads.
const MAX_NEIGHBOURS_BYTES: u64 = 1 << 30;

#[cfg(test)]
mod tests {
    use super::*;

    /// Six voters on two folds in 2-D: genre 0 points along x, genre 1 along y.
    fn table() -> PlotNeighbours {
        let rows = [
            [1.0, 0.0],
            [0.9, 0.1],
            [0.0, 1.0],
            [0.1, 0.9],
            [1.0, 0.05],
            [0.05, 1.0],
        ];
        let labels = [
            [1.0, 0.0],
            [1.0, 0.0],
            [0.0, 1.0],
            [0.0, 1.0],
            [1.0, 0.0],
            [0.0, 1.0],
        ];
        let mut t = PlotNeighbours {
            config: PlotNeighboursConfig {
                k: 2,
                temperature: 0.05,
                prior: 0.0,
                enabled: true,
            },
            dim: 2,
            n_genres: 2,
            n_folds: 2,
            centre: vec![0.0, 0.0],
            rows: Vec::new(),
            labels: labels.concat(),
            folds: vec![0, 1, 0, 1, 0, 1],
        };
        t.rows = rows.iter().flat_map(|r| t.unit(r).unwrap()).collect();
        t
    }

    fn device() -> Device {
        Device::flex()
    }

    #[test]
    fn a_plot_votes_with_its_neighbours_outside_the_members_fold() {
        let t = table();
        let x: &[f32] = &[1.0, 0.02];
        let votes = t.vote(&[Some(x), None], &device());
        // Both members find x-like plots (genre 0) among the voters they may see.
        // No plot: the genre frequencies among the voters outside the member's fold (fold 1
        // holds one genre-0 plot of three, fold 0 two).
        for (member, freq0) in votes.iter().zip([1.0 / 3.0, 2.0 / 3.0]) {
            assert!(member[0] > 0.99 && member[1] < 0.01, "{member:?}");
            assert!((member[2] - freq0).abs() < 1e-6, "{member:?}");
            assert!((member[3] - (1.0 - freq0)).abs() < 1e-6, "{member:?}");
        }
    }

    #[test]
    fn the_prior_shrinks_a_vote_towards_the_frequencies() {
        let mut t = table();
        t.config.prior = 2.0;
        let votes = t.vote(&[Some(&[1.0, 0.0][..])], &device());
        // k = 2 neighbours (the nearer all but alone, genre 0) and 2 pseudo-neighbours at the
        // member's frequency of genre 0: (2 · 1 + 2 · f) / 4.
        for (vote, freq0) in votes.iter().zip([1.0 / 3.0, 2.0 / 3.0]) {
            let want = (2.0 + 2.0 * freq0) / 4.0;
            assert!((vote[0] - want).abs() < 1e-3, "{vote:?} vs {want}");
        }
    }

    #[test]
    fn member_k_never_sees_fold_k() {
        let mut t = table();
        // Fold 0 holds only genre-0 plots along x; fold 1 relabelled all genre 1.
        t.labels = [
            [1.0, 0.0],
            [0.0, 1.0],
            [1.0, 0.0],
            [0.0, 1.0],
            [1.0, 0.0],
            [0.0, 1.0],
        ]
        .concat();
        let votes = t.vote(&[Some(&[0.5, 0.5][..])], &device());
        assert!(
            votes[0][1] > 0.99,
            "member 0 sees fold 1 only: {:?}",
            votes[0]
        );
        assert!(
            votes[1][0] > 0.99,
            "member 1 sees fold 0 only: {:?}",
            votes[1]
        );
    }

    #[test]
    fn a_table_survives_safetensors_and_a_broken_one_is_refused() -> Result<()> {
        let t = table();
        let bytes = t.to_bytes()?;
        assert_eq!(PlotNeighbours::from_bytes(&bytes)?, t);
        assert_eq!(t.to_bytes()?, bytes, "the same table, the same file");
        let mut bad = table();
        bad.folds[0] = 7;
        let err = PlotNeighbours::from_bytes(&bad.to_bytes()?).unwrap_err();
        assert!(format!("{err:#}").contains("fold id"), "{err:#}");
        Ok(())
    }

    #[test]
    fn settings_outside_their_range_are_refused_by_key() {
        let bad = |f: fn(&mut PlotNeighboursConfig)| {
            let mut c = PlotNeighboursConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.k = 0).starts_with("k must be"));
        assert!(bad(|c| c.temperature = 0.0).starts_with("temperature must be"));
        assert!(bad(|c| c.prior = f32::NAN).starts_with("prior must be"));
    }
}

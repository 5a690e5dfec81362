//! A neighbour vote of a blend: a movie's genres as the weighted vote of the labelled movies
//! that lie closest to it in one feature space, by cosine similarity of their centred (and, for
//! the metadata, standardised) feature rows. Neighbours are weighted by
//! softmax(similarity / temperature) and the vote is shrunk towards the genre frequencies by
//! `prior` pseudo-neighbours.
//!
//! Three spaces vote: the plots (`plot_neighbours.rs`, the first bag's cached plot-encoder
//! embeddings), the metadata (`metadata_neighbours.rs`, cinefuse's own encoding of the numeric
//! and categorical fields) and the credits (`credit_neighbours.rs`, sparse name sets weighted
//! by rarity, not centred). Like a bag's members, "member k" of a vote only sees the movies outside
//! fold k, so its votes on fold k are out of fold and the blend stacks them with the bags
//! exactly as it stacks a bag (`genre_stacking.rs`).

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use cinefuse_data::Prepared;
use cinefuse_data::dataset::MovieItem;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::credit_neighbours::CreditIndex;
use crate::tree_forest::{le, numbers, to_safetensors};

/// Which features a vote compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VoteSpace {
    /// The frozen plot encoder's embeddings (files from before the field are plot votes).
    #[default]
    Plot,
    /// Scaled numeric fields, their missing flags and one-hot categories.
    Metadata,
    /// Directors, cast and writers, weighted by rarity (`credit_neighbours.rs`).
    Credits,
    /// Sentences describing each genre, against the plot embeddings (`genre_prompts.rs`).
    Prompts,
}

impl VoteSpace {
    /// Every space, in the order a blend stacks its votes.
    pub const ALL: [VoteSpace; 4] = [
        VoteSpace::Plot,
        VoteSpace::Metadata,
        VoteSpace::Credits,
        VoteSpace::Prompts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            VoteSpace::Plot => "plot",
            VoteSpace::Metadata => "metadata",
            VoteSpace::Credits => "credits",
            VoteSpace::Prompts => "genre-prompt",
        }
    }

    /// How the vote is named in what `train`, `ensemble` and `eval` print.
    pub fn label(self) -> String {
        match self {
            VoteSpace::Prompts => "genre-prompt vote".into(),
            _ => format!("{}-neighbour vote", self.name()),
        }
    }

    /// The vote's file in a blend or export folder.
    pub fn file(self) -> &'static str {
        match self {
            VoteSpace::Plot => crate::plot_neighbours::NEIGHBOURS_FILE,
            VoteSpace::Metadata => crate::metadata_neighbours::METADATA_NEIGHBOURS_FILE,
            VoteSpace::Credits => crate::credit_neighbours::CREDIT_NEIGHBOURS_FILE,
            VoteSpace::Prompts => crate::genre_prompts::GENRE_PROMPTS_FILE,
        }
    }
}

/// How a vote is taken (`[train.plot_neighbours]`, `[train.metadata_neighbours]`);
/// `MILLI_T` is the default temperature in thousandths, which differs by space. The defaults
/// were chosen out of fold on the bags' folds (`scripts/oof_probes.py`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighboursConfig<const MILLI_T: u32> {
    /// Neighbours per vote.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Softmax temperature on the cosine similarity: small trusts the closest movies most.
    #[serde(default = "default_temperature::<MILLI_T>")]
    pub temperature: f32,
    /// Pseudo-neighbours voting the genre frequencies (shrinks a vote with few near movies).
    #[serde(default = "default_prior")]
    pub prior: f32,
    /// `false` turns a config's vote off (`--set train.plot_neighbours.enabled=false`).
    #[serde(default = "enabled")]
    pub enabled: bool,
}

pub(crate) fn default_k() -> usize {
    50
}

pub(crate) fn default_temperature<const MILLI_T: u32>() -> f32 {
    MILLI_T as f32 / 1000.0
}

pub(crate) fn default_prior() -> f32 {
    2.0
}

pub(crate) fn enabled() -> bool {
    true
}

impl<const MILLI_T: u32> Default for NeighboursConfig<MILLI_T> {
    fn default() -> Self {
        Self {
            k: default_k(),
            temperature: default_temperature::<MILLI_T>(),
            prior: default_prior(),
            enabled: true,
        }
    }
}

impl<const MILLI_T: u32> NeighboursConfig<MILLI_T> {
    /// The first bad setting, named by its key.
    pub fn validate(&self) -> Result<(), String> {
        self.settings().validate()
    }

    pub fn settings(&self) -> VoteSettings {
        VoteSettings {
            k: self.k,
            temperature: self.temperature,
            prior: self.prior,
        }
    }
}

/// What a vote needs of its config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VoteSettings {
    pub k: usize,
    pub temperature: f32,
    pub prior: f32,
}

impl VoteSettings {
    pub(crate) fn validate(&self) -> Result<(), String> {
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

/// The safetensors metadata key of a vote's settings (JSON).
const SETTINGS_KEY: &str = "settings";

/// What a vote file records besides its tensors.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    k: usize,
    temperature: f32,
    prior: f32,
    folds: usize,
    #[serde(default)]
    space: VoteSpace,
    /// A metadata vote's one-hot width of each categorical field, in the model's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    categorical_sizes: Vec<usize>,
    /// A credits vote's names, by column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    credit_names: Vec<String>,
}

/// The labelled movies that vote: their centred, scaled, unit-length feature rows, genres and
/// folds.
#[derive(Debug, Clone, PartialEq)]
pub struct NeighbourVote {
    pub space: VoteSpace,
    pub settings: VoteSettings,
    pub dim: usize,
    pub n_genres: usize,
    pub n_folds: usize,
    /// A metadata vote's one-hot width per categorical field (empty for the plots).
    pub categorical_sizes: Vec<usize>,
    /// Subtracted from every row before the cosine (the voters' mean row).
    centre: Vec<f32>,
    /// Then multiplied in (one over the voters' spread per column; ones for the plots).
    scale: Vec<f32>,
    /// `[N, dim]` (empty for the credits, which keep `credits`).
    rows: Vec<f32>,
    /// A credits vote's sparse name table (`dim` is its number of names).
    credits: Option<CreditIndex>,
    /// `[N, n_genres]`, 0 or 1.
    labels: Vec<f32>,
    folds: Vec<u32>,
}

/// The voters before they are centred: each one's raw feature row, genres and fold.
pub struct Voters {
    pub rows: Vec<Vec<f32>>,
    pub labels: Vec<Vec<f32>>,
    pub folds: Vec<u32>,
}

impl NeighbourVote {
    /// The vote of `voters` in `space`: rows centred on their mean and, when `standardise`,
    /// divided by their standard deviation (a constant column is left unscaled).
    pub fn from_voters(
        (space, settings, n_folds): (VoteSpace, VoteSettings, usize),
        voters: Voters,
        standardise: bool,
        categorical_sizes: Vec<usize>,
    ) -> Result<Self> {
        let (n, dim) = (voters.rows.len(), voters.rows.first().map_or(0, Vec::len));
        if n < 2 || dim == 0 {
            bail!(
                "the {} vote needs at least two labelled movies, found {n}",
                space.name()
            );
        }
        let (centre, scale) = centre_and_scale(&voters.rows, standardise);
        let mut out = Self {
            space,
            settings,
            dim,
            n_genres: voters.labels[0].len(),
            n_folds,
            categorical_sizes,
            centre,
            scale,
            rows: Vec::with_capacity(n * dim),
            credits: None,
            labels: voters.labels.concat(),
            folds: voters.folds,
        };
        for row in &voters.rows {
            let unit = out.unit(row).unwrap_or_else(|| vec![0.0; dim]);
            out.rows.extend(unit);
        }
        out.check()?;
        Ok(out)
    }

    /// The vote of the voters in `index` (a credits vote), with their genres and folds.
    pub fn from_credits(
        (space, settings, n_folds): (VoteSpace, VoteSettings, usize),
        index: CreditIndex,
        labels: Vec<Vec<f32>>,
        folds: Vec<u32>,
    ) -> Result<Self> {
        if index.voters() < 2 || index.names.is_empty() {
            bail!("the credits vote needs at least two labelled movies with credits");
        }
        let out = Self {
            space,
            settings,
            dim: index.names.len(),
            n_genres: labels[0].len(),
            n_folds,
            categorical_sizes: Vec::new(),
            centre: Vec::new(),
            scale: Vec::new(),
            rows: Vec::new(),
            credits: Some(index),
            labels: labels.concat(),
            folds,
        };
        out.check()?;
        Ok(out)
    }

    fn voters(&self) -> usize {
        self.folds.len()
    }

    /// Each query's similarity with every voter by their credits (`None`: no shared names).
    fn credit_similarities<'q>(
        &self,
        queries: impl IntoIterator<Item = &'q [String]>,
    ) -> Vec<Option<Vec<f32>>> {
        let index = self.credits.as_ref().expect("a credits vote has its index");
        queries.into_iter().map(|q| index.similarities(q)).collect()
    }

    /// `row` centred, scaled and brought to unit length; `None` when it is (nearly) the centre.
    fn unit(&self, row: &[f32]) -> Option<Vec<f32>> {
        let centred: Vec<f32> = row
            .iter()
            .zip(&self.centre)
            .zip(&self.scale)
            .map(|((x, c), s)| (x - c) * s)
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

    /// Cosine similarity of each query with every voter, `[B][N]` (`None` rows: no features).
    fn similarities(&self, queries: &[Option<Vec<f32>>], device: &Device) -> Vec<Option<Vec<f32>>> {
        let units: Vec<Option<Vec<f32>>> = queries
            .iter()
            .map(|q| q.as_deref().and_then(|q| self.unit(q)))
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

    /// Every member's vote for each query row (`None`: the movie has no such features, and
    /// gets the genre frequencies): `[member][query × genre]`.
    pub fn vote(&self, queries: &[Option<Vec<f32>>], device: &Device) -> Vec<Vec<f32>> {
        let sims = self.similarities(queries, device);
        (0..self.n_folds)
            .map(|member| self.member_votes(member, &sims))
            .collect()
    }

    /// Every member's vote for movies prepared for prediction (`items`, with their backbone
    /// features when the vote reads the plots).
    pub fn vote_items(&self, items: &[MovieItem], device: &Device) -> Vec<Vec<f32>> {
        if self.space == VoteSpace::Credits {
            let sims = self.credit_similarities(items.iter().map(|i| i.credits.as_slice()));
            return (0..self.n_folds)
                .map(|member| self.member_votes(member, &sims))
                .collect();
        }
        let queries: Vec<Option<Vec<f32>>> = items
            .iter()
            .map(|i| match self.space {
                // The leading sentence embedding; `model.text.concat_layers` follow it.
                VoteSpace::Plot | VoteSpace::Prompts => {
                    i.plot_features.as_ref().map(|f| f[..self.dim].to_vec())
                }
                VoteSpace::Metadata => Some(crate::metadata_neighbours::metadata_row(
                    (&i.numeric, &i.numeric_missing, &i.categorical),
                    &self.categorical_sizes,
                )),
                VoteSpace::Credits => unreachable!("the credits vote returned above"),
            })
            .collect();
        self.vote(&queries, device)
    }

    /// Member k's votes for the movies `ids` of `prepared` (only this member's: the others'
    /// would be thrown away).
    pub fn vote_member(
        &self,
        member: usize,
        prepared: &Prepared,
        ids: &[String],
        device: &Device,
    ) -> Result<Vec<f32>> {
        let sims = match self.space {
            VoteSpace::Plot | VoteSpace::Prompts => {
                let q = crate::plot_neighbours::queries(prepared, ids, self.dim)?;
                self.similarities(&q, device)
            }
            VoteSpace::Metadata => {
                let q = crate::metadata_neighbours::queries(prepared, ids, self)?;
                self.similarities(&q, device)
            }
            VoteSpace::Credits => {
                self.credit_similarities(crate::credit_neighbours::queries(prepared, ids)?)
            }
        };
        Ok(self.member_votes(member, &sims))
    }

    /// Member `member`'s vote for `n` movies that have nothing to compare (a plot vote's
    /// movies without a plot): the genre frequencies, `[movie × genre]`.
    pub fn member_without_query(&self, member: usize, n: usize) -> Vec<f32> {
        self.member_votes(member, &vec![None; n])
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
    /// fold `member` (on equal similarity the earlier voter), softmax-weighted, shrunk to
    /// `freq`. A credits voter that shares no name with the movie is no neighbour.
    fn member_vote(&self, member: usize, sims: &[f32], freq: &[f32]) -> Vec<f32> {
        let shared_only = self.space == VoteSpace::Credits;
        let mut near: Vec<(f32, usize)> = sims
            .iter()
            .enumerate()
            .filter(|(r, s)| self.folds[*r] as usize != member && (!shared_only || **s > 0.0))
            .map(|(r, s)| (*s, r))
            .collect();
        let k = self.settings.k.min(near.len());
        if k == 0 {
            return freq.to_vec();
        }
        if k < near.len() {
            near.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            near.truncate(k);
        }
        // exp((s - 1) / T): the largest possible similarity is 1, so nothing overflows.
        let t = self.settings.temperature;
        let weights: Vec<f32> = near.iter().map(|(s, _)| ((s - 1.0) / t).exp()).collect();
        let total = weights.iter().sum::<f32>().max(f32::MIN_POSITIVE);
        let g = self.n_genres;
        let mut vote = vec![0f32; g];
        for ((_, r), w) in near.iter().zip(&weights) {
            for (v, y) in vote.iter_mut().zip(&self.labels[r * g..(r + 1) * g]) {
                *v += w / total * y;
            }
        }
        let (n, prior) = (k as f32, self.settings.prior);
        vote.iter()
            .zip(freq)
            .map(|(v, f)| (v * n + f * prior) / (n + prior))
            .collect()
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        cinefuse_data::atomic::write_atomic(path, &self.to_bytes()?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// As safetensors: `centre`, `scale`, `rows`, `labels` (f32), `folds` (u32); the settings
    /// as JSON in the metadata entry `settings`.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let n = self.voters();
        let f32s = |name: &str, shape: Vec<usize>, values: &[f32]| {
            (
                name.to_string(),
                Dtype::F32,
                shape,
                le(values, f32::to_le_bytes),
            )
        };
        let u32s = |name: &str, values: &[u32]| {
            (
                name.to_string(),
                Dtype::U32,
                vec![values.len()],
                le(values, u32::to_le_bytes),
            )
        };
        let mut entries = vec![
            f32s("labels", vec![n, self.n_genres], &self.labels),
            u32s("folds", &self.folds),
        ];
        match &self.credits {
            Some(c) => entries.extend([
                f32s("idf", vec![self.dim], &c.idf),
                u32s("credit_offsets", &c.offsets),
                u32s("credit_columns", &c.columns),
            ]),
            None => entries.extend([
                f32s("centre", vec![self.dim], &self.centre),
                f32s("scale", vec![self.dim], &self.scale),
                f32s("rows", vec![n, self.dim], &self.rows),
            ]),
        }
        let settings = Settings {
            k: self.settings.k,
            temperature: self.settings.temperature,
            prior: self.settings.prior,
            folds: self.n_folds,
            space: self.space,
            categorical_sizes: self.categorical_sizes.clone(),
            credit_names: self
                .credits
                .as_ref()
                .map(|c| c.names.clone())
                .unwrap_or_default(),
        };
        to_safetensors(&entries, SETTINGS_KEY, &settings)
    }

    /// Reads `path` and checks that its tables agree.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = cinefuse_data::user_file::read_capped(path, MAX_VOTE_BYTES)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_bytes(&bytes).with_context(|| path.display().to_string())
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).context("not a safetensors file")?;
        let (s, settings) = read_settings(bytes)?;
        let get = |name: &str| -> Result<TensorView<'_>> {
            st.tensor(name)
                .with_context(|| format!("tensor `{name}` is missing"))
        };
        let f32s = |name| numbers(&get(name)?, Dtype::F32, f32::from_le_bytes);
        let u32s = |name| numbers(&get(name)?, Dtype::U32, u32::from_le_bytes);
        let n_genres = get("labels")?.shape().get(1).copied().unwrap_or(0);
        if s.space == VoteSpace::Credits {
            let index = CreditIndex::from_parts(
                s.credit_names,
                f32s("idf")?,
                u32s("credit_offsets")?,
                u32s("credit_columns")?,
            )?;
            let labels = f32s("labels")?;
            return Self::from_credits(
                (s.space, settings, s.folds),
                index,
                labels
                    .chunks(n_genres.max(1))
                    .map(<[f32]>::to_vec)
                    .collect(),
                u32s("folds")?,
            );
        }
        let dim = get("rows")?.shape().get(1).copied().unwrap_or(0);
        let out = Self {
            space: s.space,
            settings,
            dim,
            n_genres: get("labels")?.shape().get(1).copied().unwrap_or(0),
            n_folds: s.folds,
            categorical_sizes: s.categorical_sizes,
            centre: f32s("centre")?,
            // Plot votes written before the scale was stored scaled nothing.
            scale: match st.tensor("scale") {
                Ok(_) => f32s("scale")?,
                Err(_) => vec![1.0; dim],
            },
            rows: f32s("rows")?,
            credits: None,
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
        // A genre prompt belongs to no fold: its fold id is `n_folds`, past every member.
        let past = self.n_folds + usize::from(self.space == VoteSpace::Prompts);
        if self.folds.iter().any(|f| *f as usize >= past) {
            bail!("a fold id is not below {past}");
        }
        if (self.space == VoteSpace::Credits) != self.credits.is_some() {
            bail!("only a credits vote keeps (and it must keep) a credit index");
        }
        if let Some(c) = &self.credits {
            if c.voters() != n || self.labels.len() != n * self.n_genres {
                bail!("the credit index and the voters' genres disagree");
            }
            return Ok(());
        }
        if self.centre.len() != self.dim
            || self.scale.len() != self.dim
            || self.rows.len() != n * self.dim
            || self.labels.len() != n * self.n_genres
        {
            bail!("the tables' lengths disagree");
        }
        let values = self.rows.iter().chain(&self.centre).chain(&self.scale);
        if !values.into_iter().all(|x| x.is_finite()) {
            bail!("a feature value is not finite");
        }
        if self.space != VoteSpace::Metadata && !self.categorical_sizes.is_empty() {
            bail!(
                "a {} vote records categorical sizes; only a metadata vote reads them",
                self.space.name()
            );
        }
        Ok(())
    }
}

/// Each column's mean and, when `standardise`, one over its standard deviation (1 for a
/// constant column, as scikit-learn's `StandardScaler`); ones otherwise.
fn centre_and_scale(rows: &[Vec<f32>], standardise: bool) -> (Vec<f32>, Vec<f32>) {
    let (n, dim) = (rows.len() as f64, rows[0].len());
    let mut mean = vec![0f64; dim];
    for row in rows {
        for (m, x) in mean.iter_mut().zip(row) {
            *m += f64::from(*x) / n;
        }
    }
    let mut var = vec![0f64; dim];
    for row in rows {
        for ((v, m), x) in var.iter_mut().zip(&mean).zip(row) {
            *v += (f64::from(*x) - m).powi(2) / n;
        }
    }
    let scale = var
        .iter()
        .map(|v| match (standardise, v.sqrt()) {
            (true, sd) if sd > 1e-12 => (1.0 / sd) as f32,
            _ => 1.0,
        })
        .collect();
    (mean.iter().map(|m| *m as f32).collect(), scale)
}

/// Far above any real table (2,500 movies × 1,000 values is 10 MB); a bound on what `load` reads.
const MAX_VOTE_BYTES: u64 = 1 << 30;

/// The vote's settings, stored as JSON in the file's metadata, checked.
fn read_settings(bytes: &[u8]) -> Result<(Settings, VoteSettings)> {
    let (_, meta) = SafeTensors::read_metadata(bytes)?;
    let text = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(SETTINGS_KEY).cloned())
        .with_context(|| format!("metadata `{SETTINGS_KEY}` is missing"))?;
    let s: Settings = serde_json::from_str(&text)
        .with_context(|| format!("metadata `{SETTINGS_KEY}`: {text}"))?;
    let settings = VoteSettings {
        k: s.k,
        temperature: s.temperature,
        prior: s.prior,
    };
    settings.validate().map_err(anyhow::Error::msg)?;
    Ok((s, settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Six voters on two folds in 2-D: genre 0 points along x, genre 1 along y.
    fn table() -> NeighbourVote {
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
        let mut t = NeighbourVote {
            space: VoteSpace::Plot,
            settings: VoteSettings {
                k: 2,
                temperature: 0.05,
                prior: 0.0,
            },
            dim: 2,
            n_genres: 2,
            n_folds: 2,
            categorical_sizes: Vec::new(),
            centre: vec![0.0, 0.0],
            scale: vec![1.0, 1.0],
            rows: Vec::new(),
            credits: None,
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
    fn a_movie_votes_with_its_neighbours_outside_the_members_fold() {
        let t = table();
        let votes = t.vote(&[Some(vec![1.0, 0.02]), None], &device());
        // Both members find x-like movies (genre 0) among the voters they may see.
        // No features: the genre frequencies among the voters outside the member's fold (fold
        // 1 holds one genre-0 movie of three, fold 0 two).
        for (member, freq0) in votes.iter().zip([1.0 / 3.0, 2.0 / 3.0]) {
            assert!(member[0] > 0.99 && member[1] < 0.01, "{member:?}");
            assert!((member[2] - freq0).abs() < 1e-6, "{member:?}");
            assert!((member[3] - (1.0 - freq0)).abs() < 1e-6, "{member:?}");
        }
    }

    #[test]
    fn the_prior_shrinks_a_vote_towards_the_frequencies() {
        let mut t = table();
        t.settings.prior = 2.0;
        let votes = t.vote(&[Some(vec![1.0, 0.0])], &device());
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
        // Fold 0 holds only genre-0 movies along x; fold 1 relabelled all genre 1.
        t.labels = [
            [1.0, 0.0],
            [0.0, 1.0],
            [1.0, 0.0],
            [0.0, 1.0],
            [1.0, 0.0],
            [0.0, 1.0],
        ]
        .concat();
        let votes = t.vote(&[Some(vec![0.5, 0.5])], &device());
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
    fn standardising_lets_a_narrow_column_count_as_much_as_a_wide_one() {
        // Column 0 spreads over ±100 and says nothing; column 1 spreads over ±1 and is the genre.
        let rows = vec![
            vec![100.0, 1.0],
            vec![-100.0, 1.0],
            vec![100.0, -1.0],
            vec![-100.0, -1.0],
        ];
        let voters = |rows: &Vec<Vec<f32>>| Voters {
            rows: rows.clone(),
            labels: vec![vec![1.0], vec![1.0], vec![0.0], vec![0.0]],
            folds: vec![0, 1, 0, 1],
        };
        let settings = VoteSettings {
            k: 2,
            temperature: 0.05,
            prior: 0.0,
        };
        let build = |standardise| {
            NeighbourVote::from_voters(
                (VoteSpace::Metadata, settings, 2),
                voters(&rows),
                standardise,
                vec![2],
            )
            .unwrap()
        };
        let (raw, standard) = (build(false), build(true));
        assert_eq!(standard.scale, vec![0.01, 1.0]);
        // A movie at column 0 = 90 (like the first and third voters), column 1 = 1 (genre 1).
        let query = [Some(vec![90.0, 1.0])];
        let genre = |t: &NeighbourVote| t.vote(&query, &device())[1][0];
        // Member 1 sees voters 0 and 2 (fold 0): raw, both lie along column 0 and vote about
        // evenly; standardised, voter 0 (the same column 1) wins clearly.
        assert!(genre(&standard) > 0.99, "{}", genre(&standard));
        assert!(genre(&raw) < 0.6, "{}", genre(&raw));
    }

    #[test]
    fn a_constant_column_is_left_unscaled() {
        let rows = vec![vec![3.0, 1.0], vec![3.0, 2.0]];
        let (centre, scale) = centre_and_scale(&rows, true);
        assert_eq!(centre, vec![3.0, 1.5]);
        assert_eq!(scale, vec![1.0, 2.0]);
    }

    #[test]
    fn a_table_survives_safetensors_and_a_broken_one_is_refused() -> Result<()> {
        let t = table();
        let bytes = t.to_bytes()?;
        assert_eq!(NeighbourVote::from_bytes(&bytes)?, t);
        assert_eq!(t.to_bytes()?, bytes, "the same table, the same file");
        let mut bad = table();
        bad.folds[0] = 7;
        let err = NeighbourVote::from_bytes(&bad.to_bytes()?).unwrap_err();
        assert!(format!("{err:#}").contains("fold id"), "{err:#}");
        let mut mixed = table();
        mixed.categorical_sizes = vec![2];
        let err = NeighbourVote::from_bytes(&mixed.to_bytes()?).unwrap_err();
        assert!(format!("{err:#}").contains("categorical sizes"), "{err:#}");
        Ok(())
    }

    #[test]
    fn settings_outside_their_range_are_refused_by_key() {
        let bad = |f: fn(&mut NeighboursConfig<50>)| {
            let mut c = NeighboursConfig::<50>::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.k = 0).starts_with("k must be"));
        assert!(bad(|c| c.temperature = 0.0).starts_with("temperature must be"));
        assert!(bad(|c| c.prior = f32::NAN).starts_with("prior must be"));
    }

    #[test]
    fn each_space_has_its_own_default_temperature() {
        let plot: NeighboursConfig<50> = toml::from_str("k = 10").unwrap();
        let metadata: NeighboursConfig<200> = toml::from_str("").unwrap();
        assert_eq!((plot.k, plot.temperature), (10, 0.05));
        assert_eq!((metadata.k, metadata.temperature), (50, 0.2));
    }

    /// Two genre prompts, one per genre, as `genre_prompts.rs` builds them: no fold.
    fn prompts_vote(space: VoteSpace) -> Result<NeighbourVote> {
        let settings = VoteSettings {
            k: 1000,
            temperature: 0.02,
            prior: 0.0,
        };
        let voters = Voters {
            rows: vec![vec![1.0, 0.1], vec![-1.0, 0.1]],
            labels: vec![vec![1.0, 0.0], vec![0.0, 1.0]],
            folds: vec![2, 2],
        };
        NeighbourVote::from_voters((space, settings, 2), voters, false, Vec::new())
    }

    #[test]
    fn every_member_sees_every_genre_prompt_and_only_prompts_lie_past_the_folds() -> Result<()> {
        let vote = prompts_vote(VoteSpace::Prompts)?;
        let votes = vote.vote(&[Some(vec![0.9, 0.3]), None], &device());
        assert_eq!(votes[0], votes[1], "no member leaves a prompt out");
        // Centred on the prompts' mean the query points at prompt 0: genre 0, nearly surely;
        // without a plot, each genre's share of the prompts.
        assert!(votes[0][0] > 0.99 && votes[0][1] < 0.01, "{:?}", votes[0]);
        assert_eq!(&votes[0][2..], &[0.5, 0.5]);
        let back = NeighbourVote::from_bytes(&vote.to_bytes()?)?;
        assert_eq!(back, vote);
        // A movie always belongs to a fold: the same table as a plot vote is refused.
        let e = prompts_vote(VoteSpace::Plot).unwrap_err();
        assert!(
            format!("{e:#}").contains("a fold id is not below 2"),
            "{e:#}"
        );
        Ok(())
    }

    /// Four voters on two folds: two share "cast:a" (genre 0), one "director:b" (genre 1).
    fn credits_vote() -> NeighbourVote {
        let names = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let index = CreditIndex::fit(&[
            names(&["cast:a", "cast:x"]),
            names(&["cast:a"]),
            names(&["director:b"]),
            names(&["cast:y"]),
        ]);
        let labels = vec![
            vec![1.0, 0.0],
            vec![1.0, 0.0],
            vec![0.0, 1.0],
            vec![0.0, 0.0],
        ];
        let settings = VoteSettings {
            k: 50,
            temperature: 0.3,
            prior: 2.0,
        };
        NeighbourVote::from_credits(
            (VoteSpace::Credits, settings, 2),
            index,
            labels,
            vec![0, 1, 1, 0],
        )
        .unwrap()
    }

    #[test]
    fn a_credits_voter_sharing_no_name_is_no_neighbour() {
        let vote = credits_vote();
        let query = vec!["cast:a".to_string(), "cast:unknown".to_string()];
        let queries = [query, vec!["cast:zzz".into()]];
        let sims = vote.credit_similarities(queries.iter().map(Vec::as_slice));
        // Member 0 sees voters 1 and 2 (fold 1): only voter 1 shares a name, so the vote is
        // (its genres + 2 × the frequencies) / 3, not diluted by voter 2.
        let got = vote.member_votes(0, &sims);
        let freq = [0.5, 0.5];
        let want = [(1.0 + 2.0 * freq[0]) / 3.0, (0.0 + 2.0 * freq[1]) / 3.0];
        assert!(
            (got[0] - want[0]).abs() < 1e-6 && (got[1] - want[1]).abs() < 1e-6,
            "{got:?}"
        );
        // A movie with no known name gets the frequencies.
        assert_eq!(&got[2..], &freq);
    }

    #[test]
    fn a_credits_table_survives_safetensors() -> Result<()> {
        let vote = credits_vote();
        let back = NeighbourVote::from_bytes(&vote.to_bytes()?)?;
        assert_eq!(back, vote);
        let query = [vec!["director:b".to_string()]];
        assert_eq!(
            back.member_votes(
                1,
                &back.credit_similarities(query.iter().map(Vec::as_slice))
            ),
            vote.member_votes(
                1,
                &vote.credit_similarities(query.iter().map(Vec::as_slice))
            )
        );
        Ok(())
    }
}

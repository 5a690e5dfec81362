//! Running a model over a dataset and gathering host-side predictions and losses.

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use cinefuse_data::{MovieBatch, MovieBatcher, MovieItem};
use cinefuse_model::head::RatingScale;
use cinefuse_model::{CinefuseModel, LossConfig, Modality};

use crate::interval::GivenWithout;
use crate::metrics::{
    GenreMetrics, GenrePredictions, RatingMetrics, genre_metrics, rating_metrics,
};

/// Predictions for every movie of a dataset, in dataset order.
#[derive(Debug, Clone, Default)]
pub struct Predictions {
    pub ids: Vec<String>,
    pub n_genres: usize,
    pub probs: Vec<f32>,
    pub targets: Vec<f32>,
    pub genres_present: Vec<bool>,
    /// Ratings on the 0–10 scale.
    pub rating: Vec<f32>,
    pub rating_true: Vec<f32>,
    pub rating_present: Vec<bool>,
    /// `[N, M]` modality weights where the fusion has them.
    pub weights: Option<Vec<f32>>,
    /// Each movie's scaled log vote count (NaN when unknown): the key of its rating interval's
    /// bin; `interval::RATED_FROM_CONTENT` for a movie a blend rated from its plot alone.
    pub votes: Vec<f32>,
    /// The inputs each movie came without (`interval::GivenWithout`): its interval widens by
    /// the blend's scale for them. Empty where not recorded (every movie with all).
    pub given_without: Vec<GivenWithout>,
    /// The logit shift taken out of `probs` (`RunInfo::genre_logit_shift`; a blend's is
    /// the parts' weighted by their genre weights; empty: none).
    pub genre_shift: Vec<f32>,
    pub loss: f64,
    pub genre_loss: f64,
    pub rating_loss: f64,
}

impl Predictions {
    /// Genre predictions restricted to movies that have genre labels.
    pub fn labelled_genres(&self) -> GenrePredictions {
        let g = self.n_genres;
        let mut probs = Vec::new();
        let mut targets = Vec::new();
        for i in 0..self.ids.len() {
            if self.genres_present[i] {
                probs.extend_from_slice(&self.probs[i * g..(i + 1) * g]);
                targets.extend_from_slice(&self.targets[i * g..(i + 1) * g]);
            }
        }
        GenrePredictions {
            n_genres: g,
            probs,
            targets,
            shift: self.genre_shift.clone(),
        }
    }

    /// The inputs movie `i` came without (none when not recorded).
    pub fn given_without_of(&self, i: usize) -> GivenWithout {
        self.given_without.get(i).copied().unwrap_or_default()
    }

    /// `given_without_of` for every movie.
    pub fn given_without_all(&self) -> Vec<GivenWithout> {
        (0..self.ids.len())
            .map(|i| self.given_without_of(i))
            .collect()
    }

    /// (predicted, true) ratings of movies that have a rating.
    pub fn labelled_ratings(&self) -> (Vec<f32>, Vec<f32>) {
        (0..self.ids.len())
            .filter(|i| self.rating_present[*i])
            .map(|i| (self.rating[i], self.rating_true[i]))
            .unzip()
    }

    pub fn genre_metrics(&self, thresholds: &[f32], names: &[String]) -> GenreMetrics {
        genre_metrics(&self.labelled_genres(), thresholds, names)
    }

    pub fn rating_metrics(&self) -> RatingMetrics {
        let (p, t) = self.labelled_ratings();
        rating_metrics(&p, &t)
    }

    /// Movie `i`'s genre probabilities.
    pub fn probs_of(&self, i: usize) -> &[f32] {
        &self.probs[i * self.n_genres..(i + 1) * self.n_genres]
    }

    /// Several prediction sets one after the other (the folds of a bag).
    pub fn concat(parts: &[Predictions]) -> Predictions {
        let mut out = Predictions {
            n_genres: parts.first().map_or(0, |p| p.n_genres),
            genre_shift: parts.first().map_or(Vec::new(), |p| p.genre_shift.clone()),
            ..Predictions::default()
        };
        let n: usize = parts.iter().map(|p| p.ids.len()).sum();
        // Modality weights only where every part has them, so that rows stay aligned.
        if !parts.is_empty() && parts.iter().all(|p| p.weights.is_some()) {
            out.weights = Some(
                parts
                    .iter()
                    .flat_map(|p| p.weights.iter().flatten())
                    .copied()
                    .collect(),
            );
        }
        for p in parts {
            out.ids.extend(p.ids.iter().cloned());
            out.probs.extend(&p.probs);
            out.targets.extend(&p.targets);
            out.genres_present.extend(&p.genres_present);
            out.rating.extend(&p.rating);
            out.rating_true.extend(&p.rating_true);
            out.rating_present.extend(&p.rating_present);
            out.votes.extend(&p.votes);
            out.given_without.extend(p.given_without_all());
            let w = p.ids.len() as f64 / n.max(1) as f64;
            out.loss += p.loss * w;
            out.genre_loss += p.genre_loss * w;
            out.rating_loss += p.rating_loss * w;
        }
        out
    }

    /// The rows of `ids`, in that order; `None` when one of them is not here. Losses are kept
    /// as they were (they describe the whole set).
    pub fn select(&self, ids: &[String]) -> Option<Predictions> {
        let at: std::collections::HashMap<&str, usize> = self
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let rows: Vec<usize> = ids
            .iter()
            .map(|id| at.get(id.as_str()).copied())
            .collect::<Option<_>>()?;
        let g = self.n_genres;
        let floats = |v: &[f32], width: usize| -> Vec<f32> {
            rows.iter()
                .flat_map(|r| v[r * width..(r + 1) * width].iter().copied())
                .collect()
        };
        let flags = |v: &[bool]| rows.iter().map(|r| v[*r]).collect();
        let modalities = |w: &Vec<f32>| floats(w, w.len() / self.ids.len().max(1));
        Some(Predictions {
            ids: ids.to_vec(),
            probs: floats(&self.probs, g),
            targets: floats(&self.targets, g),
            genres_present: flags(&self.genres_present),
            rating: floats(&self.rating, 1),
            rating_true: floats(&self.rating_true, 1),
            rating_present: flags(&self.rating_present),
            weights: self.weights.as_ref().map(modalities),
            votes: floats(&self.votes, 1),
            given_without: rows.iter().map(|r| self.given_without_of(*r)).collect(),
            n_genres: g,
            genre_shift: self.genre_shift.clone(),
            loss: self.loss,
            genre_loss: self.genre_loss,
            rating_loss: self.rating_loss,
        })
    }

    /// The members' mean prediction for the same movies (a bag): probabilities, ratings,
    /// modality weights and losses averaged.
    pub fn mean(members: &[Predictions]) -> Predictions {
        let k = members.len().max(1) as f32;
        let even = vec![1.0 / k; members.len()];
        Self::weighted(members, &even, &even)
    }

    /// A weighted combination of several models' predictions for the same movies (a blend):
    /// probabilities, modality weights and losses with `genre_weights`, ratings with
    /// `rating_weights`; each set of weights sums to 1.
    pub fn weighted(
        members: &[Predictions],
        genre_weights: &[f32],
        rating_weights: &[f32],
    ) -> Predictions {
        let mut out = members[0].clone();
        let combine = |get: &dyn Fn(&Predictions) -> &Vec<f32>, w: &[f32]| -> Vec<f32> {
            (0..get(&members[0]).len())
                .map(|i| members.iter().zip(w).map(|(m, w)| w * get(m)[i]).sum())
                .collect()
        };
        out.probs = combine(&|m| &m.probs, genre_weights);
        out.genre_shift = weighted_shift(members, genre_weights);
        out.rating = combine(&|m| &m.rating, rating_weights);
        let same_weights = members
            .iter()
            .all(|m| m.weights.as_ref().map(Vec::len) == out.weights.as_ref().map(Vec::len));
        out.weights = match out.weights {
            Some(_) if same_weights => Some(combine(
                &|m| m.weights.as_ref().expect("checked"),
                genre_weights,
            )),
            _ => None,
        };
        let mean_of = |get: fn(&Predictions) -> f64| {
            members
                .iter()
                .zip(genre_weights)
                .map(|(m, w)| get(m) * f64::from(*w))
                .sum::<f64>()
        };
        out.loss = mean_of(|m| m.loss);
        out.genre_loss = mean_of(|m| m.genre_loss);
        out.rating_loss = mean_of(|m| m.rating_loss);
        out
    }
}

/// The members' logit shifts weighted by their genre weights (none counts as 0); empty when
/// no member has one. It only places a blend's threshold grid, so the approximation of
/// mixing probabilities by mixing logits is harmless.
fn weighted_shift(members: &[Predictions], weights: &[f32]) -> Vec<f32> {
    let Some(g) = members
        .iter()
        .map(|m| m.genre_shift.len())
        .max()
        .filter(|g| *g > 0)
    else {
        return Vec::new();
    };
    (0..g)
        .map(|k| {
            members
                .iter()
                .zip(weights)
                .map(|(m, w)| w * m.genre_shift.get(k).copied().unwrap_or(0.0))
                .sum()
        })
        .collect()
}

fn to_vec(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 tensor")
}

fn to_vec1(t: Tensor<1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 tensor")
}

/// Everything needed to score a batch.
pub struct Scorer<'a> {
    pub loss: &'a LossConfig,
    pub scale: RatingScale,
    pub pos_weight: Option<Vec<f32>>,
    /// Subtracted from the genre logits before the sigmoid (`LossConfig::genre_logit_shift`;
    /// empty: none).
    pub genre_shift: &'a [f32],
}

impl Scorer<'_> {
    /// The main loss (fused output) plus `aux_weight` × the mean per-modality loss.
    pub fn loss(
        &self,
        out: &cinefuse_model::ModelOutput,
        batch: &MovieBatch,
        main_weight: f64,
        aux_weight: f64,
    ) -> cinefuse_model::LossParts {
        self.loss_over(out, batch, (main_weight, aux_weight), None)
    }

    /// `loss`, with its means divided by `rows` (a whole batch's counts, for one shard of it)
    /// instead of this batch's own.
    pub fn loss_over(
        &self,
        out: &cinefuse_model::ModelOutput,
        batch: &MovieBatch,
        (main_weight, aux_weight): (f64, f64),
        rows: Option<cinefuse_model::LossRows>,
    ) -> cinefuse_model::LossParts {
        let device = batch.rating.device();
        let pw = self
            .pos_weight
            .as_ref()
            .map(|w| Tensor::<1>::from_data(TensorData::new(w.clone(), [w.len()]), &device));
        let targets = cinefuse_model::LossTargets {
            genres: batch.genres.clone(),
            genres_present: batch.genres_present.clone(),
            rating_std: self.scale.standardize(batch.rating.clone()),
            rating_present: batch.rating_present.clone(),
            pos_weight: pw,
            rows,
        };
        let score = |g: Tensor<2>, r: Tensor<1>| self.loss.compute(g, r, &targets);
        let mut parts = score(out.genre_logits.clone(), out.rating.clone());
        parts.total = parts.total * main_weight;
        if aux_weight > 0.0 && out.per_modality.len() > 1 {
            let k = out.per_modality.len() as f64;
            for m in &out.per_modality {
                let aux = score(m.genre_logits.clone(), m.rating.clone());
                parts.total = parts.total + aux.total * (aux_weight / k);
            }
        }
        parts
    }
}

/// Runs `model` (already in inference mode) over `dataset`.
pub fn predict_dataset(
    model: &CinefuseModel,
    dataset: impl Dataset<MovieItem> + 'static,
    batcher: &MovieBatcher,
    batch_size: usize,
    device: &Device,
    scorer: &Scorer,
    drop: &[Modality],
) -> Predictions {
    let loader = DataLoaderBuilder::new(batcher.clone())
        .batch_size(batch_size)
        .set_device(device.clone())
        .build(dataset);
    let mut p = Predictions::default();
    let mut seen = 0usize;
    for batch in loader.iter() {
        let batch = batch.expect("dataset items are in memory");
        let b = batch.len();
        let out = model.forward_masked(&batch, drop);
        let parts = scorer.loss(&out, &batch, 1.0, 0.0);
        let [total, genre, rating] = parts.values();
        p.loss += f64::from(total) * b as f64;
        p.genre_loss += f64::from(genre) * b as f64;
        p.rating_loss += f64::from(rating) * b as f64;
        collect(&mut p, &batch, out, scorer.scale, scorer.genre_shift);
        seen += b;
    }
    if seen > 0 {
        p.loss /= seen as f64;
        p.genre_loss /= seen as f64;
        p.rating_loss /= seen as f64;
    }
    p
}

fn collect(
    p: &mut Predictions,
    batch: &MovieBatch,
    out: cinefuse_model::ModelOutput,
    scale: RatingScale,
    genre_shift: &[f32],
) {
    let [_, g] = out.genre_logits.dims();
    p.n_genres = g;
    p.ids.extend(batch.ids.iter().cloned());
    p.probs
        .extend(genre_probabilities(out.genre_logits, genre_shift));
    p.genre_shift = genre_shift.to_vec();
    p.targets.extend(to_vec(batch.genres.clone()));
    p.genres_present.extend(
        to_vec1(batch.genres_present.clone())
            .into_iter()
            .map(|x| x > 0.5),
    );
    p.rating
        .extend(to_vec1(out.rating).into_iter().map(|r| scale.to_rating(r)));
    p.rating_true.extend(to_vec1(batch.rating.clone()));
    p.rating_present.extend(
        to_vec1(batch.rating_present.clone())
            .into_iter()
            .map(|x| x > 0.5),
    );
    if let Some(w) = out.weights {
        p.weights.get_or_insert_with(Vec::new).extend(to_vec(w));
    }
    p.votes.extend(votes_of(batch));
    let plots = to_vec1(batch.plot_present.clone());
    let posters = to_vec1(batch.poster_present.clone());
    p.given_without
        .extend(plots.iter().zip(&posters).map(|(t, i)| GivenWithout {
            plot: *t < 0.5,
            poster: *i < 0.5,
        }));
}

/// `sigmoid(logit − shift)` per genre, row-major; no shift when `shift` is empty.
fn genre_probabilities(logits: Tensor<2>, shift: &[f32]) -> Vec<f32> {
    let [b, g] = logits.dims();
    let logits = if shift.is_empty() {
        logits
    } else {
        assert_eq!(shift.len(), g, "one logit shift per genre");
        let shift = Tensor::<1>::from_data(TensorData::new(shift.to_vec(), [g]), &logits.device());
        logits - shift.unsqueeze::<2>().expand([b, g])
    };
    to_vec(sigmoid(logits))
}

/// Each movie's scaled log vote count, NaN when unknown or when the data has no such column.
fn votes_of(batch: &MovieBatch) -> Vec<f32> {
    let [b, n] = batch.numeric.dims();
    let col = crate::interval::VOTES_COLUMN;
    if n <= col {
        return vec![f32::NAN; b];
    }
    let values = to_vec(batch.numeric.clone().slice([0..b, col..col + 1]));
    let missing = to_vec(batch.numeric_missing.clone().slice([0..b, col..col + 1]));
    values
        .into_iter()
        .zip(missing)
        .map(|(v, m)| if m > 0.5 { f32::NAN } else { v })
        .collect()
}

/// Predicts a handful of in-memory items (used by `predict`).
pub fn predict_items(
    model: &CinefuseModel,
    items: Vec<MovieItem>,
    batcher: &MovieBatcher,
    device: &Device,
    (scale, genre_shift): (RatingScale, &[f32]),
    drop: &[Modality],
) -> Predictions {
    let mut p = Predictions::default();
    for chunk in items.chunks(64) {
        let batch = batcher.batch(chunk.to_vec(), device);
        let out = model.forward_masked(&batch, drop);
        collect(&mut p, &batch, out, scale, genre_shift);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(ids: &[&str], loss: f64, weights: Option<Vec<f32>>) -> Predictions {
        let n = ids.len();
        Predictions {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            n_genres: 1,
            probs: vec![0.5; n],
            targets: vec![1.0; n],
            genres_present: vec![true; n],
            rating: vec![7.0; n],
            rating_true: vec![6.0; n],
            rating_present: vec![true; n],
            weights,
            votes: vec![1.0; n],
            loss,
            ..Predictions::default()
        }
    }

    /// Chunks of one prediction run, joined: rows in order, the loss weighted by rows, and
    /// the modality weights (two per movie) kept only when every chunk has them.
    #[test]
    fn concat_keeps_rows_losses_and_modality_weights_aligned() {
        let a = part(
            &["a", "b", "c"],
            1.0,
            Some(vec![0.1, 0.9, 0.2, 0.8, 0.3, 0.7]),
        );
        let b = part(&["d"], 5.0, Some(vec![0.4, 0.6]));
        let all = Predictions::concat(&[a.clone(), b]);
        assert_eq!(all.ids, ["a", "b", "c", "d"]);
        assert!((all.loss - 2.0).abs() < 1e-12, "{}", all.loss);
        assert_eq!(
            all.weights,
            Some(vec![0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.4, 0.6])
        );
        let without = part(&["d"], 5.0, None);
        assert_eq!(Predictions::concat(&[a, without]).weights, None);
        assert_eq!(Predictions::concat(&[]).ids.len(), 0);
    }
}

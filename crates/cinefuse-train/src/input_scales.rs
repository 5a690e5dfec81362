//! How much wider a blend's rating interval is for a movie given without its plot or poster.
//!
//! The interval's bins hold out-of-fold residuals of movies rated with every input they had.
//! A movie given without its plot, or its poster, is rated worse, and on the test split the
//! bins under-covered such movies the more inputs were missing together: 89 % without the
//! plot, 87 % without the plot and the extras, 85 % without the poster as well
//! (docs/RESULTS.md, "Where the interval under-covers"). So the blend rates its out-of-fold
//! movies again with those inputs taken away, each by the rating that would rate it so (its own
//! rating, or the reduced rating that keeps the vote count when the movie is also given without
//! its extras), and learns one factor per case: the conformal quantile, over those movies, of
//! each one's residual divided by its bin's half-width. A movie given so then takes its bin's
//! residuals times that factor (`Calibration::scale_of`), never less than once.

use anyhow::Result;
use burn::data::dataset::{Dataset, DatasetError};
use cinefuse_data::MovieItem;

use crate::bag::out_of_fold_with;
use crate::blend::tree_part;
use crate::content_rating::{ContentRating, feature_rows};
use crate::ensemble::Ensemble;
use crate::interval::{
    Calibration, EXTRAS_KEY_OFFSET, GivenWithout, InputScale, RatedBy, plain_votes, voteless_key,
};
use crate::plotless_stacking::without_plot;
use crate::predictions::Predictions;
use crate::rating_trees::RatingTrees;
use crate::voteless_rating::{LearnedVoteless, mix_reduced, prepared_without};

/// The cases a scale is learnt for: without the plot, without the poster, without both.
const CASES: [GivenWithout; 3] = [
    GivenWithout {
        plot: true,
        poster: false,
    },
    GivenWithout {
        plot: false,
        poster: true,
    },
    GivenWithout {
        plot: true,
        poster: true,
    },
];

/// A dataset's movies given without the inputs `.0` names, as such a movie is encoded.
pub struct WithoutInputs<D>(pub GivenWithout, pub D);

impl<D: Dataset<MovieItem>> Dataset<MovieItem> for WithoutInputs<D> {
    fn get(&self, index: usize) -> Result<MovieItem, DatasetError> {
        self.1.get(index).map(|item| without_inputs(item, self.0))
    }

    fn len(&self) -> usize {
        self.1.len()
    }
}

/// `item` as it would be encoded without the inputs `without` names.
pub fn without_inputs(mut item: MovieItem, without: GivenWithout) -> MovieItem {
    if without.plot {
        item = without_plot(item);
    }
    if without.poster {
        item.poster = None;
        item.poster_features = None;
        item.poster_states = None;
    }
    item
}

/// What rates a blend's out-of-fold movies: its bags, rating trees and rating weights, its
/// reduced ratings and content rating, and its out-of-fold members (keyed for the interval).
pub struct BlendRatings<'a> {
    pub parts: &'a [Ensemble],
    pub trees: Option<&'a RatingTrees>,
    /// The blend's rating weights: the bags, the votes (0), then the rating trees.
    pub rating_weights: &'a [f32],
    pub voteless: Option<&'a LearnedVoteless>,
    pub content: Option<&'a ContentRating>,
    pub members: &'a [Predictions],
}

/// One case's out-of-fold movies: each one's residual as the case rates it, its key and fold.
#[derive(Default)]
struct CaseResiduals {
    residuals: Vec<f32>,
    keys: Vec<f32>,
    folds: Vec<usize>,
}

/// The scales of `cal` for the movies given without their plot or poster, learnt on `b`'s
/// out-of-fold movies that had them; each case and rating with too few movies gets none.
pub fn learn(b: &BlendRatings<'_>, cal: &Calibration) -> Result<Vec<InputScale>> {
    let start = std::time::Instant::now();
    let mut scales = Vec::new();
    for without in CASES {
        crate::trainer::stop_if_interrupted("the interval's scales")?;
        for (rated_by, case) in case_residuals(b, cal, without)? {
            if let Some(s) = fit_scale(cal, &case, without, rated_by) {
                scales.push(s);
            }
        }
    }
    println!(
        "learnt the interval's widening for movies without a plot or poster in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    Ok(scales)
}

/// Each bag's members' predictions of their held-out folds given without `without` and
/// without the numeric fields `blank`.
fn bags_without(
    parts: &[Ensemble],
    without: GivenWithout,
    blank: &[usize],
) -> Result<Vec<Vec<Predictions>>> {
    parts
        .iter()
        .map(|e| {
            out_of_fold_with(&e.members, &e.info, |m, rows| {
                let prepared = prepared_without(&m.prepared, blank);
                m.predict_dataset(WithoutInputs(without, prepared.dataset_of(rows)))
            })
        })
        .collect()
}

/// The residuals of the movies the blend rates itself (with a vote count, in the vote or
/// lacking bins) that had every input `without` takes away, rated again without them: by the
/// blend's own rating, and by the reduced rating that keeps the vote count (the same movies
/// also given without their extras).
fn case_residuals(
    b: &BlendRatings<'_>,
    cal: &Calibration,
    without: GivenWithout,
) -> Result<Vec<(RatedBy, CaseResiduals)>> {
    // Rated, keyed by its vote count, and given the inputs taken away (as the member saw it).
    let had = |p: &Predictions, i: usize| {
        let given = p.given_without_of(i);
        p.rating_present[i]
            && cal.rated_by(p.votes[i]) == Some(RatedBy::Blend)
            && !(without.plot && given.plot)
            && !(without.poster && given.poster)
    };
    let parts = blend_parts(b, bags_without(b.parts, without, &[])?)?;
    let mut own = CaseResiduals::default();
    for (k, m) in b.members.iter().enumerate() {
        same_movies(m, &parts[0][k])?;
        let each: Vec<Predictions> = parts.iter().map(|p| p[k].clone()).collect();
        let w = b.rating_weights;
        let ratings = Predictions::weighted(&each, w, w).rating;
        for i in (0..m.ids.len()).filter(|i| had(m, *i)) {
            own.push(ratings[i] - m.rating_true[i], m.votes[i], k);
        }
    }
    let mut out = vec![(RatedBy::Blend, own)];
    if let Some(reduced) = extras_residuals(b, cal, without, &had)? {
        out.push((RatedBy::Extras, reduced));
    }
    Ok(out)
}

/// Every part of the blend, in its order, from the bags' predictions `bags`: the bags, the
/// votes (whose rating weight is 0; `vote_part` keeps the first bag's rating) and the rating
/// trees reading the first bag's genre probabilities (`tree_part`).
fn blend_parts(
    b: &BlendRatings<'_>,
    mut bags: Vec<Vec<Predictions>>,
) -> Result<Vec<Vec<Predictions>>> {
    let trees = match b.trees {
        Some(t) => Some(tree_part(t, prepared(b), &bags[0])?),
        None => None,
    };
    let votes = b.rating_weights.len() - bags.len() - usize::from(trees.is_some());
    let lead = bags[0].clone();
    bags.extend(std::iter::repeat_n(lead, votes));
    bags.extend(trees);
    Ok(bags)
}

/// A bag's held-out fold predicted again holds the blend's member's movies, in its order.
fn same_movies(member: &Predictions, again: &Predictions) -> Result<()> {
    if member.ids != again.ids {
        anyhow::bail!(
            "a bag's held-out fold, predicted again, holds other movies than the blend's"
        );
    }
    Ok(())
}

fn prepared<'a>(b: &BlendRatings<'a>) -> &'a cinefuse_data::Prepared {
    &b.parts[0].lead().prepared
}

/// The residuals of the reduced rating that keeps the vote count on the movies that had the
/// inputs `without` takes away and their vote count, given without both and without their
/// extras; `None` when the blend has no such rating.
fn extras_residuals(
    b: &BlendRatings<'_>,
    cal: &Calibration,
    without: GivenWithout,
    had: &dyn Fn(&Predictions, usize) -> bool,
) -> Result<Option<CaseResiduals>> {
    let Some((s, set)) = b.voteless.and_then(|v| {
        let keeps = v
            .sets
            .iter()
            .enumerate()
            .find(|(_, l)| l.info.keeps_votes());
        keeps.filter(|(s, _)| cal.extras_sets.contains(s))
    }) else {
        return Ok(None);
    };
    let info = &set.info;
    let bags = bags_without(b.parts, without, &info.columns)?;
    let mut out = CaseResiduals::default();
    for (k, m) in b.members.iter().enumerate() {
        let lead = &bags[0][k];
        same_movies(m, lead)?;
        let trees = set.trees.predict_member_without(
            k,
            prepared(b),
            &lead.ids,
            &info.columns,
            Some(lead),
        )?;
        let plots = match (b.content, without.plot) {
            (Some(_), false) => feature_rows(prepared(b), &lead.ids, false)?,
            _ => vec![None; lead.ids.len()],
        };
        let weights = (&info.part_weights[..], info.trees_weight, info.plot_weight);
        for i in (0..m.ids.len()).filter(|i| had(m, *i)) {
            let ridge = b
                .content
                .zip(plots[i])
                .map(|(c, x)| c.members[k].predict(x));
            let own = bags.iter().map(|p| p[k].rating[i]);
            let rating = mix_reduced(weights, own, trees[i], ridge);
            let key = match cal.extras {
                Some(_) => EXTRAS_KEY_OFFSET + plain_votes(m.votes[i]),
                None => voteless_key(s),
            };
            out.push(rating - m.rating_true[i], key, k);
        }
    }
    Ok(Some(out))
}

impl CaseResiduals {
    fn push(&mut self, residual: f32, key: f32, fold: usize) {
        self.residuals.push(residual);
        self.keys.push(key);
        self.folds.push(fold);
    }

    /// Each movie's residual over its bin's half-width at `cal`'s coverage, with its fold;
    /// a movie whose bin is too small for one is left out.
    fn ratios(&self, cal: &Calibration) -> Vec<(f32, usize)> {
        (0..self.residuals.len())
            .filter_map(|i| {
                let half = cal.half_width(self.keys[i])?;
                (half > 0.0).then(|| (self.residuals[i].abs() / half, self.folds[i]))
            })
            .collect()
    }
}

/// The scale for one case and rating from its movies' ratios, when they are enough for an
/// interval at `cal`'s coverage; the training log says how the bins alone and with the scale
/// cover them, the latter cross-fitted (each fold's movies under the scale of the others).
fn fit_scale(
    cal: &Calibration,
    case: &CaseResiduals,
    without: GivenWithout,
    rated_by: RatedBy,
) -> Option<InputScale> {
    let ratios = case.ratios(cal);
    let all: Vec<f32> = ratios.iter().map(|(r, _)| *r).collect();
    let scale = scale_of(&all, cal.coverage)?;
    let covered = |s: f32, of: &[(f32, usize)]| {
        of.iter().filter(|(r, _)| *r <= s).count() as f64 / of.len().max(1) as f64
    };
    let folds = ratios.iter().map(|(_, f)| f + 1).max().unwrap_or(0);
    let cross: usize = (0..folds)
        .filter_map(|f| {
            let (held, rest): (Vec<_>, Vec<_>) = ratios.iter().partition(|(_, g)| *g == f);
            let rest: Vec<f32> = rest.iter().map(|(r, _)| *r).collect();
            let s = scale_of(&rest, cal.coverage)?;
            Some(held.iter().filter(|(r, _)| *r <= s).count())
        })
        .sum();
    println!(
        "interval without the {} (rated {}), out of fold on {} movies: the bins cover {:.1} %; \
         widened ×{:.2}, {:.1} % (cross-fitted {:.1} %)",
        without.describe(),
        rated_by_name(rated_by),
        all.len(),
        100.0 * covered(1.0, &ratios),
        scale,
        100.0 * covered(scale, &ratios),
        100.0 * cross as f64 / ratios.len().max(1) as f64,
    );
    Some(InputScale {
        without,
        rated_by,
        scale,
    })
}

/// "without the plot, by the blend's own rating ×1.03; …": what the model card says of `scales`.
pub fn describe(scales: &[&InputScale]) -> String {
    let each: Vec<String> = scales
        .iter()
        .map(|s| {
            format!(
                "without the {}, rated {} ×{:.2}",
                s.without.describe(),
                rated_by_name(s.rated_by),
                s.scale
            )
        })
        .collect();
    each.join("; ")
}

/// How the training log and the model card name the rating a scale serves.
fn rated_by_name(r: RatedBy) -> &'static str {
    match r {
        RatedBy::Blend => "by the blend's own rating",
        RatedBy::Extras => "as given without any extra",
    }
}

/// The conformal quantile of `ratios` at `coverage`, at least 1; `None` when they are too few
/// for it.
pub fn scale_of(ratios: &[f32], coverage: f64) -> Option<f32> {
    let q = crate::metrics::conformal_quantile(ratios, coverage);
    q.is_finite().then_some(q.max(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_is_the_conformal_quantile_of_the_ratios_and_never_below_one() {
        let ratios: Vec<f32> = (1..=20).map(|i| i as f32 / 10.0).collect();
        // The ⌈0.9 · 21⌉ = 19th smallest of 0.1 … 2.0.
        assert_eq!(scale_of(&ratios, 0.9), Some(1.9));
        assert_eq!(scale_of(&[0.5; 20], 0.9), Some(1.0), "never narrower");
        assert_eq!(scale_of(&[2.0; 5], 0.9), None, "too few for 90 %");
    }

    #[test]
    fn a_movie_loses_exactly_the_inputs_named() {
        let item = MovieItem {
            poster: Some(vec![1, 2, 3]),
            tokens: vec![5, 6],
            plot_present: true,
            poster_features: Some(vec![0.5]),
            plot_features: Some(vec![0.25]),
            numeric: vec![1.0],
            ..MovieItem::default()
        };
        let plot = without_inputs(
            item.clone(),
            GivenWithout {
                plot: true,
                poster: false,
            },
        );
        assert!(plot.tokens.is_empty() && !plot.plot_present && plot.plot_features.is_none());
        assert_eq!(plot.poster, item.poster);
        assert_eq!(plot.poster_features, item.poster_features);
        let poster = without_inputs(
            item.clone(),
            GivenWithout {
                plot: false,
                poster: true,
            },
        );
        assert!(poster.poster.is_none() && poster.poster_features.is_none());
        assert_eq!((poster.tokens, poster.plot_present), (item.tokens, true));
        assert_eq!(poster.numeric, item.numeric);
    }
}

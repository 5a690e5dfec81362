//! Rating intervals that hold on movies the model has never seen.
//!
//! CV+ (Barber, Candès, Ramdas & Tibshirani 2021): every calibration movie `i` has an
//! out-of-fold residual `Rᵢ = |yᵢ − μ₋ₖ₍ᵢ₎(xᵢ)|` from the bag member `k(i)` that did not train on
//! it. A new movie's interval runs from the ⌊α(n+1)⌋-th smallest of `μₖ₍ᵢ₎(x) − Rᵢ` to the
//! ⌈(1−α)(n+1)⌉-th smallest of `μₖ₍ᵢ₎(x) + Rᵢ`, with `μₖ(x)` each member's prediction. With one
//! model and its validation residuals it is split conformal.
//!
//! Mondrian by vote count: residuals are calibrated separately in bins of the movie's (scaled,
//! log) vote count, so a well-known movie gets a narrower interval than an obscure one, and
//! each bin holds its own coverage.

use serde::{Deserialize, Serialize};

use crate::predictions::Predictions;

/// The column of `votes` among the numeric metadata features (`NUMERIC_FEATURES`).
pub const VOTES_COLUMN: usize = 2;

/// The interval key (in place of the vote count) of a movie a blend rates from its plot alone,
/// having no metadata (`content_rating.rs`): its interval comes from `Calibration::content`.
pub const RATED_FROM_CONTENT: f32 = f32::NEG_INFINITY;

/// The interval key of a movie a blend rates with its `set`-th rating without the vote count
/// (`voteless_rating.rs`): the unknown vote count's NaN for the first set, and for set s > 0
/// −s·10³⁰, far below any scaled log vote count. Its interval comes from
/// `Calibration::without_votes[set]`.
pub fn voteless_key(set: usize) -> f32 {
    match set {
        0 => f32::NAN,
        s => -(s as f32) * VOTELESS_KEY_SCALE,
    }
}

/// The set of the rating without the vote count that `key` marks, if any (`voteless_key`).
pub fn voteless_set(key: f32) -> Option<usize> {
    if key.is_nan() {
        Some(0)
    } else if key.is_finite() && key <= -0.5 * VOTELESS_KEY_SCALE {
        let set = (-key / VOTELESS_KEY_SCALE).round();
        (set <= MAX_VOTELESS_SETS as f32).then_some(set as usize)
    } else {
        None
    }
}

/// What a movie's key adds when it has a vote count and lacks one of the fields
/// `Calibration::lacking_columns` groups (`Calibration::key`): scaled log vote counts lie
/// within ±20, far below it, and near 1000 an f32 still resolves 6e-5.
pub const LACKING_KEY_OFFSET: f32 = 1000.0;

/// Whether `key` marks a movie that lacks one of those fields (`Calibration::key`).
pub fn is_lacking(key: f32) -> bool {
    (0.5 * LACKING_KEY_OFFSET..0.5 * EXTRAS_KEY_OFFSET).contains(&key)
}

/// What a movie's key adds when the reduced rating that keeps the vote count rates it (a movie
/// given without any extra) and the interval has vote bins for such movies
/// (`Calibration::extras`): their coverage fell with the vote count in one flat bin (85 %,
/// 92 %, 95 % by tercile on the test movies given without their extras, docs/RESULTS.md).
pub const EXTRAS_KEY_OFFSET: f32 = 4000.0;

/// Whether `key` marks a movie rated by the reduced rating that keeps the vote count, with
/// its vote count (`EXTRAS_KEY_OFFSET`).
pub fn is_extras_key(key: f32) -> bool {
    key.is_finite() && key >= 0.5 * EXTRAS_KEY_OFFSET
}

/// Whether `key` is a movie's own scaled vote count, of no other kind of key: not unknown, not
/// a reduced rating's, the content rating's, a lacking or an extras key.
pub fn is_vote_key(key: f32) -> bool {
    key.is_finite() && voteless_set(key).is_none() && !is_lacking(key) && !is_extras_key(key)
}

/// A key's vote count without the offset of a movie lacking some extras.
pub fn plain_votes(key: f32) -> f32 {
    if is_lacking(key) {
        key - LACKING_KEY_OFFSET
    } else {
        key
    }
}

/// `Calibration::key` for the fields `columns`.
pub fn lacking_key(key: f32, numeric_missing: &[f32], columns: &[Vec<usize>]) -> f32 {
    let missing = |c: &usize| numeric_missing.get(*c).is_some_and(|m| *m > 0.5);
    let lacks = columns
        .iter()
        .any(|field| !field.is_empty() && field.iter().all(missing));
    if lacks && is_vote_key(key) {
        key + LACKING_KEY_OFFSET
    } else {
        key
    }
}

/// `Calibration::key_members` for the fields `columns`.
pub fn rekey_lacking<'a>(
    members: &mut [Predictions],
    missing: impl Fn(usize) -> &'a [f32],
    columns: &[Vec<usize>],
) {
    if columns.is_empty() {
        return;
    }
    for p in members {
        for (i, key) in p.votes.iter_mut().enumerate() {
            *key = lacking_key(*key, missing(i), columns);
        }
    }
}

/// More sets than any blend learns (it learns four at most); a key beyond is no set's.
const MAX_VOTELESS_SETS: usize = 16;

/// The step between the keys of `voteless_key`.
pub const VOTELESS_KEY_SCALE: f32 = 1e30;

/// Fewest calibration residuals a bin may hold: below about 2/α an interval at coverage
/// 1 − α is unbounded or unstable.
fn min_per_bin(coverage: f64) -> usize {
    ((2.0 / (1.0 - coverage)).ceil() as usize).max(10)
}

/// A fitted interval.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Calibration {
    /// Nominal coverage, e.g. 0.9.
    pub coverage: f64,
    /// Upper edges of the vote bins (scaled log votes), ascending; a movie whose vote count is
    /// unknown goes into the first bin.
    pub edges: Vec<f32>,
    /// Per bin: (the member that did not train on the movie, its absolute residual).
    pub bins: Vec<Vec<(u16, f32)>>,
    /// A blend's residuals of the movies it rates from their plot alone, as `bins` holds
    /// them (out of fold, one bin); empty: such movies use the first bin like any other.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<(u16, f32)>,
    /// A blend's residuals of the movies it rates without their vote count
    /// (`voteless_rating.rs`), as `bins` holds them, one bin per set of its ratings without
    /// the vote count; none: a movie whose vote count is unknown uses the first vote bin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub without_votes: Vec<Vec<(u16, f32)>>,
    /// A blend's fields whose absence sets a movie apart (each field's numeric columns: the
    /// declared numeric and text extras, a Metacritic score, award words): a movie with a vote
    /// count that lacks one of them is calibrated with `lacking`'s vote bins. Real movies
    /// without a Metacritic score are obscure ones the model rates worse: out of fold the
    /// shared vote bins covered 83 % of them and 92 % of the rest (docs/RESULTS.md, "An
    /// interval of their own for movies without some extras"). Empty: no such group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lacking_columns: Vec<Vec<usize>>,
    /// The vote bins of those movies, when they were enough for one; without it their keys
    /// fall back to `bins`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lacking: Option<Box<Calibration>>,
    /// The sets of `without_votes` that keep the vote count (they rate a movie given without
    /// any extra), for the reader: `eval` counts their movies apart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extras_sets: Vec<usize>,
    /// The vote bins of the movies that reduced rating rates, when they were enough for them:
    /// such a movie is then keyed `EXTRAS_KEY_OFFSET` + its vote count, and takes them instead
    /// of its set's flat bin in `without_votes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<Box<Calibration>>,
    /// How much wider a movie's interval is when it comes without its plot or poster: its
    /// bin's residuals times `scale` (`input_scales.rs`). The bins are fitted on movies rated
    /// with every input; out of fold, the same movies without them have larger residuals.
    /// Empty: no movie's interval is widened.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_scales: Vec<InputScale>,
}

/// The inputs a movie came without, among those whose absence widens its interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GivenWithout {
    pub plot: bool,
    pub poster: bool,
}

impl GivenWithout {
    /// Whether the movie came with both.
    pub fn is_none(&self) -> bool {
        !(self.plot || self.poster)
    }

    /// "plot", "poster", "plot and poster": what the training log and the model card say.
    pub fn describe(&self) -> &'static str {
        match (self.plot, self.poster) {
            (true, true) => "plot and poster",
            (true, false) => "plot",
            (false, true) => "poster",
            (false, false) => "nothing",
        }
    }
}

/// Which ratings an interval's scale serves (`Calibration::rated_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RatedBy {
    /// The blend's own rating, of a movie with its vote count (in the vote or lacking bins).
    Blend,
    /// The reduced rating that keeps the vote count, of a movie given without any extra.
    Extras,
}

/// One widening of the interval: movies rated by `rated_by` and given `without` those inputs
/// take their bin's residuals times `scale` (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InputScale {
    pub without: GivenWithout,
    pub rated_by: RatedBy,
    pub scale: f32,
}

/// One calibration movie.
#[derive(Debug, Clone, Copy)]
pub struct Residual {
    pub member: u16,
    pub residual: f32,
    /// Scaled log vote count; NaN when unknown.
    pub votes: f32,
}

impl Calibration {
    /// Fits up to `max_bins` vote bins, each with enough residuals; residuals whose key marks a
    /// movie lacking some fields (`key`) get vote bins of their own (`lacking`) when they are
    /// enough for one, and join the rest otherwise. `None` when there are too few residuals
    /// for any interval at this coverage.
    pub fn fit(residuals: &[Residual], max_bins: usize, coverage: f64) -> Option<Self> {
        let unshifted = |r: &Residual| Residual {
            votes: r.votes - LACKING_KEY_OFFSET,
            ..*r
        };
        let (lacking, rest): (Vec<Residual>, Vec<Residual>) =
            residuals.iter().partition(|r| is_lacking(r.votes));
        let lacking: Vec<Residual> = lacking.iter().map(unshifted).collect();
        let own = Self::fit_bins(&lacking, max_bins, coverage);
        match (own, Self::fit_bins(&rest, max_bins, coverage)) {
            (Some(own), Some(cal)) => Some(Self {
                lacking: Some(Box::new(own)),
                ..cal
            }),
            _ => Self::fit_bins(&[rest, lacking].concat(), max_bins, coverage),
        }
    }

    /// This interval keying the movies that lack one of the fields `columns` groups (each
    /// field's numeric columns) apart; the blend fitted it on keys made so (`key`).
    pub fn with_lacking_columns(mut self, columns: Vec<Vec<usize>>) -> Self {
        self.lacking_columns = columns;
        self
    }

    /// A movie's interval key given its vote-count key `key` and its numeric missing flags:
    /// `key + LACKING_KEY_OFFSET` when it has a vote count (a finite key of no other kind) and
    /// lacks every column of one of `lacking_columns`' fields; `key` otherwise.
    pub fn key(&self, key: f32, numeric_missing: &[f32]) -> f32 {
        lacking_key(key, numeric_missing, &self.lacking_columns)
    }

    /// Each member's key of every movie re-made by `key`, movie i's missing flags from
    /// `missing(i)`.
    pub fn key_members<'a>(
        &self,
        members: &mut [Predictions],
        missing: impl Fn(usize) -> &'a [f32],
    ) {
        rekey_lacking(members, missing, &self.lacking_columns);
    }

    /// Up to `max_bins` vote bins over `residuals`, each with enough of them.
    fn fit_bins(residuals: &[Residual], max_bins: usize, coverage: f64) -> Option<Self> {
        let need = min_per_bin(coverage);
        if residuals.len() < need {
            return None;
        }
        let mut known: Vec<f32> = residuals
            .iter()
            .map(|r| r.votes)
            .filter(|v| v.is_finite())
            .collect();
        known.sort_by(f32::total_cmp);
        for bins in (1..=max_bins.max(1)).rev() {
            let edges: Vec<f32> = (1..bins)
                .filter_map(|b| known.get(b * known.len() / bins).copied())
                .collect();
            let mut cal = Self {
                coverage,
                edges,
                bins: Vec::new(),
                content: Vec::new(),
                without_votes: Vec::new(),
                lacking_columns: Vec::new(),
                lacking: None,
                extras_sets: Vec::new(),
                extras: None,
                input_scales: Vec::new(),
            };
            cal.bins = vec![Vec::new(); cal.edges.len() + 1];
            for r in residuals {
                let b = cal.bin(r.votes);
                cal.bins[b].push((r.member, r.residual.abs()));
            }
            if cal.bins.iter().all(|b| b.len() >= need) {
                return Some(cal);
            }
        }
        None
    }

    /// The bin of a movie with (scaled log) vote count `votes`.
    pub fn bin(&self, votes: f32) -> usize {
        if !votes.is_finite() {
            return 0;
        }
        self.edges.iter().take_while(|e| votes >= **e).count()
    }

    /// The residuals of the movies `key` calibrates with: its vote bin (in `lacking`'s bins
    /// for a key that marks a movie lacking some fields), the content bin for
    /// `RATED_FROM_CONTENT`, or the bin of the rating without the vote count that rated it
    /// (`voteless_key`; the first such bin when its own is missing), when the interval has
    /// those.
    fn residuals_for(&self, key: f32) -> &[(u16, f32)] {
        if is_extras_key(key) {
            let votes = key - EXTRAS_KEY_OFFSET;
            return match &self.extras {
                Some(own) => own.residuals_for(votes),
                None => &self.bins[self.bin(votes)],
            };
        }
        if is_lacking(key) {
            let votes = key - LACKING_KEY_OFFSET;
            return match &self.lacking {
                Some(own) => own.residuals_for(votes),
                None => &self.bins[self.bin(votes)],
            };
        }
        let voteless = voteless_set(key).map(|s| {
            let own = self.without_votes.get(s).filter(|b| !b.is_empty());
            own.or(self.without_votes.first().filter(|b| !b.is_empty()))
        });
        if key == RATED_FROM_CONTENT && !self.content.is_empty() {
            &self.content
        } else if let Some(Some(bin)) = voteless {
            bin
        } else {
            &self.bins[self.bin(key)]
        }
    }

    /// This interval with a content bin from `residuals` (signed; the member that did not
    /// train on each movie), when they are enough for its coverage.
    pub fn with_content(mut self, residuals: &[(u16, f32)]) -> Self {
        if let Some(bin) = self.own_bin(residuals) {
            self.content = bin;
        }
        self
    }

    /// This interval with a bin per set of the ratings without the vote count, from each
    /// set's residuals, as `with_content` (a set with too few gets an empty bin).
    pub fn with_voteless(mut self, sets: &[&[(u16, f32)]]) -> Self {
        self.without_votes = sets
            .iter()
            .map(|r| self.own_bin(r).unwrap_or_default())
            .collect();
        self
    }

    /// This interval knowing which of its `without_votes` sets keep the vote count.
    /// This interval with vote bins (up to `max_bins`) for the movies rated by the reduced
    /// rating that keeps the vote count, from its residuals (signed, with the movies' vote
    /// keys), when they are enough for them.
    pub fn with_extras_bins(mut self, residuals: &[Residual], max_bins: usize) -> Self {
        self.extras = Self::fit_bins(residuals, max_bins, self.coverage).map(Box::new);
        self
    }

    pub fn with_extras_sets(mut self, sets: Vec<usize>) -> Self {
        self.extras_sets = sets;
        self
    }

    /// This interval widening the movies given without their plot or poster by `scales`.
    pub fn with_input_scales(mut self, scales: Vec<InputScale>) -> Self {
        self.input_scales = scales;
        self
    }

    /// The half-width of the interval of a movie keyed `key` around one prediction: its bin's
    /// ⌈coverage·(n+1)⌉-th smallest residual; `None` when the bin is too small for one.
    pub fn half_width(&self, key: f32) -> Option<f32> {
        let bin: Vec<f32> = self.residuals_for(key).iter().map(|(_, r)| *r).collect();
        let q = crate::metrics::conformal_quantile(&bin, self.coverage);
        q.is_finite().then_some(q)
    }

    /// `residuals` as a bin of their own, when they are enough for this coverage.
    fn own_bin(&self, residuals: &[(u16, f32)]) -> Option<Vec<(u16, f32)>> {
        (residuals.len() >= min_per_bin(self.coverage))
            .then(|| residuals.iter().map(|(m, r)| (*m, r.abs())).collect())
    }

    /// The interval of a movie from each member's prediction, clipped to 0–10; `None` when
    /// the bin is too small for this coverage. `votes` is the movie's key: its scaled log vote
    /// count, NaN when unknown, `RATED_FROM_CONTENT`, or a `voteless_key`.
    pub fn interval(&self, member_preds: &[f32], votes: f32) -> Option<[f32; 2]> {
        self.interval_given(member_preds, votes, GivenWithout::default())
    }

    /// Which rating rated a movie keyed `key`, for the scales: the reduced rating that keeps
    /// the vote count (an extras key, or its set's key), the blend's own (a vote count's key,
    /// lacking or not), or another (the content rating, a rating without the vote count).
    pub fn rated_by(&self, key: f32) -> Option<RatedBy> {
        if is_extras_key(key) || voteless_set(key).is_some_and(|s| self.extras_sets.contains(&s)) {
            Some(RatedBy::Extras)
        } else if is_vote_key(key) || is_lacking(key) {
            Some(RatedBy::Blend)
        } else {
            None
        }
    }

    /// The factor on the residuals of a movie keyed `key` and given `without` some inputs
    /// (`input_scales`); 1 when none applies.
    pub fn scale_of(&self, key: f32, without: GivenWithout) -> f32 {
        if without.is_none() {
            return 1.0;
        }
        let rated_by = self.rated_by(key);
        self.input_scales
            .iter()
            .find(|s| s.without == without && Some(s.rated_by) == rated_by)
            .map_or(1.0, |s| s.scale)
    }

    /// `interval` of a movie given `without` some inputs: its bin's residuals scaled by
    /// `scale_of`.
    pub fn interval_given(
        &self,
        member_preds: &[f32],
        votes: f32,
        without: GivenWithout,
    ) -> Option<[f32; 2]> {
        let scale = self.scale_of(votes, without);
        let bin = self.residuals_for(votes);
        let n = bin.len();
        let alpha = 1.0 - self.coverage;
        let k_lo = (alpha * (n + 1) as f64).floor() as usize;
        let k_hi = ((1.0 - alpha) * (n + 1) as f64).ceil() as usize;
        if k_lo < 1 || k_hi > n {
            return None;
        }
        let pred = |m: u16| member_preds[usize::from(m).min(member_preds.len() - 1)];
        let mut lows: Vec<f32> = bin.iter().map(|(m, r)| pred(*m) - scale * r).collect();
        let mut highs: Vec<f32> = bin.iter().map(|(m, r)| pred(*m) + scale * r).collect();
        lows.sort_by(f32::total_cmp);
        highs.sort_by(f32::total_cmp);
        Some([lows[k_lo - 1].max(0.0), highs[k_hi - 1].min(10.0)])
    }

    /// Residuals in all vote bins, those of `lacking` too.
    pub fn len(&self) -> usize {
        let lacking = self.lacking.as_ref().map_or(0, |l| l.len());
        self.bins.iter().map(Vec::len).sum::<usize>() + lacking
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How an interval did on labelled movies.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Coverage {
    pub nominal: f64,
    /// Share of movies whose rating fell inside.
    pub coverage: f64,
    pub mean_width: f64,
    /// Movies it was measured on.
    pub count: usize,
}

/// Coverage of `cal` on movies with true ratings `truth`, member predictions `preds[i]` and
/// vote keys `votes[i]`; movies without an interval count as not covered.
pub fn coverage_of(
    cal: &Calibration,
    preds: &[Vec<f32>],
    votes: &[f32],
    truth: &[f32],
) -> Coverage {
    coverage_given(cal, preds, (votes, &[]), truth)
}

/// `coverage_of` with movie i given `without[i]` some inputs (empty: every movie with all).
pub fn coverage_given(
    cal: &Calibration,
    preds: &[Vec<f32>],
    (votes, without): (&[f32], &[GivenWithout]),
    truth: &[f32],
) -> Coverage {
    let mut inside = 0usize;
    let mut width = 0.0f64;
    for (i, ((p, v), t)) in preds.iter().zip(votes).zip(truth).enumerate() {
        let given = without.get(i).copied().unwrap_or_default();
        if let Some([lo, hi]) = cal.interval_given(p, *v, given) {
            inside += usize::from(lo <= *t && *t <= hi);
            width += f64::from(hi - lo);
        }
    }
    let n = truth.len().max(1) as f64;
    Coverage {
        nominal: cal.coverage,
        coverage: inside as f64 / n,
        mean_width: width / n,
        count: truth.len(),
    }
}

/// Out-of-fold coverage per fold: fold `f`'s residuals checked against an interval calibrated
/// on the other folds only (as split conformal around each movie's own out-of-fold
/// prediction), so every number is measured on movies the calibration never saw.
pub fn per_fold_coverage(
    residuals: &[Residual],
    folds: usize,
    max_bins: usize,
    coverage: f64,
) -> Vec<Coverage> {
    (0..folds)
        .map(|f| {
            let (held, rest): (Vec<Residual>, Vec<Residual>) =
                residuals.iter().partition(|r| usize::from(r.member) == f);
            // One member for all: the held-out movie's prediction is its own out-of-fold one.
            let rest: Vec<Residual> = rest
                .into_iter()
                .map(|r| Residual { member: 0, ..r })
                .collect();
            match Calibration::fit(&rest, max_bins, coverage) {
                Some(cal) => {
                    // Each held-out movie as a prediction of 5 and a truth 5 + |R|: covered
                    // iff its residual is inside the calibrated width (no 0–10 clipping).
                    let preds: Vec<Vec<f32>> = held.iter().map(|_| vec![5.0]).collect();
                    let votes: Vec<f32> = held.iter().map(|r| r.votes).collect();
                    let truth: Vec<f32> = held.iter().map(|r| 5.0 + r.residual.abs()).collect();
                    coverage_of(&cal, &preds, &votes, &truth)
                }
                None => Coverage {
                    nominal: coverage,
                    count: held.len(),
                    ..Coverage::default()
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn normal(rng: &mut rand::rngs::StdRng) -> f32 {
        let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-7), rng.random());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }

    /// Noise whose spread falls with the vote count: bins give well-known movies narrow
    /// intervals and obscure ones wide ones, each covering about 90 %.
    fn noisy(n: usize, seed: u64) -> Vec<(f32, f32)> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let votes = rng.random_range(-2.0f32..2.0);
                let sigma = if votes < 0.0 { 1.0 } else { 0.3 };
                (votes, sigma * normal(&mut rng))
            })
            .collect()
    }

    #[test]
    fn vote_bins_adapt_the_width_and_keep_the_coverage() {
        let cal_set: Vec<Residual> = noisy(3000, 1)
            .into_iter()
            .enumerate()
            .map(|(i, (votes, e))| Residual {
                member: (i % 5) as u16,
                residual: e,
                votes,
            })
            .collect();
        let cal = Calibration::fit(&cal_set, 4, 0.9).unwrap();
        assert_eq!(cal.bins.len(), 4);
        let test = noisy(4000, 2);
        let preds: Vec<Vec<f32>> = test.iter().map(|_| vec![5.0; 5]).collect();
        let votes: Vec<f32> = test.iter().map(|t| t.0).collect();
        let truth: Vec<f32> = test.iter().map(|t| 5.0 + t.1).collect();
        let c = coverage_of(&cal, &preds, &votes, &truth);
        assert!((c.coverage - 0.9).abs() < 0.02, "{c:?}");
        let [lo_obscure, hi_obscure] = cal.interval(&[5.0; 5], -1.5).unwrap();
        let [lo_known, hi_known] = cal.interval(&[5.0; 5], 1.5).unwrap();
        assert!(
            hi_obscure - lo_obscure > 2.5 * (hi_known - lo_known),
            "{lo_obscure}..{hi_obscure} vs {lo_known}..{hi_known}"
        );
        for f in per_fold_coverage(&cal_set, 5, 4, 0.9) {
            assert!((f.coverage - 0.9).abs() < 0.05, "{f:?}");
        }
    }

    #[test]
    fn movies_lacking_a_field_get_vote_bins_of_their_own_and_each_group_its_coverage() {
        // A fifth of the movies lack field 0 (columns 3 and 4) and are rated three times worse.
        let lacking = |i: usize| i.is_multiple_of(5);
        let flags = |i: usize| {
            let m = if lacking(i) { 1.0 } else { 0.0 };
            vec![0.0, 0.0, 0.0, m, m, 0.0]
        };
        let columns = vec![vec![3, 4], vec![5]];
        let key = |i: usize, votes: f32| lacking_key(votes, &flags(i), &columns);
        let set = |n: usize, seed: u64| -> Vec<(usize, f32, f32)> {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            (0..n)
                .map(|i| {
                    let votes = rng.random_range(-2.0f32..2.0);
                    let sigma = if lacking(i) { 0.9 } else { 0.3 };
                    (i, votes, sigma * normal(&mut rng))
                })
                .collect()
        };
        let residuals: Vec<Residual> = set(3000, 3)
            .into_iter()
            .map(|(i, votes, e)| Residual {
                member: (i % 5) as u16,
                residual: e,
                votes: key(i, votes),
            })
            .collect();
        let cal = Calibration::fit(&residuals, 3, 0.9)
            .unwrap()
            .with_lacking_columns(columns.clone());
        assert_eq!(cal.lacking.as_ref().unwrap().len(), 600);
        assert_eq!(cal.len(), 3000);
        let test = set(5000, 4);
        for group in [true, false] {
            let movies: Vec<_> = test.iter().filter(|t| lacking(t.0) == group).collect();
            let preds: Vec<Vec<f32>> = movies.iter().map(|_| vec![5.0; 5]).collect();
            let keys: Vec<f32> = movies.iter().map(|t| cal.key(t.1, &flags(t.0))).collect();
            let truth: Vec<f32> = movies.iter().map(|t| 5.0 + t.2).collect();
            let c = coverage_of(&cal, &preds, &keys, &truth);
            assert!((c.coverage - 0.9).abs() < 0.025, "lacking {group}: {c:?}");
        }
        let width = |key: f32| {
            let [lo, hi] = cal.interval(&[5.0; 5], key).unwrap();
            hi - lo
        };
        assert!(width(key(0, 0.5)) > 2.5 * width(key(1, 0.5)));
        // Only a vote-count key moves: not a movie rated without its vote count or from its
        // plot, nor one that lacks a part of a field's columns.
        for other in [f32::NAN, voteless_key(2), RATED_FROM_CONTENT] {
            assert_eq!(cal.key(other, &flags(0)).to_bits(), other.to_bits());
        }
        assert_eq!(cal.key(0.5, &[0.0, 0.0, 0.0, 1.0, 0.0, 0.0]), 0.5);
        assert_eq!(
            cal.key(0.5, &[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]),
            0.5 + LACKING_KEY_OFFSET
        );
        // Too few such movies for a bin: they join the others' bins, keyed as before.
        let few: Vec<Residual> = residuals
            .iter()
            .enumerate()
            .filter(|(i, r)| !is_lacking(r.votes) || *i < 50)
            .map(|(_, r)| *r)
            .collect();
        let cal = Calibration::fit(&few, 3, 0.9).unwrap();
        assert!(cal.lacking.is_none());
        assert_eq!(cal.len(), few.len());
        let shifted = 0.5 + LACKING_KEY_OFFSET;
        assert_eq!(
            cal.interval(&[5.0; 5], shifted),
            cal.interval(&[5.0; 5], 0.5)
        );
    }

    #[test]
    fn cv_plus_uses_the_member_that_did_not_see_each_movie() {
        // Member 1 predicts 2 points higher: its residuals shift the interval with it.
        let set: Vec<Residual> = (0..40)
            .map(|i| Residual {
                member: (i % 2) as u16,
                residual: 0.5,
                votes: f32::NAN,
            })
            .collect();
        let cal = Calibration::fit(&set, 1, 0.9).unwrap();
        let [lo, hi] = cal.interval(&[5.0, 7.0], f32::NAN).unwrap();
        assert_eq!((lo, hi), (4.5, 7.5));
    }

    #[test]
    fn too_few_residuals_give_no_interval_instead_of_an_infinite_one() {
        let set: Vec<Residual> = (0..8)
            .map(|_| Residual {
                member: 0,
                residual: 0.1,
                votes: 0.0,
            })
            .collect();
        assert!(Calibration::fit(&set, 3, 0.9).is_none());
    }
    /// 100 residuals from 0 to 0.9, two members, movie i's vote key `votes(i)`.
    fn hundred_residuals(votes: impl Fn(usize) -> f32) -> Vec<Residual> {
        (0..100)
            .map(|i| Residual {
                member: (i % 2) as u16,
                residual: 0.1 * (i % 10) as f32,
                votes: votes(i),
            })
            .collect()
    }

    #[test]
    fn a_movie_rated_from_content_takes_the_content_bin() {
        let residuals = hundred_residuals(|_| 0.0);
        let cal = Calibration::fit(&residuals, 1, 0.9).unwrap();
        let narrow = cal.interval(&[5.0, 5.0], 0.0).unwrap();
        // Without a content bin the key falls into the first bin, as NaN does.
        assert_eq!(
            cal.interval(&[5.0, 5.0], RATED_FROM_CONTENT).unwrap(),
            narrow
        );
        // Too few residuals for 90 %: no content bin.
        assert!(cal.clone().with_content(&[(0, 2.0); 10]).content.is_empty());
        let wide: Vec<(u16, f32)> = (0..40).map(|i| ((i % 2) as u16, -2.0)).collect();
        let cal = cal.with_content(&wide);
        assert_eq!(cal.content.len(), 40);
        assert!(
            cal.content.iter().all(|(_, r)| *r == 2.0),
            "stored as absolute residuals"
        );
        assert_eq!(
            cal.interval(&[5.0, 5.0], RATED_FROM_CONTENT).unwrap(),
            [3.0, 7.0]
        );
        assert_eq!(
            cal.interval(&[5.0, 5.0], 0.0).unwrap(),
            narrow,
            "others keep their bins"
        );
    }

    #[test]
    fn a_movie_keyed_with_its_vote_count_by_the_set_that_keeps_it_takes_its_vote_bins() {
        let plain: Vec<Residual> = (0..40u16)
            .map(|i| Residual {
                member: 0,
                residual: 0.5,
                votes: f32::from(i % 4),
            })
            .collect();
        // 22 a bin: at 90 % a bin needs 21.
        let kept: Vec<Residual> = (0..44u16)
            .map(|i| Residual {
                member: 0,
                residual: if i % 2 == 0 { 1.0 } else { 3.0 },
                votes: f32::from(i % 2) * 10.0,
            })
            .collect();
        let cal = Calibration::fit(&plain, 2, 0.9)
            .unwrap()
            .with_extras_bins(&kept, 2);
        let extras = cal.extras.as_ref().expect("44 residuals fill two bins");
        assert_eq!(extras.edges, [10.0]);
        // Few votes: the narrow bin; many: the wide one; a plain key: the shared vote bins.
        assert_eq!(cal.interval(&[5.0], EXTRAS_KEY_OFFSET), Some([4.0, 6.0]));
        assert_eq!(
            cal.interval(&[5.0], EXTRAS_KEY_OFFSET + 10.0),
            Some([2.0, 8.0])
        );
        assert_eq!(cal.interval(&[5.0], 0.0), Some([4.5, 5.5]));
        assert!(is_extras_key(EXTRAS_KEY_OFFSET - 20.0) && !is_lacking(EXTRAS_KEY_OFFSET));
        assert!(is_lacking(LACKING_KEY_OFFSET + 20.0) && !is_extras_key(LACKING_KEY_OFFSET));
        assert_eq!(
            lacking_key(EXTRAS_KEY_OFFSET, &[1.0; 8], &[vec![5]]),
            EXTRAS_KEY_OFFSET
        );
        assert_eq!(plain_votes(LACKING_KEY_OFFSET + 2.0), 2.0);
        let few = Calibration::fit(&plain, 2, 0.9)
            .unwrap()
            .with_extras_bins(&kept[..10], 2);
        assert!(few.extras.is_none(), "10 residuals are too few");
    }

    #[test]
    fn a_movie_without_a_vote_count_takes_the_voteless_bin_when_there_is_one() {
        let residuals = hundred_residuals(|i| (i % 7) as f32);
        let cal = Calibration::fit(&residuals, 2, 0.9).unwrap();
        let first = cal.interval(&[5.0, 5.0], f32::MIN).unwrap();
        assert_eq!(cal.interval(&[5.0, 5.0], f32::NAN).unwrap(), first);
        let (one, two) = (voteless_key(1), voteless_key(2));
        assert_eq!(cal.interval(&[5.0, 5.0], two).unwrap(), first);
        let few = cal
            .clone()
            .with_voteless(&[&[(0, 1.0); 10], &[(0, 1.0); 10]]);
        assert!(few.without_votes.iter().all(Vec::is_empty));
        let wide: Vec<(u16, f32)> = (0..40).map(|i| ((i % 2) as u16, -1.5)).collect();
        let cal = cal.with_voteless(&[&wide]).with_content(&[(0, 3.0); 40]);
        assert_eq!(cal.interval(&[5.0, 5.0], f32::NAN).unwrap(), [3.5, 6.5]);
        assert_eq!(
            cal.interval(&[5.0, 5.0], two).unwrap(),
            [3.5, 6.5],
            "without a bin of its own, the first voteless one"
        );
        assert_eq!(cal.interval(&[5.0, 5.0], f32::MIN).unwrap(), first);
        assert_eq!(
            cal.interval(&[5.0, 5.0], RATED_FROM_CONTENT).unwrap(),
            [2.0, 8.0],
            "the content bin is its own"
        );
        let wider: Vec<(u16, f32)> = (0..40).map(|i| ((i % 2) as u16, 2.5)).collect();
        let cal = cal.with_voteless(&[&wide, &[], &wider]);
        assert_eq!(cal.interval(&[5.0, 5.0], two).unwrap(), [2.5, 7.5]);
        assert_eq!(cal.interval(&[5.0, 5.0], one).unwrap(), [3.5, 6.5]);
        assert_eq!(cal.interval(&[5.0, 5.0], f32::NAN).unwrap(), [3.5, 6.5]);
        assert_eq!((voteless_set(one), voteless_set(two)), (Some(1), Some(2)));
        assert_eq!(voteless_set(RATED_FROM_CONTENT), None);
        assert_eq!(voteless_set(-3.0), None);
        assert_eq!(voteless_set(f32::MIN), None, "far beyond any set");
    }

    /// Residuals of 1 in one vote bin, 30 of them: around a prediction of 5 the interval is
    /// 4–6, and a scale of 2 for movies without a plot rated by the blend makes it 3–7 for
    /// exactly those movies (and 2–8 for the extras-free rating's, scale 3).
    #[test]
    fn a_scale_widens_only_the_movies_given_without_its_inputs_and_rated_its_way() {
        let ones: Vec<Residual> = (0..30)
            .map(|i| Residual {
                member: 0,
                residual: 1.0,
                votes: i as f32 * 0.1,
            })
            .collect();
        let plot = GivenWithout {
            plot: true,
            poster: false,
        };
        let poster = GivenWithout {
            plot: false,
            poster: true,
        };
        let cal = Calibration::fit(&ones, 1, 0.9)
            .unwrap()
            .with_voteless(&[&[(0, 1.0); 30]])
            .with_extras_sets(vec![0])
            .with_input_scales(vec![
                InputScale {
                    without: plot,
                    rated_by: RatedBy::Blend,
                    scale: 2.0,
                },
                InputScale {
                    without: plot,
                    rated_by: RatedBy::Extras,
                    scale: 3.0,
                },
            ]);
        let given = |key: f32, without: GivenWithout| cal.interval_given(&[5.0], key, without);
        assert_eq!(given(0.5, GivenWithout::default()), Some([4.0, 6.0]));
        assert_eq!(given(0.5, plot), Some([3.0, 7.0]));
        assert_eq!(given(0.5 + LACKING_KEY_OFFSET, plot), Some([3.0, 7.0]));
        assert_eq!(given(0.5, poster), Some([4.0, 6.0]), "no scale for it");
        assert_eq!(given(0.5 + EXTRAS_KEY_OFFSET, plot), Some([2.0, 8.0]));
        assert_eq!(
            given(voteless_key(0), plot),
            Some([2.0, 8.0]),
            "the set's key"
        );
        assert_eq!(given(RATED_FROM_CONTENT, plot), Some([4.0, 6.0]));
        let both = GivenWithout {
            plot: true,
            poster: true,
        };
        assert_eq!(given(0.5, both), Some([4.0, 6.0]), "each case has its own");
        assert_eq!(cal.half_width(0.5), Some(1.0));
        // Serialised without the field when empty, and read back with it.
        let text = serde_json::to_string(&cal).unwrap();
        assert!(text.contains(r#""rated_by":"extras""#), "{text}");
        assert_eq!(serde_json::from_str::<Calibration>(&text).unwrap(), cal);
        let plain = Calibration::fit(&ones, 1, 0.9).unwrap();
        assert!(
            !serde_json::to_string(&plain)
                .unwrap()
                .contains("input_scales")
        );
    }
}

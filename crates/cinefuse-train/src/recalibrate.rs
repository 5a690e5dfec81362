//! An exported model's rating interval fitted again on rated movies of the user's own source
//! (`cinefuse calibrate`). The interval an export ships is calibrated out of fold on its
//! training movies, so it holds on movies like them. On movies from elsewhere it covers what
//! the training movies' errors cover: the 90 % interval of the shipped config's frozen part
//! covered 61–74 % of the vega movies, another source and era (docs/RESULTS.md). Split conformal prediction
//! holds on any source whose calibration movies are exchangeable with the movies predicted,
//! so a few hundred rated movies of that source give an interval that holds there. Each
//! calibration movie's residual is taken against one member's rating, the members in turn,
//! and falls in the group the model keys the movie into (vote bins, movies lacking some
//! extras, movies rated from the plot alone, each reduced rating), as the training movies'
//! out-of-fold residuals did. Genres, ratings and every weight stay as they were: the new
//! export is the old one with its interval replaced.

use std::path::Path;

use anyhow::{Context, Result, bail};
use cinefuse_data::output_dir::OutputKind;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bag::INTERVAL_BINS;
use crate::config::BackendKind;
use crate::export::{MANIFEST_FILE, Manifest};
use crate::interval::{
    Calibration, Coverage, EXTRAS_KEY_OFFSET, GivenWithout, RATED_FROM_CONTENT, Residual,
    coverage_given, is_extras_key, voteless_set,
};
use crate::predictor::{PREDICT_CHUNK, Predictor, movies_from_jsonl_text, repeated_ids};
use crate::run_dir::write_json;

/// What an export records when its interval was fitted again (`Manifest::recalibrated`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recalibration {
    /// The JSONL file of rated movies, as given.
    pub data: String,
    /// Its SHA-256.
    pub data_sha256: String,
    /// The rated movies the interval was fitted on.
    pub movies: usize,
    /// The file's movies without a rating, left out.
    #[serde(default)]
    pub unrated: usize,
    /// Of those, per group the model keys movies into: its name and how many fell in it.
    pub groups: Vec<(String, usize)>,
    /// The groups rated another way that these movies were too few to fit, which kept the
    /// export's own bins, scaled as the vote bins changed (absent in files from before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<KeptBins>,
    /// How a fit on half of the movies held on the other half.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<HalfCheck>,
}

/// Groups whose bins came from the export, not from the calibration movies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptBins {
    /// Their names, as `groups` names them.
    pub groups: Vec<String>,
    /// The factor their residuals were scaled by: the new vote bins' quantile over the old.
    pub scale: f32,
}

/// How the refit holds on movies it did not see: the rated movies split in two by a hash of
/// their id, an interval fitted on either half scored on the other, beside the export's own
/// interval on the same movies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HalfCheck {
    /// The export's interval as it was, on every rated movie (`None`: it had none).
    pub before: Option<Coverage>,
    /// The halves' refits, each on the other half, pooled.
    pub after: Coverage,
}

/// Fits the interval of the export `model` again on the rated movies of `jsonl` and writes
/// the export with it to `out` (a new folder, or an earlier export replaced whole; neither
/// input may lie inside it).
pub fn recalibrate(
    model: &Path,
    jsonl: &Path,
    out: &Path,
    backend: Option<BackendKind>,
) -> Result<Recalibration> {
    cinefuse_data::output_dir::check_output(out, OutputKind::Export, &[model, jsonl])?;
    refuse_inside(out, model)?;
    // Read once: the movies fitted on are the bytes whose hash the manifest records.
    let text = cinefuse_data::user_file::read_text_capped(
        jsonl,
        cinefuse_data::user_file::MAX_JSONL_BYTES,
    )?;
    let given = movies_from_jsonl_text(&text, jsonl)?;
    let predictor = Predictor::load(model, backend)?;
    let (movies, unrated) = rated_movies(&predictor, jsonl, given)?;
    let old = &predictor.manifest;
    let residuals = residuals(&movies.iter().collect::<Vec<_>>(), old.interval.as_ref());
    let (interval, kept) = refit_keeping(old.interval.as_ref(), old.interval_coverage, &residuals)
        .with_context(|| format!("{}: the rated movies", jsonl.display()))?;
    let record = Recalibration {
        data: jsonl.display().to_string(),
        data_sha256: format!("{:x}", Sha256::digest(text.as_bytes())),
        movies: residuals.len(),
        unrated,
        groups: groups(&interval, &residuals),
        kept,
        check: half_check(
            (old.interval.as_ref(), old.interval_half_width),
            old.interval_coverage,
            &movies,
        ),
    };
    let manifest = Manifest {
        interval: Some(interval),
        recalibrated: Some(record.clone()),
        ..old.clone()
    };
    write_export(model, (jsonl, out), &manifest)?;
    Ok(record)
}

/// One rated movie of the calibration file as the model predicts it: each member's rating,
/// its interval key, its true rating.
struct Rated {
    id: String,
    members: Vec<f32>,
    key: f32,
    /// The inputs it came without (its interval widens by the export's scale for them).
    without: GivenWithout,
    truth: f32,
}

/// The rated movies of `all` (read from `jsonl`, with their line numbers) as the model
/// predicts them, and how many had no rating.
fn rated_movies(
    predictor: &Predictor,
    jsonl: &Path,
    all: Vec<(usize, cinefuse_data::Movie)>,
) -> Result<(Vec<Rated>, usize)> {
    let base = jsonl.parent().map(Path::to_path_buf).unwrap_or_default();
    let total = all.len();
    let rated: Vec<(usize, cinefuse_data::Movie, f32)> = all
        .into_iter()
        .filter_map(|(line, m)| m.rating.map(|r| (line, m, r)))
        .collect();
    if rated.is_empty() {
        bail!("{}: no movie has a rating", jsonl.display());
    }
    for (id, n) in repeated_ids(rated.iter().map(|(_, m, _)| m)) {
        // Conformal coverage needs movies like those predicted, each once.
        eprintln!(
            "warning: {}: the id {id:?} is given {n} times; each counts as a calibration movie",
            jsonl.display()
        );
    }
    let mut out = Vec::with_capacity(rated.len());
    for chunk in rated.chunks(PREDICT_CHUNK) {
        let items = chunk
            .iter()
            .map(|(line, m, _)| {
                let at = || format!("{}:{line}: movie {:?}", jsonl.display(), m.id);
                predictor.item(m, None, &base).with_context(at)
            })
            .collect::<Result<Vec<_>>>()?;
        let members = predictor.member_predictions(&items);
        for (j, (_, m, truth)) in chunk.iter().enumerate() {
            out.push(Rated {
                id: m.id.clone(),
                members: members.iter().map(|p| p.rating[j]).collect(),
                key: members[0].votes[j],
                without: members[0].given_without_of(j),
                truth: *truth,
            });
        }
    }
    Ok((out, total - rated.len()))
}

/// The calibration residuals of `movies`: each one's rating minus member k's, k in turn over
/// the movies, keyed as the model keys it. A movie given without its plot or poster has its
/// residual divided by the scale `old` widens such a movie's interval by, so that the bins
/// hold residuals of movies as if given every input and the scale still applies once.
fn residuals(movies: &[&Rated], old: Option<&Calibration>) -> Vec<Residual> {
    movies
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let k = i % m.members.len();
            let scale = old.map_or(1.0, |c| c.scale_of(m.key, m.without));
            Residual {
                member: k as u16,
                residual: (m.members[k] - m.truth) / scale,
                votes: m.key,
            }
        })
        .collect()
}

/// `HalfCheck` of `movies` for an export whose interval is `cal` or a fixed half-width, at
/// `coverage`; `None` when a half is too small to fit.
fn half_check(
    (cal, half): (Option<&Calibration>, Option<f32>),
    coverage: f64,
    movies: &[Rated],
) -> Option<HalfCheck> {
    let first = |m: &&Rated| Sha256::digest(m.id.as_bytes())[0] % 2 == 0;
    let (a, b): (Vec<&Rated>, Vec<&Rated>) = movies.iter().partition(first);
    let fit = |half: &[&Rated]| Some(refit_keeping(cal, coverage, &residuals(half, cal)).ok()?.0);
    let after = [scored(&fit(&a)?, &b), scored(&fit(&b)?, &a)];
    let all: Vec<&Rated> = movies.iter().collect();
    let before = match (cal, half) {
        (Some(c), _) => Some(scored(c, &all)),
        (None, Some(w)) => Some(half_width_scored(w, coverage, &all)),
        (None, None) => None,
    };
    Some(HalfCheck {
        before,
        after: pooled(&after),
    })
}

/// `cal` scored on `movies`.
fn scored(cal: &Calibration, movies: &[&Rated]) -> Coverage {
    let preds: Vec<Vec<f32>> = movies.iter().map(|m| m.members.clone()).collect();
    let keys: Vec<f32> = movies.iter().map(|m| m.key).collect();
    let without: Vec<GivenWithout> = movies.iter().map(|m| m.without).collect();
    let truth: Vec<f32> = movies.iter().map(|m| m.truth).collect();
    coverage_given(cal, &preds, (&keys, &without), &truth)
}

/// A fixed half-width `w` at `coverage` scored on `movies`: each one's interval is its
/// members' mean rating ± w, clipped to 0–10, as `predict` gives it.
fn half_width_scored(w: f32, coverage: f64, movies: &[&Rated]) -> Coverage {
    let intervals: Vec<(f32, f32, f32)> = movies
        .iter()
        .map(|m| {
            let rating = m.members.iter().sum::<f32>() / m.members.len() as f32;
            ((rating - w).max(0.0), (rating + w).min(10.0), m.truth)
        })
        .collect();
    let inside = intervals.iter().filter(|(lo, hi, t)| lo <= t && t <= hi);
    let width: f64 = intervals.iter().map(|(lo, hi, _)| f64::from(hi - lo)).sum();
    let n = movies.len().max(1) as f64;
    Coverage {
        nominal: coverage,
        coverage: inside.count() as f64 / n,
        mean_width: width / n,
        count: movies.len(),
    }
}

/// `check` in a sentence, for the command's output and the model card.
pub fn describe_check(check: &HalfCheck) -> String {
    let pct = |c: &Coverage| format!("{:.1} %", c.coverage * 100.0);
    let before = match &check.before {
        Some(b) => format!(
            "; the export's own interval covered {} of these movies (mean width {:.2})",
            pct(b),
            b.mean_width
        ),
        None => String::new(),
    };
    format!(
        "an interval fitted on either half of them (by a hash of the id) covered {} of the \
         other half (mean width {:.2}, nominal {:.0} %){before}",
        pct(&check.after),
        check.after.mean_width,
        check.after.nominal * 100.0
    )
}

/// Several scores on disjoint movies as one.
fn pooled(parts: &[Coverage]) -> Coverage {
    let count: usize = parts.iter().map(|c| c.count).sum();
    let mean = |f: fn(&Coverage) -> f64| {
        parts.iter().map(|c| f(c) * c.count as f64).sum::<f64>() / count.max(1) as f64
    };
    Coverage {
        nominal: parts.first().map_or(0.0, |c| c.nominal),
        coverage: mean(|c| c.coverage),
        mean_width: mean(|c| c.mean_width),
        count,
    }
}

/// `refit`, and which groups kept the export's bins.
pub fn refit_keeping(
    old: Option<&Calibration>,
    coverage: f64,
    residuals: &[Residual],
) -> Result<(Calibration, Option<KeptBins>)> {
    let fitted = refit(old, coverage, residuals)?;
    Ok(match old {
        Some(old) => keep_unfitted_groups(fitted, old),
        None => (fitted, None),
    })
}

/// `new` with the export's own bin for each group rated another way (from the plot alone, by
/// a reduced rating) that the new movies were too few to fit, its residuals scaled by how the
/// vote bins' quantile changed: such a movie keeps its group's extra width instead of taking
/// the vote bins of movies rated from all their fields (a plot-only movie's interval had
/// shrunk from 2.6 to 1.4 wide when the calibration movies all had metadata).
fn keep_unfitted_groups(
    mut new: Calibration,
    old: &Calibration,
) -> (Calibration, Option<KeptBins>) {
    let quantile = |c: &Calibration| {
        let all: Vec<f32> = c.bins.iter().flatten().map(|(_, r)| *r).collect();
        crate::metrics::conformal_quantile(&all, c.coverage)
    };
    let scale = quantile(&new) / quantile(old);
    if !(scale.is_finite() && scale > 0.0) {
        return (new, None);
    }
    let scaled = |bin: &[(u16, f32)]| bin.iter().map(|(m, r)| (*m, r * scale)).collect();
    let mut kept = Vec::new();
    if new.content.is_empty() && !old.content.is_empty() {
        new.content = scaled(&old.content);
        kept.push(CONTENT_GROUP.to_string());
    }
    for (s, bin) in new.without_votes.iter_mut().enumerate() {
        if let Some(o) = old
            .without_votes
            .get(s)
            .filter(|o| bin.is_empty() && !o.is_empty())
        {
            *bin = scaled(o);
            kept.push(set_group(&new.extras_sets, s));
        }
    }
    let kept = (!kept.is_empty()).then_some(KeptBins {
        groups: kept,
        scale,
    });
    (new, kept)
}

/// What `kept` says, as `calibrate` prints it and the model card records it.
pub fn describe_kept(kept: &KeptBins) -> String {
    format!(
        "groups with too few of them for a bin of their own: {}; those keep the export's bins, scaled by \
         {:.2} as the vote bins changed",
        kept.groups.join(", "),
        kept.scale
    )
}

const CONTENT_GROUP: &str = "rated from the plot alone";

/// The name of reduced rating `s`'s group, given the sets that keep the vote count.
fn set_group(extras_sets: &[usize], s: usize) -> String {
    // Blends from before `extras_sets` do not say which sets keep the vote count.
    if extras_sets.contains(&s) {
        format!("rated as given without any extra (reduced rating {s})")
    } else {
        format!("rated without some fields (reduced rating {s})")
    }
}

/// The interval fitted on `residuals`, keyed as `old` keys movies (its groups, the fields whose
/// absence sets a movie apart, its reduced ratings) at `coverage`: vote bins from the movies of
/// neither reduced rating nor plot alone, with bins of their own for those lacking some extras;
/// a bin for the movies rated from the plot alone and one per reduced rating, each when its
/// movies are enough for one (else they take the vote bins; `refit_keeping` gives them the
/// export's). With too few movies for vote bins, one bin of every movie.
pub fn refit(
    old: Option<&Calibration>,
    coverage: f64,
    residuals: &[Residual],
) -> Result<Calibration> {
    let sets = old.map_or(0, |c| c.without_votes.len());
    // A movie keyed with its vote count by the set that keeps it belongs to that set.
    let kept_set = old.and_then(|c| c.extras_sets.first().copied());
    let set_of = |r: &Residual| match is_extras_key(r.votes) {
        true => kept_set,
        false => voteless_set(r.votes).filter(|s| *s < sets),
    };
    let content = |r: &Residual| r.votes == RATED_FROM_CONTENT;
    let rest: Vec<Residual> = residuals
        .iter()
        .filter(|r| !content(r) && set_of(r).is_none() && !is_extras_key(r.votes))
        .copied()
        .collect();
    let kept: Vec<Residual> = residuals
        .iter()
        .filter(|r| is_extras_key(r.votes))
        .map(|r| Residual {
            votes: r.votes - EXTRAS_KEY_OFFSET,
            ..*r
        })
        .collect();
    let pooled = || {
        let unkeyed: Vec<Residual> = residuals
            .iter()
            .map(|r| Residual { votes: 0.0, ..*r })
            .collect();
        Calibration::fit(&unkeyed, 1, coverage)
    };
    let Some(bins) = Calibration::fit(&rest, INTERVAL_BINS, coverage).or_else(pooled) else {
        bail!(
            "{} rated movies are too few for a {:.0} % interval",
            residuals.len(),
            coverage * 100.0
        );
    };
    let pairs = |keep: &dyn Fn(&Residual) -> bool| -> Vec<(u16, f32)> {
        residuals
            .iter()
            .filter(|r| keep(r))
            .map(|r| (r.member, r.residual))
            .collect()
    };
    let per_set: Vec<Vec<(u16, f32)>> = (0..sets)
        .map(|s| pairs(&|r| set_of(r) == Some(s)))
        .collect();
    let per_set: Vec<&[(u16, f32)]> = per_set.iter().map(Vec::as_slice).collect();
    Ok(bins
        .with_lacking_columns(old.map(|c| c.lacking_columns.clone()).unwrap_or_default())
        .with_content(&pairs(&content))
        .with_voteless(&per_set)
        .with_extras_bins(&kept, INTERVAL_BINS)
        .with_extras_sets(old.map(|c| c.extras_sets.clone()).unwrap_or_default())
        .with_input_scales(old.map(|c| c.input_scales.clone()).unwrap_or_default()))
}

/// How many of `residuals` fell in each group of `cal`, by name.
fn groups(cal: &Calibration, residuals: &[Residual]) -> Vec<(String, usize)> {
    let count = |keep: &dyn Fn(f32) -> bool| residuals.iter().filter(|r| keep(r.votes)).count();
    let kept_set = cal.extras_sets.first().copied();
    let set_of = |v: f32| match is_extras_key(v) {
        true => kept_set,
        false => voteless_set(v).filter(|s| *s < cal.without_votes.len()),
    };
    let mut out = vec![
        (
            "vote bins".to_string(),
            count(&|v| v != RATED_FROM_CONTENT && set_of(v).is_none() && !is_lacking(v)),
        ),
        ("lacking some extras".to_string(), count(&is_lacking)),
        (
            CONTENT_GROUP.to_string(),
            count(&|v| v == RATED_FROM_CONTENT),
        ),
    ];
    for s in 0..cal.without_votes.len() {
        let name = set_group(&cal.extras_sets, s);
        out.push((name, count(&|v| set_of(v) == Some(s))));
    }
    out.retain(|(_, n)| *n > 0);
    out
}

fn is_lacking(key: f32) -> bool {
    crate::interval::is_lacking(key)
}

/// The export `model` copied into a new folder `out` with `manifest` and the interval of its
/// portable `config.json` replaced; its model card says why.
fn write_export(model: &Path, (jsonl, out): (&Path, &Path), manifest: &Manifest) -> Result<()> {
    let staging = cinefuse_data::atomic::StagingDir::new(out, OutputKind::Export, &[model, jsonl])?;
    let dir = staging.path();
    copy_tree(model, dir)?;
    write_json(&dir.join(MANIFEST_FILE), manifest)?;
    let portable = dir.join(crate::portable::PORTABLE_CONFIG_FILE);
    if portable.is_file() {
        let text = std::fs::read_to_string(&portable)?;
        let mut config: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not JSON", portable.display()))?;
        config["interval"] = crate::portable::interval_json(manifest);
        write_json(&portable, &config)?;
    }
    crate::model_card::note_recalibration(dir, manifest)?;
    // Loaded as `predict` will load it, so a broken copy never lands.
    Predictor::load(dir, Some(BackendKind::Flex))
        .with_context(|| format!("the recalibrated export in {}", dir.display()))?;
    staging.commit()?;
    Ok(())
}

/// Refuses an output folder inside the model folder: the copy would copy itself, and the
/// user's export would change.
fn refuse_inside(out: &Path, model: &Path) -> Result<()> {
    let resolved = |p: &Path| {
        cinefuse_data::paths::absolute_resolved(p).with_context(|| p.display().to_string())
    };
    if resolved(out)?.starts_with(resolved(model)?) {
        bail!(
            "{}: inside the model folder {}; choose an output folder outside it",
            out.display(),
            model.display()
        );
    }
    Ok(())
}

/// Every file and folder of the export `from` copied into `to`, but the marker that says
/// which command made a folder (the new one has its own); a link or anything but a plain
/// file or folder is refused by name.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| from.display().to_string())? {
        let entry = entry?;
        let name = entry.file_name();
        if name == cinefuse_data::output_dir::MARKER_FILE {
            continue;
        }
        let (source, target) = (entry.path(), to.join(&name));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir(&target)?;
            copy_tree(&source, &target)?;
        } else if kind.is_file() {
            crate::export::copy(&source, &target)?;
        } else {
            bail!(
                "{}: not a plain file or folder; an export holds only those",
                source.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interval::voteless_key;

    fn r(member: u16, residual: f32, votes: f32) -> Residual {
        Residual {
            member,
            residual,
            votes,
        }
    }

    /// An interval with two reduced ratings (the second for movies given without any extra)
    /// and the movies lacking column 5 keyed apart.
    fn trained() -> Calibration {
        let base: Vec<Residual> = (0..40).map(|i| r(0, 0.1, i as f32)).collect();
        Calibration::fit(&base, 1, 0.9)
            .unwrap()
            .with_lacking_columns(vec![vec![5]])
            .with_voteless(&[&[(0, 0.1); 20], &[(0, 0.1); 20]])
            .with_extras_sets(vec![1])
    }

    fn all(bin: &[(u16, f32)], value: f32) -> bool {
        !bin.is_empty() && bin.iter().all(|(_, x)| *x == value)
    }

    /// A movie without its plot has its residual divided by the export's scale for such
    /// movies before the bins are fitted: the scale then applies once, not twice.
    #[test]
    fn a_movie_without_its_plot_is_fitted_in_units_of_a_whole_movie() {
        let without = GivenWithout {
            plot: true,
            poster: false,
        };
        let old = trained().with_input_scales(vec![crate::interval::InputScale {
            without,
            rated_by: crate::interval::RatedBy::Blend,
            scale: 2.0,
        }]);
        let movie = |without: GivenWithout| Rated {
            id: "m".into(),
            members: vec![5.0],
            key: 1.0,
            without,
            truth: 6.0,
        };
        let (plotless, whole) = (movie(without), movie(GivenWithout::default()));
        let got = residuals(&[&plotless, &whole], Some(&old));
        assert_eq!((got[0].residual, got[1].residual), (-0.5, -1.0));
        let refitted = refit(Some(&old), 0.9, &vec![got[1]; 40]).unwrap();
        assert_eq!(refitted.input_scales, old.input_scales, "kept");
    }

    #[test]
    fn each_group_is_fitted_on_its_own_new_residuals() {
        let mut res: Vec<Residual> = (0..60u16)
            .map(|i| r(i % 2, 1.0, f32::from(i % 6)))
            .collect();
        res.extend((0..30u16).map(|i| r(0, -2.0, 1000.0 + f32::from(i % 3))));
        res.extend((0..25).map(|_| r(1, 3.0, RATED_FROM_CONTENT)));
        res.extend((0..25).map(|_| r(0, 4.0, voteless_key(1))));
        res.extend((0..5).map(|_| r(0, 5.0, voteless_key(0))));
        let cal = refit(Some(&trained()), 0.9, &res).unwrap();
        assert!(cal.bins.iter().all(|b| all(b, 1.0)), "{:?}", cal.bins);
        let lacking = cal
            .lacking
            .as_ref()
            .expect("30 lacking movies: bins of their own");
        assert!(lacking.bins.iter().all(|b| all(b, 2.0)));
        assert!(all(&cal.content, 3.0) && all(&cal.without_votes[1], 4.0));
        assert!(
            cal.without_votes[0].is_empty(),
            "5 movies are too few for a bin"
        );
        // So such a movie takes the vote bins.
        assert_eq!(cal.interval(&[5.0], voteless_key(0)), Some([4.0, 6.0]));
        assert_eq!(cal.interval(&[5.0], voteless_key(1)), Some([1.0, 9.0]));
        assert_eq!(
            (cal.lacking_columns.clone(), cal.extras_sets.clone()),
            (vec![vec![5]], vec![1])
        );
        let names: Vec<(String, usize)> = groups(&cal, &res);
        let counts: Vec<usize> = names.iter().map(|(_, n)| *n).collect();
        assert_eq!(counts, [60, 30, 25, 5, 25], "{names:?}");
        assert!(names[4].0.contains("given without any extra"), "{names:?}");
    }

    #[test]
    fn groups_the_new_movies_cannot_fit_keep_the_exports_bins_scaled() {
        let old = trained()
            .with_content(&[(0, 0.5); 25])
            .with_voteless(&[&[(0, 0.1); 25], &[(0, 0.1); 25]]);
        // The vote bins' residuals doubled; no movie rated from the plot alone, 25 by the
        // second reduced rating, none by the first.
        let mut res: Vec<Residual> = (0..60u16).map(|i| r(0, 0.2, f32::from(i % 6))).collect();
        res.extend((0..25).map(|_| r(0, 4.0, voteless_key(1))));
        let (cal, kept) = refit_keeping(Some(&old), 0.9, &res).unwrap();
        assert!(all(&cal.content, 1.0), "{:?}", cal.content);
        assert!(all(&cal.without_votes[0], 0.2) && all(&cal.without_votes[1], 4.0));
        assert_eq!(cal.interval(&[5.0], RATED_FROM_CONTENT), Some([4.0, 6.0]));
        let kept = kept.expect("two groups kept");
        assert_eq!(kept.scale, 2.0);
        assert!(
            describe_kept(&kept).contains("rated from the plot alone, rated without some fields"),
            "{}",
            describe_kept(&kept)
        );
        assert_eq!(
            kept.groups,
            [CONTENT_GROUP.to_string(), set_group(&old.extras_sets, 0)]
        );
        // Movies of every group: nothing is kept.
        res.extend((0..25).map(|_| r(0, 3.0, RATED_FROM_CONTENT)));
        res.extend((0..25).map(|_| r(0, 3.0, voteless_key(0))));
        let (cal, kept) = refit_keeping(Some(&old), 0.9, &res).unwrap();
        assert!(kept.is_none() && all(&cal.content, 3.0));
    }

    #[test]
    fn the_check_scores_each_halfs_fit_on_the_other_half() {
        // Every model rates 5; half the truths are 4, half 6: off by 1 everywhere.
        let movies: Vec<Rated> = (0..200u16)
            .map(|i| Rated {
                id: format!("m{i}"),
                members: vec![5.0, 5.0],
                key: f32::from(i % 7),
                without: GivenWithout::default(),
                truth: [4.0, 6.0][usize::from(i % 2)],
            })
            .collect();
        let check = half_check((None, Some(0.5)), 0.9, &movies).unwrap();
        let before = check.before.as_ref().unwrap();
        assert_eq!((before.coverage, before.mean_width), (0.0, 1.0));
        assert_eq!((check.after.coverage, check.after.count), (1.0, 200));
        assert!((check.after.mean_width - 2.0).abs() < 1e-6);
        let text = describe_check(&check);
        assert!(
            text.contains("covered 100.0 % of the other half (mean width 2.00"),
            "{text}"
        );
        assert!(text.contains("own interval covered 0.0 %"), "{text}");
        assert!(
            half_check((None, None), 0.9, &movies[..30]).is_none(),
            "15 a half: too few"
        );
    }

    #[test]
    fn movies_keyed_with_their_vote_count_by_the_set_that_keeps_it_get_its_vote_bins() {
        let mut res: Vec<Residual> = (0..60u16).map(|i| r(0, 1.0, f32::from(i % 6))).collect();
        res.extend((0..44u16).map(|i| {
            let votes = f32::from(i % 2) * 10.0;
            r(0, 2.0 + votes / 5.0, EXTRAS_KEY_OFFSET + votes)
        }));
        let cal = refit(Some(&trained()), 0.9, &res).unwrap();
        let extras = cal.extras.as_ref().expect("44 movies fill two vote bins");
        assert_eq!(extras.edges, [10.0]);
        assert!(
            cal.bins.iter().all(|b| all(b, 1.0)),
            "not in the shared vote bins"
        );
        assert_eq!(cal.without_votes[1].len(), 44, "and in the set's flat bin");
        assert_eq!(
            cal.interval(&[5.0], EXTRAS_KEY_OFFSET + 10.0),
            Some([1.0, 9.0])
        );
        let counts: Vec<usize> = groups(&cal, &res).iter().map(|(_, n)| *n).collect();
        assert_eq!(counts, [60, 44]);
    }

    #[test]
    fn too_few_movies_for_vote_bins_share_one_bin_and_fewer_are_refused() {
        // Every movie rated by one reduced rating (a table of another source).
        let res: Vec<Residual> = (0..30).map(|_| r(0, 2.0, voteless_key(1))).collect();
        let cal = refit(Some(&trained()), 0.9, &res).unwrap();
        assert_eq!((cal.edges.len(), cal.bins[0].len()), (0, 30));
        assert!(all(&cal.without_votes[1], 2.0));
        // A single model's export keys a movie without votes NaN: the vote bins take it.
        let res: Vec<Residual> = (0..25).map(|i| r(0, 1.0, [f32::NAN, 2.0][i % 2])).collect();
        let cal = refit(None, 0.9, &res).unwrap();
        assert_eq!(cal.len(), 25);
        assert!(cal.without_votes.is_empty() && cal.content.is_empty());
        let err = refit(None, 0.9, &res[..10]).unwrap_err().to_string();
        assert!(
            err.contains("10 rated movies are too few for a 90 % interval"),
            "{err}"
        );
    }
}

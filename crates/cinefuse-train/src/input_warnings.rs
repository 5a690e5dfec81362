//! What `predict` warns about in a movie before predicting it: values far outside the training
//! data, a field the training movies nearly always had, and a movie with no metadata at all.
//! Each is a case where the measured predictions are worse than the model's scores suggest
//! (docs/RESULTS.md, "What each missing input costs").

use cinefuse_data::extra::{FittedFeature, numeric_value};
use cinefuse_data::movie::Movie;
use cinefuse_data::prepared::Preprocessor;
use cinefuse_data::scalers::{NumericScaler, raw_numeric};
use cinefuse_data::split::Split;

/// What a model does with inputs its training movies always had: a blend's own ratings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Handled {
    /// A movie without metadata is rated from its plot (`content_rating.rs`).
    pub from_plot: bool,
    /// The out-of-fold errors of that rating, when the model recorded them.
    pub plot_errors: Option<PlotErrors>,
    /// A movie without a vote count is rated by trees that never saw one
    /// (`voteless_rating.rs`), with the out-of-fold errors they were learnt with.
    pub without_votes: Option<VotelessErrors>,
    /// A movie with a vote count given without any declared extra is rated by trees that
    /// never saw the extras, with the out-of-fold errors they were learnt with.
    pub without_extras: Option<ExtrasErrors>,
}

impl Handled {
    /// What a blend handles: `from_plot` when it has a content rating (`plot_info` its
    /// record, when kept), `voteless` the info of its ratings without the vote count when it
    /// has their trees.
    pub fn of(
        from_plot: bool,
        plot_info: Option<&crate::content_rating::ContentRatingInfo>,
        voteless: Option<&crate::voteless_rating::VotelessRatingInfo>,
    ) -> Self {
        Self {
            from_plot,
            plot_errors: plot_info.filter(|_| from_plot).map(|c| PlotErrors {
                from_plot: c.out_of_fold_mae,
                with_metadata: c.blend_out_of_fold_mae,
            }),
            without_votes: voteless.and_then(VotelessErrors::of),
            without_extras: voteless.and_then(ExtrasErrors::of),
        }
    }
}

/// A blend's out-of-fold rating errors (MAE) on its own movies with a vote count, given with
/// and without the extras: what the warning on a movie given without any extra quotes.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtrasErrors {
    pub with_extras: f32,
    pub without_extras: f32,
    /// The fields its trees never saw.
    pub fields: Vec<String>,
}

impl ExtrasErrors {
    /// The errors of the set of `info` that keeps the vote count (`None` without one).
    pub fn of(info: &crate::voteless_rating::VotelessRatingInfo) -> Option<Self> {
        let set = info.sets.iter().find(|s| s.keeps_votes())?;
        Some(Self {
            with_extras: set.blend_out_of_fold_mae,
            without_extras: set.out_of_fold_mae,
            fields: set.fields.clone(),
        })
    }
}

/// A blend's out-of-fold rating errors (MAE) on its rated movies with a plot: from the plot
/// alone (its content rating), and its own with their metadata.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlotErrors {
    pub from_plot: f32,
    pub with_metadata: f32,
}

/// A blend's out-of-fold rating errors (MAE) on its own movies, with and without the vote
/// count: what the warning on a movie without one quotes.
#[derive(Debug, Clone, PartialEq)]
pub struct VotelessErrors {
    /// The blend given every field.
    pub with_votes: f32,
    /// The narrowest set: only the vote count taken away.
    pub without_votes: f32,
    /// The widest set: every field its sets take away (the same as `without_votes` with one
    /// set).
    pub without_all: f32,
    /// The fields the widest set takes away besides the vote count.
    pub others: Vec<String>,
}

impl VotelessErrors {
    /// The errors `info` records (`None` without a set): of its sets without the vote count,
    /// the first and the last.
    pub fn of(info: &crate::voteless_rating::VotelessRatingInfo) -> Option<Self> {
        let mut voteless = info.sets.iter().filter(|s| !s.keeps_votes());
        let first = voteless.next()?;
        let last = voteless.next_back().unwrap_or(first);
        Some(Self {
            with_votes: first.blend_out_of_fold_mae,
            without_votes: first.out_of_fold_mae,
            without_all: last.out_of_fold_mae,
            others: last
                .fields
                .iter()
                .filter(|f| *f != crate::voteless_rating::VOTES_FIELD)
                .cloned()
                .collect(),
        })
    }
}

/// Every warning for `movie`: a movie without metadata gets that one warning alone.
/// `handled`: what the model rates in its own way.
pub fn input_warnings(pre: &Preprocessor, movie: &Movie, handled: &Handled) -> Vec<String> {
    if handled.from_plot && rated_from_plot(pre, movie) {
        return vec![plot_rating_warning(movie, handled.plot_errors)];
    }
    if let Some(w) = missing_metadata_warning(movie) {
        return vec![w];
    }
    let mut out = extrapolation_warnings(pre, movie);
    let trained_on = pre.state.genres.train_movies_with_genres;
    let mut scalers = numeric_scalers(pre);
    if let Some(errors) = &handled.without_votes {
        scalers.retain(|s| s.name != "votes");
        out.extend(
            movie
                .votes
                .is_none()
                .then(|| voteless_warning(movie, errors)),
        );
    }
    if let Some(errors) = &handled.without_extras {
        let given_without = movie.votes.is_some() && pre.extras_absent(movie);
        out.extend(given_without.then(|| extras_warning(movie, errors)));
    }
    out.extend(rarely_missing_warnings(&scalers, trained_on, movie));
    out
}

/// Movies that share this many warnings or more get one line for all of them.
const GROUPED_WARNING: usize = 3;

/// Each movie's warnings ("ID: what"), in order; a warning that `GROUPED_WARNING` movies or
/// more share word for word is said once, with how many movies and the first few ids, so a
/// JSONL file of movies without a vote count gets one line, not one per movie.
pub fn grouped_warnings(each: impl Iterator<Item = (String, String)>) -> Vec<String> {
    // In order of first appearance: a warning without the id prefix as it is, or a group.
    enum Line {
        Plain(String),
        Group(usize),
    }
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    let mut group_of: std::collections::HashMap<String, usize> = Default::default();
    let mut lines = Vec::new();
    for (id, warning) in each {
        let Some(what) = warning.strip_prefix(&format!("{id}: ")) else {
            lines.push(Line::Plain(warning));
            continue;
        };
        match group_of.get(what) {
            Some(g) => groups[*g].1.push(id),
            None => {
                group_of.insert(what.to_string(), groups.len());
                lines.push(Line::Group(groups.len()));
                groups.push((what.to_string(), vec![id]));
            }
        }
    }
    lines
        .into_iter()
        .flat_map(|line| match line {
            Line::Plain(text) => vec![text],
            Line::Group(g) => group_lines(&groups[g].0, &groups[g].1),
        })
        .collect()
}

/// The lines of one warning `what` that the movies `ids` share.
fn group_lines(what: &str, ids: &[String]) -> Vec<String> {
    if ids.len() < GROUPED_WARNING {
        return ids.iter().map(|id| format!("{id}: {what}")).collect();
    }
    let first = ids[..GROUPED_WARNING].join(", ");
    let more = ids.len() - GROUPED_WARNING;
    let tail = match more {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    vec![format!("{} movies ({first}{tail}): {what}", ids.len())]
}

/// A note for a movie a blend rates without its vote count: a real estimate, rougher than with
/// one, by as much as this model measured out of fold (docs/RESULTS.md, "Movies without a
/// vote count").
fn voteless_warning(movie: &Movie, e: &VotelessErrors) -> String {
    let wider = if e.others.is_empty() {
        String::new()
    } else {
        format!(", {:.2} without {} too", e.without_all, e.others.join(", "))
    };
    format!(
        "{}: no votes; its rating comes from rating trees that never saw a vote count, mixed \
         with the bags' and the plot's, with an interval of its own (out of fold this model's \
         ratings of such movies were off by {:.2} on average{wider}, against {:.2} with votes)",
        movie.id, e.without_votes, e.with_votes
    )
}

/// A note for a movie a blend rates without its extras: given without any, they are unknown
/// (a table without those columns), and trees that never saw them rate it (docs/RESULTS.md,
/// "Movies given without their extras").
fn extras_warning(movie: &Movie, e: &ExtrasErrors) -> String {
    format!(
        "{}: none of the extra fields; its rating comes from rating trees that never saw {}, \
         mixed with the bags', with an interval of its own (out of fold this model's ratings \
         of movies without them were off by {:.2} on average, against {:.2} with them)",
        movie.id,
        e.fields.join(", "),
        e.without_extras,
        e.with_extras
    )
}

/// The fitted numeric fields, built-in then declared extras (named `extra.NAME`).
fn numeric_scalers(pre: &Preprocessor) -> Vec<&NumericScaler> {
    let extras = pre.state.extras.iter().filter_map(|f| match f {
        FittedFeature::Numeric { scaler } => Some(scaler),
        _ => None,
    });
    pre.state.numeric.iter().chain(extras).collect()
}

/// `movie`'s value of the numeric field `scaler` fits (`None`: missing).
fn value_of(scaler: &NumericScaler, movie: &Movie) -> Option<f64> {
    match scaler.name.strip_prefix("extra.") {
        Some(name) => numeric_value(movie, name).ok().flatten(),
        None => raw_numeric(movie, &scaler.name),
    }
}

/// A field missing from fewer than this share of the training movies taught the model almost
/// nothing about movies without it.
const RARELY_MISSING: f64 = 0.01;

/// Warnings for numeric fields `movie` lacks that (nearly) every one of the model's training
/// movies had; `trained_on` is at most the training movies' count (the scalers' largest count
/// stands in when it is larger). Measured: without `votes`, which every dev training movie
/// has, the shipped blend's rating MAE rose from 0.40 to 0.58 and its 90 % interval covered
/// 85.5 %.
pub fn rarely_missing_warnings(
    scalers: &[&NumericScaler],
    trained_on: usize,
    movie: &Movie,
) -> Vec<String> {
    let most = scalers.iter().map(|s| s.fitted_on).max().unwrap_or(0);
    let n = trained_on.max(most);
    scalers
        .iter()
        .filter(|s| n > 0 && value_of(s, movie).is_none())
        .filter(|s| ((n - s.fitted_on.min(n)) as f64) < RARELY_MISSING * n as f64)
        .map(|s| {
            format!(
                "{}: no {}, which {} of the {n} movies the model's inputs were fitted on \
                 had; the prediction (the rating most) extrapolates",
                movie.id,
                s.name,
                s.fitted_on.min(n)
            )
        })
        .collect()
}

/// How many training standard deviations from the training mean a value may lie before
/// `predict` warns that the model is extrapolating.
const FAR_FROM_TRAINING_SD: f64 = 6.0;

/// Warnings for numeric values far outside what the model saw in training.
pub fn extrapolation_warnings(pre: &Preprocessor, movie: &Movie) -> Vec<String> {
    numeric_scalers(pre)
        .into_iter()
        .filter_map(|scaler| {
            let x = value_of(scaler, movie)?;
            let z = f64::from(scaler.apply(Some(x)).0);
            (z.abs() > FAR_FROM_TRAINING_SD).then(|| {
                format!(
                    "{}: {} = {x} is {:.1} standard deviations from the training data; the \
                     prediction is an extrapolation",
                    movie.id,
                    scaler.name,
                    z.abs()
                )
            })
        })
        .collect()
}

/// Whether a model with a content rating rates `movie` from its plot: it has a plot and no
/// category (`metadataless_stacking::given_without_metadata`).
fn rated_from_plot(pre: &Preprocessor, movie: &Movie) -> bool {
    pre.encode(movie, Split::Test)
        .is_ok_and(|s| crate::metadataless_stacking::given_without_metadata(&s))
}

/// A warning for a movie a blend rates from its plot alone: a real estimate, but a much rougher
/// one than from metadata, by as much as this model measured out of fold when it recorded that
/// (docs/RESULTS.md, "Movies without metadata").
fn plot_rating_warning(movie: &Movie, errors: Option<PlotErrors>) -> String {
    let how_rough = match errors {
        Some(e) => format!(
            "out of fold this model's ratings from the plot alone were off by {:.2} on \
             average, against {:.2} with metadata",
            e.from_plot, e.with_metadata
        ),
        None => "a rougher estimate than one from metadata".to_string(),
    };
    format!(
        "{}: no certificate, languages, countries, directors or cast; its rating is read \
         from the plot alone, with a wider interval ({how_rough}), and its genres come from \
         the plot and poster (docs/RESULTS.md)",
        movie.id
    )
}

/// A warning for a movie given without any metadata (a title and a plot, say): the rating
/// leans on it, and the shipped blend rated such movies worse than the training mean, with an
/// interval that covered 71 % of them (docs/RESULTS.md, "What each missing input costs").
pub fn missing_metadata_warning(movie: &Movie) -> Option<String> {
    let m = movie;
    let numbers = [m.year.is_some(), m.runtime_min.is_some(), m.votes.is_some()];
    let money = [m.budget.is_some(), m.gross.is_some()];
    let lists = [&m.languages, &m.countries, &m.directors, &m.cast];
    let some = numbers.iter().chain(&money).any(|b| *b)
        || m.certificate.is_some()
        || lists
            .iter()
            .any(|l| l.as_ref().is_some_and(|v| !v.is_empty()))
        || !m.extra.is_empty();
    (!some).then(|| {
        format!(
            "{}: no metadata (year, runtime, votes, certificate, languages, countries, \
             directors, cast); its genres come from the other inputs, but its rating and \
             interval are unreliable: a model that reads metadata leans on it for the rating \
             (measured on the shipped blend before it rated such movies from the plot: worse \
             than the training mean, its 90 % interval covering 71 %; docs/RESULTS.md)",
            m.id
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cinefuse_data::scalers::NumericTransform;

    fn scaler(name: &str, fitted_on: usize) -> NumericScaler {
        NumericScaler {
            name: name.into(),
            transform: NumericTransform::Identity,
            mean: 0.0,
            std: 1.0,
            fitted_on,
        }
    }

    #[test]
    fn only_a_field_the_training_movies_nearly_always_had_is_missed() {
        let (votes, year, budget) = (
            scaler("votes", 1000),
            scaler("year", 995),
            scaler("budget", 400),
        );
        let scalers = [&votes, &year, &budget];
        let bare = Movie {
            id: "m".into(),
            ..Movie::default()
        };
        let warned = rarely_missing_warnings(&scalers, 1000, &bare);
        assert_eq!(warned.len(), 2, "{warned:?}");
        assert!(
            warned[0].contains("no votes, which 1000 of the 1000 movies"),
            "{warned:?}"
        );
        assert!(warned[1].contains("no year"), "{warned:?}");
        // Given, a field is no concern; nor is one that was often missing in training.
        let given = Movie {
            votes: Some(5),
            year: Some(1999),
            ..bare.clone()
        };
        assert!(rarely_missing_warnings(&scalers, 1000, &given).is_empty());
        // Nine missing of 1,000 is rare; eleven is not.
        let year = scaler("year", 989);
        assert!(rarely_missing_warnings(&[&year], 1000, &bare).is_empty());
    }

    #[test]
    fn a_warning_many_movies_share_is_said_once() {
        let each = |pairs: &[(&str, &str)]| {
            let owned: Vec<(String, String)> = pairs
                .iter()
                .map(|(id, w)| (id.to_string(), format!("{id}: {w}")))
                .collect();
            grouped_warnings(owned.into_iter())
        };
        let lines = each(&[
            ("a", "no votes"),
            ("a", "year 2046 is far out"),
            ("b", "no votes"),
            ("c", "no gross"),
            ("d", "no votes"),
            ("e", "no votes"),
            ("f", "no gross"),
        ]);
        assert_eq!(
            lines,
            [
                "4 movies (a, b, d and 1 more): no votes",
                "a: year 2046 is far out",
                "c: no gross",
                "f: no gross",
            ]
        );
        // Three exactly: all three named.
        let lines = each(&[("a", "x"), ("b", "x"), ("c", "x")]);
        assert_eq!(lines, ["3 movies (a, b, c): x"]);
    }

    #[test]
    fn the_warnings_quote_the_sets_that_rate_such_movies() {
        use crate::voteless_rating::{ReducedRatingInfo, VotelessRatingInfo};
        let set = |fields: &[&str], mae: f32| ReducedRatingInfo {
            columns: Vec::new(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            part_weights: Vec::new(),
            trees_weight: 1.0,
            plot_weight: 0.0,
            movies: 10,
            out_of_fold_mae: mae,
            trees_out_of_fold_mae: mae,
            lead_out_of_fold_mae: mae,
            blend_out_of_fold_mae: 0.4,
        };
        let mut info = VotelessRatingInfo {
            sets: vec![
                set(&["votes"], 0.46),
                set(&["votes", "extra.metascore"], 0.53),
                set(&["extra.metascore"], 0.48),
            ],
        };
        let voteless = VotelessErrors::of(&info).unwrap();
        assert_eq!((voteless.without_votes, voteless.without_all), (0.46, 0.53));
        assert_eq!(voteless.others, ["extra.metascore"]);
        let extras = ExtrasErrors::of(&info).unwrap();
        assert_eq!((extras.without_extras, extras.with_extras), (0.48, 0.4));
        info.sets.truncate(2);
        assert!(ExtrasErrors::of(&info).is_none());
    }

    #[test]
    fn the_voteless_warning_quotes_the_models_own_errors() {
        let movie = Movie {
            id: "m".into(),
            ..Movie::default()
        };
        let e = VotelessErrors {
            with_votes: 0.41,
            without_votes: 0.47,
            without_all: 0.62,
            others: vec!["extra.metascore".into(), "extra.awards".into()],
        };
        let w = voteless_warning(&movie, &e);
        let wanted = "off by 0.47 on average, 0.62 without extra.metascore, extra.awards too, \
                      against 0.41 with votes";
        assert!(w.contains(wanted), "{w}");
        let one_set = VotelessErrors {
            without_all: 0.47,
            others: Vec::new(),
            ..e
        };
        let w = voteless_warning(&movie, &one_set);
        assert!(w.contains("off by 0.47 on average, against 0.41"), "{w}");
        let e = ExtrasErrors {
            with_extras: 0.40,
            without_extras: 0.48,
            fields: vec!["extra.metascore".into(), "extra.awards".into()],
        };
        let w = extras_warning(&movie, &e);
        let wanted = "never saw extra.metascore, extra.awards, mixed with the bags', with an \
                      interval of its own (out of fold this model's ratings of movies without \
                      them were off by 0.48 on average, against 0.40 with them)";
        assert!(w.contains(wanted), "{w}");
    }
}

//! `train`, `eval`, `export`, `predict`, `config check` and `quickstart`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cinefuse_data::split::Split;
use cinefuse_model::config::Modality;
use cinefuse_train::backend::parse_backend;
use cinefuse_train::config::BackendKind;
use cinefuse_train::content_rating::ContentRatingConfig;
use cinefuse_train::credit_neighbours::CreditNeighboursConfig;
use cinefuse_train::genre_prompts::GenrePromptsConfig;
use cinefuse_train::input_warnings::input_warnings;
use cinefuse_train::metadata_neighbours::MetadataNeighboursConfig;
use cinefuse_train::neighbour_vote::NeighboursConfig;
use cinefuse_train::plot_neighbours::PlotNeighboursConfig;
use cinefuse_train::predictor::{
    PREDICT_CHUNK, Predictor, check_input, movie_from_json, movies_from_jsonl_lines, repeated_ids,
};
use cinefuse_train::rating_trees::RatingTreesConfig;
use cinefuse_train::{TrainConfig, TrainOptions};
use clap::{Args, Subcommand};

fn backend(b: &Option<String>) -> Result<Option<BackendKind>> {
    b.as_deref().map(parse_backend).transpose()
}

#[derive(Args)]
pub struct TrainArgs {
    /// The TOML config of the run (not with --resume).
    #[arg(long, required_unless_present = "resume")]
    config: Option<PathBuf>,
    /// Train on another dataset directory (prepared on the fly or reused).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Run directory (default: runs/<config name>-<timestamp>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this directory from its latest checkpoint, with the config, data
    /// and folder it started with (so not with --config, --data, --out or --set).
    #[arg(long, conflicts_with_all = ["config", "data", "out"])]
    resume: Option<PathBuf>,
    /// Config overrides with dotted keys, e.g. --set optim.lr=3e-4
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// auto, flex, wgpu, lavapipe or cuda.
    #[arg(long)]
    backend: Option<String>,
    /// Train data-parallel on these GPU indices, e.g. --devices 0,1 (overrides backend.devices).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    devices: Option<Vec<usize>>,
    /// K-fold bagging: K models on the folds of train + validation (sets train.folds).
    #[arg(long, value_name = "K")]
    folds: Option<usize>,
    /// With bagging: also one model on all of train + validation (sets train.refit).
    #[arg(long)]
    refit: bool,
    /// With bagging: S sets of K members, each set on its own folds; the bag predicts with
    /// the mean of all of them (sets train.bag_sets).
    #[arg(long, value_name = "S")]
    bag_sets: Option<usize>,
}

pub fn train(a: TrainArgs) -> Result<PathBuf> {
    let mut sets = a.set.clone();
    if let Some(k) = a.folds {
        sets.push(format!("train.folds={k}"));
    }
    if a.refit {
        sets.push("train.refit=true".into());
    }
    if let Some(s) = a.bag_sets {
        sets.push(format!("train.bag_sets={s}"));
    }
    let config = match (&a.config, &a.resume) {
        (Some(p), _) => TrainConfig::load(p, &sets)?,
        (None, Some(r)) => {
            if !sets.is_empty() {
                bail!(
                    "--set cannot change a resumed run; its config is {}",
                    r.join("config.toml").display()
                );
            }
            TrainConfig::load(&r.join("config.toml"), &[])?
        }
        (None, None) => bail!("--config or --resume is required"),
    };
    let summary = cinefuse_train::train(
        &config,
        &TrainOptions {
            data_override: a.data,
            out: a.out,
            resume: a.resume,
            backend: backend(&a.backend)?,
            devices: a.devices,
            stop_after_steps: None,
            rows: Default::default(),
        },
    )?;
    if summary.interrupted {
        return Err(Interrupted(summary.run_dir).into());
    }
    if let Some(v) = summary.best_value {
        println!(
            "best {} = {v:.4} at epoch {}",
            config.train.monitor.key(),
            summary.best_epoch
        );
    }
    println!("run: {}", summary.run_dir.display());
    Ok(summary.run_dir)
}

/// A training run that Ctrl-C (or SIGTERM) stopped: not an error of the run, but nothing that
/// follows it (`quickstart`'s eval and export, a script's next command) may take it as done.
/// The process exits with 130, as a shell does for an interrupted command.
#[derive(Debug)]
pub struct Interrupted(pub PathBuf);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: interrupted; resume it with: cinefuse train --resume {}",
            self.0.display(),
            self.0.display()
        )
    }
}

impl std::error::Error for Interrupted {}

#[derive(Args)]
pub struct EvalArgs {
    /// A run, bag or blend folder, as `train` or `ensemble` wrote it.
    #[arg(long)]
    run: PathBuf,
    /// train, val or test (not with --data, which evaluates every movie of its dataset).
    #[arg(long, default_value = "test", conflicts_with = "data")]
    split: String,
    /// Evaluate on every movie of another dataset with the run's preprocessing.
    #[arg(long)]
    data: Option<PathBuf>,
    /// auto, flex, wgpu, lavapipe or cuda (default: the config's `backend.kind`).
    #[arg(long)]
    backend: Option<String>,
    /// Bootstrap resamples of the evaluated movies behind each metric's 95 % interval (0: no
    /// intervals; at most 100,000).
    #[arg(long, default_value_t = cinefuse_train::bootstrap::DEFAULT_RESAMPLES, value_parser = resamples)]
    bootstrap: usize,
}

fn resamples(raw: &str) -> Result<usize, String> {
    let max = cinefuse_train::bootstrap::MAX_RESAMPLES;
    match raw.parse::<usize>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!("expected 0..={max} resamples, got {raw}")),
    }
}

pub fn eval(a: EvalArgs) -> Result<()> {
    let split = Split::parse(&a.split)
        .with_context(|| format!("--split {:?}: expected train, val or test", a.split))?;
    let target = cinefuse_train::evaluate::EvalTarget {
        split,
        data: a.data.as_deref(),
        resamples: a.bootstrap,
    };
    let report = cinefuse_train::evaluate::evaluate_with(&a.run, target, backend(&a.backend)?)?;
    print!("{report}");
    let file = cinefuse_train::evaluate::eval_file(split, a.data.as_deref());
    println!("wrote {}", a.run.join(file).display());
    Ok(())
}

#[derive(Args)]
pub struct EnsembleArgs {
    /// The bags to blend, comma-separated (each trained with `train.folds = K`, all with the
    /// same K, seed and data).
    #[arg(long, value_delimiter = ',', required = true)]
    runs: Vec<PathBuf>,
    /// The blend folder to write; `eval --run` and `export --run` take it.
    #[arg(long)]
    out: PathBuf,
    /// Also train gradient-boosted rating trees on the bags' folds (the first bag's metadata)
    /// and blend them into the rating.
    #[arg(long)]
    rating_trees: bool,
    /// Also learn a rating from the plot alone (ridge regressions on the first bag's cached
    /// plot features, on the bags' folds) for movies given without metadata.
    #[arg(long)]
    content_rating: bool,
    /// The trees' boosting rounds (with --rating-trees).
    #[arg(long, requires = "rating_trees", default_value_t = RatingTreesConfig::default().iterations)]
    tree_iterations: usize,
    /// The trees' learning rate.
    #[arg(long, allow_negative_numbers = true, requires = "rating_trees", default_value_t = RatingTreesConfig::default().learning_rate)]
    tree_learning_rate: f32,
    /// Leaves per tree.
    #[arg(long, requires = "rating_trees", default_value_t = RatingTreesConfig::default().max_leaves)]
    tree_leaves: usize,
    /// L2 penalty on the trees' leaf values.
    #[arg(long, allow_negative_numbers = true, requires = "rating_trees", default_value_t = RatingTreesConfig::default().l2)]
    tree_l2: f32,
    /// The fewest movies a leaf may hold.
    #[arg(long, requires = "rating_trees", default_value_t = RatingTreesConfig::default().min_leaf)]
    tree_min_leaf: usize,
    /// The trees also read the first bag's genre probabilities (out of fold for the movies
    /// they learn from).
    #[arg(long, requires = "rating_trees")]
    tree_genres: bool,
    /// Also vote genres from the labelled movies with the most alike plots (the first bag's
    /// cached plot embeddings) on the bags' folds, stacked with the bags per genre.
    #[arg(long)]
    plot_neighbours: bool,
    /// Neighbours per vote (with --plot-neighbours).
    #[arg(long, requires = "plot_neighbours", default_value_t = PlotNeighboursConfig::default().k)]
    neighbour_k: usize,
    /// Softmax temperature on the neighbours' cosine similarity.
    #[arg(long, allow_negative_numbers = true, requires = "plot_neighbours", default_value_t = PlotNeighboursConfig::default().temperature)]
    neighbour_temperature: f32,
    /// Pseudo-neighbours voting the genre frequencies.
    #[arg(long, allow_negative_numbers = true, requires = "plot_neighbours", default_value_t = PlotNeighboursConfig::default().prior)]
    neighbour_prior: f32,
    /// Also vote genres from the labelled movies with the most alike metadata (the first bag's
    /// encoding, each column standardised) on the bags' folds, stacked with the bags per genre.
    #[arg(long)]
    metadata_neighbours: bool,
    /// Neighbours per metadata vote (with --metadata-neighbours).
    #[arg(long, requires = "metadata_neighbours", default_value_t = MetadataNeighboursConfig::default().k)]
    metadata_k: usize,
    /// Softmax temperature on the metadata neighbours' cosine similarity.
    #[arg(long, allow_negative_numbers = true, requires = "metadata_neighbours", default_value_t = MetadataNeighboursConfig::default().temperature)]
    metadata_temperature: f32,
    /// Pseudo-neighbours voting the genre frequencies in the metadata vote.
    #[arg(long, allow_negative_numbers = true, requires = "metadata_neighbours", default_value_t = MetadataNeighboursConfig::default().prior)]
    metadata_prior: f32,
    /// Also vote genres from the labelled movies that share the most directors, cast members
    /// and writers (each name weighted by its rarity) on the bags' folds, stacked per genre.
    #[arg(long)]
    credit_neighbours: bool,
    /// Neighbours per credits vote (with --credit-neighbours).
    #[arg(long, requires = "credit_neighbours", default_value_t = CreditNeighboursConfig::default().k)]
    credit_k: usize,
    /// Softmax temperature on the credits neighbours' cosine similarity.
    #[arg(long, allow_negative_numbers = true, requires = "credit_neighbours", default_value_t = CreditNeighboursConfig::default().temperature)]
    credit_temperature: f32,
    /// Pseudo-neighbours voting the genre frequencies in the credits vote.
    #[arg(long, allow_negative_numbers = true, requires = "credit_neighbours", default_value_t = CreditNeighboursConfig::default().prior)]
    credit_prior: f32,
    /// Also vote genres zero-shot: sentences describing each genre against the plot, both
    /// embedded by the first bag's frozen plot encoder, stacked with the bags per genre.
    #[arg(long)]
    genre_prompts: bool,
    /// Prompts per vote (with --genre-prompts; above the number of prompts takes them all).
    #[arg(long, requires = "genre_prompts", default_value_t = GenrePromptsConfig::default().k)]
    prompt_k: usize,
    /// Softmax temperature on the prompts' cosine similarity.
    #[arg(long, allow_negative_numbers = true, requires = "genre_prompts", default_value_t = GenrePromptsConfig::default().temperature)]
    prompt_temperature: f32,
    /// Pseudo-prompts voting every genre alike.
    #[arg(long, allow_negative_numbers = true, requires = "genre_prompts", default_value_t = GenrePromptsConfig::default().prior)]
    prompt_prior: f32,
    /// Your own sentences for some genres, in place of the built-in ones: a TOML file of
    /// `Genre = ["sentence", …]` lines (as a config's `[train.genre_prompts.prompts]`).
    #[arg(long, requires = "genre_prompts", value_name = "FILE")]
    prompts: Option<PathBuf>,
    /// auto, flex, wgpu, lavapipe or cuda (default: the config's `backend.kind`).
    #[arg(long)]
    backend: Option<String>,
}

const TREE_FLAGS: [(&str, &str); 5] = [
    ("iterations", "--tree-iterations"),
    ("learning_rate", "--tree-learning-rate"),
    ("max_leaves", "--tree-leaves"),
    ("l2", "--tree-l2"),
    ("min_leaf", "--tree-min-leaf"),
];

const NEIGHBOUR_FLAGS: [(&str, &str); 3] = [
    ("k", "--neighbour-k"),
    ("temperature", "--neighbour-temperature"),
    ("prior", "--neighbour-prior"),
];

const METADATA_FLAGS: [(&str, &str); 3] = [
    ("k", "--metadata-k"),
    ("temperature", "--metadata-temperature"),
    ("prior", "--metadata-prior"),
];

const CREDIT_FLAGS: [(&str, &str); 3] = [
    ("k", "--credit-k"),
    ("temperature", "--credit-temperature"),
    ("prior", "--credit-prior"),
];

const PROMPT_FLAGS: [(&str, &str); 3] = [
    ("k", "--prompt-k"),
    ("temperature", "--prompt-temperature"),
    ("prior", "--prompt-prior"),
];

/// `validate`'s message, which starts with the config key, with the flag that sets it
/// (`switch` when no flag matches).
fn flag_error(message: &str, flags: &[(&str, &str)], switch: &str) -> anyhow::Error {
    match flags
        .iter()
        .find(|(key, _)| message.starts_with(&format!("{key} ")))
    {
        Some((key, flag)) => anyhow::anyhow!("{flag}{}", &message[key.len()..]),
        None => anyhow::anyhow!("{switch}: {message}"),
    }
}

/// A vote's settings from its flags when `on`, checked and named by flag.
fn vote_config<const MILLI_T: u32>(
    on: bool,
    (k, temperature, prior): (usize, f32, f32),
    (flags, switch): (&[(&str, &str)], &str),
) -> Result<Option<NeighboursConfig<MILLI_T>>> {
    if !on {
        return Ok(None);
    }
    let c = NeighboursConfig {
        k,
        temperature,
        prior,
        enabled: true,
    };
    c.validate().map_err(|e| flag_error(&e, flags, switch))?;
    Ok(Some(c))
}

/// The genre-prompt vote's settings from its flags, with the sentences of `--prompts`.
fn prompt_config(a: &EnsembleArgs) -> Result<Option<GenrePromptsConfig>> {
    let Some(vote) = vote_config::<20>(
        a.genre_prompts,
        (a.prompt_k, a.prompt_temperature, a.prompt_prior),
        (&PROMPT_FLAGS, "--genre-prompts"),
    )?
    else {
        return Ok(None);
    };
    let prompts = match &a.prompts {
        Some(file) => cinefuse_train::genre_prompts::read_prompts_file(file)?,
        None => Default::default(),
    };
    let c = GenrePromptsConfig {
        k: vote.k,
        temperature: vote.temperature,
        prior: vote.prior,
        enabled: true,
        prompts,
    };
    if let Some(file) = &a.prompts {
        c.validate()
            .map_err(|e| anyhow::anyhow!("--prompts {}: {e}", file.display()))?;
    }
    Ok(Some(c))
}

pub fn ensemble(a: EnsembleArgs) -> Result<()> {
    let trees = a.rating_trees.then_some(RatingTreesConfig {
        iterations: a.tree_iterations,
        learning_rate: a.tree_learning_rate,
        max_leaves: a.tree_leaves,
        l2: a.tree_l2,
        min_leaf: a.tree_min_leaf,
        genre_probabilities: a.tree_genres,
        ..RatingTreesConfig::default()
    });
    if let Some(t) = &trees {
        t.validate()
            .map_err(|e| flag_error(&e, &TREE_FLAGS, "--rating-trees"))?;
    }
    let vote = vote_config(
        a.plot_neighbours,
        (a.neighbour_k, a.neighbour_temperature, a.neighbour_prior),
        (&NEIGHBOUR_FLAGS, "--plot-neighbours"),
    )?;
    let metadata = vote_config(
        a.metadata_neighbours,
        (a.metadata_k, a.metadata_temperature, a.metadata_prior),
        (&METADATA_FLAGS, "--metadata-neighbours"),
    )?;
    let credits = vote_config(
        a.credit_neighbours,
        (a.credit_k, a.credit_temperature, a.credit_prior),
        (&CREDIT_FLAGS, "--credit-neighbours"),
    )?;
    let prompts = prompt_config(&a)?;
    let extras = cinefuse_train::blend::BlendExtras {
        rating_trees: trees,
        plot_neighbours: vote,
        metadata_neighbours: metadata,
        credit_neighbours: credits,
        genre_prompts: prompts,
        content_rating: a.content_rating.then(ContentRatingConfig::default),
    };
    let info = cinefuse_train::blend::blend(&a.runs, &a.out, backend(&a.backend)?, extras)?;
    cinefuse_train::blend_train::print_weights(&info);
    let o = &info.calibration.out_of_fold;
    println!(
        "out of fold ({} movies): micro-F1 {:.4}, macro-F1 {:.4}, top-1 {:.4}, micro AP {:.4}, rating MAE {:.4}",
        o.movies,
        o.genres.micro_f1,
        o.genres.macro_f1,
        o.genres.top1,
        o.genres.micro_ap,
        o.rating.mae
    );
    println!(
        "wrote the blend to {}; next: {}",
        a.out.display(),
        next_after_blend(&a.out, &a.runs[0])
    );
    Ok(())
}

/// What to run after `ensemble`. `eval` reads the test split, which bags trained on every
/// labelled movie (`test_ratio = 0`, as the shipped config) do not keep: it would refuse.
fn next_after_blend(out: &Path, first_bag: &Path) -> String {
    let config = first_bag.join(cinefuse_train::run_dir::CONFIG_FILE);
    let keeps_test =
        TrainConfig::load(&config, &[]).map_or(true, |c| c.data.preprocess.test_ratio > 0.0);
    let o = out.display();
    if keeps_test {
        format!("cinefuse eval --run {o}")
    } else {
        format!(
            "cinefuse export --run {o} --out MODEL (the bags kept no test split: the \
             out-of-fold scores above are the honest ones, and `cinefuse eval --run {o} --data \
             DIR` scores other movies)"
        )
    }
}

#[derive(Args)]
pub struct ExportArgs {
    /// The run, bag or blend folder to export.
    #[arg(long)]
    run: PathBuf,
    /// The model folder to write (a new folder, or an earlier export of it).
    #[arg(long)]
    out: PathBuf,
    /// auto, flex, wgpu, lavapipe or cuda (default: the config's `backend.kind`).
    #[arg(long)]
    backend: Option<String>,
}

pub fn export(a: ExportArgs) -> Result<()> {
    let dir = cinefuse_train::export::export(&a.run, &a.out, backend(&a.backend)?)?;
    println!("exported model to {}", dir.display());
    Ok(())
}

#[derive(Args)]
pub struct PredictArgs {
    /// An exported model directory.
    #[arg(long)]
    model: PathBuf,
    /// The movie as JSON text (dataset format), or @FILE to read it from a file.
    #[arg(long, conflicts_with = "jsonl")]
    movie: Option<String>,
    /// A JSONL file of movies; poster paths are resolved relative to it.
    #[arg(long)]
    jsonl: Option<PathBuf>,
    /// A poster image for --movie or the field flags (with --jsonl, each movie's `poster`).
    #[arg(long, conflicts_with = "jsonl")]
    poster: Option<PathBuf>,
    // The field flags describe one movie of their own: beside --movie or --jsonl they would be
    // ignored, so clap refuses them there.
    /// The movie's title.
    #[arg(long, conflicts_with_all = ["jsonl", "movie"])]
    title: Option<String>,
    /// The movie's plot summary.
    #[arg(long, conflicts_with_all = ["jsonl", "movie"])]
    plot: Option<String>,
    /// The movie's release year.
    // Negative numbers are read as values (`--year -5`), then refused as a year.
    #[arg(long, allow_negative_numbers = true, conflicts_with_all = ["jsonl", "movie"])]
    year: Option<i32>,
    /// The movie's running time in minutes.
    #[arg(long, allow_negative_numbers = true, value_parser = minutes, conflicts_with_all = ["jsonl", "movie"])]
    runtime: Option<f32>,
    /// Print one JSON object per movie instead of a table.
    #[arg(long)]
    json: bool,
    /// auto, flex, wgpu, lavapipe or cuda (default: the config's `backend.kind`).
    #[arg(long)]
    backend: Option<String>,
}

pub fn predict(a: PredictArgs) -> Result<()> {
    // The movies first: a mistyped input is refused before the model loads.
    let ToPredict {
        movies,
        base,
        origins,
    } = movies_to_predict(&a)?;
    let predictor = Predictor::load(&a.model, backend(&a.backend)?)?;
    // Never beside --jsonl (clap refuses that): each movie of a file names its own.
    let poster = a.poster.as_deref();
    warn_about_inputs(&predictor, &movies, poster.is_some());
    // Every poster file checked first, so that a missing one stops the run before any output;
    // then a chunk at a time: each movie's fitted posters (one per part's fitting) are held
    // only while its chunk predicts, so a long --jsonl file runs in bounded memory.
    // A poster error names the movie's line (or flag) and id: its path alone may not say which.
    let at = |m: &cinefuse_data::Movie, k: usize| format!("{}: movie {:?}", origins[k], m.id);
    for (k, m) in movies.iter().enumerate() {
        predictor
            .check_poster(m, poster, &base)
            .with_context(|| at(m, k))?;
    }
    for (c, chunk) in movies.chunks(PREDICT_CHUNK).enumerate() {
        let items = chunk
            .iter()
            .enumerate()
            .map(|(j, m)| {
                let k = c * PREDICT_CHUNK + j;
                predictor.item(m, poster, &base).with_context(|| at(m, k))
            })
            .collect::<Result<Vec<_>>>()?;
        for p in predictor.predict(&items) {
            if a.json {
                println!("{}", serde_json::to_string(&p)?);
            } else {
                print_prediction(&p, predictor.manifest.interval_coverage);
            }
        }
    }
    Ok(())
}

/// The movies `predict` was given, the folder their poster paths are relative to, and where
/// each came from ("FILE:LINE", "--movie", "command line") for later errors.
struct ToPredict {
    movies: Vec<cinefuse_data::Movie>,
    base: PathBuf,
    origins: Vec<String>,
}

/// The movies of `--jsonl`, `--movie` or the field flags.
fn movies_to_predict(a: &PredictArgs) -> Result<ToPredict> {
    if let Some(path) = &a.jsonl {
        let (lines, movies): (Vec<usize>, Vec<_>) =
            movies_from_jsonl_lines(path)?.into_iter().unzip();
        for (id, n) in repeated_ids(&movies) {
            eprintln!(
                "warning: {}: the id {id:?} is given {n} times; each is predicted, in the \
                 order given",
                path.display()
            );
        }
        let origins = lines
            .iter()
            .map(|l| format!("{}:{l}", path.display()))
            .collect();
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        return Ok(ToPredict {
            movies,
            base,
            origins,
        });
    }
    let (movie, origin) = one_movie_to_predict(a)?;
    Ok(ToPredict {
        movies: vec![movie],
        base: PathBuf::from("."),
        origins: vec![origin],
    })
}

/// The one movie of `--movie` or the field flags, and which it was.
fn one_movie_to_predict(a: &PredictArgs) -> Result<(cinefuse_data::Movie, String)> {
    Ok(match &a.movie {
        Some(m) => {
            let (text, origin) = match m.strip_prefix('@') {
                Some(file) => (
                    cinefuse_data::user_file::read_text_capped(
                        Path::new(file),
                        cinefuse_data::user_file::MAX_MOVIE_JSON_BYTES,
                    )?,
                    file.to_string(),
                ),
                None => (m.clone(), "--movie".to_string()),
            };
            (movie_from_json(&text, &origin)?, origin)
        }
        None => {
            let nothing = a.title.is_none()
                && a.plot.is_none()
                && a.year.is_none()
                && a.runtime.is_none()
                && a.poster.is_none();
            if nothing {
                bail!(
                    "nothing to predict: pass --movie JSON, --jsonl FILE, or at least one of \
                     --title, --plot, --year, --runtime, --poster"
                );
            }
            let mut m = cinefuse_data::Movie::new("input");
            m.title = a.title.clone();
            m.plot = a.plot.clone();
            m.year = a.year;
            m.runtime_min = a.runtime;
            check_input(&m, "command line").map_err(|e| {
                anyhow::anyhow!("{e} (--year and --runtime set `year` and `runtime_min`)")
            })?;
            (m, "command line".to_string())
        }
    })
}

/// `--runtime` as written: a number past f32 is refused here, not read as infinity.
fn minutes(raw: &str) -> Result<f32, String> {
    let v: f64 = raw
        .trim()
        .parse()
        .map_err(|_| format!("expected minutes, e.g. 104, got {raw:?}"))?;
    if !(v.is_nan() || v.abs() <= f64::from(f32::MAX)) {
        return Err(format!("out of range, got {raw}"));
    }
    Ok(v as f32)
}

/// A poster or plot given to a model that reads none (a metadata-only model, say): ignored,
/// and said once.
fn warn_unread_inputs(predictor: &Predictor, movies: &[cinefuse_data::Movie], poster_flag: bool) {
    let given = |has: fn(&cinefuse_data::Movie) -> bool| movies.iter().filter(|m| has(m)).count();
    let inputs: [(Modality, &str, usize); 2] = [
        (
            Modality::Poster,
            "poster",
            given(|m| m.poster.is_some()) + usize::from(poster_flag),
        ),
        (Modality::Text, "plot", given(|m| m.plot.is_some())),
    ];
    for (modality, what, count) in inputs {
        if count > 0 && !predictor.reads(modality) {
            eprintln!(
                "warning: this model reads no {what} (its modalities: {}); the {count} given \
                 are ignored",
                predictor
                    .manifest
                    .modalities
                    .iter()
                    .map(|m| m.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
}

/// Extra columns the model ignores, and each movie's inputs that make its prediction an
/// extrapolation (`input_warnings.rs`).
fn warn_about_inputs(predictor: &Predictor, movies: &[cinefuse_data::Movie], poster_flag: bool) {
    let unused = predictor.unused_extras(movies);
    if !unused.is_empty() {
        eprintln!(
            "warning: this model does not read extra.{}; those values are ignored",
            unused.join(", extra.")
        );
    }
    warn_unread_inputs(predictor, movies, poster_flag);
    let handled = predictor.handled();
    let each = movies.iter().flat_map(|m| {
        let warnings = input_warnings(&predictor.preprocessor, m, &handled);
        warnings.into_iter().map(|w| (m.id.clone(), w))
    });
    for line in cinefuse_train::input_warnings::grouped_warnings(each) {
        eprintln!("warning: {line}");
    }
}

fn print_prediction(p: &cinefuse_train::predictor::MoviePrediction, coverage: f64) {
    println!("{}", p.id);
    match p.rating_interval {
        Some([lo, hi]) => println!(
            "  rating {:.2}  ({:.0} % interval {lo:.2}–{hi:.2})",
            p.rating,
            coverage * 100.0,
        ),
        None => println!(
            "  rating {:.2}  (no interval: too few rated movies to calibrate one)",
            p.rating
        ),
    }
    let shown: Vec<String> = p
        .genres
        .iter()
        .take(5)
        .map(|g| {
            format!(
                "{}{} {:.2}",
                g.genre,
                if g.predicted { "*" } else { "" },
                g.probability
            )
        })
        .collect();
    println!("  genres {}  (* = predicted)", shown.join(", "));
    let contrib: Vec<String> = p
        .contributions
        .iter()
        .map(|c| format!("{} {:.0} %", c.modality.name(), c.share * 100.0))
        .collect();
    println!(
        "  contributions ({}): {}",
        p.contribution_method,
        contrib.join(", ")
    );
}

#[derive(Subcommand)]
pub enum ConfigAction {
    /// Validate a config without training.
    Check {
        /// The config (or `--config FILE`, as `train` takes it).
        #[arg(required_unless_present = "config", conflicts_with = "config")]
        file: Option<PathBuf>,
        /// The config file to check.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Config overrides with dotted keys, e.g. --set optim.lr=3e-4 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Print the resolved config.
        #[arg(long)]
        print: bool,
    },
}

pub fn config(action: ConfigAction) -> Result<()> {
    match action {
        ConfigAction::Check {
            file,
            config,
            set,
            print,
        } => {
            let file = file.or(config).context("give the config file")?;
            let c = TrainConfig::load(&file, &set)?;
            cinefuse_train::blend_train::check_partners(&c)
                .with_context(|| format!("{}", file.display()))?;
            if print {
                print!("{}", c.to_toml());
            }
            println!("{}: ok", file.display());
            Ok(())
        }
    }
}

pub fn quickstart(config: PathBuf, backend_name: Option<String>, set: Vec<String>) -> Result<()> {
    let run_dir = train(TrainArgs {
        config: Some(config),
        data: None,
        out: None,
        resume: None,
        set,
        backend: backend_name.clone(),
        devices: None,
        folds: None,
        refit: false,
        bag_sets: None,
    })?;
    eval(EvalArgs {
        run: run_dir.clone(),
        split: "test".into(),
        data: None,
        backend: backend_name.clone(),
        bootstrap: cinefuse_train::bootstrap::DEFAULT_RESAMPLES,
    })?;
    let model_dir = PathBuf::from("models").join(run_dir.file_name().unwrap_or_default());
    export(ExportArgs {
        run: run_dir,
        out: model_dir.clone(),
        backend: backend_name,
    })?;
    println!(
        "next: cinefuse predict --model {} --plot \"A robot falls in love\" --year 2005 --runtime 98",
        model_dir.display()
    );
    Ok(())
}

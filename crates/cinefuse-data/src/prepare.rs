//! `cinefuse prepare`: validate a dataset, split it, fit the preprocessing on train only,
//! encode every movie and cache the posters. The output directory appears only when complete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::DataError;
use crate::atomic::{StagingDir, write_atomic, write_json_atomic};
use crate::movie::{
    BadRecord, FIELDS, MOVIES_FILE, Movie, ParsedMovies, SPLIT_FILE, parse_movies_bytes,
    parse_movies_file, poster_path,
};
use crate::output_dir::{OutputKind, check_output};
use crate::poster_cache::{PosterCacheWriter, PosterFit};
use crate::prepared::{
    BAD_RECORDS_FILE, POSTERS_FILE, Preprocessor, SAMPLES_FILE, SUMMARY_FILE, fit_state,
};
use crate::split::{Split, hash_split, read_predefined_split};
use crate::tokenizer::{TokenizerKind, pretrained_tokenizer, train_tokenizer};
use crate::validate::validate_records;

/// How splits are assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitMode {
    /// `split.json` when the dataset has one, otherwise by hash.
    Auto,
    Hash,
    Predefined,
}

/// The `[data]` section of a config: preprocessing parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrepareConfig {
    /// Seed of the hash split.
    pub seed: u64,
    pub split: SplitMode,
    pub val_ratio: f64,
    pub test_ratio: f64,
    /// Poster size fed to the model (pixels).
    pub image_width: u32,
    pub image_height: u32,
    pub max_poster_bytes: u64,
    pub max_poster_pixels: u64,
    pub tokenizer: TokenizerKind,
    pub vocab_size: usize,
    pub min_token_freq: u64,
    /// Maximum plot length in tokens, `[CLS]` included.
    pub max_tokens: usize,
    /// Genres with fewer training movies are dropped from the label set.
    pub min_genre_count: usize,
    /// Categorical values seen fewer times in train map to the OOV id.
    pub min_category_freq: usize,
    /// Skip bad records (with a written report) instead of aborting.
    pub skip_bad: bool,
    /// With `tokenizer = "pretrained"`: the checkpoint folder (or `tokenizer.json`) whose
    /// tokenizer encodes the plots, as the pretrained text encoder was trained.
    pub tokenizer_path: Option<PathBuf>,
    /// Encode "Title. Plot" instead of the plot alone.
    pub title_in_text: bool,
    /// How a poster is fitted to `image_width`×`image_height`.
    pub poster_fit: PosterFit,
    /// Declared extra features (`[[data.features]]` in a training config).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<crate::extra::FeatureSpec>,
}

impl Default for PrepareConfig {
    fn default() -> Self {
        Self {
            seed: 7,
            split: SplitMode::Auto,
            val_ratio: 0.1,
            test_ratio: 0.1,
            image_width: 64,
            image_height: 96,
            max_poster_bytes: 20 * 1024 * 1024,
            max_poster_pixels: 40_000_000,
            tokenizer: TokenizerKind::Wordpiece,
            vocab_size: 4000,
            min_token_freq: 2,
            max_tokens: 64,
            min_genre_count: 5,
            min_category_freq: 3,
            skip_bad: false,
            tokenizer_path: None,
            title_in_text: false,
            poster_fit: PosterFit::Crop,
            features: Vec::new(),
        }
    }
}

/// Bounds on the sizes a config sets, so that a typo cannot ask for an allocation that aborts.
pub const MAX_TOKENS: usize = 4096;
pub const MAX_VOCAB: usize = 1 << 20;

impl PrepareConfig {
    /// The size limits a poster is read under (`max_poster_bytes`, `max_poster_pixels`).
    pub fn poster_limits(&self) -> crate::validate::PosterLimits {
        crate::validate::PosterLimits {
            max_bytes: self.max_poster_bytes,
            max_pixels: self.max_poster_pixels,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let r = |name: &str, v: f64| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "data.preprocess.{name} = {v}: expected a ratio in [0, 1)"
                ))
            }
        };
        r("val_ratio", self.val_ratio)?;
        r("test_ratio", self.test_ratio)?;
        if self.val_ratio + self.test_ratio >= 0.9 {
            return Err(format!(
                "data.preprocess.val_ratio + test_ratio = {}: leaves too little for training (must be < 0.9)",
                self.val_ratio + self.test_ratio
            ));
        }
        if !(8..=1024).contains(&self.image_width) || !(8..=1024).contains(&self.image_height) {
            return Err(format!(
                "data.preprocess.image_width/image_height = {}x{}: expected 8..=1024 pixels each",
                self.image_width, self.image_height
            ));
        }
        if !(2..=MAX_TOKENS).contains(&self.max_tokens) {
            return Err(format!(
                "data.preprocess.max_tokens = {}: expected 2..={MAX_TOKENS}",
                self.max_tokens
            ));
        }
        if !(16..=MAX_VOCAB).contains(&self.vocab_size) {
            return Err(format!(
                "data.preprocess.vocab_size = {}: expected 16..={MAX_VOCAB}",
                self.vocab_size
            ));
        }
        match (self.tokenizer, &self.tokenizer_path) {
            (TokenizerKind::Pretrained, None) => {
                return Err("data.preprocess.tokenizer = \"pretrained\" needs \
                            data.preprocess.tokenizer_path (a checkpoint folder or tokenizer.json)"
                    .into());
            }
            (k, Some(p)) if k != TokenizerKind::Pretrained => {
                return Err(format!(
                    "data.preprocess.tokenizer_path = {:?} is only used with tokenizer = \"pretrained\"",
                    p.display().to_string()
                ));
            }
            _ => {}
        }
        crate::extra::validate_specs(&self.features)
    }
}

/// What `prepare` reports at the end (also saved as `summary.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrepareSummary {
    pub records_read: usize,
    pub records_kept: usize,
    pub records_skipped: usize,
    pub posters_dropped: usize,
    pub missing_per_field: BTreeMap<String, usize>,
    pub split_sizes: BTreeMap<String, usize>,
    pub split_source: String,
    pub genres: Vec<String>,
    pub genres_dropped: BTreeMap<String, usize>,
    pub posters_cached: usize,
    pub poster_seconds: f64,
    pub posters_per_second: f64,
    pub tokenizer_vocab_size: usize,
}

impl std::fmt::Display for PrepareSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "records: {} read, {} kept, {} skipped; {} posters dropped",
            self.records_read, self.records_kept, self.records_skipped, self.posters_dropped
        )?;
        writeln!(
            f,
            "splits ({}): {}",
            self.split_source,
            self.split_sizes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        )?;
        writeln!(f, "missing per field:")?;
        for (k, v) in &self.missing_per_field {
            if *v > 0 {
                writeln!(f, "  {k:<12} {v}")?;
            }
        }
        writeln!(
            f,
            "genres ({}): {}",
            self.genres.len(),
            self.genres.join(", ")
        )?;
        if !self.genres_dropped.is_empty() {
            writeln!(f, "genres dropped as rare: {:?}", self.genres_dropped)?;
        }
        write!(
            f,
            "posters cached: {} ({:.0}/s); tokenizer vocabulary: {}",
            self.posters_cached, self.posters_per_second, self.tokenizer_vocab_size
        )
    }
}

fn bar(len: u64, msg: &'static str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(msg);
    pb
}

fn record_error(path: &Path, bad: &BadRecord) -> DataError {
    DataError::Record {
        path: path.to_path_buf(),
        line: bad.line,
        message: match &bad.field {
            Some(f) => format!("field `{f}`: {}", bad.reason),
            None => bad.reason.clone(),
        },
    }
}

/// Runs the whole preparation of `data_dir` into `out_dir`.
pub fn prepare_dataset(
    data_dir: &Path,
    out_dir: &Path,
    config: &PrepareConfig,
) -> Result<PrepareSummary, DataError> {
    config.validate().map_err(DataError::Invalid)?;
    // Refuse a bad --out before the slow work, not after it.
    check_output(out_dir, OutputKind::Prepared, &[data_dir])?;
    let movies_path = data_dir.join(MOVIES_FILE);
    // Read once: the hash and the movies come from the same bytes, even if the file changes
    // meanwhile (a regular file within the size cap: a FIFO would block forever).
    let raw = crate::user_file::read_capped(&movies_path, crate::user_file::MAX_JSONL_BYTES)?;
    let dataset_hash = format!("{:x}", Sha256::digest(&raw));

    let parsed = parse_movies_bytes(&raw);
    drop(raw);
    let (movies, mut bad, records_read) = read_valid_movies(&movies_path, parsed, config)?;
    let split = assign_splits(data_dir, config, movies)?;
    let train: Vec<&Movie> = split
        .assigned
        .iter()
        .filter(|(_, _, s)| *s == Split::Train)
        .map(|(_, m, _)| m)
        .collect();
    check_usable(
        &movies_path,
        records_read,
        split.assigned.len(),
        train.len(),
    )?;
    let pre = fit_preprocessor(&train, config, dataset_hash, data_dir)?;

    // Encode and cache posters, into a staging directory.
    let staging = staging_for(out_dir, data_dir)?;
    let written = write_encoded(
        &staging,
        data_dir,
        &movies_path,
        &pre,
        &split.assigned,
        config.skip_bad,
        &mut bad,
    )?;
    let summary = summarize(config, &pre, &split, &written, records_read);
    write_json_atomic(&staging.path().join(SUMMARY_FILE), &summary)?;
    if !bad.is_empty() {
        write_json_atomic(&staging.path().join(BAD_RECORDS_FILE), &bad)?;
    }
    carry_feature_cache(out_dir, staging.path());
    staging.commit()?;
    Ok(summary)
}

/// The records of `movies_path` that pass validation, with their line numbers.
type LinedMovies = Vec<(usize, Movie)>;

/// The records of `movies_path` that pass validation, the bad ones sorted by line, and how
/// many records were read. A bad record is an error unless `skip_bad`.
fn read_valid_movies(
    movies_path: &Path,
    parsed: ParsedMovies,
    config: &PrepareConfig,
) -> Result<(LinedMovies, Vec<BadRecord>, usize), DataError> {
    let records_read = parsed.movies.len() + parsed.bad.len();
    let (movies, mut bad) = validate_records(parsed.movies);
    let (movies, extra_bad) = check_extras(movies, &config.features);
    bad.extend(parsed.bad);
    bad.extend(extra_bad);
    bad.sort_by_key(|b| b.line);
    if let Some(first) = bad.first().filter(|_| !config.skip_bad) {
        return Err(record_error(movies_path, first));
    }
    check_declared_features_exist(movies_path, &movies, &config.features)?;
    Ok((movies, bad, records_read))
}

/// Movies with their split: from `split.json` or by a seeded hash of the id.
struct Assigned {
    /// (line, movie, split)
    assigned: Vec<(usize, Movie, Split)>,
    /// Movies `split.json` does not list (left out).
    unlisted: usize,
    predefined: bool,
}

fn assign_splits(
    data_dir: &Path,
    config: &PrepareConfig,
    movies: Vec<(usize, Movie)>,
) -> Result<Assigned, DataError> {
    let split_file = data_dir.join(SPLIT_FILE);
    let predefined = match config.split {
        SplitMode::Predefined => true,
        SplitMode::Hash => false,
        SplitMode::Auto => split_file.exists(),
    };
    let mut assigned: Vec<(usize, Movie, Split)> = Vec::with_capacity(movies.len());
    let mut unlisted = 0;
    if predefined {
        let table = read_predefined_split(&split_file)?;
        for (line, m) in movies {
            match table.get(&m.id) {
                Some(s) => assigned.push((line, m, *s)),
                None => unlisted += 1,
            }
        }
        if unlisted > 0 {
            eprintln!(
                "note: {unlisted} movies are not listed in {} and are left out",
                split_file.display()
            );
        }
    } else {
        for (line, m) in movies {
            let s = hash_split(config.seed, &m.id, config.val_ratio, config.test_ratio);
            assigned.push((line, m, s));
        }
    }
    Ok(Assigned {
        assigned,
        unlisted,
        predefined,
    })
}

/// Refuses a dataset with no records, no usable one, or none in the training split.
fn check_usable(
    movies_path: &Path,
    records_read: usize,
    usable: usize,
    train: usize,
) -> Result<(), DataError> {
    if records_read == 0 {
        return Err(DataError::file(
            movies_path,
            "holds no movies (the file is empty)",
        ));
    }
    if usable == 0 {
        return Err(DataError::file(
            movies_path,
            format!("none of its {records_read} records is usable (see the skipped records)"),
        ));
    }
    if train == 0 {
        return Err(DataError::file(
            movies_path,
            format!(
                "none of its {usable} usable movies fell in the training split (check the split \
                 ratios or split.json)"
            ),
        ));
    }
    Ok(())
}

/// Fits on the training movies only: the tokenizer, scalers, vocabularies and genres.
fn fit_preprocessor(
    train: &[&Movie],
    config: &PrepareConfig,
    dataset_hash: String,
    data_dir: &Path,
) -> Result<Preprocessor, DataError> {
    let plots: Vec<&str> = train
        .iter()
        .filter_map(|m| m.plot.as_deref())
        .filter(|p| !p.trim().is_empty())
        .map(crate::tokenizer::bounded_plot)
        .collect();
    let plots = if plots.is_empty() { vec![""] } else { plots };
    let tokenizer = match &config.tokenizer_path {
        Some(path) if config.tokenizer == TokenizerKind::Pretrained => {
            pretrained_tokenizer(path, config.max_tokens)?
        }
        _ => train_tokenizer(
            config.tokenizer,
            &plots,
            config.vocab_size,
            config.min_token_freq,
        )?,
    };
    let tok_vocab = tokenizer.get_vocab_size(true);
    let state = fit_state(
        train,
        config,
        dataset_hash,
        data_dir.display().to_string(),
        tok_vocab,
    );
    if state.genres.is_empty() {
        eprintln!(
            "warning: no genre reaches data.preprocess.min_genre_count = {}",
            config.min_genre_count
        );
    }
    Ok(Preprocessor { state, tokenizer })
}

/// What `prepare` did, for its printout and `summary.json`.
fn summarize(
    config: &PrepareConfig,
    pre: &Preprocessor,
    split: &Assigned,
    written: &Written,
    records_read: usize,
) -> PrepareSummary {
    let samples = &written.samples;
    let missing_per_field = FIELDS
        .iter()
        .map(|f| {
            let n = split.assigned.iter().filter(|(_, m, _)| !m.has(f)).count();
            (f.to_string(), n)
        })
        .collect();
    let split_sizes = Split::ALL
        .iter()
        .map(|s| {
            let n = samples.iter().filter(|x| x.split == *s).count();
            (s.name().to_string(), n)
        })
        .collect();
    PrepareSummary {
        records_read,
        records_kept: samples.len(),
        records_skipped: records_read - samples.len() - split.unlisted,
        posters_dropped: written.posters_dropped,
        missing_per_field,
        split_sizes,
        split_source: if split.predefined {
            "split.json".into()
        } else {
            format!("hash, seed {}", config.seed)
        },
        genres: pre.state.genres.genres.clone(),
        genres_dropped: pre.state.genres.dropped.clone(),
        posters_cached: written.posters_cached,
        poster_seconds: written.poster_seconds,
        posters_per_second: written.posters_cached as f64 / written.poster_seconds.max(1e-9),
        tokenizer_vocab_size: pre.tokenizer.get_vocab_size(true),
    }
}

/// Cached backbone features are keyed by exactly the inputs they were computed from, so they
/// stay valid when only metadata settings change: move them into the new prepared folder (a
/// stale file is simply not found by its key). Best effort: a cache is never worth a failure.
fn carry_feature_cache(out_dir: &Path, staging: &Path) {
    let old = out_dir.join(crate::feature_cache::FEATURES_DIR);
    let ours = crate::output_dir::marked_kind(out_dir).as_deref() == Some("prepared");
    if ours && old.is_dir() {
        let _ = std::fs::rename(&old, staging.join(crate::feature_cache::FEATURES_DIR));
    }
}

/// Moves records whose declared extra features have values of the wrong kind to `bad`.
fn check_extras(
    movies: Vec<(usize, Movie)>,
    specs: &[crate::extra::FeatureSpec],
) -> (Vec<(usize, Movie)>, Vec<BadRecord>) {
    let mut bad = Vec::new();
    let ok = movies
        .into_iter()
        .filter(
            |(line, m)| match crate::extra::check_movie_extras(m, specs) {
                Ok(()) => true,
                Err((field, reason)) => {
                    bad.push(BadRecord {
                        line: *line,
                        id: Some(m.id.clone()),
                        field: Some(field),
                        reason,
                    });
                    false
                }
            },
        )
        .collect();
    (ok, bad)
}

/// A declared feature no movie has is a misspelt name, not a feature that is always missing.
fn check_declared_features_exist(
    movies_path: &Path,
    movies: &[(usize, Movie)],
    specs: &[crate::extra::FeatureSpec],
) -> Result<(), DataError> {
    for s in specs {
        if movies.iter().any(|(_, m)| m.extra.contains_key(&s.name)) {
            continue;
        }
        let mut seen: Vec<&str> = movies
            .iter()
            .flat_map(|(_, m)| m.extra.keys().map(String::as_str))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        let known = if seen.is_empty() {
            "the movies have no extra values (see `import table --extra`)".to_string()
        } else {
            format!("the extra values are {}", seen.join(", "))
        };
        return Err(DataError::file(
            movies_path,
            format!(
                "data.features `{}`: no movie has extra.{}; {known}",
                s.name, s.name
            ),
        ));
    }
    Ok(())
}

/// Runs one poster decode; a panic inside the image decoder becomes this record's error
/// instead of ending `prepare`.
fn catch_decoder_panic(
    path: &Path,
    decode: impl FnOnce() -> Result<Vec<u8>, DataError>,
) -> Result<Vec<u8>, DataError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(DataError::file(
            path,
            format!("the image decoder failed: {why}"),
        ))
    })
}

/// Stages prepared data for `out_dir`, which must not be (or contain) the dataset it reads.
fn staging_for(out_dir: &Path, data_dir: &Path) -> Result<StagingDir, DataError> {
    StagingDir::new(out_dir, OutputKind::Prepared, &[data_dir])
}

struct Written {
    samples: Vec<crate::prepared::EncodedSample>,
    posters_dropped: usize,
    poster_seconds: f64,
    posters_cached: usize,
}

/// The posters of `chunk`, decoded and fitted on `threads` threads, one result per record in
/// order (`None`: the movie has no poster).
fn decode_posters(
    data_dir: &Path,
    pre: &Preprocessor,
    chunk: &[(usize, Movie, Split)],
    threads: usize,
) -> Vec<Option<Result<Vec<u8>, DataError>>> {
    std::thread::scope(|s| {
        let per = chunk.len().div_ceil(threads);
        let handles: Vec<_> = chunk
            .chunks(per.max(1))
            .map(|part| {
                let handle = s.spawn(move || {
                    part.iter()
                        .map(|(_, m, _)| {
                            poster_path(data_dir, m).map(|p| {
                                p.and_then(|p| {
                                    catch_decoder_panic(&p, || {
                                        pre.poster_from_file(&p, Some(data_dir))
                                    })
                                })
                            })
                        })
                        .collect::<Vec<_>>()
                });
                (part.len(), handle)
            })
            .collect();
        // A thread that died anyway still yields one (failed) result per record, so the
        // results stay aligned with the records.
        handles
            .into_iter()
            .flat_map(|(n, h)| {
                h.join().unwrap_or_else(|_| {
                    (0..n)
                        .map(|_| {
                            Some(Err(DataError::file(
                                data_dir,
                                "a poster decoder thread failed",
                            )))
                        })
                        .collect()
                })
            })
            .collect()
    })
}

/// `samples.jsonl`: one encoded sample per line, written atomically.
fn write_samples(path: &Path, samples: &[crate::prepared::EncodedSample]) -> Result<(), DataError> {
    let mut jsonl = String::new();
    for s in samples {
        jsonl.push_str(&serde_json::to_string(s).expect("sample serializes"));
        jsonl.push('\n');
    }
    write_atomic(path, jsonl.as_bytes())
}

/// Encodes every movie with `pre`, caches the posters (decoded in parallel, written in order
/// so slots are deterministic) and writes the samples and the preprocessing state.
fn write_encoded(
    staging: &StagingDir,
    data_dir: &Path,
    movies_path: &Path,
    pre: &Preprocessor,
    assigned: &[(usize, Movie, Split)],
    skip_bad: bool,
    bad: &mut Vec<BadRecord>,
) -> Result<Written, DataError> {
    let config = &pre.state.config;
    let mut cache = PosterCacheWriter::create(
        &staging.path().join(POSTERS_FILE),
        config.image_height,
        config.image_width,
    )?;
    let mut samples = Vec::with_capacity(assigned.len());
    let mut posters_dropped = 0;
    let started = Instant::now();
    let pb = bar(assigned.len() as u64, "posters");
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    for chunk in assigned.chunks(64) {
        let decoded = decode_posters(data_dir, pre, chunk, threads);
        for ((line, movie, split), poster) in chunk.iter().zip(decoded) {
            let mut sample = pre.encode(movie, *split)?;
            match poster {
                Some(Ok(chw)) => sample.poster_slot = Some(cache.push(&chw)?),
                Some(Err(e)) => {
                    let problem = BadRecord {
                        line: *line,
                        id: Some(movie.id.clone()),
                        field: Some("poster".into()),
                        reason: e.to_string(),
                    };
                    if !skip_bad {
                        return Err(record_error(movies_path, &problem));
                    }
                    bad.push(problem);
                    posters_dropped += 1;
                }
                None => {}
            }
            samples.push(sample);
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    let poster_seconds = started.elapsed().as_secs_f64();
    let posters_cached = cache.finish()? as usize;
    write_samples(&staging.path().join(SAMPLES_FILE), &samples)?;
    pre.save(staging.path())?;
    Ok(Written {
        samples,
        posters_dropped,
        poster_seconds,
        posters_cached,
    })
}

/// Encodes a whole dataset with an already fitted preprocessor (nothing is refitted); every
/// movie lands in the `test` split. Used to evaluate or predict on another dataset.
pub fn apply_preprocessor(
    data_dir: &Path,
    out_dir: &Path,
    pre: &Preprocessor,
    skip_bad: bool,
) -> Result<crate::Prepared, DataError> {
    let movies_path = data_dir.join(MOVIES_FILE);
    let parsed = parse_movies_file(&movies_path)?;
    let (movies, mut bad) = validate_records(parsed.movies);
    bad.extend(parsed.bad);
    bad.sort_by_key(|b| b.line);
    if let Some(first) = bad.first().filter(|_| !skip_bad) {
        return Err(record_error(&movies_path, first));
    }
    let assigned: Vec<(usize, Movie, Split)> = movies
        .into_iter()
        .map(|(l, m)| (l, m, Split::Test))
        .collect();
    let staging = staging_for(out_dir, data_dir)?;
    write_encoded(
        &staging,
        data_dir,
        &movies_path,
        pre,
        &assigned,
        skip_bad,
        &mut bad,
    )?;
    if !bad.is_empty() {
        write_json_atomic(&staging.path().join(BAD_RECORDS_FILE), &bad)?;
    }
    staging.commit()?;
    crate::Prepared::open(out_dir)
}

/// Whether the `movies` parsed from `path` can be scored by a model with preprocessing
/// `pre`: an error when none of them has genres or a rating (every score would be an empty
/// 0); otherwise the warnings to show, naming the genres the model does not predict (those
/// labels are left out of the scores).
pub fn check_scoreable(
    path: &Path,
    movies: &[(usize, Movie)],
    pre: &Preprocessor,
) -> Result<Vec<String>, DataError> {
    let labelled = movies
        .iter()
        .filter(|(_, m)| m.rating.is_some() || m.genres.as_ref().is_some_and(|g| !g.is_empty()))
        .count();
    if labelled == 0 {
        return Err(DataError::file(
            path,
            format!(
                "none of its {} movies has genres or a rating: nothing to score (`predict` \
                 takes unlabelled movies)",
                movies.len()
            ),
        ));
    }
    let mut unknown: BTreeMap<&str, usize> = BTreeMap::new();
    for g in movies
        .iter()
        .filter_map(|(_, m)| m.genres.as_ref())
        .flatten()
    {
        if !pre.genre_names().contains(g) {
            *unknown.entry(g.as_str()).or_default() += 1;
        }
    }
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let listed: Vec<String> = unknown
        .iter()
        .map(|(g, n)| format!("{g} ({n} movie{})", if *n == 1 { "" } else { "s" }))
        .collect();
    Ok(vec![format!(
        "warning: {}: genres the model does not predict, left out of the scores: {}",
        path.display(),
        listed.join(", ")
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_settings_are_refused_by_their_config_keys() {
        let refused = |edit: fn(&mut PrepareConfig), key: &str| {
            let mut c = PrepareConfig::default();
            edit(&mut c);
            let e = c.validate().unwrap_err();
            assert!(e.starts_with(key), "{e}");
        };
        refused(|c| c.val_ratio = 1.5, "data.preprocess.val_ratio = 1.5");
        refused(|c| c.test_ratio = -0.1, "data.preprocess.test_ratio");
        refused(
            |c| (c.val_ratio, c.test_ratio) = (0.5, 0.45),
            "data.preprocess.val_ratio + test_ratio",
        );
        refused(|c| c.image_width = 0, "data.preprocess.image_width");
        refused(|c| c.max_tokens = 0, "data.preprocess.max_tokens");
        PrepareConfig::default().validate().unwrap();
    }

    #[test]
    fn a_decoder_panic_is_the_record_error_not_the_end_of_prepare() {
        let path = Path::new("posters/x.png");
        // (The panic message printed below is expected.)
        let got = catch_decoder_panic(path, || panic!("bad huffman table"));
        let e = got.unwrap_err().to_string();
        assert!(
            e.contains("posters/x.png") && e.contains("bad huffman table"),
            "{e}"
        );
        assert_eq!(catch_decoder_panic(path, || Ok(vec![1])).unwrap(), vec![1]);
    }

    #[test]
    fn credits_name_every_director_actor_and_set_item_once() {
        use crate::extra::{FeatureKind, FeatureSpec};
        let movie: Movie = serde_json::from_value(serde_json::json!({
            "id": "m1",
            "genres": ["Drama"],
            "directors": ["Ann Lee ", "ann lee"],
            "cast": ["Bo Kim", ""],
            "extra": {"writer": "Cy Ray (novel), Bo Kim, N/A", "studio": "Big"}
        }))
        .unwrap();
        let config = PrepareConfig {
            features: vec![FeatureSpec {
                name: "writer".into(),
                kind: FeatureKind::Set,
                scaling: None,
                min_freq: Some(1),
                max_values: None,
                embedding_dim: None,
                extract: None,
            }],
            ..PrepareConfig::default()
        };
        let pre = fit_preprocessor(&[&movie], &config, String::new(), Path::new("d")).unwrap();
        let sample = pre.encode(&movie, Split::Train).unwrap();
        // Roles keep apart a director who also acts; an undeclared extra (studio) is no credit.
        assert_eq!(
            sample.credits,
            [
                "director:ann lee",
                "cast:bo kim",
                "writer:cy ray",
                "writer:bo kim"
            ]
        );
    }
}

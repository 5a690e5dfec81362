//! Everything a training run needs before its first step: the locked run folder, the prepared
//! data, the device, the model and the optimizer — new, or restored from the last checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::data::dataset::Dataset;
use burn::prelude::*;
use cinefuse_data::dataset::MovieDataset;
use cinefuse_data::output_dir::{OutputKind, check_output, marked_kind, write_marker};
use cinefuse_data::split::Split;
use cinefuse_data::{MovieBatcher, Prepared};
use cinefuse_model::config::Modality;
use cinefuse_model::head::RatingScale;
use cinefuse_model::{CinefuseModel, ModelShapes};

use super::{TrainOptions, initialized_now};
use crate::backend::{Selected, check_precision, config_batcher, describe, select_devices};
use crate::config::{BackendConfig, Precision, TrainConfig};
use crate::data_setup::{
    check_fingerprint, ensure_prepared, prepared_fingerprint, reopen_prepared,
};
use crate::run_dir::*;
use crate::trainer::LossScale;
use crate::trainer::learner::Learner;

/// A run ready to train (or to continue training).
pub(crate) struct Trainer {
    pub config: TrainConfig,
    pub stop_after_steps: Option<usize>,
    pub run_dir: PathBuf,
    /// Held for the whole run: no second process trains in this folder meanwhile.
    _lock: RunLock,
    /// The lead device: validation, checkpoints and the optimizer live here.
    pub device: Device,
    /// Every training device, lead first; more than one trains data-parallel.
    pub devices: Vec<Device>,
    pub prepared: Prepared,
    pub shapes: ModelShapes,
    pub batcher: MovieBatcher,
    pub train_ds: MovieDataset,
    pub val_ds: MovieDataset,
    /// `val_ds` with its frozen plot layers' states, when the run fine-tunes only the last
    /// layers of its plot backbone (`val_states.rs`).
    pub val_items: Option<crate::shared_passes::SharedItems>,
    pub scale: RatingScale,
    /// The model and its optimizer: the training step.
    pub learner: Learner,
    pub state: TrainState,
    pub steps_per_epoch: usize,
    pub total_steps: usize,
    /// Which movies it trains and validates on.
    pub rows: TrainRows,
    /// TensorBoard event file (`train.tensorboard`).
    pub events: Option<crate::tensorboard::EventWriter>,
    /// The best model so far and its loop state, kept in memory until the next checkpoint
    /// writes both: a bag member improves on most of its ~15 epochs, and each write of the
    /// model cost about as much as the epoch itself while it still held its frozen backbones
    /// (105 MB; `run_dir::saved_weights` leaves them out now).
    pub unsaved_best: Option<(crate::run_dir::SavedModel, TrainState)>,
}

/// The training and validation datasets of `rows`.
pub(crate) fn datasets_for(prepared: &Prepared, rows: TrainRows) -> (MovieDataset, MovieDataset) {
    match rows {
        TrainRows::Splits => (prepared.dataset(Split::Train), prepared.dataset(Split::Val)),
        TrainRows::Fold { index, count, seed } => (
            prepared.dataset_of(prepared.fold_indices(seed, index, count, false)),
            prepared.dataset_of(prepared.fold_indices(seed, index, count, true)),
        ),
        // No held-out movies: validation runs on the training movies (logged, not chosen on).
        TrainRows::All { .. } => (
            prepared.dataset_of(prepared.labelled_indices()),
            prepared.dataset_of(prepared.labelled_indices()),
        ),
    }
}

/// A new run goes into a new or empty folder, never one that holds a run or any of the data
/// it reads.
pub(crate) fn check_new_run_dir(
    dir: &Path,
    config: &TrainConfig,
    opts: &TrainOptions,
) -> Result<()> {
    let holds_run = marked_kind(dir).as_deref() == Some(OutputKind::Run.name())
        || dir.join(METRICS_FILE).exists()
        || dir.join(CHECKPOINTS_DIR).exists();
    if holds_run {
        bail!(
            "{}: already holds a run; use --resume {} to continue it or choose another --out",
            dir.display(),
            dir.display()
        );
    }
    let dataset = opts
        .data_override
        .as_deref()
        .unwrap_or(&config.data.dataset);
    let mut inputs = vec![dataset];
    inputs.extend(config.data.prepared.as_deref());
    check_output(dir, OutputKind::Run, &inputs)?;
    Ok(())
}

/// The run folder, locked, with the config to train: the run's own when resuming. The lock is
/// taken before anything in the folder is read or written.
fn open_run(
    config: &TrainConfig,
    opts: &TrainOptions,
) -> Result<(TrainConfig, PathBuf, RunLock, Option<UnstartedFolder>)> {
    if let Some(dir) = &opts.resume {
        if !dir.join(CONFIG_FILE).is_file() {
            bail!(
                "{}: not a resumable run directory (no {CONFIG_FILE})",
                dir.display()
            );
        }
        // Checked before the lock, whose file would be written into the folder.
        crate::run_dir::refuse_other_outputs(dir)?;
        let lock = RunLock::acquire(dir)?;
        if !dir.join(RUN_FILE).is_file() {
            bail!(
                "{}: this run stopped during its setup, before it wrote {RUN_FILE}, so there is \
                 nothing to resume; remove the folder and start the run again",
                dir.display()
            );
        }
        let cfg = TrainConfig::load(&dir.join(CONFIG_FILE), &[])
            .with_context(|| format!("{}: not a resumable run directory", dir.display()))?;
        return Ok((cfg, dir.clone(), lock, None));
    }
    let dir = opts.out.clone().unwrap_or_else(|| {
        config
            .output
            .runs_dir
            .join(format!("{}-{}", config.name, timestamp()))
    });
    check_new_run_dir(&dir, config, opts)?;
    let unstarted = UnstartedFolder::before_create(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let lock = RunLock::acquire(&dir)?;
    write_marker(&dir, OutputKind::Run)?;
    Ok((config.clone(), dir, lock, Some(unstarted)))
}

/// The backend section with `--backend` / `--devices` applied; checked before the run folder
/// is created, so a bad `--devices` leaves nothing behind.
fn backend_config(config: &TrainConfig, opts: &TrainOptions) -> Result<BackendConfig> {
    let mut backend = config.backend.with_kind(opts.backend);
    if let Some(devices) = &opts.devices {
        backend.devices = devices.clone();
        backend
            .validate(config.train.batch_size)
            .map_err(|e| anyhow::anyhow!("--devices: {e}"))?;
    }
    Ok(backend)
}

/// The run's devices, each checked for the configured precision.
fn training_devices(backend: &BackendConfig, precision: Precision) -> Result<Vec<Selected>> {
    let selected = select_devices(backend)?;
    for s in &selected {
        check_precision(s, precision)?;
    }
    Ok(selected)
}

/// The prepared data a run trains on: a resumed run's own (never a re-prepared copy: token
/// ids must not change), else the config's, prepared when needed.
fn run_data(
    config: &TrainConfig,
    opts: &TrainOptions,
    saved: Option<&RunInfo>,
) -> Result<(PathBuf, Prepared)> {
    match saved {
        Some(info) => {
            let opened = reopen_prepared(config, info)?;
            check_fingerprint(info, &opened.1.dir)?;
            Ok(opened)
        }
        None => ensure_prepared(config, opts.data_override.as_deref()),
    }
}

/// Refuses a model none of whose modalities has an input on any labelled training movie (a
/// plot-only model of data without plots trained on nothing and reported it as done), and
/// warns about each modality without one (that branch learns nothing).
fn check_inputs(modalities: &[Modality], prepared: &Prepared) -> Result<()> {
    let labelled: Vec<_> = prepared
        .samples
        .iter()
        .filter(|s| s.split != Split::Test && s.genres_present)
        .collect();
    let titles = prepared.preprocessor.state.config.title_in_text;
    let has = |m: Modality, s: &cinefuse_data::prepared::EncodedSample| match m {
        Modality::Poster => s.poster_slot.is_some(),
        Modality::Text => s.plot_present || (titles && !s.tokens.is_empty()),
        Modality::Meta => true,
    };
    let empty: Vec<Modality> = modalities
        .iter()
        .copied()
        .filter(|m| !labelled.is_empty() && !labelled.iter().any(|s| has(*m, s)))
        .collect();
    let what = |m: Modality| match m {
        Modality::Poster => "a poster",
        _ => "a plot",
    };
    if !empty.is_empty() && empty.len() == modalities.len() {
        bail!(
            "model.modalities {:?}: none of the {} labelled training movies of {} has {}; \
             the model would learn from nothing (add \"meta\", or give the movies plots or \
             posters)",
            modalities.iter().map(|m| m.name()).collect::<Vec<_>>(),
            labelled.len(),
            prepared.dir.display(),
            empty
                .iter()
                .map(|m| what(*m))
                .collect::<Vec<_>>()
                .join(" or ")
        );
    }
    for m in empty {
        eprintln!(
            "warning: model.modalities has \"{}\", but none of the {} labelled training \
             movies has {}: that branch learns nothing",
            m.name(),
            labelled.len(),
            what(m)
        );
    }
    Ok(())
}

/// The model's sizes: from the data, and a pretrained plot encoder's architecture from the
/// resumed run or the checkpoint folder.
fn run_shapes(
    config: &TrainConfig,
    prepared: &Prepared,
    saved: Option<&RunInfo>,
) -> Result<ModelShapes> {
    let mut shapes = ModelShapes::of(&prepared.preprocessor);
    shapes.text_backbone = match saved {
        Some(info) => info.shapes.text_backbone.clone(),
        None => crate::backbone_features::text_backbone_of(&config.model)?,
    };
    if shapes.n_genres == 0 {
        bail!("the prepared data has no genres; lower data.preprocess.min_genre_count");
    }
    Ok(shapes)
}

/// Initialized on the CPU and then moved, so a seed gives the same starting weights on every
/// backend (each backend's own generator would draw different ones). A run resumed from
/// `checkpoint` starts from random weights too, which the checkpoint replaces — all but the
/// frozen backbone tensors a checkpoint leaves out (`saved_weights`): those are read from the
/// backbones' folders again, as when the run started.
fn new_model(
    config: &TrainConfig,
    shapes: &ModelShapes,
    checkpoint: Option<&Path>,
    device: &Device,
) -> Result<CinefuseModel> {
    let init_device = Device::flex().autodiff();
    init_device.seed(config.seed);
    device.seed(config.seed);
    let saved_whole = checkpoint.is_some_and(|c| !frozen_file(&c.join(MODEL_FILE)).exists());
    let model = if saved_whole {
        config.model.init(shapes, &init_device)
    } else {
        config.model.init_pretrained(shapes, &init_device)?
    };
    Ok(initialized_now(model).fork(&device.clone().autodiff()))
}

/// Prints the parameter count of each part of `model`, and returns them.
fn print_parameters(model: &CinefuseModel) -> Vec<(String, usize)> {
    let param_counts: Vec<(String, usize)> = model
        .param_counts()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    println!("parameters:");
    for (name, n) in &param_counts {
        println!("  {name:<16} {n:>10}");
    }
    println!("  {:<16} {:>10}", "total", model.num_params());
    param_counts
}

/// Optimizer steps per epoch: every batch of `rows` training movies, at most
/// `train.max_steps_per_epoch` (0: no limit).
fn steps_per_epoch(t: &crate::config::LoopConfig, rows: usize) -> usize {
    let full_steps = rows.div_ceil(t.batch_size);
    match t.max_steps_per_epoch {
        0 => full_steps,
        max => full_steps.min(max),
    }
}

/// The run's `genre_logit_shift`, from the prepared train split's genre counts (not the
/// run's own rows: every member of a bag shares it, so a bag exports with one shift).
fn genre_logit_shift(config: &TrainConfig, prepared: &Prepared) -> Vec<f32> {
    let genres = &prepared.preprocessor.state.genres;
    config
        .loss
        .genre_logit_shift(&genres.train_counts, genres.train_movies_with_genres)
}

/// A resumed run's own facts, read once, with its relative paths taken from the folder
/// training ran in: a run resumes from any directory, and never prepares data anew.
fn saved_run_info(
    run_dir: &Path,
    config: &mut TrainConfig,
    resuming: bool,
) -> Result<Option<RunInfo>> {
    if !resuming {
        return Ok(None);
    }
    let mut info = RunInfo::read(run_dir)?;
    info.locate_paths(config);
    Ok(Some(info))
}

/// How `Trainer::setup` starts its run.
enum Start<'a> {
    Fresh {
        dataset_dir: &'a Path,
        description: &'a str,
        param_counts: Vec<(String, usize)>,
    },
    FromCheckpoint,
    Over,
}

/// The training and validation movies of `rows`, refused when either is empty.
fn nonempty_datasets(prepared: &Prepared, rows: TrainRows) -> Result<(MovieDataset, MovieDataset)> {
    let (train_ds, val_ds) = datasets_for(prepared, rows);
    if train_ds.len() == 0 || val_ds.len() == 0 {
        bail!(
            "need movies in both train ({}) and val ({}) splits",
            train_ds.len(),
            val_ds.len()
        );
    }
    Ok((train_ds, val_ds))
}

/// The training step for `model`: its loss weights come from the prepared train split's genre
/// counts, and a resumed run keeps the logit shift it started with.
fn learner_for(
    config: &TrainConfig,
    model: CinefuseModel,
    devices: Vec<Device>,
    prepared: &Prepared,
    train_rows: usize,
    saved: Option<&RunInfo>,
) -> Learner {
    let genres = &prepared.preprocessor.state.genres;
    let pos_weight = config.loss.pos_weights(&genres.train_counts, train_rows);
    let genre_shift = match saved {
        Some(info) => info.genre_logit_shift.clone(),
        None => genre_logit_shift(config, prepared),
    };
    let scale = RatingScale::of(&prepared.preprocessor.state);
    Learner::new(config, model, devices, scale, (pos_weight, genre_shift))
}

impl Trainer {
    pub fn setup(config: &TrainConfig, opts: &TrainOptions) -> Result<Self> {
        // Devices first: a backend that cannot train this config leaves no run folder behind.
        // (A resumed run's config is the one `--resume` loaded from the run folder.)
        let selected = training_devices(&backend_config(config, opts)?, config.train.precision)?;
        let (mut config, run_dir, lock, unstarted) = open_run(config, opts)?;
        let resuming = opts.resume.is_some();
        let saved = saved_run_info(&run_dir, &mut config, resuming)?;
        let max_tokens = config.data.preprocess.max_tokens;
        crate::backbone_features::check_plot_length(&config.model, max_tokens)?;
        let (dataset_dir, mut prepared) = run_data(&config, opts, saved.as_ref())?;
        check_inputs(&config.model.modalities, &prepared)?;

        let devices: Vec<Device> = selected.iter().map(|s| s.device.clone()).collect();
        let device = devices[0].clone();
        let description = describe(&selected);
        println!("backend: {description} ({device:?})");

        crate::backbone_features::attach_frozen_inputs(&config.model, &mut prepared, &device)?;
        let shapes = run_shapes(&config, &prepared, saved.as_ref())?;
        let rows = saved.as_ref().map_or(opts.rows, |info| info.rows);
        let (train_ds, val_ds) = nonempty_datasets(&prepared, rows)?;

        // A run killed before its first checkpoint has nothing to resume: it starts over.
        let checkpoint = latest_checkpoint(&run_dir).filter(|_| resuming);
        let restarting = resuming && checkpoint.is_none();
        let model = new_model(&config, &shapes, checkpoint.as_deref(), &device)?;
        let param_counts = print_parameters(&model);
        let steps_per_epoch = steps_per_epoch(&config.train, train_ds.len());
        let learner = learner_for(
            &config,
            model,
            devices.clone(),
            &prepared,
            train_ds.len(),
            saved.as_ref(),
        );
        let mut trainer = Trainer {
            rows,
            stop_after_steps: opts.stop_after_steps,
            _lock: lock,
            scale: RatingScale::of(&prepared.preprocessor.state),
            batcher: config_batcher(&config.backend, &prepared),
            total_steps: steps_per_epoch * config.train.epochs,
            steps_per_epoch,
            learner,
            state: TrainState {
                loss_scale: (config.train.precision == Precision::F16).then(LossScale::new),
                ..TrainState::default()
            },
            config,
            run_dir,
            device,
            devices,
            prepared,
            shapes,
            train_ds,
            val_ds,
            val_items: None,
            events: None,
            unsaved_best: None,
        };
        let start = if restarting {
            Start::Over
        } else if resuming {
            Start::FromCheckpoint
        } else {
            Start::Fresh {
                dataset_dir: &dataset_dir,
                description: &description,
                param_counts,
            }
        };
        trainer.begin(start)?;
        trainer.val_items = super::val_states::validation_items(
            &trainer.config,
            &trainer.learner.model().valid(),
            (&trainer.prepared, &trainer.val_ds),
            &trainer.batcher,
            &trainer.device,
        )?;
        if let Some(mut u) = unstarted {
            u.disarm();
        }
        println!("run directory: {}", trainer.run_dir.display());
        Ok(trainer)
    }

    /// A new run writes its files; a resumed one reloads its checkpoint, or starts over when it
    /// was killed before the first one.
    fn begin(&mut self, start: Start) -> Result<()> {
        match start {
            Start::Over => self.start_over()?,
            Start::FromCheckpoint => self.restore_checkpoint()?,
            Start::Fresh {
                dataset_dir,
                description,
                param_counts,
            } => self.write_run_files(dataset_dir, description, param_counts)?,
        }
        self.open_event_file()
    }

    /// The TensorBoard event file, when `train.tensorboard` asks for one.
    fn open_event_file(&mut self) -> Result<()> {
        if self.config.train.tensorboard {
            self.events = Some(crate::tensorboard::EventWriter::create(&self.run_dir)?);
        }
        Ok(())
    }

    /// Starts a run that stopped before its first checkpoint from its first step, in its own
    /// folder with its own config and rows, dropping whatever metric lines it wrote.
    fn start_over(&mut self) -> Result<()> {
        truncate_metrics(&self.run_dir, 0)?;
        println!(
            "{}: no checkpoint was written before it stopped; starting it over from the first epoch",
            self.run_dir.display()
        );
        Ok(())
    }

    /// The model, optimizer and loop state of checkpoint `ckpt`.
    fn load_checkpoint(&mut self, ckpt: &Path) -> Result<()> {
        self.learner.restore(ckpt)?;
        self.state = read_json(&ckpt.join(STATE_FILE))?;
        Ok(())
    }

    /// Loads the model, optimizer and loop state of the newest complete checkpoint that can be
    /// read, and drops the metric lines written after it.
    fn restore_checkpoint(&mut self) -> Result<()> {
        let mut candidates = checkpoints_newest_first(&self.run_dir)
            .into_iter()
            .peekable();
        let ckpt = loop {
            let Some(ckpt) = candidates.next() else {
                bail!(
                    "{}: no complete checkpoint to resume from",
                    self.run_dir.display()
                );
            };
            match self.load_checkpoint(&ckpt) {
                Ok(()) => break ckpt,
                // Checkpoints are written whole or not at all, so a damaged one was damaged
                // afterwards (a disk, a hand): the one before it is kept (train.keep_checkpoints)
                // for this. It is left in place for the user to inspect.
                Err(e) if candidates.peek().is_some() => {
                    eprintln!("warning: {e:#}; resuming from the checkpoint before it instead")
                }
                Err(e) => return Err(e),
            }
        };
        if self.config.train.precision == Precision::F16 && self.state.loss_scale.is_none() {
            self.state.loss_scale = Some(LossScale::new());
        }
        truncate_metrics(&self.run_dir, self.state.epoch)?;
        println!(
            "resuming {} from {} (epoch {} done, {} batches into the next, step {})",
            self.run_dir.display(),
            ckpt.file_name().unwrap_or_default().to_string_lossy(),
            self.state.epoch,
            self.state.batches_into_epoch,
            self.state.step
        );
        Ok(())
    }

    /// The resolved config and the run facts of a new run.
    fn write_run_files(
        &self,
        dataset_dir: &Path,
        backend: &str,
        param_counts: Vec<(String, usize)>,
    ) -> Result<()> {
        std::fs::write(self.run_dir.join(CONFIG_FILE), self.config.to_toml())?;
        write_json(
            &self.run_dir.join(RUN_FILE),
            &RunInfo {
                name: self.config.name.clone(),
                dataset_dir: dataset_dir.to_path_buf(),
                prepared_dir: self.prepared.dir.clone(),
                backend: backend.to_string(),
                shapes: self.shapes.clone(),
                rating_scale: self.scale,
                genres: self.prepared.preprocessor.genre_names().to_vec(),
                param_counts,
                prepared_fingerprint: prepared_fingerprint(&self.prepared.dir)?,
                rows: self.rows,
                genre_logit_shift: self.learner.genre_shift.clone(),
                workdir: std::env::current_dir().ok(),
                started_unix: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            },
        )
    }
}

//! The training configuration file (TOML): loading, `--set` overrides, unknown-key detection
//! and validation. Every error names the key, the value and what is allowed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use cinefuse_data::PrepareConfig;
use cinefuse_model::{LossConfig, ModelConfig};
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Name of the run (default run directory: `runs/<name>-<timestamp>`).
    pub name: String,
    /// Seed of the model initialization, shuffling and dropout.
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default = "ModelConfig::new")]
    pub model: ModelConfig,
    #[serde(default = "LossConfig::new")]
    pub loss: LossConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub train: LoopConfig,
    #[serde(default)]
    pub backend: BackendConfig,
    #[serde(default)]
    pub output: OutputConfig,
}

fn default_seed() -> u64 {
    7
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Dataset directory (`movies.jsonl` + `posters/`).
    pub dataset: PathBuf,
    /// Where the prepared data goes (default: `prepared/<dataset dir name>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prepared: Option<PathBuf>,
    /// When the dataset is absent, generate a synthetic one with this many movies (0 = never).
    pub synth_if_missing: usize,
    pub synth_seed: u64,
    pub preprocess: PrepareConfig,
    /// Declared extra features (`[[data.features]]`); prepared with `preprocess`.
    pub features: Vec<cinefuse_data::extra::FeatureSpec>,
}

impl DataConfig {
    /// Declared features are written `[[data.features]]` and travel with the preprocessing
    /// settings (they are fitted by `prepare`); a bare preprocessing file may hold them too.
    fn sync_features(&mut self) -> Result<(), String> {
        match (
            self.features.is_empty(),
            self.preprocess.features.is_empty(),
        ) {
            (false, true) => self.preprocess.features = self.features.clone(),
            (true, false) => self.features = self.preprocess.features.clone(),
            (false, false) if self.features != self.preprocess.features => {
                return Err(
                    "extra features are declared twice (data.features and data.preprocess.features); \
                     keep [[data.features]]"
                        .into(),
                );
            }
            _ => {}
        }
        cinefuse_data::extra::validate_specs(&self.features)
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: PathBuf::from("datasets/demo"),
            prepared: None,
            synth_if_missing: 0,
            synth_seed: 7,
            preprocess: PrepareConfig::default(),
            features: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Peak learning rate (AdamW).
    pub lr: f64,
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
    /// Clip the global gradient norm to this value (0 disables).
    pub grad_clip_norm: f32,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            weight_decay: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            grad_clip_norm: 1.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Constant,
    Cosine,
    Step,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    pub kind: ScheduleKind,
    /// Linear warmup from 0 over this many optimizer steps.
    pub warmup_steps: usize,
    /// Cosine: final lr as a fraction of the peak.
    pub min_lr_ratio: f64,
    /// Step decay: multiply by `gamma` every `step_epochs` epochs.
    pub step_epochs: usize,
    pub gamma: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            kind: ScheduleKind::Cosine,
            warmup_steps: 50,
            min_lr_ratio: 0.05,
            step_epochs: 5,
            gamma: 0.5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    ValLoss,
    ValMicroF1,
    ValMacroF1,
    ValTop1,
    ValMae,
}

impl Monitor {
    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Monitor::ValMicroF1 | Monitor::ValMacroF1 | Monitor::ValTop1
        )
    }

    pub fn key(self) -> &'static str {
        match self {
            Monitor::ValLoss => "val_loss",
            Monitor::ValMicroF1 => "val_micro_f1",
            Monitor::ValMacroF1 => "val_macro_f1",
            Monitor::ValTop1 => "val_top1",
            Monitor::ValMae => "val_mae",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    /// Data-loading worker threads (0 = load on the training thread).
    pub num_workers: usize,
    /// Stop after this many epochs without improvement of `monitor` (0 disables).
    pub early_stopping_patience: usize,
    pub monitor: Monitor,
    /// Write a resumable checkpoint every N epochs (the best model is always kept).
    pub checkpoint_every: usize,
    /// Number of periodic checkpoints kept on disk.
    pub keep_checkpoints: usize,
    /// Cap on optimizer steps per epoch (0 = the whole training split); for smoke tests.
    pub max_steps_per_epoch: usize,
    /// Epochs of per-modality pre-training (only the modality heads' losses) before fusion
    /// fine-tuning. Fused models only.
    pub pretrain_epochs: usize,
    /// Compute precision of the training forward and backward passes (GPU backends only);
    /// master weights and optimizer state stay f32 either way.
    pub precision: Precision,
    /// K-fold bagging (0: off, one model on the train split). K ≥ 2 trains K models, each on
    /// K − 1 folds of train + validation, early-stopped on its own held-out fold; their
    /// out-of-fold predictions choose the thresholds and calibrate the rating interval, and
    /// the bag predicts with the members' mean. The test split is never touched.
    pub folds: usize,
    /// With `folds`: repeated bagging (AutoGluon's `num_bag_sets`). Each extra set trains
    /// another K members on folds drawn with another seed (set s: seed + 1000·s, for the
    /// folds and the members' initialisation). A movie's out-of-fold prediction is the mean
    /// over the sets (each set has one member that did not see it), the bag's the mean of all
    /// members; the CV+ interval pairs each residual with the first set's fold. 1: one set.
    pub bag_sets: usize,
    /// With `folds`: also train one model on all of train + validation for the members' mean
    /// best epoch count (cheaper to serve than the bag).
    pub refit: bool,
    /// With `folds`: partner bags trained on the same data and folds after this config's bag,
    /// then blended with it by weights learned on their out-of-fold predictions (`cinefuse
    /// ensemble` in one run).
    pub blend_with: Vec<BlendPartner>,
    /// With `folds`: gradient-boosted rating trees on the metadata, trained on the same folds
    /// and blended into the rating only (`[train.rating_trees]`, see `rating_trees.rs`).
    pub rating_trees: Option<crate::rating_trees::RatingTreesConfig>,
    /// With `folds`: a genre vote of the labelled movies with the most alike plots (the first
    /// bag's cached plot embeddings), on the same folds, stacked with the bags per genre
    /// (`[train.plot_neighbours]`, see `plot_neighbours.rs`).
    pub plot_neighbours: Option<crate::plot_neighbours::PlotNeighboursConfig>,
    /// With `folds`: a genre vote of the labelled movies with the most alike metadata (each
    /// encoded column standardised), on the same folds, stacked with the bags per genre
    /// (`[train.metadata_neighbours]`, see `metadata_neighbours.rs`).
    pub metadata_neighbours: Option<crate::metadata_neighbours::MetadataNeighboursConfig>,
    /// With `folds`: a genre vote of the labelled movies that share the most directors, cast
    /// members and writers (each name weighted by its rarity), on the same folds, stacked
    /// with the bags per genre (`[train.credit_neighbours]`, see `credit_neighbours.rs`).
    pub credit_neighbours: Option<crate::credit_neighbours::CreditNeighboursConfig>,
    /// With `folds`: a zero-shot genre vote of sentences that describe each genre against the
    /// plot (the first bag's frozen plot encoder embeds both), stacked with the bags per genre
    /// (`[train.genre_prompts]`, see `genre_prompts.rs`).
    pub genre_prompts: Option<crate::genre_prompts::GenrePromptsConfig>,
    /// With `folds`: a rating read from the plot alone (ridge regressions on the first bag's
    /// cached plot features, on the same folds) for movies given without metadata, with an
    /// interval of its own (`[train.content_rating]`, see `content_rating.rs`).
    pub content_rating: Option<crate::content_rating::ContentRatingConfig>,
    /// How far each genre's F1-best decision threshold is pulled toward the one threshold
    /// shared by all genres with the best micro-F1 (0: per genre, 1: shared; `thresholds.rs`).
    /// A rare genre's own threshold is noisy; out of fold 0.25 raised micro-F1 and kept
    /// macro-F1 (docs/RESULTS.md). Bags and blends use their first bag's value.
    pub shared_threshold_weight: f32,
    /// How each genre's own threshold is chosen before that pull: `"grid"` (its F1-best value
    /// in 0.05 steps) or `"half_best_f1"` (half its best F1, the F1-optimal cut for calibrated
    /// probabilities; a blend's stacked probabilities are calibrated, so out of fold it raised
    /// micro- and macro-F1 on every seed, docs/RESULTS.md). Bags and blends use their first
    /// bag's value.
    pub threshold_rule: crate::thresholds::ThresholdRule,
    /// Also write TensorBoard event files into `RUN/tensorboard/`: every epoch's metrics (as
    /// in `metrics.jsonl`, by epoch) and each step's loss, learning rate and f16 loss scale.
    pub tensorboard: bool,
}

impl LoopConfig {
    /// A part written with `enabled = false` (to switch off a shipped one by `--set`) is
    /// the same as no section at all.
    fn drop_disabled_parts(&mut self) {
        if self.rating_trees.is_some_and(|t| !t.enabled) {
            self.rating_trees = None;
        }
        if self.plot_neighbours.is_some_and(|v| !v.enabled) {
            self.plot_neighbours = None;
        }
        if self.metadata_neighbours.is_some_and(|v| !v.enabled) {
            self.metadata_neighbours = None;
        }
        if self.credit_neighbours.is_some_and(|v| !v.enabled) {
            self.credit_neighbours = None;
        }
        if self.content_rating.is_some_and(|c| !c.enabled) {
            self.content_rating = None;
        }
        if self.genre_prompts.as_ref().is_some_and(|v| !v.enabled) {
            self.genre_prompts = None;
        }
    }
}

/// A partner bag of a blend: a config file (relative to the working directory; it may be this
/// very config) and overrides applied to it. Its own `blend_with` is ignored, and it trains
/// with this config's seed, folds, dataset, split (`data.preprocess` seed, split, val_ratio,
/// test_ratio; its `set` may not name them) and bag sets (unless its `set` names
/// `train.bag_sets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlendPartner {
    pub config: PathBuf,
    /// `KEY=VALUE` overrides, as `--set` takes them.
    #[serde(default)]
    pub set: Vec<String>,
}

/// Floating-point precision of the training computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// Half precision with dynamic loss scaling (f16 gradients underflow without it).
    F16,
    /// bfloat16: f32's range, so no loss scaling.
    Bf16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 32,
            eval_batch_size: 128,
            num_workers: 1,
            early_stopping_patience: 5,
            monitor: Monitor::ValLoss,
            checkpoint_every: 1,
            keep_checkpoints: 2,
            max_steps_per_epoch: 0,
            pretrain_epochs: 0,
            precision: Precision::F32,
            folds: 0,
            bag_sets: 1,
            refit: false,
            blend_with: Vec::new(),
            rating_trees: None,
            plot_neighbours: None,
            metadata_neighbours: None,
            credit_neighbours: None,
            genre_prompts: None,
            content_rating: None,
            shared_threshold_weight: 0.25,
            threshold_rule: crate::thresholds::ThresholdRule::Grid,
            tensorboard: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// wgpu on a real GPU when one is present, otherwise flex.
    Auto,
    /// Burn's pure-Rust CPU backend.
    Flex,
    /// wgpu on the best adapter (a real GPU, or lavapipe when there is none).
    Wgpu,
    /// wgpu forced onto the CPU adapter (Mesa's lavapipe); for testing the GPU code path.
    Lavapipe,
    /// CUDA (build with `--features cuda`).
    Cuda,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    pub kind: BackendKind,
    /// Index of the GPU to use (wgpu discrete GPUs, CUDA devices).
    pub device_index: usize,
    /// Data-parallel training on these GPU indices (e.g. `[0, 1]`): one model replica and one
    /// shard of every batch per device. Empty: one device, `device_index`.
    pub devices: Vec<usize>,
    /// Pad plot batches (training, validation, `eval`, `bench`) to a multiple of this many
    /// tokens. A GPU backend compiles its kernels once per batch shape, so fewer lengths cost
    /// less compilation and more padding. Unset: 16 on GPU backends, 1 (the longest plot) on
    /// flex.
    pub token_bucket: Option<usize>,
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            kind: BackendKind::Auto,
            device_index: 0,
            devices: Vec::new(),
            token_bucket: None,
        }
    }
}

impl BackendConfig {
    /// This section with the backend kind replaced by `kind` (a `--backend` flag), if given.
    pub fn with_kind(&self, kind: Option<BackendKind>) -> Self {
        let mut b = self.clone();
        if let Some(k) = kind {
            b.kind = k;
        }
        b
    }

    /// The device indices to train on: `devices`, or `[device_index]` when that is empty.
    pub fn device_indices(&self) -> Vec<usize> {
        if self.devices.is_empty() {
            vec![self.device_index]
        } else {
            self.devices.clone()
        }
    }

    pub fn validate(&self, batch_size: usize) -> Result<(), String> {
        if self.token_bucket == Some(0) {
            return Err("backend.token_bucket = 0: must be at least 1 token".into());
        }
        let d = &self.devices;
        if let Some(i) = (1..d.len()).find(|&i| d[..i].contains(&d[i])) {
            return Err(format!(
                "backend.devices = {d:?}: device {} is listed twice",
                d[i]
            ));
        }
        if d.len() > batch_size {
            return Err(format!(
                "backend.devices = {d:?}: {} devices need train.batch_size >= {} (it is {batch_size})",
                d.len(),
                d.len()
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Parent directory of run directories.
    pub runs_dir: PathBuf,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            runs_dir: PathBuf::from("runs"),
        }
    }
}

/// Parses a `--set` value: TOML syntax when it parses (numbers, booleans, arrays, quoted
/// strings), otherwise the raw text as a string.
fn parse_override_value(raw: &str) -> Value {
    match toml::from_str::<Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| Value::String(raw.into())),
        Err(_) => Value::String(raw.to_string()),
    }
}

/// Applies `a.b.c=value` to a TOML table, creating intermediate tables.
pub fn apply_override(root: &mut Table, assignment: &str) -> Result<()> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| anyhow!("--set {assignment:?}: expected KEY=VALUE, e.g. train.epochs=3"))?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("--set {assignment:?}: the key {key:?} has an empty part");
    }
    let mut table = root;
    for (i, part) in parts[..parts.len() - 1].iter().enumerate() {
        let entry = table
            .entry(part.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        table = entry.as_table_mut().ok_or_else(|| {
            anyhow!(
                "--set {assignment:?}: `{}` is a value, not a section",
                parts[..=i].join(".")
            )
        })?;
    }
    table.insert(
        parts[parts.len() - 1].to_string(),
        parse_override_value(raw.trim()),
    );
    Ok(())
}

/// Every key of `table` (as written) is one the parsed config `back` kept: Burn `Config`
/// types accept unknown fields, so a round trip finds the ones that were ignored.
fn check_known_keys(table: &Table, back: &Table, origin: &str) -> Result<()> {
    let mut keys = Vec::new();
    collect_keys("", table, &mut keys);
    for key in keys {
        match lookup(back, &key) {
            // serde reads a section from a list too (`--set train=[]` was every `[train]`
            // setting back at its default, silently).
            Some(Value::Table(_)) => {
                bail!("{origin}: `{key}` is a section ([{key}]), not a value: set its keys")
            }
            Some(_) => continue,
            None => {}
        }
        let section = key
            .rsplit_once('.')
            .map(|(s, _)| s.to_string())
            .unwrap_or_default();
        let allowed = if section.is_empty() {
            Some(back)
        } else {
            lookup(back, &section).and_then(Value::as_table)
        };
        let allowed = allowed
            .map(|t| t.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        bail!(
            "{origin}: unknown key `{key}`{}",
            if allowed.is_empty() {
                String::new()
            } else {
                format!(" (allowed here: {allowed})")
            }
        );
    }
    Ok(())
}

fn collect_keys(prefix: &str, table: &Table, out: &mut Vec<String>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Table(t) => collect_keys(&path, t, out),
            _ => out.push(path),
        }
    }
}

fn lookup<'a>(table: &'a Table, path: &str) -> Option<&'a Value> {
    let mut cur: Option<&Value> = None;
    let mut t = table;
    for part in path.split('.') {
        cur = t.get(part);
        match cur {
            Some(Value::Table(inner)) => t = inner,
            Some(_) => {}
            None => return None,
        }
    }
    cur
}

/// The first user-set key whose value alone makes the config fail to deserialize.
fn blame_key(table: &Table) -> Option<String> {
    let mut keys = Vec::new();
    collect_keys("", table, &mut keys);
    keys.into_iter().find(|key| {
        let mut only = Table::new();
        if let Some(v) = lookup(table, key) {
            let _ = apply_value(&mut only, key, v.clone());
        }
        let mut full = match Table::try_from(TrainConfig::defaults("default")) {
            Ok(t) => t,
            Err(_) => return false,
        };
        merge(&mut full, &only);
        Table::try_into::<TrainConfig>(full).is_err()
    })
}

/// Sets `a.b.c` in `root` to `value`, creating intermediate tables.
fn apply_value(root: &mut Table, key: &str, value: Value) -> Option<()> {
    let parts: Vec<&str> = key.split('.').collect();
    let mut table = root;
    for part in &parts[..parts.len() - 1] {
        table = table
            .entry(part.to_string())
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()?;
    }
    table.insert(parts[parts.len() - 1].to_string(), value);
    Some(())
}

/// The first key holding NaN or an infinity (TOML can spell both; no setting wants them).
fn non_finite_number(table: &Table, prefix: &str) -> Option<String> {
    table.iter().find_map(|(k, v)| {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Float(x) if !x.is_finite() => Some(path),
            Value::Table(t) => non_finite_number(t, &path),
            Value::Array(items) => items.iter().find_map(|item| match item {
                Value::Float(x) if !x.is_finite() => Some(path.clone()),
                Value::Table(t) => non_finite_number(t, &path),
                _ => None,
            }),
            _ => None,
        }
    })
}

/// Recursively lays `over` on top of `base` (tables merge, other values replace).
fn merge(base: &mut Table, over: &Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The largest batch a config may ask for: far above what fits a GPU's memory for these
/// models, and far below a size whose allocation aborts the process.
pub const MAX_BATCH: usize = 65_536;
/// Far beyond any schedule; it keeps the schedule's step count (steps per epoch × epochs)
/// from overflowing.
pub const MAX_EPOCHS: usize = 100_000;
/// Most repeated sets of folds a bag may train (`train.bag_sets`).
pub const MAX_BAG_SETS: usize = 10;

impl TrainConfig {
    /// Every setting at its default.
    pub fn defaults(name: &str) -> Self {
        TrainConfig {
            name: name.to_string(),
            seed: default_seed(),
            data: DataConfig::default(),
            model: ModelConfig::new(),
            loss: LossConfig::new(),
            optim: OptimConfig::default(),
            schedule: ScheduleConfig::default(),
            train: LoopConfig::default(),
            backend: BackendConfig::default(),
            output: OutputConfig::default(),
        }
    }

    /// Parses TOML text with overrides. Unknown keys anywhere are errors.
    pub fn from_toml_str(text: &str, origin: &str, overrides: &[String]) -> Result<Self> {
        let mut table = crate::toml_text::parse_table(text, origin)?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        // Burn `Config` types require every field when deserialized: start from the defaults.
        let mut full = Table::try_from(Self::defaults("default")).context("defaults serialize")?;
        full.remove("name");
        merge(&mut full, &table);
        let config: TrainConfig = Table::try_into(full).map_err(|e| match blame_key(&table) {
            Some(key) => {
                let from = overrides
                    .iter()
                    .find(|o| o.split_once('=').is_some_and(|(k, _)| k.trim() == key))
                    .map_or(origin.to_string(), |o| format!("--set {o}"));
                anyhow!("{from}: key `{key}`: {}", e.message().trim())
            }
            None => anyhow!("{origin}: {e}"),
        })?;
        // Burn `Config` types accept unknown fields; a round trip finds keys that were ignored.
        let back = Table::try_from(&config).context("config does not serialize")?;
        check_known_keys(&table, &back, origin)?;
        let mut config = config;
        config.train.drop_disabled_parts();
        config
            .data
            .sync_features()
            .map_err(|e| anyhow!("{origin}: {e}"))?;
        if let Some(key) = non_finite_number(&back, "") {
            bail!("{origin}: key `{key}`: expected a finite number, not NaN or infinity");
        }
        config.validate().map_err(|e| anyhow!("{origin}: {e}"))?;
        Ok(config)
    }

    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = cinefuse_data::user_file::read_text_capped(
            path,
            cinefuse_data::user_file::MAX_CONFIG_BYTES,
        )
        .with_context(|| format!("cannot read config {}", path.display()))?;
        Self::from_toml_str(&text, &path.display().to_string(), overrides)
    }

    /// The resolved config as TOML; extra features appear once, as `[[data.features]]`.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        shown.data.preprocess.features.clear();
        toml::to_string_pretty(&shown).expect("config serializes")
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() || self.name.contains('/') {
            return Err(format!(
                "name = {:?}: expected a non-empty name without '/'",
                self.name
            ));
        }
        self.data.preprocess.validate()?;
        let synth = self.data.synth_if_missing;
        if synth > cinefuse_data::synth::MAX_SYNTH_MOVIES {
            return Err(format!(
                "data.synth_if_missing = {synth}: expected 0 (never) or 1..={}",
                cinefuse_data::synth::MAX_SYNTH_MOVIES
            ));
        }
        let uses_meta = self
            .model
            .modalities
            .contains(&cinefuse_model::Modality::Meta);
        if !self.data.features.is_empty() && !uses_meta {
            return Err(format!(
                "data.features `{}` feeds the metadata encoder: add \"meta\" to model.modalities",
                self.data.features[0].name
            ));
        }
        self.model.validate()?;
        self.check_pretrained_text()?;
        self.loss.validate()?;
        self.check_optim_and_schedule()?;
        self.check_loop()?;
        let t = &self.train;
        self.backend.validate(t.batch_size)?;
        if t.pretrain_epochs >= t.epochs && t.pretrain_epochs > 0 {
            return Err(format!(
                "train.pretrain_epochs = {} must be smaller than train.epochs = {}",
                t.pretrain_epochs, t.epochs
            ));
        }
        Ok(())
    }

    /// `[optim]` and `[schedule]`.
    fn check_optim_and_schedule(&self) -> Result<(), String> {
        let o = &self.optim;
        if !(o.lr > 0.0 && o.lr < 1.0) {
            return Err(format!("optim.lr = {}: expected 0 < lr < 1", o.lr));
        }
        if o.weight_decay < 0.0 || o.grad_clip_norm < 0.0 {
            return Err("optim.weight_decay and optim.grad_clip_norm must be >= 0".into());
        }
        if !(0.0..1.0).contains(&o.beta1) || !(0.0..1.0).contains(&o.beta2) {
            return Err(format!(
                "optim.beta1 = {}, optim.beta2 = {}: expected [0, 1)",
                o.beta1, o.beta2
            ));
        }
        let s = &self.schedule;
        if !(0.0..=1.0).contains(&s.min_lr_ratio) {
            return Err(format!(
                "schedule.min_lr_ratio = {}: expected [0, 1]",
                s.min_lr_ratio
            ));
        }
        if s.kind == ScheduleKind::Step && (s.step_epochs == 0 || !(0.0..=1.0).contains(&s.gamma)) {
            return Err(
                "schedule.step_epochs must be >= 1 and schedule.gamma in [0, 1] for step decay"
                    .into(),
            );
        }
        Ok(())
    }

    /// `[train]`'s sizes and bagging keys.
    fn check_loop(&self) -> Result<(), String> {
        let t = &self.train;
        if !(1..=MAX_EPOCHS).contains(&t.epochs) {
            return Err(format!(
                "train.epochs = {}: expected 1..={MAX_EPOCHS}",
                t.epochs
            ));
        }
        for (key, v) in [
            ("train.batch_size", t.batch_size),
            ("train.eval_batch_size", t.eval_batch_size),
        ] {
            if !(1..=MAX_BATCH).contains(&v) {
                return Err(format!("{key} = {v}: expected 1..={MAX_BATCH}"));
            }
        }
        if !(0.0..=1.0).contains(&t.shared_threshold_weight) {
            return Err(format!(
                "train.shared_threshold_weight = {}: expected 0 (per-genre thresholds) to 1 \
                 (one shared threshold)",
                t.shared_threshold_weight
            ));
        }
        if t.checkpoint_every == 0 {
            return Err("train.checkpoint_every = 0: expected at least 1".into());
        }
        self.check_bagging()?;
        self.check_bag_parts()
    }

    /// The bag's folds and sets, and what needs a bag.
    fn check_bagging(&self) -> Result<(), String> {
        let t = &self.train;
        if t.folds == 1 || t.folds > 20 {
            return Err(format!(
                "train.folds = {}: expected 0 (no bagging) or 2..=20",
                t.folds
            ));
        }
        if !(1..=MAX_BAG_SETS).contains(&t.bag_sets) {
            return Err(format!(
                "train.bag_sets = {}: expected 1..={MAX_BAG_SETS}",
                t.bag_sets
            ));
        }
        if t.bag_sets > 1 && t.folds == 0 {
            return Err(format!(
                "train.bag_sets > 1 needs train.folds >= 2 (it repeats a bag); with train.folds \
                 = 0 set train.bag_sets = 1 too (it is {})",
                t.bag_sets
            ));
        }
        if t.refit && t.folds == 0 {
            return Err("train.refit = true needs train.folds >= 2 (it refits a bag)".into());
        }
        if !t.blend_with.is_empty() && t.folds == 0 {
            return Err("train.blend_with needs train.folds >= 2 (it blends bags)".into());
        }
        Ok(())
    }

    /// The rating trees and the neighbour votes: each trains on the bag's folds.
    fn check_bag_parts(&self) -> Result<(), String> {
        let t = &self.train;
        if let Some(trees) = &t.rating_trees {
            if t.folds == 0 {
                return Err(
                    "train.rating_trees needs train.folds >= 2 (it trains on the bag's folds)"
                        .into(),
                );
            }
            trees
                .validate()
                .map_err(|e| format!("train.rating_trees: {e}"))?;
        }
        if t.content_rating.is_some() && t.folds == 0 {
            return Err(
                "train.content_rating needs train.folds >= 2 (it trains on the bag's folds)".into(),
            );
        }
        let votes = [
            ("plot_neighbours", t.plot_neighbours.map(|v| v.validate())),
            (
                "metadata_neighbours",
                t.metadata_neighbours.map(|v| v.validate()),
            ),
            (
                "credit_neighbours",
                t.credit_neighbours.map(|v| v.validate()),
            ),
            (
                "genre_prompts",
                t.genre_prompts.as_ref().map(|v| v.validate()),
            ),
        ];
        for (key, checked) in votes {
            let Some(checked) = checked else { continue };
            if t.folds == 0 {
                return Err(format!(
                    "train.{key} needs train.folds >= 2 (it votes on the bag's folds)"
                ));
            }
            checked.map_err(|e| format!("train.{key}: {e}"))?;
        }
        Ok(())
    }

    /// A BERT plot encoder reads the token ids of its own tokenizer: the data section must
    /// prepare plots with exactly that tokenizer, and no longer than its position table.
    fn check_pretrained_text(&self) -> Result<(), String> {
        use cinefuse_data::tokenizer::TokenizerKind;
        use cinefuse_model::encoders::text::TextEncoderKind;
        let text = &self.model.text;
        if text.kind != TextEncoderKind::Bert
            || !self
                .model
                .modalities
                .contains(&cinefuse_model::Modality::Text)
        {
            return Ok(());
        }
        let p = &self.data.preprocess;
        let dir = text
            .pretrained
            .as_deref()
            .unwrap_or(std::path::Path::new(""));
        let same = p.tokenizer == TokenizerKind::Pretrained
            && p.tokenizer_path
                .as_deref()
                .is_some_and(|t| t == dir || t == dir.join("tokenizer.json"));
        if !same {
            return Err(format!(
                "model.text.kind = \"bert\" reads token ids of its checkpoint's tokenizer: set \
                 data.preprocess.tokenizer = \"pretrained\" and data.preprocess.tokenizer_path = \
                 {:?} (the same folder as model.text.pretrained)",
                dir.display().to_string()
            ));
        }
        if p.max_tokens > 512 {
            return Err(format!(
                "data.preprocess.max_tokens = {}: BERT checkpoints have at most 512 positions",
                p.max_tokens
            ));
        }
        Ok(())
    }

    /// The prepared-data directory for this config's dataset.
    pub fn prepared_dir(&self) -> PathBuf {
        self.data.prepared.clone().unwrap_or_else(|| {
            crate::data_setup::prepared_dir_for(&self.data.dataset, &self.data.preprocess)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name = \"t\"\n";

    #[test]
    fn defaults_fill_missing_sections() {
        let c = TrainConfig::from_toml_str(MINIMAL, "test", &[]).unwrap();
        assert_eq!(c.train.epochs, 10);
        assert_eq!(c.model.embed_dim, 64);
        let p = c.prepared_dir().display().to_string();
        assert!(
            p.starts_with("prepared/demo-") && p.len() == "prepared/demo-".len() + 8,
            "{p}"
        );
        let other =
            TrainConfig::from_toml_str(MINIMAL, "test", &["data.preprocess.max_tokens=9".into()])
                .unwrap();
        assert_ne!(
            other.prepared_dir(),
            c.prepared_dir(),
            "other preprocessing, other directory"
        );
    }

    #[test]
    fn unknown_keys_are_errors_in_plain_and_burn_sections() {
        let e = TrainConfig::from_toml_str(
            "name = \"t\"\n[train]\nepochs = 2\nepocs = 3\n",
            "c.toml",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("epocs"), "{e}");
        let e = TrainConfig::from_toml_str(
            "name = \"t\"\n[model.poster]\nwidht = [8]\n",
            "c.toml",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown key `model.poster.widht`"), "{e}");
        assert!(e.contains("widths"), "lists allowed keys: {e}");
        // A section given as a value is refused, not read as its defaults.
        for set in ["train=[]", "optim=[]", "data.preprocess=[]"] {
            let e = TrainConfig::from_toml_str("name = \"x\"", "c.toml", &[set.into()])
                .unwrap_err()
                .to_string();
            let key = set.split_once('=').unwrap().0;
            assert!(e.contains(&format!("`{key}` is a section")), "{set}: {e}");
        }
    }

    #[test]
    fn overrides_set_dotted_keys_and_are_validated() {
        let c = TrainConfig::from_toml_str(
            MINIMAL,
            "test",
            &[
                "train.epochs=3".into(),
                "model.fusion.kind=concat".into(),
                "model.poster.widths=[8, 16]".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.train.epochs, 3);
        assert_eq!(
            c.model.fusion.kind,
            cinefuse_model::fusion::FusionKind::Concat
        );
        assert_eq!(c.model.poster.widths, vec![8, 16]);
        let e = TrainConfig::from_toml_str(MINIMAL, "test", &["optim.lr=5".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("optim.lr = 5"), "{e}");
        let e = TrainConfig::from_toml_str(MINIMAL, "test", &["train.nope=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
        let e = TrainConfig::from_toml_str(MINIMAL, "test", &["epochs".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("KEY=VALUE"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_value() {
        let e =
            TrainConfig::from_toml_str("name = \"t\"\n[train]\nepochs = \"ten\"\n", "c.toml", &[])
                .unwrap_err()
                .to_string();
        assert!(e.contains("c.toml") && e.contains("ten"), "{e}");
        let e = TrainConfig::from_toml_str(
            "name = \"t\"\n[model.fusion]\nkind = \"sum\"\n",
            "c.toml",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sum"), "{e}");
    }

    #[test]
    fn an_epoch_count_past_any_schedule_is_refused_by_key() {
        for epochs in ["0", "100001", "9223372036854775807"] {
            let e =
                TrainConfig::from_toml_str(MINIMAL, "c.toml", &[format!("train.epochs={epochs}")])
                    .unwrap_err()
                    .to_string();
            assert!(
                e.contains(&format!("train.epochs = {epochs}: expected 1..=100000")),
                "{e}"
            );
        }
        let set = ["train.epochs=100000".to_string()];
        assert!(TrainConfig::from_toml_str(MINIMAL, "c.toml", &set).is_ok());
    }

    #[test]
    fn sizes_that_would_abort_an_allocation_are_refused_by_key() {
        for (set, says) in [
            (
                "train.batch_size=1000000000000",
                "train.batch_size = 1000000000000",
            ),
            (
                "train.eval_batch_size=1000000000000",
                "train.eval_batch_size",
            ),
            (
                "data.preprocess.max_tokens=100000000",
                "data.preprocess.max_tokens = 100000000",
            ),
            (
                "data.preprocess.vocab_size=100000000000",
                "data.preprocess.vocab_size",
            ),
            ("model.embed_dim=1000000000", "model.embed_dim = 1000000000"),
            ("model.text.d_model=100000000", "model.text.d_model"),
            ("model.text.d_ff=100000000", "model.text.d_ff"),
            ("model.text.n_layers=1000", "model.text.n_layers = 1000"),
            (
                "model.poster.widths=[16,100000000]",
                "model.poster.widths[1]",
            ),
            (
                "model.poster.blocks_per_stage=1000",
                "model.poster.blocks_per_stage",
            ),
            ("model.meta.hidden=100000000", "model.meta.hidden"),
            ("model.meta.cat_dim=100000000", "model.meta.cat_dim"),
            ("model.fusion.hidden=100000000", "model.fusion.hidden"),
        ] {
            let e = TrainConfig::from_toml_str(MINIMAL, "test", &[set.into()])
                .unwrap_err()
                .to_string();
            assert!(e.contains(says) && e.contains("expected"), "{set}: {e}");
        }
        TrainConfig::from_toml_str(MINIMAL, "test", &["train.batch_size=65536".into()]).unwrap();
        // Each size within bounds, their product not: the n-gram table is bounded as a whole.
        let ngram = |buckets: &str| {
            let sets = [
                "model.text.kind=\"ngram\"".into(),
                "model.text.d_model=128".into(),
                format!("model.text.ngram_buckets={buckets}"),
            ];
            TrainConfig::from_toml_str(MINIMAL, "test", &sets)
        };
        let e = ngram("16777216").unwrap_err().to_string();
        assert!(
            e.contains("model.text.ngram_buckets × model.text.d_model"),
            "{e}"
        );
        ngram("65536").unwrap();
    }

    #[test]
    fn the_shared_threshold_weight_is_a_fraction() {
        let c = TrainConfig::from_toml_str(MINIMAL, "test", &[]).unwrap();
        assert_eq!(c.train.shared_threshold_weight, 0.25);
        for bad in ["-0.1", "1.5", "nan"] {
            let set = format!("train.shared_threshold_weight={bad}");
            let e = TrainConfig::from_toml_str(MINIMAL, "test", std::slice::from_ref(&set))
                .unwrap_err()
                .to_string();
            assert!(e.contains("train.shared_threshold_weight"), "{set}: {e}");
        }
    }

    #[test]
    fn the_threshold_rule_is_grid_unless_set_and_names_a_bad_value() {
        use crate::thresholds::ThresholdRule;
        let c = TrainConfig::from_toml_str(MINIMAL, "test", &[]).unwrap();
        assert_eq!(c.train.threshold_rule, ThresholdRule::Grid);
        let set = ["train.threshold_rule=\"half_best_f1\"".to_string()];
        let c = TrainConfig::from_toml_str(MINIMAL, "test", &set).unwrap();
        assert_eq!(c.train.threshold_rule, ThresholdRule::HalfBestF1);
        let set = ["train.threshold_rule=\"half\"".to_string()];
        let e = TrainConfig::from_toml_str(MINIMAL, "test", &set)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("threshold_rule") && e.contains("half_best_f1"),
            "{e}"
        );
    }

    #[test]
    fn a_metadata_vote_needs_folds_and_names_its_bad_keys() {
        let with = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            TrainConfig::from_toml_str(MINIMAL, "test", &sets)
        };
        let c = with(&["train.folds=5", "train.metadata_neighbours.k=20"]).unwrap();
        let vote = c.train.metadata_neighbours.unwrap();
        assert_eq!((vote.k, vote.temperature), (20, 0.2));
        let e = with(&["train.metadata_neighbours.k=20"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("train.metadata_neighbours needs train.folds >= 2"),
            "{e}"
        );
        let e = with(&["train.folds=5", "train.metadata_neighbours.prior=-1"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("train.metadata_neighbours: prior must be in [0, 1e6], got -1"),
            "{e}"
        );
        let off = ["train.folds=5", "train.metadata_neighbours.enabled=false"];
        assert!(with(&off).unwrap().train.metadata_neighbours.is_none());
        let c = with(&["train.folds=5", "train.credit_neighbours.k=20"]).unwrap();
        let vote = c.train.credit_neighbours.unwrap();
        assert_eq!((vote.k, vote.temperature, vote.prior), (20, 0.3, 2.0));
        let e = with(&["train.credit_neighbours.k=20"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("train.credit_neighbours needs train.folds >= 2"),
            "{e}"
        );
        let off = ["train.folds=5", "train.credit_neighbours.enabled=false"];
        assert!(with(&off).unwrap().train.credit_neighbours.is_none());
        let c = with(&["train.folds=5", "train.genre_prompts.prior=0"]).unwrap();
        let vote = c.train.genre_prompts.unwrap();
        assert_eq!((vote.k, vote.temperature, vote.prior), (50, 0.02, 0.0));
        let e = with(&["train.genre_prompts.k=1000"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("train.genre_prompts needs train.folds >= 2"),
            "{e}"
        );
        let e = with(&["train.folds=5", "train.genre_prompts.temperature=0"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("train.genre_prompts: temperature must be in (0, 10], got 0"),
            "{e}"
        );
        let own = r#"train.genre_prompts.prompts.Film-Noir=["A film noir."]"#;
        let c = with(&["train.folds=5", own]).unwrap();
        assert_eq!(
            c.train.genre_prompts.unwrap().prompts["Film-Noir"],
            ["A film noir."]
        );
        let e = with(&["train.folds=5", "train.genre_prompts.prompts.Drama=[]"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("train.genre_prompts: prompts.Drama must hold 1 to 50 sentences, got 0"),
            "{e}"
        );
        let on = "train.content_rating.enabled=true";
        assert!(
            with(&["train.folds=5", on])
                .unwrap()
                .train
                .content_rating
                .is_some()
        );
        let e = with(&[on]).unwrap_err();
        assert!(
            e.to_string()
                .contains("train.content_rating needs train.folds >= 2"),
            "{e}"
        );
        let off = ["train.folds=5", "train.content_rating.enabled=false"];
        assert!(with(&off).unwrap().train.content_rating.is_none());
    }

    #[test]
    fn bag_sets_repeat_a_bag_and_name_their_key() {
        let with = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            TrainConfig::from_toml_str(MINIMAL, "test", &sets)
        };
        assert_eq!(with(&[]).unwrap().train.bag_sets, 1);
        let c = with(&["train.folds=5", "train.bag_sets=2"]).unwrap();
        assert_eq!(c.train.bag_sets, 2);
        let e = with(&["train.bag_sets=2"]).unwrap_err().to_string();
        assert!(
            e.contains("train.bag_sets > 1 needs train.folds >= 2"),
            "{e}"
        );
        for bad in ["0", "11"] {
            let e = with(&["train.folds=5", &format!("train.bag_sets={bad}")])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("train.bag_sets = {bad}: expected 1..=10")),
                "{e}"
            );
        }
    }

    #[test]
    fn every_shipped_config_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "toml") {
                let c = TrainConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{e:#}"));
                // Partners are read when their bag starts: their overrides must apply too.
                for p in &c.train.blend_with {
                    let partner = dir.join("..").join(&p.config);
                    TrainConfig::load(&partner, &p.set).unwrap_or_else(|e| panic!("{e:#}"));
                }
                seen += 1;
            }
        }
        assert!(seen >= 5, "{seen} configs in {}", dir.display());
    }
}

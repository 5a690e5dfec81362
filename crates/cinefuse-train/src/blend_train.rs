//! `train.blend_with`: one `train` command that trains this config's bag and a bag of each
//! partner config on the same data and folds, then blends them (what `cinefuse ensemble` does
//! with bags trained separately). The run folder holds `bag-0` (this config), `bag-1`, … and,
//! once every bag is done, `blend.json`; `eval`, `export` and `--resume` take the folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::bag::{BAG_FILE, is_bag, read_bag, train_bag};
use crate::blend::{is_blend, learn_blend};
use crate::config::{BlendPartner, TrainConfig};
use crate::group_run::{create_group_run, note_started};
use crate::run_dir::{CONFIG_FILE, RunLock, UnstartedFolder, clear_unstarted};
use crate::trainer::{RunSummary, TrainOptions, interrupt_requested};

fn bag_dir(run: &Path, k: usize) -> PathBuf {
    run.join(format!("bag-{k}"))
}

/// Trains (or resumes) every bag of the blend, then learns the blend.
pub fn train_blend(config: &TrainConfig, opts: &TrainOptions) -> Result<RunSummary> {
    refuse_data_without_credits(config, opts)?;
    if opts.resume.is_none() {
        // Before the run folder is made: a refused partner must not leave one behind.
        check_partners(config)?;
    }
    let (dir, _lock, mut unstarted) = open_blend_run(config, opts)?;
    // A resumed run keeps the data its first bag started with.
    let data = match &opts.resume {
        Some(_) if is_bag(&bag_dir(&dir, 0)) => read_bag(&bag_dir(&dir, 0))?.data,
        _ => opts.data_override.clone(),
    };
    let configs = part_configs(config, &dir)?;
    let mut bags = Vec::new();
    for (k, c) in configs.iter().enumerate() {
        let bag = bag_dir(&dir, k);
        println!(
            "── blend {}: bag {}/{} ({}) ──",
            dir.display(),
            k + 1,
            configs.len(),
            c.name
        );
        clear_unstarted(&bag, BAG_FILE)?;
        let bag_opts = TrainOptions {
            out: Some(bag.clone()),
            resume: is_bag(&bag).then(|| bag.clone()),
            data_override: data.clone(),
            ..opts.clone()
        };
        let summary = train_bag(c, &bag_opts);
        note_started(&mut unstarted, &bag);
        let summary = summary?;
        if summary.interrupted {
            println!(
                "the blend stopped in {}; resume it with: cinefuse train --resume {}",
                bag.display(),
                dir.display()
            );
            return Ok(RunSummary {
                run_dir: dir,
                ..summary
            });
        }
        bags.push(bag);
    }
    if !is_blend(&dir) {
        if interrupt_requested() {
            return Ok(crate::bag::stopped_before(&dir, "learning the blend"));
        }
        if let Err(e) = learn_and_write_blend(config, opts, &bags, &dir) {
            let Some(i) = e.downcast_ref::<crate::trainer::LearningInterrupted>() else {
                return Err(e);
            };
            let what = format!("{} (learning the blend)", i.stage);
            return Ok(crate::bag::stopped_before(&dir, &what));
        }
    }
    Ok(RunSummary {
        run_dir: dir,
        epochs_completed: 0,
        best_epoch: 0,
        best_value: None,
        stopped_early: false,
        interrupted: false,
        history: Vec::new(),
    })
}

/// Learns the blend of `bags` (with the extra parts `config` asks for) and writes it to `dir`.
fn learn_and_write_blend(
    config: &TrainConfig,
    opts: &TrainOptions,
    bags: &[PathBuf],
    dir: &Path,
) -> Result<()> {
    let extras = crate::blend::BlendExtras {
        rating_trees: config.train.rating_trees,
        plot_neighbours: config.train.plot_neighbours,
        metadata_neighbours: config.train.metadata_neighbours,
        credit_neighbours: config.train.credit_neighbours,
        genre_prompts: config.train.genre_prompts.clone(),
        content_rating: config.train.content_rating,
    };
    let learned = learn_blend(bags, opts.backend, extras)?;
    print_weights(&learned.info);
    learned.write(dir)
}

/// Each part's weights, as the blend learnt them.
pub fn print_weights(info: &crate::blend::BlendInfo) {
    let votes = info
        .extras()
        .vote_spaces()
        .into_iter()
        .map(|v| PathBuf::from(v.label()));
    let trees = info.rating_trees.map(|_| PathBuf::from("rating trees"));
    let parts = info.runs.iter().cloned().chain(votes).chain(trees);
    let stacked = info.genre_stacking.as_ref().map(|s| s.mean_weights());
    for (k, part) in parts.enumerate() {
        let stacking = stacked.as_ref().and_then(|m| m.get(k).copied());
        println!(
            "{}",
            crate::blend::part_weights(
                &part,
                info.genre_weights[k],
                stacking,
                info.rating_weights[k]
            )
        );
    }
    if info.genre_stacking.is_some() {
        println!(
            "genres: stacked per genre on the parts' logits (learnt out of fold); the genre \
             weights only mix modality shares and losses"
        );
    }
}

/// Each bag's config: this one without `blend_with`, then each partner's, made to share this
/// config's seed, folds, dataset, split and (unless the partner sets its own) bag sets. A bag that
/// has started keeps the config it saved.
fn part_configs(config: &TrainConfig, dir: &Path) -> Result<Vec<TrainConfig>> {
    (0..=config.train.blend_with.len())
        .map(|k| {
            let saved = bag_dir(dir, k).join(CONFIG_FILE);
            if saved.is_file() {
                return TrainConfig::load(&saved, &[]);
            }
            match k.checked_sub(1) {
                Some(p) => partner_config(config, &config.train.blend_with[p]),
                None => {
                    let mut own = config.clone();
                    own.train.blend_with.clear();
                    without_blend_parts(&mut own);
                    Ok(own)
                }
            }
        })
        .collect()
}

/// `config` as one bag of a blend trains it: the parts the blend learns on the bags' folds
/// (trees, votes, content rating) belong to the blend, not to each bag.
fn without_blend_parts(config: &mut TrainConfig) {
    let t = &mut config.train;
    t.rating_trees = None;
    t.plot_neighbours = None;
    t.metadata_neighbours = None;
    t.credit_neighbours = None;
    t.genre_prompts = None;
    t.content_rating = None;
}

/// Whether every `train.blend_with` partner config loads as this config would train it (the
/// file, its keys, the overrides): checked before anything trains, and by `config check`.
pub fn check_partners(config: &TrainConfig) -> Result<()> {
    for partner in &config.train.blend_with {
        partner_config(config, partner)?;
    }
    Ok(())
}

fn partner_config(config: &TrainConfig, partner: &BlendPartner) -> Result<TrainConfig> {
    let path = &partner.config;
    if let Some(kv) = partner.set.iter().find(|kv| names_split_key(kv)) {
        bail!(
            "train.blend_with: the partner {} sets `{}`, but a partner trains on this config's \
             split (its bags are blended on the same train + validation movies); change the \
             split here instead",
            path.display(),
            kv.trim()
        );
    }
    let mut c = TrainConfig::load(path, &partner.set).with_context(|| {
        format!(
            "train.blend_with: cannot load the partner {}",
            path.display()
        )
    })?;
    c.train.blend_with.clear();
    without_blend_parts(&mut c);
    c.seed = config.seed;
    c.train.folds = config.train.folds;
    // Repeated like this config's bag unless the partner's overrides say otherwise (a costly
    // fine-tuned partner may keep one set).
    if !partner
        .set
        .iter()
        .any(|kv| kv.trim_start().starts_with("train.bag_sets"))
    {
        c.train.bag_sets = config.train.bag_sets;
    }
    c.train.refit = false;
    c.data.dataset = config.data.dataset.clone();
    // The same train / validation / test movies: a partner on its own split would train on
    // this config's test movies, and the blend could not line up the out-of-fold predictions.
    let (own, lead) = (&mut c.data.preprocess, &config.data.preprocess);
    (own.seed, own.split) = (lead.seed, lead.split);
    (own.val_ratio, own.test_ratio) = (lead.val_ratio, lead.test_ratio);
    Ok(c)
}

/// Whether a `KEY=VALUE` override names one of the keys that decide the split.
fn names_split_key(kv: &str) -> bool {
    let key = kv.split('=').next().unwrap_or("").trim();
    SPLIT_KEYS
        .iter()
        .any(|k| key == format!("data.preprocess.{k}"))
}

/// The preprocessing keys a partner inherits from the lead config.
const SPLIT_KEYS: [&str; 4] = ["seed", "split", "val_ratio", "test_ratio"];

/// The credits vote comes last; refuse prepared data without credits before anything trains.
/// Only a current prepared folder can lack them: a missing or stale one is prepared afresh by
/// the first bag, and `prepare` records credits. Nothing is prepared or written here, so a
/// refused `--out` still comes before any preparing.
fn refuse_data_without_credits(config: &TrainConfig, opts: &TrainOptions) -> Result<()> {
    if config.train.credit_neighbours.is_none() || opts.resume.is_some() {
        return Ok(());
    }
    match crate::data_setup::open_current_prepared(config, opts.data_override.as_deref())? {
        Some(prepared) => crate::credit_neighbours::check_credits(&prepared),
        None => Ok(()),
    }
}

/// The run folder, locked: new (with the guard that removes it again when its first bag fails
/// before it starts), or the one `--resume` names.
fn open_blend_run(
    config: &TrainConfig,
    opts: &TrainOptions,
) -> Result<(PathBuf, RunLock, Option<UnstartedFolder>)> {
    match &opts.resume {
        Some(dir) => Ok((dir.clone(), RunLock::acquire(dir)?, None)),
        None => {
            let (dir, lock, guard) = create_group_run(config, opts)?;
            Ok((dir, lock, Some(guard)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quickstart() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/quickstart.toml")
    }

    fn lead(overrides: &[&str]) -> TrainConfig {
        let sets: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        TrainConfig::load(&quickstart(), &sets).unwrap()
    }

    #[test]
    fn partners_train_on_the_leads_split() {
        let config = lead(&[
            "data.preprocess.seed=8",
            "data.preprocess.val_ratio=0.2",
            "data.preprocess.test_ratio=0.1",
            "data.preprocess.split=hash",
        ]);
        let partner = BlendPartner {
            config: quickstart(),
            set: vec!["model.fusion.kind=late".into()],
        };
        let p = partner_config(&config, &partner).unwrap();
        assert_eq!(p.data.preprocess.seed, 8);
        assert_eq!(p.data.preprocess.split, config.data.preprocess.split);
        assert_eq!(p.data.preprocess.val_ratio, 0.2);
        assert_eq!(p.data.preprocess.test_ratio, 0.1);
        // The partner's own settings otherwise stand.
        assert_ne!(p.model.fusion.kind, config.model.fusion.kind);
    }

    #[test]
    fn a_partner_that_cannot_load_is_refused_before_the_run_folder_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = lead(&["train.folds=3"]);
        config.train.blend_with = vec![BlendPartner {
            config: dir.path().join("missing.toml"),
            set: Vec::new(),
        }];
        let out = dir.path().join("run");
        let opts = TrainOptions {
            out: Some(out.clone()),
            ..Default::default()
        };
        let e = train_blend(&config, &opts).unwrap_err().to_string();
        assert!(e.contains("missing.toml"), "{e}");
        assert!(!out.exists(), "a run folder was left behind");
        assert!(check_partners(&config).is_err());
    }

    #[test]
    fn a_bag_or_blend_whose_first_member_fails_to_start_leaves_no_folder() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = lead(&["train.folds=3"]);
        config.train.blend_with = vec![BlendPartner {
            config: quickstart(),
            set: Vec::new(),
        }];
        let mut bag = config.clone();
        bag.train.blend_with.clear();
        // Mine: the guard removes only its own files, and the folder only when it made it.
        let kept = dir.path().join("kept");
        std::fs::create_dir(&kept).unwrap();
        for (name, c, out) in [
            ("bag", &bag, dir.path().join("bag")),
            ("blend", &config, dir.path().join("blend")),
            ("empty folder", &bag, kept.clone()),
        ] {
            let opts = TrainOptions {
                out: Some(out.clone()),
                data_override: Some(dir.path().join("no-such-dataset")),
                ..Default::default()
            };
            let e = match name {
                "blend" => train_blend(c, &opts),
                _ => train_bag(c, &opts),
            }
            .unwrap_err()
            .to_string();
            assert!(e.contains("no-such-dataset"), "{name}: {e}");
            assert!(
                !out.exists() || out == kept,
                "{name}: the folder was left behind"
            );
        }
        assert_eq!(
            std::fs::read_dir(&kept).unwrap().count(),
            0,
            "emptied, kept"
        );
    }

    #[test]
    fn a_partner_may_not_set_its_own_split() {
        let config = lead(&[]);
        for kv in [
            "data.preprocess.seed=3",
            " data.preprocess.test_ratio = 0.3",
        ] {
            let partner = BlendPartner {
                config: quickstart(),
                set: vec![kv.into()],
            };
            let e = partner_config(&config, &partner).unwrap_err().to_string();
            assert!(e.contains(kv.trim()) && e.contains("split"), "{e}");
        }
        assert!(!names_split_key("data.preprocess.seeds=3"));
    }
}

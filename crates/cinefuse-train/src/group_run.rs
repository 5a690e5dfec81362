//! A run folder that holds other runs: a bag's members, a blend's bags. Made like any new run
//! (checked, created, locked, marked, given the config), and, like a single run, removed again
//! (`UnstartedFolder`) when its first member fails before it starts (bad data, no device), so
//! the same command can simply be run again.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cinefuse_data::output_dir::{OutputKind, write_marker};

use crate::bag::BAG_FILE;
use crate::config::TrainConfig;
use crate::run_dir::{CONFIG_FILE, RUN_FILE, RunLock, UnstartedFolder, timestamp};
use crate::trainer::TrainOptions;

/// A new group folder, locked, with its guard.
pub(crate) fn create_group_run(
    config: &TrainConfig,
    opts: &TrainOptions,
) -> Result<(PathBuf, RunLock, UnstartedFolder)> {
    let dir = opts.out.clone().unwrap_or_else(|| {
        config
            .output
            .runs_dir
            .join(format!("{}-{}", config.name, timestamp()))
    });
    crate::trainer::check_new_run_dir(&dir, config, opts)?;
    let guard = UnstartedFolder::before_create(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let lock = RunLock::acquire(&dir)?;
    write_marker(&dir, OutputKind::Run)?;
    std::fs::write(dir.join(CONFIG_FILE), config.to_toml())?;
    Ok((dir, lock, guard))
}

/// Disarms a group's guard once `member` (a member's folder) has started: it wrote its own
/// run.json (a single run) or bag.json (a blend's bag; a bag that failed before starting
/// removed its own).
pub(crate) fn note_started(guard: &mut Option<UnstartedFolder>, member: &Path) {
    if member.join(RUN_FILE).is_file() || member.join(BAG_FILE).is_file() {
        guard.as_mut().map(UnstartedFolder::disarm);
    }
}

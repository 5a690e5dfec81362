//! A new run folder (a run, a bag, a blend) that has not started: setup failed (bad data, no
//! device, …) or, for a bag or blend, its first member did. Dropped before `disarm`, the guard
//! removes the files such a folder gets first, and the folder if this command made it and
//! nothing else is left, so that the same command can simply be run again. Nothing else in the
//! folder is touched.

use std::path::{Path, PathBuf};

use cinefuse_data::output_dir::MARKER_FILE;

use super::{CONFIG_FILE, LOCK_FILE, RUN_FILE};
use crate::bag::BAG_FILE;

pub struct UnstartedFolder {
    dir: PathBuf,
    created: bool,
    armed: bool,
}

impl UnstartedFolder {
    /// The guard of `dir`, taken before the folder is made (it records whether it existed).
    pub fn before_create(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            created: !dir.exists(),
            armed: true,
        }
    }

    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for UnstartedFolder {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for f in [MARKER_FILE, LOCK_FILE, CONFIG_FILE, RUN_FILE, BAG_FILE] {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
        if self.created {
            // Only when empty: a file someone else put there stays.
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

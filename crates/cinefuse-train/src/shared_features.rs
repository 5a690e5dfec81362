//! Feature tables shared within one process. A blend opens the same prepared folder once per
//! member (30 for the shipped frozen part): each would read the same cached plot and poster
//! features into its own copy and say so. Here every member gets the one copy while any holds
//! it, and the cache's use is reported once per file.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use anyhow::Result;
use cinefuse_data::feature_cache::FeatureTable;

/// Tables by file and fingerprint; weak, so a table is freed once no prepared data holds it.
type Tables = HashMap<(PathBuf, String), Weak<FeatureTable>>;

static TABLES: Mutex<Option<Tables>> = Mutex::new(None);
static REPORTED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

/// The table cached at `path` for fingerprint `key`: the copy this process already holds, or
/// the file read (and announced as `what` the first time); `None` when there is no such cache.
pub fn load(what: &str, path: &Path, key: &str) -> Result<Option<Arc<FeatureTable>>> {
    let id = (path.to_path_buf(), key.to_string());
    let held = lock(&TABLES)
        .get_or_insert_with(HashMap::new)
        .get(&id)
        .and_then(Weak::upgrade);
    if let Some(t) = held {
        return Ok(Some(t));
    }
    let Some(table) = FeatureTable::load_if(path, key)? else {
        return Ok(same_inputs_elsewhere(what, path, key));
    };
    let first = lock(&REPORTED)
        .get_or_insert_with(HashSet::new)
        .insert(path.to_path_buf());
    if first {
        println!("{what} features: cached ({})", path.display());
    }
    Ok(Some(remember(path, table)))
}

/// A table this process holds for the same fingerprint in another prepared folder: the
/// fingerprint covers everything the features are computed from (weights, settings, every
/// movie's input in order), so two bags prepared alike (the shipped fine-tuned bag's posters
/// and the frozen bags') need them once. Written to `path` too, so later runs find it there.
fn same_inputs_elsewhere(what: &str, path: &Path, key: &str) -> Option<Arc<FeatureTable>> {
    let (other, table) = lock(&TABLES)
        .get_or_insert_with(HashMap::new)
        .iter()
        .filter(|((_, k), _)| k == key)
        .find_map(|((p, _), t)| Some((p.clone(), t.upgrade()?)))?;
    if let Err(e) = table.save(path) {
        eprintln!("warning: {e}; the {what} features are not cached there");
    }
    println!(
        "{what} features: the same inputs as {} (reused)",
        other.display()
    );
    let id = (path.to_path_buf(), key.to_string());
    lock(&TABLES)
        .get_or_insert_with(HashMap::new)
        .insert(id, Arc::downgrade(&table));
    Some(table)
}

/// Hands out a freshly computed (or read) table and keeps a weak reference for later members.
pub fn remember(path: &Path, table: FeatureTable) -> Arc<FeatureTable> {
    let table = Arc::new(table);
    let id = (path.to_path_buf(), table.fingerprint.clone());
    let mut guard = lock(&TABLES);
    let tables = guard.get_or_insert_with(HashMap::new);
    tables.retain(|_, t| t.strong_count() > 0);
    tables.insert(id, Arc::downgrade(&table));
    table
}

/// A poisoned lock only means another thread panicked mid-update of a cache of weak
/// references; the map is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(key: &str, v: f32) -> FeatureTable {
        FeatureTable::new(2, key.to_string(), vec![v, v + 1.0])
    }

    #[test]
    fn members_share_one_copy_while_any_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot-x.bin");
        table("k1", 1.0).save(&path).unwrap();
        let a = load("plot", &path, "k1").unwrap().unwrap();
        let b = load("plot", &path, "k1").unwrap().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.row(0), &[1.0, 2.0]);
        // Another fingerprint is another cache: a miss, never the held copy.
        assert!(load("plot", &path, "k2").unwrap().is_none());
        drop((a, b));
        // Once nobody holds it, the file is read again: a rewrite is seen.
        table("k1", 5.0).save(&path).unwrap();
        let c = load("plot", &path, "k1").unwrap().unwrap();
        assert_eq!(c.row(0), &[5.0, 6.0]);
    }

    /// Another folder's cache with the same fingerprint (the same inputs prepared alike): the
    /// held table, written there too; another fingerprint still misses.
    #[test]
    fn the_same_inputs_in_another_folder_reuse_the_held_table() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (
            dir.path().join("a/poster-x.bin"),
            dir.path().join("b/poster-x.bin"),
        );
        let held = remember(&first, table("k3", 7.0));
        assert!(load("poster", &second, "k9").unwrap().is_none());
        let reused = load("poster", &second, "k3").unwrap().unwrap();
        assert!(Arc::ptr_eq(&held, &reused));
        let written = FeatureTable::load_if(&second, "k3").unwrap().unwrap();
        assert_eq!(written.row(0), &[7.0, 8.0]);
    }
}

//! Loading foreign checkpoints into cinefuse's encoders with Burn's store: safetensors and
//! PyTorch `.pth` files, checkpoint names mapped onto our field paths, PyTorch's `[out, in]`
//! Linear weights transposed and `weight`/`bias` of norms read as `gamma`/`beta` by burn-store's
//! PyTorch adapter. Every tensor must be accounted for: a missing one, one the model does not
//! know (unless listed as ignored) or a shape mismatch is an error naming the tensor.

use std::path::{Path, PathBuf};

use burn::store::{
    ApplyError, ApplyResult, KeyRemapper, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore,
};
use regex::Regex;

pub use super::file_digest::file_sha256;

#[derive(Debug, thiserror::Error)]
pub enum PretrainedError {
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("{}: tensor `{tensor}` has shape {found:?} in the checkpoint, the model expects {expected:?}", path.display())]
    Shape {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{}: the checkpoint has no tensor for {}", path.display(), missing.join(", "))]
    Missing { path: PathBuf, missing: Vec<String> },
    #[error("{}: tensors the model does not expect: {}", path.display(), unexpected.join(", "))]
    Unexpected {
        path: PathBuf,
        unexpected: Vec<String>,
    },
    #[error("{}: cannot load tensor `{tensor}`: {message}", path.display())]
    Tensor {
        path: PathBuf,
        tensor: String,
        message: String,
    },
}

/// A checkpoint's JSON file (`config.json` and the like): a regular file of at most 1 MiB, so
/// a FIFO or a device in a checkpoint folder is refused instead of blocking or reading forever.
pub fn read_config_bytes(path: &Path) -> Result<Vec<u8>, PretrainedError> {
    use cinefuse_data::user_file;
    user_file::read_capped(path, user_file::MAX_CONFIG_BYTES).map_err(|e| user_file_error(path, e))
}

/// A refusal of `cinefuse_data::user_file` as this module's error, the path named once.
pub(crate) fn user_file_error(path: &Path, e: cinefuse_data::DataError) -> PretrainedError {
    use cinefuse_data::DataError;
    PretrainedError::Io {
        path: path.to_path_buf(),
        message: match e {
            DataError::Io { error, .. } => format!("cannot read: {error}"),
            DataError::File { message, .. } => message,
            other => other.to_string(),
        },
    }
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, PretrainedError> {
    let bytes = read_config_bytes(path)?;
    serde_json::from_slice(&bytes).map_err(|e| PretrainedError::Config {
        path: path.to_path_buf(),
        message: format!("invalid JSON: {e}"),
    })
}

fn must_exist(path: &Path) -> Result<(), PretrainedError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(PretrainedError::Io {
            path: path.to_path_buf(),
            message: "no such file (run scripts/fetch_pretrained.sh, or point the config at a \
                      checkpoint folder)"
                .into(),
        })
    }
}

/// The key remapping of a checkpoint: regexes applied in order to each tensor name.
fn remapper(key_map: &[(&str, &str)]) -> KeyRemapper {
    KeyRemapper::from_patterns(key_map.to_vec()).expect("key maps are valid regexes")
}

/// Loads a safetensors checkpoint into `module`; `key_map` rewrites checkpoint names into
/// the module's paths (regex, replacement), `ignored` lists checkpoint tensors to skip.
pub fn load_safetensors<M: ModuleSnapshot>(
    module: M,
    path: &Path,
    key_map: &[(&str, &str)],
    ignored: &[&str],
) -> Result<M, PretrainedError> {
    load_safetensors_absent(module, path, key_map, ignored, &[])
}

/// `load_safetensors`, where the model's tensors matching `absent` (regexes on its paths) may
/// have no counterpart in the checkpoint: they keep their initial values.
pub fn load_safetensors_absent<M: ModuleSnapshot>(
    module: M,
    path: &Path,
    key_map: &[(&str, &str)],
    ignored: &[&str],
    absent: &[&str],
) -> Result<M, PretrainedError> {
    must_exist(path)?;
    let store = SafetensorsStore::from_file(path)
        .with_from_adapter(PyTorchToBurnAdapter)
        .remap(remapper(key_map))
        .allow_partial(true)
        .validate(false);
    apply_checked(module, store, path, (ignored, absent), "safetensors")
}

/// Loads a PyTorch state dict (`.pth`, zip or legacy pickle) into `module`, as above.
pub fn load_pytorch<M: ModuleSnapshot>(
    module: M,
    path: &Path,
    key_map: &[(&str, &str)],
    ignored: &[&str],
) -> Result<M, PretrainedError> {
    must_exist(path)?;
    let store = PytorchStore::from_file(path)
        .remap(remapper(key_map))
        .map_indices_contiguous(false)
        .allow_partial(true)
        .validate(false);
    apply_checked(module, store, path, (ignored, &[]), "PyTorch")
}

/// Applies a configured store to `module` and checks burn-store's report.
pub(crate) fn apply_checked<M: ModuleSnapshot, S: ModuleStore>(
    mut module: M,
    mut store: S,
    path: &Path,
    (ignored, absent): (&[&str], &[&str]),
    format: &str,
) -> Result<M, PretrainedError>
where
    S::Error: std::fmt::Display,
{
    let result = module
        .load_from(&mut store)
        .map_err(|e| PretrainedError::Io {
            path: path.to_path_buf(),
            message: format!("cannot read the {format} file: {e}"),
        })?;
    check(result, path, ignored, absent)?;
    Ok(module)
}

/// Turns burn-store's report into an error unless every model tensor was loaded, every
/// checkpoint tensor was used or ignored, and no tensor failed.
fn check(
    result: ApplyResult,
    path: &Path,
    ignored: &[&str],
    absent: &[&str],
) -> Result<(), PretrainedError> {
    if let Some(e) = result.errors.first() {
        return Err(match e {
            ApplyError::ShapeMismatch {
                path: tensor,
                expected,
                found,
            } => PretrainedError::Shape {
                path: path.to_path_buf(),
                tensor: tensor.clone(),
                expected: expected.to_vec(),
                found: found.to_vec(),
            },
            ApplyError::DTypeMismatch { path: tensor, .. }
            | ApplyError::AdapterError { path: tensor, .. }
            | ApplyError::LoadError { path: tensor, .. } => PretrainedError::Tensor {
                path: path.to_path_buf(),
                tensor: tensor.clone(),
                message: e.to_string(),
            },
        });
    }
    let absent = regexes(absent);
    let mut missing: Vec<String> = (result.missing.iter())
        .map(|(p, _)| p.clone())
        .filter(|p| !absent.iter().any(|r| r.is_match(p)))
        .collect();
    if !missing.is_empty() {
        missing.sort();
        return Err(PretrainedError::Missing {
            path: path.to_path_buf(),
            missing,
        });
    }
    let ignored = regexes(ignored);
    let mut unexpected: Vec<String> = result
        .unused
        .into_iter()
        .filter(|name| !ignored.iter().any(|r| r.is_match(name)))
        .collect();
    if !unexpected.is_empty() {
        unexpected.sort();
        return Err(PretrainedError::Unexpected {
            path: path.to_path_buf(),
            unexpected,
        });
    }
    Ok(())
}

fn regexes(patterns: &[&str]) -> Vec<Regex> {
    (patterns.iter())
        .map(|p| Regex::new(p).expect("tensor patterns are valid regexes"))
        .collect()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// A checkpoint folder whose files are devices: each reader refuses them by name instead
    /// of reading `/dev/zero` until memory runs out.
    #[test]
    fn checkpoint_files_that_are_devices_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        let weights = dir.path().join("model.safetensors");
        std::os::unix::fs::symlink("/dev/zero", &config).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &weights).unwrap();
        let e = crate::pretrained::BertConfig::from_dir(dir.path()).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("config.json") && e.contains("not a regular file"),
            "{e}"
        );
        let e = file_sha256(&weights).unwrap_err().to_string();
        assert!(
            e.contains("model.safetensors") && e.contains("not a regular file"),
            "{e}"
        );
    }

    #[test]
    fn oversized_json_is_refused_before_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let big = vec![b' '; (cinefuse_data::user_file::MAX_CONFIG_BYTES + 1) as usize];
        std::fs::write(&path, big).unwrap();
        let e = read_json::<serde_json::Value>(&path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("larger than the limit"), "{e}");
    }
}

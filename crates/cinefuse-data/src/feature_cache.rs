//! Cached backbone features: one `f32` vector per prepared sample (in `samples.jsonl` order)
//! for a frozen pretrained encoder, so that training the layers on top never runs the
//! backbone. A file records the fingerprint of what produced it (weights, preprocessing,
//! prepared inputs); a different fingerprint is a cache miss, never a silent reuse.
//!
//! Layout: 8-byte magic `CFFEAT01`, little-endian u32 rows and dim, a 64-byte ASCII
//! fingerprint, then `rows × dim` little-endian `f32`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::DataError;

const MAGIC: &[u8; 8] = b"CFFEAT01";
const FINGERPRINT_LEN: usize = 64;
const HEADER: usize = 8 + 4 + 4 + FINGERPRINT_LEN;

/// One modality's features for every sample of a prepared dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureTable {
    pub dim: usize,
    pub fingerprint: String,
    values: Vec<f32>,
}

/// The largest cached feature table read: a million movies of 1,024 features (f32), far above
/// any dataset cinefuse trains on (2,959 posters of 1,280 EfficientNet features take 15 MB).
pub const MAX_TABLE_BYTES: u64 = 4 << 30;

impl FeatureTable {
    pub fn new(dim: usize, fingerprint: String, values: Vec<f32>) -> Self {
        assert!(
            dim > 0 && values.len().is_multiple_of(dim),
            "rows of {dim} values"
        );
        Self {
            dim,
            fingerprint,
            values,
        }
    }

    pub fn rows(&self) -> usize {
        self.values.len() / self.dim
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }

    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        let fp = self.fingerprint.as_bytes();
        if fp.len() > FINGERPRINT_LEN {
            return Err(DataError::file(path, "fingerprint longer than 64 bytes"));
        }
        let mut bytes = Vec::with_capacity(HEADER + self.values.len() * 4);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(self.rows() as u32).to_le_bytes());
        bytes.extend_from_slice(&(self.dim as u32).to_le_bytes());
        let mut padded = [b' '; FINGERPRINT_LEN];
        padded[..fp.len()].copy_from_slice(fp);
        bytes.extend_from_slice(&padded);
        for v in &self.values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        crate::atomic::write_atomic(path, &bytes)
    }

    /// Reads a table; `Ok(None)` when the file is absent or was made for another fingerprint.
    pub fn load_if(path: &Path, fingerprint: &str) -> Result<Option<Self>, DataError> {
        // Regular files only (a FIFO would block), and bounded.
        let bytes = match crate::user_file::read_capped(path, MAX_TABLE_BYTES) {
            Ok(b) => b,
            Err(DataError::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(DataError::file(path, "not a cinefuse feature cache"));
        }
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap()) as usize;
        let (rows, dim) = (u32_at(8), u32_at(12));
        let stored = String::from_utf8_lossy(&bytes[16..HEADER])
            .trim_end()
            .to_string();
        if stored != fingerprint {
            return Ok(None);
        }
        let body = &bytes[HEADER..];
        if dim == 0 || body.len() != rows * dim * 4 {
            return Err(DataError::file(
                path,
                format!("truncated: expected {rows}×{dim} values"),
            ));
        }
        let values = body
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        Ok(Some(Self::new(dim, stored, values)))
    }
}

/// The cached features a dataset hands to its items (either modality may be absent).
#[derive(Debug, Clone, Default)]
pub struct CachedFeatures {
    pub poster: Option<Arc<FeatureTable>>,
    pub plot: Option<Arc<FeatureTable>>,
    /// How many leading columns of `plot` are the checkpoint's own sentence embedding (the
    /// rest: `model.text.concat_layers`); the plot-neighbour vote reads only those. 0: all.
    pub plot_sentence_dim: usize,
    /// A fine-tuned plot backbone's frozen layers' output (`model.text.cache_frozen_layers`).
    pub plot_states: Option<Arc<crate::token_states::TokenStates>>,
    /// A fine-tuned poster backbone's frozen blocks' output (`model.poster.cache_frozen_layers`).
    pub poster_states: Option<Arc<crate::poster_states::PosterStates>>,
}

/// The folder of cached features inside a prepared folder.
pub const FEATURES_DIR: &str = "features";

/// Where a modality's cache lives inside a prepared directory.
pub fn cache_path(prepared_dir: &Path, modality: &str, fingerprint: &str) -> PathBuf {
    prepared_dir.join(FEATURES_DIR).join(format!(
        "{modality}-{}.bin",
        &fingerprint[..16.min(fingerprint.len())]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_misses_on_another_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.bin");
        let t = FeatureTable::new(3, "abc".into(), vec![1.0, 2.0, 3.0, -4.0, 5.5, 6.25]);
        t.save(&path).unwrap();
        let back = FeatureTable::load_if(&path, "abc").unwrap().unwrap();
        assert_eq!(back, t);
        assert_eq!(back.rows(), 2);
        assert_eq!(back.row(1), &[-4.0, 5.5, 6.25]);
        assert!(FeatureTable::load_if(&path, "abd").unwrap().is_none());
        assert!(
            FeatureTable::load_if(&dir.path().join("no"), "abc")
                .unwrap()
                .is_none()
        );
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 2);
        std::fs::write(&path, bytes).unwrap();
        let err = FeatureTable::load_if(&path, "abc").unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}

//! Byte-reproducible `.safetensors` files. Burn's store hands its metadata to the
//! `safetensors` crate as a hash map, so the `__metadata__` keys land in a different order on
//! every write and two exports of one run differ in their headers (never in their tensors).
//! Rewriting the header with its keys sorted makes the file a function of its contents.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The `safetensors` crate refuses headers above this size, so nothing it wrote is larger.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Rewrites the JSON header of the `.safetensors` file at `path` in place with every object's
/// keys sorted, padded with spaces to its former length (the tensor offsets are relative to
/// the header's end, so the data stays where it is).
pub fn sort_header(path: &Path) -> Result<()> {
    let what = || format!("{}: cannot put its header in order", path.display());
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(what)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).with_context(what)?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER_BYTES || len > file.metadata().with_context(what)?.len() - 8 {
        bail!("{}: header length {len} out of bounds", path.display());
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).with_context(what)?;
    let mut sorted = canonical_header(&header).with_context(what)?;
    if sorted.len() > header.len() {
        bail!("{}: the sorted header would be longer", path.display());
    }
    sorted.resize(header.len(), b' ');
    if sorted != header {
        file.seek(SeekFrom::Start(8)).with_context(what)?;
        file.write_all(&sorted).with_context(what)?;
    }
    Ok(())
}

/// The header's JSON again, compact, with every object's keys in byte order (serde_json's
/// map is ordered by key in this build: no `preserve_order` feature).
fn canonical_header(header: &[u8]) -> Result<Vec<u8>> {
    let value: Value = serde_json::from_slice(header).context("header is not JSON")?;
    Ok(serde_json::to_vec(&value)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::prelude::*;
    use burn::store::{ModuleSnapshot, SafetensorsStore};

    fn write(model: &burn::nn::Linear, path: &Path) {
        let mut store = SafetensorsStore::from_file(path)
            .metadata("format", "test")
            .metadata("alpha", "1")
            .metadata("omega", "2")
            .metadata("middle", "3");
        model.save_into(&mut store).unwrap();
    }

    /// Eight writes of one module give eight identical files after sorting; the store alone
    /// orders its six metadata keys anew on each write (eight writes in one order: about one
    /// chance in 720^7), so without `sort_header` this fails.
    #[test]
    fn writes_of_one_module_are_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let model = LinearConfig::new(3, 2).init(&Device::flex());
        let files: Vec<Vec<u8>> = (0..8)
            .map(|i| {
                let path = dir.path().join(format!("m{i}.safetensors"));
                write(&model, &path);
                sort_header(&path).unwrap();
                std::fs::read(&path).unwrap()
            })
            .collect();
        assert!(files.iter().all(|f| f == &files[0]));
        let loaded = safetensors::SafeTensors::deserialize(&files[0]).unwrap();
        assert_eq!(loaded.names().len(), 2);
        let (_, meta) = safetensors::SafeTensors::read_metadata(&files[0]).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["omega"], "2");
    }

    #[test]
    fn a_header_length_past_the_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        let mut bytes = 1000u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        std::fs::write(&path, bytes).unwrap();
        let err = sort_header(&path).unwrap_err().to_string();
        assert!(
            err.contains("bad.safetensors") && err.contains("out of bounds"),
            "{err}"
        );
    }
}

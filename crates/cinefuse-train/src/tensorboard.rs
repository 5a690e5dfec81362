//! TensorBoard event files (`train.tensorboard = true`): scalars a run can be followed with in
//! TensorBoard itself (`tensorboard --logdir RUN/tensorboard`).
//!
//! The format is TensorFlow's: a file named `events.out.tfevents.<seconds>.<host>` holding
//! TFRecords (length, masked CRC-32C of the length, the bytes, their masked CRC-32C), each an
//! `Event` protocol buffer; the first says the file version, the others carry a `Summary` of
//! scalar values. The messages below are the fields of TensorFlow's `event.proto` and
//! `summary.proto` that scalars use, with their field numbers.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use prost::Message;

/// The sub-folder of a run that holds its event files.
pub const TENSORBOARD_DIR: &str = "tensorboard";

#[derive(Clone, PartialEq, Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(string, optional, tag = "3")]
    file_version: Option<String>,
    #[prost(message, optional, tag = "5")]
    summary: Option<Summary>,
}

#[derive(Clone, PartialEq, Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

#[derive(Clone, PartialEq, Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(float, tag = "2")]
    simple_value: f32,
}

/// Appends scalar events to one new event file.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// TFRecord's checksum: CRC-32C, rotated and offset so that a CRC of data holding CRCs stays
/// well distributed.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

impl EventWriter {
    /// A new event file in `run_dir/tensorboard/` (a resumed run adds a file; TensorBoard reads
    /// them all in order).
    pub fn create(run_dir: &Path) -> Result<Self> {
        let dir = run_dir.join(TENSORBOARD_DIR);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let secs = now() as u64;
        let (path, file) = (0..1000)
            .find_map(|n| {
                let suffix = if n == 0 {
                    String::new()
                } else {
                    format!(".{n}")
                };
                let path = dir.join(format!("events.out.tfevents.{secs}.cinefuse{suffix}"));
                let file = File::options()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .ok()?;
                Some((path, file))
            })
            .with_context(|| format!("cannot create an event file in {}", dir.display()))?;
        let mut writer = Self {
            path,
            out: BufWriter::new(file),
        };
        writer.write(&Event {
            wall_time: now(),
            step: 0,
            file_version: Some("brain.Event:2".into()),
            summary: None,
        })?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, event: &Event) -> Result<()> {
        let data = event.encode_to_vec();
        let len = (data.len() as u64).to_le_bytes();
        let record = [
            &len[..],
            &masked_crc(&len).to_le_bytes(),
            &data,
            &masked_crc(&data).to_le_bytes(),
        ]
        .concat();
        self.out
            .write_all(&record)
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Scalars `(tag, value)` at `step`, in one event.
    pub fn scalars<'a>(
        &mut self,
        step: u64,
        values: impl IntoIterator<Item = (&'a str, f64)>,
    ) -> Result<()> {
        let value = values
            .into_iter()
            .map(|(tag, v)| SummaryValue {
                tag: tag.to_string(),
                simple_value: v as f32,
            })
            .collect();
        self.write(&Event {
            wall_time: now(),
            step: step as i64,
            file_version: None,
            summary: Some(Summary { value }),
        })
    }

    /// Writes what is buffered, so that TensorBoard sees it while the run goes on.
    pub fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_is_tfrecords_masked_crc32c() {
        // CRC-32C of "123456789" is the standard check value 0xe3069283.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        // ((crc >> 15) | (crc << 17)) + 0xa282ead8, worked out by hand.
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
    }

    #[test]
    fn records_frame_and_decode_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.scalars(3, [("val_loss", 0.25), ("lr", 1e-3)]).unwrap();
        w.flush().unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        let mut events = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            let len_crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
            assert_eq!(len_crc, masked_crc(&bytes[at..at + 8]));
            let data = &bytes[at + 12..at + 12 + len];
            let crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
            assert_eq!(crc, masked_crc(data));
            events.push(Event::decode(data).unwrap());
            at += 16 + len;
        }
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
        let s = events[1].summary.as_ref().unwrap();
        assert_eq!(events[1].step, 3);
        assert_eq!(s.value[0].tag, "val_loss");
        assert_eq!(s.value[0].simple_value, 0.25);
        assert_eq!(s.value[1].simple_value, 1e-3);
        // A second writer in the same second gets its own file.
        let other = EventWriter::create(dir.path()).unwrap();
        assert_ne!(other.path(), w.path());
    }
}

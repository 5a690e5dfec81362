//! Record- and poster-level validation used by `prepare`. Each problem names the line of
//! `movies.jsonl`, the field and what was expected.

use std::collections::HashSet;
use std::path::Path;

use image::ImageReader;

use crate::movie::{BadRecord, Movie};

/// Checks value ranges that the type system cannot express.
pub fn check_movie(movie: &Movie) -> Result<(), (String, String)> {
    if let Some(r) = movie.rating
        && (!(0.0..=10.0).contains(&r) || !r.is_finite())
    {
        return Err(("rating".into(), format!("must be within 0–10, got {r}")));
    }
    if let Some(y) = movie.year
        && !(1870..=2100).contains(&y)
    {
        return Err(("year".into(), format!("must be within 1870–2100, got {y}")));
    }
    if let Some(rt) = movie.runtime_min
        && !(rt > 0.0 && rt < 2000.0)
    {
        return Err((
            "runtime_min".into(),
            format!("must be within (0, 2000) minutes, got {rt}"),
        ));
    }
    for (name, v) in [("budget", movie.budget), ("gross", movie.gross)] {
        if let Some(v) = v.filter(|v| *v < 0.0) {
            return Err((name.into(), format!("must be >= 0, got {v}")));
        }
    }
    Ok(())
}

/// Splits parsed records into valid ones and problems (range errors, duplicate ids).
pub fn validate_records(movies: Vec<(usize, Movie)>) -> (Vec<(usize, Movie)>, Vec<BadRecord>) {
    let mut ok = Vec::with_capacity(movies.len());
    let mut bad = Vec::new();
    let mut seen = HashSet::new();
    for (line, m) in movies {
        if let Err((field, reason)) = check_movie(&m) {
            bad.push(BadRecord {
                line,
                id: Some(m.id.clone()),
                field: Some(field),
                reason,
            });
        } else if !seen.insert(m.id.clone()) {
            bad.push(BadRecord {
                line,
                id: Some(m.id.clone()),
                field: Some("id".into()),
                reason: format!("duplicate id {:?} (first occurrence kept)", m.id),
            });
        } else {
            ok.push((line, m));
        }
    }
    (ok, bad)
}

/// Limits that protect `prepare` from decompression bombs and huge files.
#[derive(Debug, Clone, Copy)]
pub struct PosterLimits {
    pub max_bytes: u64,
    pub max_pixels: u64,
}

/// Opens, size-checks and decodes a poster. The error says what is wrong with the file.
pub fn load_poster(path: &Path, limits: PosterLimits) -> Result<image::DynamicImage, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("missing or unreadable: {e}"))?;
    if meta.len() > limits.max_bytes {
        return Err(format!(
            "oversized: {} bytes exceeds the limit of {} bytes",
            meta.len(),
            limits.max_bytes
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("unreadable: {e}"))?;
    decode_poster(&bytes, limits)
}

/// Size-checks and decodes poster bytes (a file's, or an upload's).
pub fn decode_poster(bytes: &[u8], limits: PosterLimits) -> Result<image::DynamicImage, String> {
    if bytes.len() as u64 > limits.max_bytes {
        return Err(format!(
            "oversized: {} bytes exceeds the limit of {} bytes",
            bytes.len(),
            limits.max_bytes
        ));
    }
    let reader = || {
        ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| format!("unreadable: {e}"))
    };
    let (w, h) = reader()?
        .into_dimensions()
        .map_err(|e| format!("corrupt or not an image: {e}"))?;
    if u64::from(w) * u64::from(h) > limits.max_pixels {
        return Err(format!(
            "oversized: {w}x{h} pixels exceeds the limit of {} pixels",
            limits.max_pixels
        ));
    }
    let reader = reader()?;
    if reader.format() == Some(image::ImageFormat::Jpeg) && !ends_with_jpeg_eoi(bytes) {
        // The JPEG decoder fills a cut-off scan with grey instead of failing.
        return Err("truncated JPEG (no end-of-image marker)".into());
    }
    reader.decode().map_err(|e| format!("corrupt image: {e}"))
}

/// Whether a JPEG file ends with its end-of-image marker (some writers pad after it).
fn ends_with_jpeg_eoi(bytes: &[u8]) -> bool {
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, 0 | b'\n' | b'\r' | b' '))
        .map_or(0, |i| i + 1);
    bytes[..end].ends_with(&[0xFF, 0xD9])
}

//! Record- and poster-level validation used by `prepare`. Each problem names the line of
//! `movies.jsonl`, the field and what was expected.

use std::collections::HashSet;
use std::path::Path;

use image::ImageReader;

use crate::DataError;
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
/// With `inside`, the file opened must lie in that folder (a dataset's poster; see
/// `paths::check_opened_inside`); a poster the user names directly may be anywhere.
pub fn load_poster(
    path: &Path,
    inside: Option<&Path>,
    limits: PosterLimits,
) -> Result<image::DynamicImage, String> {
    let file = open_poster(path, inside, limits)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, limits.max_bytes + 1),
        &mut bytes,
    )
    .map_err(|e| format!("unreadable: {e}"))?;
    decode_poster(&bytes, limits)
}

/// `load_poster`'s checks before the decode: a regular file (inside `inside`, if given) within
/// the size limit, opened.
pub fn open_poster(
    path: &Path,
    inside: Option<&Path>,
    limits: PosterLimits,
) -> Result<std::fs::File, String> {
    let file = crate::user_file::open_regular(path).map_err(|e| match e {
        DataError::Io { error, .. } => format!("missing or unreadable: {error}"),
        DataError::File { message, .. } => message,
        other => other.to_string(),
    })?;
    if let Some(root) = inside {
        crate::paths::check_opened_inside(&file, path, root)?;
    }
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > limits.max_bytes {
        return Err(format!(
            "oversized: {len} bytes exceeds the limit of {} bytes",
            limits.max_bytes
        ));
    }
    Ok(file)
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
    let mut reader = reader()?;
    // Decoded bytes, not only pixels: a 16-bit RGBA image decodes to 8 bytes a pixel.
    let max_alloc = limits.max_pixels.saturating_mul(4);
    let mut decode_limits = image::Limits::default();
    decode_limits.max_alloc = Some(max_alloc);
    reader.limits(decode_limits);
    if reader.format() == Some(image::ImageFormat::Jpeg) && !ends_with_jpeg_eoi(bytes) {
        // The JPEG decoder fills a cut-off scan with grey instead of failing.
        return Err("truncated JPEG (no end-of-image marker)".into());
    }
    reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => format!(
            "oversized: decoding {w}x{h} pixels needs more than {max_alloc} bytes (a 16-bit or \
             high-bit-depth image counts its full size)"
        ),
        e => format!("corrupt image: {e}"),
    })
}

/// Whether a JPEG file ends with its end-of-image marker (some writers pad after it).
fn ends_with_jpeg_eoi(bytes: &[u8]) -> bool {
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, 0 | b'\n' | b'\r' | b' '))
        .map_or(0, |i| i + 1);
    bytes[..end].ends_with(&[0xFF, 0xD9])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png<P: image::PixelWithColorType>(img: &image::ImageBuffer<P, Vec<P::Subpixel>>) -> Vec<u8>
    where
        [P::Subpixel]: image::EncodableLayout,
    {
        let mut bytes = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
        bytes
    }

    #[test]
    fn decoded_bytes_are_capped_not_only_pixels() {
        let limits = PosterLimits {
            max_bytes: 1 << 20,
            max_pixels: 100,
        };
        // 100 pixels, within the pixel limit; 8 bytes each once decoded.
        let deep =
            image::ImageBuffer::<image::Rgba<u16>, _>::from_pixel(10, 10, image::Rgba([1; 4]));
        let e = decode_poster(&png(&deep), limits).unwrap_err();
        assert!(e.contains("oversized") && e.contains("bytes"), "{e}");
        let plain = image::ImageBuffer::<image::Rgb<u8>, _>::from_pixel(10, 10, image::Rgb([1; 3]));
        decode_poster(&png(&plain), limits).unwrap();
    }
}

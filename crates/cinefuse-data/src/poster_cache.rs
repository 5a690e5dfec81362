//! The poster cache: every poster decoded once, resized/cropped to a fixed size and stored as
//! CHW `u8` planes in one flat file that training memory-maps. No image decoding per epoch.
//!
//! Layout: 8-byte magic `CFPOSTR1`, then little-endian u32 count, channels, height, width,
//! then `count` records of `channels*height*width` bytes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};
use memmap2::Mmap;

use crate::DataError;

const MAGIC: &[u8; 8] = b"CFPOSTR1";
const HEADER: usize = 8 + 4 * 4;
pub const CHANNELS: usize = 3;

/// How a poster's aspect ratio is reconciled with the cache's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PosterFit {
    /// Cover the target keeping the aspect ratio, then centre-crop (loses the edges).
    #[default]
    Crop,
    /// Resize to the target exactly (distorts the aspect ratio).
    Squash,
    /// Fit inside the target keeping the aspect ratio, then pad with mid grey (keeps everything).
    Pad,
}

/// Fits a poster to `width`×`height` as `mode` says.
pub fn fit_poster_with(img: &DynamicImage, width: u32, height: u32, mode: PosterFit) -> RgbImage {
    match mode {
        PosterFit::Crop => fit_poster(img, width, height),
        PosterFit::Squash => {
            image::imageops::resize(&img.to_rgb8(), width, height, FilterType::Triangle)
        }
        PosterFit::Pad => {
            let rgb = img.to_rgb8();
            let (w, h) = rgb.dimensions();
            let scale = f64::min(width as f64 / w as f64, height as f64 / h as f64);
            let nw = ((w as f64 * scale).round() as u32).clamp(1, width);
            let nh = ((h as f64 * scale).round() as u32).clamp(1, height);
            let resized = image::imageops::resize(&rgb, nw, nh, FilterType::Triangle);
            let mut out = RgbImage::from_pixel(width, height, image::Rgb([127, 127, 127]));
            image::imageops::replace(
                &mut out,
                &resized,
                ((width - nw) / 2).into(),
                ((height - nh) / 2).into(),
            );
            out
        }
    }
}

/// Resizes to cover `width`×`height` keeping the aspect ratio, then centre-crops.
pub fn fit_poster(img: &DynamicImage, width: u32, height: u32) -> RgbImage {
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    let scale = f64::max(width as f64 / w as f64, height as f64 / h as f64);
    let nw = ((w as f64 * scale).round() as u32).max(width);
    let nh = ((h as f64 * scale).round() as u32).max(height);
    let resized = image::imageops::resize(&rgb, nw, nh, FilterType::Triangle);
    let x = (nw - width) / 2;
    let y = (nh - height) / 2;
    image::imageops::crop_imm(&resized, x, y, width, height).to_image()
}

/// HWC RGB image → CHW planes.
pub fn to_chw(img: &RgbImage) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0u8; plane * CHANNELS];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..CHANNELS {
            out[c * plane + i] = px.0[c];
        }
    }
    out
}

/// Writes posters one after another, then finalizes the header.
pub struct PosterCacheWriter {
    out: BufWriter<File>,
    path: PathBuf,
    height: u32,
    width: u32,
    count: u32,
}

impl PosterCacheWriter {
    pub fn create(path: &Path, height: u32, width: u32) -> Result<Self, DataError> {
        let file = File::create(path).map_err(|e| DataError::io(path, e))?;
        let mut out = BufWriter::new(file);
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        for v in [0u32, CHANNELS as u32, height, width] {
            header.extend_from_slice(&v.to_le_bytes());
        }
        out.write_all(&header).map_err(|e| DataError::io(path, e))?;
        Ok(Self {
            out,
            path: path.to_path_buf(),
            height,
            width,
            count: 0,
        })
    }

    /// Appends one CHW poster and returns its slot.
    pub fn push(&mut self, chw: &[u8]) -> Result<u32, DataError> {
        let expected = CHANNELS * (self.height * self.width) as usize;
        if chw.len() != expected {
            return Err(DataError::Invalid(format!(
                "poster has {} bytes, expected {expected}",
                chw.len()
            )));
        }
        self.out
            .write_all(chw)
            .map_err(|e| DataError::io(&self.path, e))?;
        self.count += 1;
        Ok(self.count - 1)
    }

    pub fn finish(self) -> Result<u32, DataError> {
        use std::io::{Seek, SeekFrom};
        let path = self.path.clone();
        let count = self.count;
        let mut file = self
            .out
            .into_inner()
            .map_err(|e| DataError::io(&path, e.into_error()))?;
        file.seek(SeekFrom::Start(8))
            .map_err(|e| DataError::io(&path, e))?;
        file.write_all(&count.to_le_bytes())
            .map_err(|e| DataError::io(&path, e))?;
        file.sync_all().map_err(|e| DataError::io(&path, e))?;
        Ok(count)
    }
}

/// A memory-mapped poster cache.
pub struct PosterCache {
    map: Option<Mmap>,
    pub count: usize,
    pub height: usize,
    pub width: usize,
}

impl PosterCache {
    pub fn open(path: &Path) -> Result<Self, DataError> {
        // A prepared folder may be named by the user: a FIFO here would block the open.
        let file = crate::user_file::open_regular(path)?;
        // SAFETY: the cache is written once by `prepare` and only read afterwards.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(path, e))?;
        if map.len() < HEADER || &map[..8] != MAGIC {
            return Err(DataError::file(
                path,
                "not a cinefuse poster cache (bad magic)",
            ));
        }
        let u =
            |i: usize| u32::from_le_bytes(map[8 + 4 * i..12 + 4 * i].try_into().unwrap()) as usize;
        let (count, channels, height, width) = (u(0), u(1), u(2), u(3));
        if channels != CHANNELS {
            return Err(DataError::file(
                path,
                format!("expected 3 channels, found {channels}"),
            ));
        }
        let expected = HEADER + count * channels * height * width;
        if map.len() != expected {
            return Err(DataError::file(
                path,
                format!(
                    "truncated or corrupt: {} bytes, expected {expected}",
                    map.len()
                ),
            ));
        }
        Ok(Self {
            map: Some(map),
            count,
            height,
            width,
        })
    }

    /// An empty cache for inference on posters supplied directly.
    pub fn empty(height: usize, width: usize) -> Self {
        Self {
            map: None,
            count: 0,
            height,
            width,
        }
    }

    pub fn poster_len(&self) -> usize {
        CHANNELS * self.height * self.width
    }

    /// CHW bytes of one poster.
    pub fn get(&self, slot: usize) -> &[u8] {
        assert!(
            slot < self.count,
            "poster slot {slot} out of range ({})",
            self.count
        );
        let n = self.poster_len();
        let start = HEADER + slot * n;
        &self.map.as_ref().expect("non-empty cache")[start..start + n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_round_trips_and_rejects_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("posters.bin");
        let mut w = PosterCacheWriter::create(&path, 4, 2).unwrap();
        let a: Vec<u8> = (0..24).collect();
        let b: Vec<u8> = (100..124).collect();
        assert_eq!(w.push(&a).unwrap(), 0);
        assert_eq!(w.push(&b).unwrap(), 1);
        assert!(w.push(&[1, 2, 3]).is_err());
        assert_eq!(w.finish().unwrap(), 2);
        let c = PosterCache::open(&path).unwrap();
        assert_eq!((c.count, c.height, c.width), (2, 4, 2));
        assert_eq!(c.get(0), &a[..]);
        assert_eq!(c.get(1), &b[..]);
        drop(c);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let err = PosterCache::open(&path).err().unwrap().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn fit_poster_covers_and_crops() {
        // A 2:3 poster with a blue top sixth, a red bottom sixth and a white left half between.
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(300, 450, |x, y| match y {
            0..75 => image::Rgb([0, 0, 255]),
            375.. => image::Rgb([255, 0, 0]),
            _ if x < 150 => image::Rgb([255, 255, 255]),
            _ => image::Rgb([0, 255, 0]),
        }));
        let (blue, red, green) = ([0, 0, 255], [255, 0, 0], [0, 255, 0]);
        let near = |p: &image::Rgb<u8>, want: [u8; 3]| {
            p.0.iter().zip(want).all(|(a, b)| a.abs_diff(b) < 40)
        };
        // Crop covers 64×64 and cuts the top and bottom bands off.
        let crop = fit_poster_with(&img, 64, 64, PosterFit::Crop);
        assert_eq!(crop.dimensions(), (64, 64));
        assert!(near(crop.get_pixel(50, 0), green) && near(crop.get_pixel(50, 63), green));
        assert!(near(crop.get_pixel(2, 32), [255, 255, 255]));
        // Squash keeps every band, distorted.
        let squash = fit_poster_with(&img, 64, 64, PosterFit::Squash);
        assert!(near(squash.get_pixel(32, 0), blue) && near(squash.get_pixel(32, 63), red));
        // Pad keeps every band and the aspect: grey columns left and right.
        let pad = fit_poster_with(&img, 64, 64, PosterFit::Pad);
        assert!(near(pad.get_pixel(32, 0), blue) && near(pad.get_pixel(32, 63), red));
        assert!(near(pad.get_pixel(0, 32), [128, 128, 128]));
        assert!(near(pad.get_pixel(63, 32), [128, 128, 128]));

        // CHW: channel planes, each row-major (an HWC buffer or a transposed plane fails this).
        let asym = RgbImage::from_fn(5, 3, |x, y| {
            image::Rgb([x as u8, y as u8, (10 * x + y) as u8])
        });
        let chw = to_chw(&asym);
        assert_eq!(chw.len(), 3 * 5 * 3);
        for (x, y, p) in asym.enumerate_pixels() {
            for c in 0..3 {
                assert_eq!(
                    chw[c * 15 + (y * 5 + x) as usize],
                    p.0[c],
                    "({x},{y}) channel {c}"
                );
            }
        }
    }
}

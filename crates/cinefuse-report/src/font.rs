//! Fonts for chart text. plotters' pure-Rust `ab_glyph` renderer needs a TrueType font; we use
//! one installed on the system (Debian: `fonts-dejavu-core`) or the file in `CINEFUSE_FONT`.

use std::sync::OnceLock;

use anyhow::{Result, anyhow};

const CANDIDATES: [&str; 6] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

static REGISTERED: OnceLock<Result<String, String>> = OnceLock::new();

/// Registers a system font as plotters' "sans-serif" once per process.
pub fn ensure_font() -> Result<()> {
    let r = REGISTERED.get_or_init(|| {
        let env = std::env::var("CINEFUSE_FONT").ok();
        let paths: Vec<String> = env.into_iter().chain(CANDIDATES.iter().map(|s| s.to_string())).collect();
        for p in &paths {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                for style in [plotters::style::FontStyle::Normal, plotters::style::FontStyle::Bold] {
                    plotters::style::register_font("sans-serif", style, bytes)
                        .map_err(|_| format!("{p}: not a usable TrueType font"))?;
                }
                return Ok(p.clone());
            }
        }
        Err(format!(
            "no TrueType font found (looked in {}); install fonts-dejavu-core or set CINEFUSE_FONT=/path/to/font.ttf",
            paths.join(", ")
        ))
    });
    r.clone().map(|_| ()).map_err(|e| anyhow!(e))
}

//! The pretrained backbones of an export, stored once. A bag's members and a blend's parts
//! freeze the same checkpoints (MPNet alone is 438 MB), so an export keeps one copy of each
//! backbone under `backbones/` in its top folder and saves every member without the frozen
//! tensors, as a run folder does (`run_dir::saved_weights`): the member's `*.frozen.json`
//! names the copy and its SHA-256, which loading checks.
//!
//! Since export format 3 a copy holds the checkpoint's small files and its weights once, as
//! the portable file (`portable.safetensors`, published names), which both cinefuse and the
//! portable reference read; format 2 also kept the checkpoint's own weights file, which
//! doubled an export's size. Those still load (a loader prefers the checkpoint's file).
//!
//! The manifest lists the copies (`backbones`), relative to its own folder. A blend's part
//! names the blend's copies as `../backbones/NAME`, which is followed only when the folder
//! above is a blend whose manifest lists that part: a model folder never reads outside the
//! model it belongs to.

use std::convert::Infallible;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use cinefuse_data::paths::resolve_inside;
use cinefuse_model::pretrained::load::file_sha256;
use cinefuse_model::pretrained::portable_file::PORTABLE_BACKBONE_FILE;
use cinefuse_model::{CinefuseModel, ModelConfig};
use serde::{Deserialize, Serialize};

use crate::export::MANIFEST_FILE;
use crate::run_dir::{BackboneFile, model_record, read_json, save_record};

/// The folder of an export's backbone copies.
pub const BACKBONES_DIR: &str = "backbones";

/// The files of a checkpoint folder that an export's copy keeps, those that exist being
/// copied: the weights are written once, as the portable file.
const COPIED_FILES: [&str; 2] = ["config.json", "1_Pooling/config.json"];
/// Every file a backbone loader may read in a copy (`Bert::from_dir`,
/// `EfficientNetLite::from_dir`): the copied ones, the portable weights, and the checkpoint's
/// own weights in a copy of export format 2.
const LOADED_FILES: [&str; 5] = [
    "config.json",
    "1_Pooling/config.json",
    PORTABLE_BACKBONE_FILE,
    "model.safetensors",
    "model.pth",
];

/// One backbone checkpoint copied into an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestBackbone {
    /// The config section it serves: `model.text` or `model.poster`.
    pub section: String,
    /// The copy's folder relative to the manifest's: `backbones/NAME`, or in a blend's part
    /// `../backbones/NAME`.
    pub dir: String,
    /// SHA-256 of its weights file (the portable file; in format 2 the checkpoint's).
    pub sha256: String,
}

impl ManifestBackbone {
    /// The section is one cinefuse has, and the folder a plain path under `backbones/`.
    pub fn check(&self) -> Result<(), String> {
        if !matches!(self.section.as_str(), "model.text" | "model.poster") {
            return Err(format!(
                "backbones: section {:?}: expected \"model.text\" or \"model.poster\"",
                self.section
            ));
        }
        if split_dir(&self.dir).is_none() {
            return Err(format!(
                "backbones: dir {:?}: expected \"{BACKBONES_DIR}/NAME\" (or \"../{BACKBONES_DIR}/NAME\" \
                 in a blend's part)",
                self.dir
            ));
        }
        Ok(())
    }
}

/// `dir` as (whether it is the blend's, the path below the top folder): `backbones/NAME` or
/// `../backbones/NAME`, each component a plain name.
fn split_dir(dir: &str) -> Option<(bool, &str)> {
    let (up, rest) = match dir.strip_prefix("../") {
        Some(rest) => (true, rest),
        None => (false, dir),
    };
    let mut parts = Path::new(rest).components();
    let plain = |c: Option<Component>| matches!(c, Some(Component::Normal(_)));
    let top = parts.next();
    let ok = top == Some(Component::Normal(BACKBONES_DIR.as_ref()))
        && plain(parts.next())
        && parts.next().is_none()
        && !rest.contains('\\');
    ok.then_some((up, rest))
}

/// The backbone copies of an export being written into its staging folder `root`.
pub struct ExportBackbones {
    root: PathBuf,
    /// Each copy made so far, with the SHA-256 of the checkpoint weights it was made from.
    copies: Vec<(String, ManifestBackbone)>,
}

impl ExportBackbones {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            copies: Vec::new(),
        }
    }

    /// Every copy made so far, as the top folder's manifest names them.
    pub fn copies(&self) -> Vec<ManifestBackbone> {
        self.copies.iter().map(|(_, c)| c.clone()).collect()
    }

    /// Saves `model`, trained with `config`, as `file` in `dir` (the top folder or a part
    /// folder directly in it) without its frozen backbone tensors, copying the checkpoints
    /// they come from on first use. Returns the copies it relies on, as `dir`'s manifest
    /// names them.
    pub fn save_member(
        &mut self,
        model: &CinefuseModel,
        config: &ModelConfig,
        dir: &Path,
        file: &str,
    ) -> Result<Vec<ManifestBackbone>> {
        let (_, files) = crate::run_dir::frozen_parts(model, config)?;
        let up = dir != self.root;
        let entries = files
            .iter()
            .map(|f| Ok(as_seen_from(&self.copy_once(config, f)?, up)))
            .collect::<Result<Vec<_>>>()?;
        let saved = model_record(model, &self.staged(config, &entries))?.with_file_names(
            |f: &BackboneFile| {
                let entry = entries.iter().find(|e| e.section == f.section);
                let name = f.file.file_name().unwrap_or_default();
                entry.map_or(f.file.clone(), |e| Path::new(&e.dir).join(name))
            },
        );
        save_record(saved, &dir.join(file))?;
        Ok(entries)
    }

    /// `config` with its pretrained folders at the copies `entries` name (as a manifest in
    /// this export does), in the staging folder: the export's models load from those.
    pub fn staged(&self, config: &ModelConfig, entries: &[ManifestBackbone]) -> ModelConfig {
        let mut staged = config.clone();
        let Ok(()) = set_pretrained::<Infallible>(&mut staged, |section| {
            Ok(entries
                .iter()
                .find(|e| e.section == section)
                .map(|e| self.root.join(e.dir.trim_start_matches("../"))))
        });
        staged
    }

    /// The copy of `file`'s checkpoint folder, made now unless an earlier member made it:
    /// its small files, and its weights as the portable file.
    fn copy_once(&mut self, config: &ModelConfig, file: &BackboneFile) -> Result<ManifestBackbone> {
        if let Some((_, c)) = self
            .copies
            .iter()
            .find(|(source, c)| c.section == file.section && *source == file.sha256)
        {
            return Ok(c.clone());
        }
        let source = checkpoint_dir(config, &file.section)?;
        let short = file.section.trim_start_matches("model.");
        let dir = format!("{BACKBONES_DIR}/{short}-{}", &file.sha256[..12]);
        let target = self.root.join(&dir);
        copy_checkpoint(source, &target)?;
        let weights = target.join(PORTABLE_BACKBONE_FILE);
        crate::portable::write_backbone(&file.section, source, &weights)?;
        let now = file_sha256(&file.file)?;
        if now != file.sha256 {
            bail!(
                "{}: changed while it was copied into the export (SHA-256 {} then {now}); \
                 export again",
                file.file.display(),
                file.sha256
            );
        }
        let copy = ManifestBackbone {
            section: file.section.clone(),
            dir,
            sha256: file_sha256(&weights)?,
        };
        self.copies.push((file.sha256.clone(), copy.clone()));
        Ok(copy)
    }
}

/// A copy's entry as the manifest of a part folder names it (`../` before it).
fn as_seen_from(copy: &ManifestBackbone, from_part: bool) -> ManifestBackbone {
    let dir = match from_part {
        true => format!("../{}", copy.dir),
        false => copy.dir.clone(),
    };
    ManifestBackbone {
        dir,
        ..copy.clone()
    }
}

/// The checkpoint folder `config` names for `section` (`model.text` or `model.poster`).
fn pretrained_dir<'a>(config: &'a ModelConfig, section: &str) -> Option<&'a Path> {
    match section {
        "model.text" => config.text.pretrained.as_deref(),
        _ => config.poster.pretrained.as_deref(),
    }
}

/// Sets each pretrained folder of `config` to what `folder` gives for its section.
fn set_pretrained<E>(
    config: &mut ModelConfig,
    mut folder: impl FnMut(&str) -> Result<Option<PathBuf>, E>,
) -> Result<(), E> {
    config.text.pretrained = folder("model.text")?;
    config.poster.pretrained = folder("model.poster")?;
    Ok(())
}

/// The checkpoint folder `config` names for `section`, which must be set.
fn checkpoint_dir<'a>(config: &'a ModelConfig, section: &str) -> Result<&'a Path> {
    pretrained_dir(config, section).with_context(|| format!("{section}.pretrained is not set"))
}

/// Copies the small files of the checkpoint folder `from` into the new folder `to`.
fn copy_checkpoint(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for name in COPIED_FILES {
        let source = from.join(name);
        if !source.exists() {
            continue;
        }
        let target = to.join(name);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        crate::export::copy(&source, &target)?;
    }
    Ok(())
}

/// Points `config`'s pretrained folders at the copies `backbones` lists, relative to
/// `model_dir`; a section without a copy gets none, so weights saved without its frozen
/// tensors are refused by name rather than filled in from wherever the training config
/// pointed.
pub fn point_at(
    config: &mut ModelConfig,
    model_dir: &Path,
    backbones: &[ManifestBackbone],
) -> Result<()> {
    set_pretrained(config, |section| {
        match backbones.iter().find(|b| b.section == section) {
            Some(b) => resolve(model_dir, &b.dir).map(Some),
            None => Ok(None),
        }
    })
}

/// The folder `dir` names from `model_dir`, checked to stay inside the model: below
/// `model_dir`, or below the blend folder above it when that blend lists `model_dir` as a
/// part. Each file a loader reads must be a regular file inside it too.
fn resolve(model_dir: &Path, dir: &str) -> Result<PathBuf> {
    let (up, below_top) = split_dir(dir).with_context(|| format!("backbones: dir {dir:?}"))?;
    let top = match up {
        true => blend_above(model_dir)?,
        false => model_dir.to_path_buf(),
    };
    let inside = |rel: &str| {
        resolve_inside(&top, rel).map_err(|e| {
            anyhow!(
                "{}: backbones: {e}",
                model_dir.join(MANIFEST_FILE).display()
            )
        })
    };
    let folder = inside(below_top)?;
    for name in LOADED_FILES {
        let file = inside(&format!("{below_top}/{name}"))?;
        match std::fs::symlink_metadata(&file) {
            Ok(m) if !m.is_file() => bail!("{}: not a regular file", file.display()),
            _ => {}
        }
    }
    Ok(folder)
}

/// The blend folder above the part `model_dir`, if its manifest lists that part.
fn blend_above(model_dir: &Path) -> Result<PathBuf> {
    #[derive(Deserialize)]
    struct Part {
        dir: String,
    }
    #[derive(Deserialize)]
    struct Blend {
        #[serde(default)]
        parts: Vec<Part>,
    }
    let refused = || {
        anyhow!(
            "{}: names backbones in the folder above, but it is not a blend with this \
             folder as a part; load the blend's folder",
            model_dir.join(MANIFEST_FILE).display()
        )
    };
    let part = cinefuse_data::paths::absolute_resolved(model_dir)?;
    let (Some(top), Some(name)) = (part.parent(), part.file_name()) else {
        return Err(refused());
    };
    let blend: Blend = read_json(&top.join(MANIFEST_FILE)).map_err(|_| refused())?;
    if !blend.parts.iter().any(|p| name == p.dir.as_str()) {
        return Err(refused());
    }
    Ok(top.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backbone_folders_are_plain_names_under_backbones() {
        for ok in ["backbones/text-0123", "../backbones/poster-ab"] {
            assert!(split_dir(ok).is_some(), "{ok}");
        }
        for bad in [
            "backbones",
            "backbones/",
            "/backbones/x",
            "backbones/../x",
            "../../backbones/x",
            "other/x",
            "backbones/x/y",
            "backbones/..",
            "./backbones/x",
            "backbones\\x",
        ] {
            assert!(split_dir(bad).is_none(), "{bad}");
        }
    }
}

//! What a run saves of its model: every tensor training can change. The frozen parts of
//! pretrained backbones are the checkpoint files the config names, so `best/` and the
//! periodic checkpoints leave them out (MiniLM with EfficientNet-Lite0 is 105 MB; a blend of
//! 30 bag members kept about 4 GB of copies) and record each file's SHA-256 beside the
//! weights instead (`model.frozen.json`). Loading reads those tensors from the files, refuses
//! files whose content changed, and checks that the saved tensors are exactly the rest.
//! Exports save their members the same way, beside one copy of each backbone checkpoint
//! (`export_backbones.rs`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::{ParamGroup, ParamId};
use burn::prelude::*;
use burn::store::ModuleRecord;
use cinefuse_model::pretrained::frozen_part::{
    frozen_param_ids, frozen_probe, param_ids, probes_agree,
};
use cinefuse_model::pretrained::load::file_sha256;
use cinefuse_model::pretrained::{Bert, EfficientNetLite};
use cinefuse_model::{CinefuseModel, ModelConfig};
use serde::{Deserialize, Serialize};

use super::{read_json, write_json};

/// What a saved model leaves out: the backbone files its frozen tensors come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrozenBackbones {
    pub files: Vec<BackboneFile>,
    /// How many tensors the saved weights hold (all the model's others).
    pub saved_tensors: usize,
    /// `frozen_probe` of the model that was saved: loading checks the model it loads into
    /// holds the same frozen values (absent in files saved before 2026-12-04 afternoon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackboneFile {
    /// The config section naming the checkpoint folder: `model.text` or `model.poster`.
    pub section: String,
    /// The weights file as it was when the model was saved (for messages; the check is the
    /// digest, since a run evaluated from elsewhere resolves the folder another way).
    pub file: PathBuf,
    pub sha256: String,
}

/// A model's record to save, and what it leaves out.
pub struct SavedModel {
    record: ModuleRecord,
    frozen: Option<FrozenBackbones>,
}

impl SavedModel {
    /// The record with each left-out backbone file recorded as `name` says (an export names
    /// its own copy, relative to its folder, rather than the path it was staged at).
    pub fn with_file_names(mut self, name: impl Fn(&BackboneFile) -> PathBuf) -> Self {
        if let Some(frozen) = &mut self.frozen {
            for f in &mut frozen.files {
                f.file = name(f);
            }
        }
        self
    }
}

/// The file beside `weights` that says what they leave out.
pub fn frozen_file(weights: &Path) -> PathBuf {
    weights.with_extension("frozen.json")
}

/// The model's tensors as they are now, less its frozen backbone tensors. Burn's
/// `RunningState` keeps a statistic's latest update aside until the next sync, and saving
/// reads the synced value: `valid()` syncs the shared state in place first, so a save never
/// holds statistics one batch old.
pub fn model_record(model: &CinefuseModel, config: &ModelConfig) -> Result<SavedModel> {
    drop(model.valid());
    let (ids, files) = frozen_parts(model, config)?;
    if ids.is_empty() {
        return Ok(SavedModel {
            record: model.clone().into_record(),
            frozen: None,
        });
    }
    let probe = Some(frozen_probe(model, &ids));
    let trained = ParamGroup::all().exclude(ParamGroup::from_ids(ids));
    let record = model.clone().into_record_group(trained);
    let saved_tensors = record.len();
    Ok(SavedModel {
        record,
        frozen: Some(FrozenBackbones {
            files,
            saved_tensors,
            probe,
        }),
    })
}

/// The frozen backbone tensors of `model` by id, and the files they were loaded from.
pub(crate) fn frozen_parts(
    model: &CinefuseModel,
    config: &ModelConfig,
) -> Result<(Vec<ParamId>, Vec<BackboneFile>)> {
    let mut ids = Vec::new();
    let mut files = Vec::new();
    let mut add = |section: &str, frozen: Vec<ParamId>, file: PathBuf| -> Result<()> {
        if !frozen.is_empty() {
            let sha256 = file_sha256(&file).with_context(|| format!("{section}.pretrained"))?;
            ids.extend(frozen);
            files.push(BackboneFile {
                section: section.into(),
                file,
                sha256,
            });
        }
        Ok(())
    };
    if let (Some(e), Some(dir)) = (model.pretrained_text(), &config.text.pretrained) {
        let frozen = frozen_param_ids(&e.backbone, &config.text.tuning());
        add("model.text", frozen, Bert::weights_file(dir))?;
    }
    if let (Some(e), Some(dir)) = (model.pretrained_poster(), &config.poster.pretrained) {
        let frozen = frozen_param_ids(&e.backbone, &config.poster.tuning());
        add("model.poster", frozen, EfficientNetLite::weights_file(dir))?;
    }
    Ok((ids, files))
}

/// Writes `saved` to `path`, and beside it what it leaves out.
pub fn save_record(saved: SavedModel, path: &Path) -> Result<()> {
    saved
        .record
        .save(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot save model: {e}", path.display()))?;
    match saved.frozen {
        Some(frozen) => write_json(&frozen_file(path), &frozen),
        None => Ok(()),
    }
}

/// What the weights in `file` leave out, if they were saved without frozen backbones.
pub fn read_frozen(file: &Path) -> Result<Option<FrozenBackbones>> {
    let path = frozen_file(file);
    if !path.exists() {
        return Ok(None);
    }
    read_json(&path).map(Some)
}

/// Checks that `model` (built from `config`'s checkpoints) holds the frozen tensors the saved
/// weights left out, and that `record` holds exactly its other tensors.
pub fn check_frozen(
    model: &CinefuseModel,
    config: &ModelConfig,
    frozen: &FrozenBackbones,
    record: &ModuleRecord,
    file: &Path,
) -> Result<()> {
    let (ids, now) = frozen_parts(model, config)?;
    for saved in &frozen.files {
        let Some(current) = now.iter().find(|f| f.section == saved.section) else {
            bail!(
                "{}: saved without the frozen {} backbone, which this config does not load \
                 ({}.pretrained unset or not frozen)",
                file.display(),
                saved.section,
                saved.section
            );
        };
        if current.sha256 != saved.sha256 {
            bail!(
                "{}: saved without its frozen {} backbone, whose weights were {} (SHA-256 {}); \
                 {} now has SHA-256 {}: restore that file, or train again",
                file.display(),
                saved.section,
                saved.file.display(),
                saved.sha256,
                current.file.display(),
                current.sha256
            );
        }
    }
    let expected = param_ids(model).len() - ids.len();
    if record.len() != expected || record.len() != frozen.saved_tensors {
        bail!(
            "{}: holds {} tensors ({} recorded beside it), this model's trained part has {}: \
             it was saved by another model",
            file.display(),
            record.len(),
            frozen.saved_tensors,
            expected
        );
    }
    check_probe(model, &ids, frozen.probe, file)
}

/// The frozen values in `model` are those the saved model was trained with: loading weights
/// over a model built another way (random layers, say) would silently pair them with the
/// wrong backbone.
fn check_probe(
    model: &CinefuseModel,
    ids: &[ParamId],
    saved: Option<f64>,
    file: &Path,
) -> Result<()> {
    let Some(saved) = saved else { return Ok(()) };
    let now = frozen_probe(model, ids);
    if !probes_agree(saved, now) {
        bail!(
            "{}: the model it is loaded into does not hold the frozen backbone values it was \
             saved with (fingerprint {now} against {saved}); this is a bug in cinefuse, \
             please report it",
            file.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_dir::{load_model, load_weights};
    use burn::module::{Module, ModuleMapper, Param};
    use cinefuse_model::encoders::text::TextEncoderKind;
    use cinefuse_model::pretrained::Tuning;
    use cinefuse_model::pretrained::testing::{TinyBert, module_values};
    use cinefuse_model::{Modality, ModelShapes};

    /// Adds 0.25 to every float tensor but those it keeps: with none kept, a model that
    /// differs from its checkpoint everywhere; keeping the frozen ones, a model as training
    /// leaves it.
    struct Shift(Vec<ParamId>);
    impl ModuleMapper for Shift {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if self.0.contains(&p.id) {
                return p;
            }
            p.map(|t| t + 0.25)
        }
    }

    /// `model` as training leaves it: every tensor changed but the frozen ones.
    fn trained(model: &CinefuseModel, config: &ModelConfig) -> CinefuseModel {
        let (frozen, _) = frozen_parts(model, config).unwrap();
        model.clone().map(&mut Shift(frozen))
    }

    const TINY: TinyBert = TinyBert::TWO_LAYERS;

    /// A plot model on a two-layer tiny BERT written into `dir`, tuned as `tuning` says.
    fn tiny_model(dir: &Path, tuning: Tuning) -> (ModelConfig, ModelShapes, CinefuseModel) {
        TINY.write(dir, &TINY.tensors(3)).unwrap();
        let mut config = ModelConfig::new()
            .with_modalities(vec![Modality::Text])
            .with_embed_dim(8);
        config.text.kind = TextEncoderKind::Bert;
        config.text.pretrained = Some(dir.to_path_buf());
        config.text.freeze = tuning.freeze;
        config.text.trainable_layers = tuning.trainable_layers;
        let shapes = TINY.plot_model_shapes(dir, 3);
        let model = config.init_pretrained(&shapes, &Device::flex()).unwrap();
        (config, shapes, model)
    }

    /// `model` saved as a run saves it, into a new folder (kept while the guard lives).
    fn saved(model: &CinefuseModel, config: &ModelConfig) -> (tempfile::TempDir, PathBuf) {
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("model.bpk");
        save_record(model_record(model, config).unwrap(), &file).unwrap();
        (out, file)
    }

    fn tuning(freeze: bool, trainable_layers: Option<usize>) -> Tuning {
        Tuning {
            freeze,
            lr_scale: 0.1,
            trainable_layers,
            layer_decay: 1.0,
        }
    }

    /// A model whose last BERT layer is fine-tuned is saved without the embeddings and the
    /// layer below, and loads back with those from the checkpoint and the rest as trained.
    #[test]
    fn a_fine_tuned_model_saves_all_but_its_frozen_layers() {
        let ckpt = tempfile::tempdir().unwrap();
        let (config, shapes, model) = tiny_model(ckpt.path(), tuning(false, Some(1)));
        let trained = trained(&model, &config);
        let (_out, file) = saved(&trained, &config);
        let frozen = read_frozen(&file)
            .unwrap()
            .expect("saved without frozen tensors");
        assert_eq!(frozen.files.len(), 1);
        assert_eq!(frozen.files[0].section, "model.text");
        let (frozen_ids, _) = frozen_parts(&model, &config).unwrap();
        let bert_ids = param_ids(&model.pretrained_text().unwrap().backbone).len();
        assert!(!frozen_ids.is_empty() && frozen_ids.len() < bert_ids);
        assert_eq!(
            burn::store::ModuleRecord::load(&file).unwrap().len(),
            param_ids(&model).len() - frozen_ids.len()
        );

        let loaded = load_model(&config, &shapes, &file, &Device::flex()).unwrap();
        let (whole, trained_model) = (loaded.clone(), trained.clone());
        let bert = |m: &CinefuseModel| m.pretrained_text().unwrap().backbone.clone();
        let (loaded, model, trained) = (bert(&loaded), bert(&model), bert(&trained));
        // Frozen: the checkpoint's values.
        assert!(module_values(&loaded.embeddings) == module_values(&model.embeddings));
        assert!(module_values(&loaded.layers[0]) == module_values(&model.layers[0]));
        // Trained: as saved (the top layer here, the adapter and the head below).
        assert!(module_values(&loaded.layers[1]) == module_values(&trained.layers[1]));
        assert!(module_values(&loaded.layers[1]) != module_values(&model.layers[1]));
        let text = |m: &CinefuseModel| module_values(m.text.as_ref().unwrap());
        let (whole, shifted) = (text(&whole), text(&trained_model));
        let outside_bert: Vec<_> = shifted
            .keys()
            .filter(|k| k.contains("adapter") || k.starts_with("head"))
            .collect();
        assert!(outside_bert.len() >= 4, "{:?}", shifted.keys());
        for name in outside_bert {
            assert!(whole[name] == shifted[name], "{name}");
        }
    }

    /// Saved weights and the model they are loaded into disagree on the frozen layers: the
    /// model holds random ones (how a resumed run once trained on them), or the weights were
    /// trained over other values than the checkpoint's. Refused either way, not loaded.
    #[test]
    fn weights_over_other_frozen_values_are_refused() {
        let ckpt = tempfile::tempdir().unwrap();
        let (config, shapes, model) = tiny_model(ckpt.path(), tuning(false, Some(1)));
        let (_out, file) = saved(&trained(&model, &config), &config);
        assert!(read_frozen(&file).unwrap().unwrap().probe.is_some());
        assert!(load_weights(model.clone(), &file, &config).is_ok());
        let random = config.init(&shapes, &Device::flex());
        let (_out2, shifted) = saved(&model.clone().map(&mut Shift(Vec::new())), &config);
        for e in [
            load_weights(random, &file, &config),
            load_weights(model, &shifted, &config),
        ] {
            let e = e.expect_err("refused").to_string();
            assert!(
                e.contains("model.bpk") && e.contains("frozen backbone values"),
                "{e}"
            );
        }
    }

    /// Other backbone weights under the same path: refused, naming the file and what to do.
    #[test]
    fn a_changed_backbone_file_is_refused() {
        let ckpt = tempfile::tempdir().unwrap();
        let (config, shapes, model) = tiny_model(ckpt.path(), tuning(true, None));
        let (_out, file) = saved(&model, &config);
        assert!(load_model(&config, &shapes, &file, &Device::flex()).is_ok());
        // A rename, as an atomic replacement would: a new inode, so hashed again.
        let other = tempfile::tempdir().unwrap();
        TINY.write(other.path(), &TINY.tensors(4)).unwrap();
        let weights = Bert::weights_file(ckpt.path());
        std::fs::rename(Bert::weights_file(other.path()), &weights).unwrap();
        let e = load_model(&config, &shapes, &file, &Device::flex())
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains("model.bpk") && e.contains("restore that file, or train again"),
            "{e}"
        );
    }

    /// Members loaded together share the checkpoint's frozen tensors, and each still gets its
    /// own trained ones: exactly what loading each alone gives.
    #[test]
    fn members_loaded_together_are_each_as_loaded_alone() {
        let ckpt = tempfile::tempdir().unwrap();
        let (config, shapes, model) = tiny_model(ckpt.path(), tuning(false, Some(1)));
        let (frozen, _) = frozen_parts(&model, &config).unwrap();
        let first = trained(&model, &config);
        let second = first.clone().map(&mut Shift(frozen));
        let (_a, a) = saved(&first, &config);
        let (_b, b) = saved(&second, &config);
        let device = Device::flex();
        let together =
            crate::run_dir::load_members(&config, &shapes, &[a.clone(), b.clone()], &device)
                .unwrap();
        for (member, file) in together.iter().zip([&a, &b]) {
            let alone = load_model(&config, &shapes, file, &device).unwrap();
            assert!(
                module_values(member) == module_values(&alone),
                "{}",
                file.display()
            );
        }
        assert!(module_values(&together[0]) != module_values(&together[1]));
    }

    /// Nothing frozen: every tensor is saved, and no file beside it.
    #[test]
    fn a_wholly_fine_tuned_model_is_saved_whole() {
        let ckpt = tempfile::tempdir().unwrap();
        let (config, _, model) = tiny_model(ckpt.path(), tuning(false, None));
        let (_out, file) = saved(&model, &config);
        assert!(!frozen_file(&file).exists());
        assert_eq!(
            burn::store::ModuleRecord::load(&file).unwrap().len(),
            param_ids(&model).len()
        );
    }
}

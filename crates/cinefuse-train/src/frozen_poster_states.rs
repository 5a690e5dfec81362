//! `model.poster.cache_frozen_layers`: when only the last blocks of the poster backbone are
//! fine-tuned, the stem and the blocks below them never change, so their output for each
//! poster is computed once (in inference mode) and every training step starts from it. On
//! EfficientNet-Lite0 with two trainable blocks a step then runs two blocks on 7×7 maps and the
//! head instead of the whole network on 224×224 pixels. The maps depend only on the posters
//! and the weights, so they are stored beside the frozen features (`PREPARED/features/`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use cinefuse_data::Prepared;
use cinefuse_data::feature_cache::{FeatureTable, MAX_TABLE_BYTES, cache_path};
use cinefuse_data::poster_states::PosterStates;
use cinefuse_data::prepared::POSTERS_FILE;
use cinefuse_model::encoders::poster::PosterEncoderKind;
use cinefuse_model::pretrained::EfficientNetLite;
use cinefuse_model::pretrained::backbone::to_checkpoint_scale;
use cinefuse_model::pretrained::efficientnet::LITE0_BLOCKS;
use cinefuse_model::pretrained::load::file_sha256;
use cinefuse_model::{Modality, ModelConfig};

use crate::backbone_features::{compute, fingerprint, frozen_poster_backbone, inputs_of};

/// Builds (or reuses) the frozen blocks' output for every prepared poster and hands it to
/// `prepared`, whose datasets then carry it; does nothing unless the config asks for it.
pub fn attach_frozen_poster_states(
    model: &ModelConfig,
    prepared: &mut Prepared,
    device: &Device,
) -> Result<()> {
    let poster = &model.poster;
    if !poster.cache_frozen_layers
        || poster.kind != PosterEncoderKind::EfficientnetLite0
        || !model.modalities.contains(&Modality::Poster)
    {
        return Ok(());
    }
    let dir = poster
        .pretrained
        .as_deref()
        .context("model.poster.pretrained")?;
    let trainable = poster
        .trainable_layers
        .context("model.poster.cache_frozen_layers needs model.poster.trainable_layers")?;
    let states = poster_states(dir, trainable, prepared, device)?;
    let mut features = prepared.features.as_deref().cloned().unwrap_or_default();
    features.poster_states = Some(Arc::new(states));
    prepared.features = Some(Arc::new(features));
    Ok(())
}

fn poster_states(
    dir: &Path,
    trainable: usize,
    prepared: &Prepared,
    device: &Device,
) -> Result<PosterStates> {
    let batcher = prepared.preprocessor.batcher();
    let (height, width) = (batcher.image_height, batcher.image_width);
    // The stem stays frozen whatever trains above it, so there is always something to cache.
    let from = LITE0_BLOCKS.saturating_sub(trainable);
    let shape = EfficientNetLite::states_shape(from, height, width);
    let dim: usize = shape.iter().product();
    refuse_oversized(prepared.samples.len(), from, shape)?;
    let key = fingerprint(&[
        b"efficientnet-lite0-states-v1",
        file_sha256(&EfficientNetLite::weights_file(dir))?.as_bytes(),
        file_sha256(&prepared.dir.join(POSTERS_FILE))?.as_bytes(),
        &inputs_of(prepared, |s| s.poster_slot),
        &(from as u64).to_le_bytes(),
        &(height as u64).to_le_bytes(),
        &(width as u64).to_le_bytes(),
    ]);
    let table = stored_or_computed(dir, from, dim, key, prepared, device)?;
    let states = PosterStates::new(from, shape, Arc::new(table));
    println!(
        "poster backbone: its frozen part (the stem and the first {from} blocks) gives a \
         {shape:?} map per poster ({:.0} MB in memory); training runs the {} blocks above it",
        states.bytes() as f64 / 1e6,
        LITE0_BLOCKS - from
    );
    Ok(states)
}

/// The maps entering block `from` of every prepared poster (`dim` values each), read back from
/// the prepared folder when made with the same `key`, else computed and stored there.
fn stored_or_computed(
    dir: &Path,
    from: usize,
    dim: usize,
    key: String,
    prepared: &Prepared,
    device: &Device,
) -> Result<FeatureTable> {
    let path = cache_path(&prepared.dir, "poster-states", &key);
    if let Some(t) = FeatureTable::load_if(&path, &key)? {
        println!(
            "poster backbone: its frozen part's output cached ({})",
            path.display()
        );
        return Ok(t);
    }
    let net = frozen_poster_backbone(dir, device)?;
    let has_poster = |it: &cinefuse_data::MovieItem| it.poster.is_some();
    let table = compute(
        prepared,
        device,
        "frozen-block poster",
        dim,
        key,
        has_poster,
        |b| {
            let maps = net.states_before(from, to_checkpoint_scale(b.posters.clone()));
            let n = maps.dims()[0];
            maps.reshape([n, dim])
        },
    )?;
    table.save(&path)?;
    Ok(table)
}

/// Refuses a cache whose maps would not fit the feature table's size cap (fine-tuning most of
/// the network caches the large early maps: 32×112×112 per poster before block 0).
fn refuse_oversized(samples: usize, from: usize, shape: [usize; 3]) -> Result<()> {
    let bytes = (samples * shape.iter().product::<usize>() * 4) as u64;
    if bytes > MAX_TABLE_BYTES {
        bail!(
            "model.poster.cache_frozen_layers: the maps entering block {from} ({shape:?} per \
             poster) would take {:.1} GB for {samples} movies; train fewer blocks \
             (model.poster.trainable_layers) or leave the cache off",
            bytes as f64 / 1e9
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_too_large_for_the_cache_are_refused_by_key() {
        let early = EfficientNetLite::states_shape(0, 224, 224);
        assert_eq!(early, [32, 112, 112]);
        let e = refuse_oversized(30_000, 0, early).unwrap_err().to_string();
        assert!(e.contains("model.poster.trainable_layers"), "{e}");
        let late = EfficientNetLite::states_shape(14, 224, 224);
        assert_eq!(late, [192, 7, 7]);
        refuse_oversized(30_000, 14, late).unwrap();
    }
}

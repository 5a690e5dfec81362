//! Splits a training batch into one contiguous shard per device and batches each shard onto
//! its device, so every replica of a data-parallel step finds its input where it runs.

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use cinefuse_data::{MovieBatch, MovieBatcher, MovieItem};
use cinefuse_model::LossRows;

/// One training batch: a shard per device in use (lead first) and the batch's row counts,
/// which every shard's loss divides by.
#[derive(Clone, Debug)]
pub(crate) struct ShardedBatch {
    pub shards: Vec<MovieBatch>,
    pub rows: LossRows,
}

#[derive(Clone)]
pub(crate) struct ShardBatcher {
    inner: MovieBatcher,
    devices: Vec<Device>,
}

impl ShardBatcher {
    pub(crate) fn new(inner: MovieBatcher, devices: Vec<Device>) -> Self {
        Self { inner, devices }
    }
}

/// Shard sizes for `rows` rows on `shards` devices: as even as possible, larger ones first,
/// and no empty shard (a short last batch leaves devices idle rather than running on nothing).
pub(crate) fn shard_sizes(rows: usize, shards: usize) -> Vec<usize> {
    let shards = shards.max(1);
    (0..shards)
        .map(|i| rows / shards + usize::from(i < rows % shards))
        .filter(|&n| n > 0)
        .collect()
}

impl Batcher<MovieItem, ShardedBatch> for ShardBatcher {
    /// One batch per device in use; the loader's own device is the lead, `devices[0]`.
    fn batch(&self, items: Vec<MovieItem>, _device: &Device) -> ShardedBatch {
        let rows = LossRows {
            genres: items.iter().filter(|it| it.genres_present).count(),
            rating: items.iter().filter(|it| it.rating.is_some()).count(),
        };
        let sizes = shard_sizes(items.len(), self.devices.len());
        let mut rest = items.into_iter();
        let shards = sizes
            .into_iter()
            .zip(&self.devices)
            .map(|(n, device)| self.inner.batch(rest.by_ref().take(n).collect(), device))
            .collect();
        ShardedBatch { shards, rows }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_even_contiguous_and_never_empty() {
        assert_eq!(shard_sizes(32, 1), vec![32]);
        assert_eq!(shard_sizes(32, 2), vec![16, 16]);
        assert_eq!(shard_sizes(7, 3), vec![3, 2, 2]);
        assert_eq!(shard_sizes(1, 2), vec![1]);
        assert_eq!(shard_sizes(0, 2), Vec::<usize>::new());
    }

    fn item(id: String) -> MovieItem {
        MovieItem {
            id,
            poster: None,
            tokens: vec![2, 3],
            plot_present: true,
            numeric: vec![0.5],
            numeric_missing: vec![0.0],
            categorical: vec![],
            genres: vec![1.0, 0.0],
            genres_present: true,
            rating: Some(6.0),
            poster_features: None,
            plot_features: None,
            plot_states: None,
            poster_states: None,
            credits: Vec::new(),
            extras_absent: false,
        }
    }

    #[test]
    fn each_shard_holds_its_rows_in_order() {
        let items: Vec<MovieItem> = (0..5).map(|i| item(format!("m{i}"))).collect();
        let devices = vec![Device::flex(), Device::flex()];
        let batch =
            ShardBatcher::new(MovieBatcher::new(2, 2, 4), devices).batch(items, &Device::flex());
        let ids: Vec<Vec<String>> = batch.shards.into_iter().map(|b| b.ids).collect();
        assert_eq!(ids, vec![vec!["m0", "m1", "m2"], vec!["m3", "m4"]]);
        assert_eq!(
            batch.rows,
            LossRows {
                genres: 5,
                rating: 5
            }
        );
    }
}

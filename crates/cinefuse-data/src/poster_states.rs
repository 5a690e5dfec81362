//! A fine-tuned poster backbone's frozen blocks' output: one `[C, H, W]` feature map per
//! prepared sample (in `samples.jsonl` order), entering block `from_block`. It depends only on
//! the posters and the pretrained weights, so it is kept on disk as a feature table (one row of
//! `C·H·W` values per sample, zeros for movies without a poster).

use std::sync::Arc;

use crate::feature_cache::FeatureTable;

/// The maps entering block `from_block` for every sample.
#[derive(Debug, Clone, PartialEq)]
pub struct PosterStates {
    pub from_block: usize,
    /// `[C, H, W]` of one map.
    pub shape: [usize; 3],
    table: Arc<FeatureTable>,
}

impl PosterStates {
    pub fn new(from_block: usize, shape: [usize; 3], table: Arc<FeatureTable>) -> Self {
        assert_eq!(
            table.dim,
            shape.iter().product::<usize>(),
            "rows of one {shape:?} map"
        );
        Self {
            from_block,
            shape,
            table,
        }
    }

    /// Sample `i`'s map, `C·H·W` values (channel-major, as the tensors lay them out).
    pub fn map(&self, i: usize) -> &[f32] {
        self.table.row(i)
    }

    pub fn samples(&self) -> usize {
        self.table.rows()
    }

    /// Memory held by the values.
    pub fn bytes(&self) -> usize {
        self.samples() * self.table.dim * std::mem::size_of::<f32>()
    }
}

/// One movie's map entering block `from_block`.
#[derive(Debug, Clone, PartialEq)]
pub struct PosterMap {
    pub from_block: usize,
    pub shape: [usize; 3],
    pub values: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_come_back_per_sample() {
        let table = FeatureTable::new(4, "k".into(), (0..12).map(|v| v as f32).collect());
        let s = PosterStates::new(14, [1, 2, 2], Arc::new(table));
        assert_eq!(s.samples(), 3);
        assert_eq!(s.map(1), [4.0, 5.0, 6.0, 7.0]);
        assert_eq!(s.bytes(), 48);
    }

    #[test]
    #[should_panic(expected = "rows of one [2, 2, 2] map")]
    fn a_table_of_another_width_is_refused() {
        let table = FeatureTable::new(4, "k".into(), vec![0.0; 8]);
        PosterStates::new(14, [2, 2, 2], Arc::new(table));
    }
}

//! Token states of a fine-tuned text backbone's frozen lower layers: one `[tokens, dim]` block
//! per prepared sample (in `samples.jsonl` order), computed once per run so that a training
//! step runs only the layers that learn. Kept in memory; the blocks are as long as the
//! batcher's token rows for the sample (at least one: a movie without a plot keeps its first
//! position).

/// The states entering layer `from_layer` for every sample.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenStates {
    pub from_layer: usize,
    pub dim: usize,
    /// Row offsets: sample `i`'s tokens are rows `offsets[i]..offsets[i + 1]`.
    offsets: Vec<usize>,
    values: Vec<f32>,
}

impl TokenStates {
    pub fn new(from_layer: usize, dim: usize) -> Self {
        assert!(dim > 0, "states of at least one value");
        Self {
            from_layer,
            dim,
            offsets: vec![0],
            values: Vec::new(),
        }
    }

    /// Appends the next sample's block (`tokens × dim` values).
    pub fn push(&mut self, block: &[f32]) {
        assert!(
            block.len().is_multiple_of(self.dim),
            "rows of {} values",
            self.dim
        );
        self.values.extend_from_slice(block);
        self.offsets.push(self.values.len() / self.dim);
    }

    pub fn samples(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Sample `i`'s block, `tokens × dim` values.
    pub fn block(&self, i: usize) -> &[f32] {
        &self.values[self.offsets[i] * self.dim..self.offsets[i + 1] * self.dim]
    }

    /// Memory held by the values.
    pub fn bytes(&self) -> usize {
        self.values.len() * std::mem::size_of::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_come_back_in_order_with_their_lengths() {
        let mut s = TokenStates::new(4, 2);
        s.push(&[1.0, 2.0, 3.0, 4.0]);
        s.push(&[5.0, 6.0]);
        s.push(&[]);
        assert_eq!(s.samples(), 3);
        assert_eq!(s.block(0), [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.block(1), [5.0, 6.0]);
        assert!(s.block(2).is_empty());
        assert_eq!(s.bytes(), 24);
    }

    #[test]
    #[should_panic(expected = "rows of 2 values")]
    fn a_ragged_block_is_refused() {
        TokenStates::new(4, 2).push(&[1.0, 2.0, 3.0]);
    }
}

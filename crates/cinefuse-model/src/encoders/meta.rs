//! Metadata encoder: scaled numeric features with their missing indicators, plus one
//! embedding per categorical field (certificate, director, …) → MLP.

use burn::config::Config;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::prelude::*;
use cinefuse_data::MovieBatch;

use crate::cpu_kernels::{dropout, gelu};
use crate::encoders::{Encoded, ModalityEncoder};
use crate::linear_skip::skip_block;
use crate::size_limits::{MAX_WIDTH, check_size};

#[derive(Config, Debug)]
pub struct MetaEncoderConfig {
    #[config(default = 128)]
    pub hidden: usize,
    /// Size of each categorical embedding.
    #[config(default = 8)]
    pub cat_dim: usize,
    #[config(default = 0.1)]
    pub dropout: f64,
}

impl MetaEncoderConfig {
    pub fn validate(&self) -> Result<(), String> {
        check_size("model.meta.hidden", self.hidden, MAX_WIDTH)?;
        check_size("model.meta.cat_dim", self.cat_dim, MAX_WIDTH)?;
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "model.meta.dropout = {}: expected [0, 1)",
                self.dropout
            ));
        }
        Ok(())
    }

    /// `categorical_dims[i]` is the embedding size of categorical input `i`; 0 or absent means
    /// `cat_dim`.
    pub fn init(
        &self,
        n_numeric: usize,
        categorical_sizes: &[usize],
        categorical_dims: &[usize],
        embed_dim: usize,
        device: &Device,
    ) -> MetaEncoder {
        let dim = |i: usize| match categorical_dims.get(i) {
            Some(d) if *d > 0 => *d,
            _ => self.cat_dim,
        };
        let d_in = 2 * n_numeric + (0..categorical_sizes.len()).map(dim).sum::<usize>();
        MetaEncoder {
            embeddings: categorical_sizes
                .iter()
                .enumerate()
                .map(|(i, n)| EmbeddingConfig::new((*n).max(1), dim(i)).init(device))
                .collect(),
            fc1: LinearConfig::new(d_in.max(1), self.hidden).init(device),
            norm: LayerNormConfig::new(self.hidden).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            fc2: LinearConfig::new(self.hidden, embed_dim).init(device),
        }
    }
}

#[derive(Module, Debug)]
pub struct MetaEncoder {
    embeddings: Vec<Embedding>,
    fc1: Linear,
    norm: LayerNorm,
    dropout: Dropout,
    fc2: Linear,
}

impl MetaEncoder {
    pub fn forward(
        &self,
        numeric: Tensor<2>,
        missing: Tensor<2>,
        categorical: Tensor<2, Int>,
    ) -> Tensor<2> {
        self.forward_with_input(numeric, missing, categorical).0
    }

    /// The embedding and the MLP's input (scaled numbers, missing flags, category embeddings).
    fn forward_with_input(
        &self,
        numeric: Tensor<2>,
        missing: Tensor<2>,
        categorical: Tensor<2, Int>,
    ) -> (Tensor<2>, Tensor<2>) {
        let [b, _] = numeric.dims();
        let mut parts = vec![numeric, missing];
        for (i, emb) in self.embeddings.iter().enumerate() {
            let ids = categorical.clone().slice([0..b, i..i + 1]);
            parts.push(emb.forward(ids).squeeze_dim::<2>(1));
        }
        let x = Tensor::cat(parts, 1);
        let h = dropout(
            &self.dropout,
            gelu(self.norm.forward(self.fc1.forward(x.clone()))),
        );
        (gelu(self.fc2.forward(h)), x)
    }
}

impl ModalityEncoder for MetaEncoder {
    /// The skip features are the MLP's input: its columns are already on a common scale.
    fn encode(&self, batch: &MovieBatch, with_skip: bool) -> Encoded {
        let (embedding, input) = self.forward_with_input(
            batch.numeric.clone(),
            batch.numeric_missing.clone(),
            batch.categorical.clone(),
        );
        Encoded {
            embedding,
            skip: with_skip.then(|| skip_block(input)),
        }
    }

    /// `lazy_shape`: reading the shape must not draw the weight (that would change the
    /// order of a seed's draws, see `CinefuseModel::initialize_in_seed_order`).
    fn skip_dim(&self) -> usize {
        self.fc1.weight.lazy_shape()[0]
    }

    /// Metadata is always present: missing fields are encoded by the indicators.
    fn present(&self, batch: &MovieBatch) -> Tensor<1> {
        batch.poster_present.ones_like()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Burn draws a parameter when it is first read; the model sizes its linear skip before
    /// drawing anything, so reading the width must not draw (that changed every seed's weights).
    #[test]
    fn the_skip_width_is_read_without_drawing_the_weights() {
        let m = MetaEncoderConfig::new().init(3, &[5, 7], &[], 16, &Device::flex());
        assert_eq!(m.skip_dim(), 2 * 3 + 2 * 8);
        assert!(!m.fc1.weight.is_initialized());
    }
}

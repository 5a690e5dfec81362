//! Fusion of modality embeddings. Every method masks missing modalities so that they
//! contribute nothing (not zeros-as-data).

pub mod attention;
pub mod concat;
pub mod gmu;
pub mod late;

use burn::config::Config;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::head::OutputHead;
use crate::size_limits::{MAX_LAYERS, MAX_WIDTH, check_size};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FusionKind {
    /// Per-modality predictions combined with learned weights.
    Late,
    /// Concatenated (masked) embeddings → MLP.
    Concat,
    /// Gated multimodal unit (Arevalo et al., 2017).
    Gmu,
    /// Modality embeddings as tokens through a small transformer.
    Attention,
}

#[derive(Config, Debug)]
pub struct FusionConfig {
    #[config(default = "FusionKind::Gmu")]
    pub kind: FusionKind,
    #[config(default = 128)]
    pub hidden: usize,
    #[config(default = 4)]
    pub n_heads: usize,
    #[config(default = 1)]
    pub n_layers: usize,
    #[config(default = 0.1)]
    pub dropout: f64,
}

impl FusionConfig {
    pub fn validate(&self) -> Result<(), String> {
        check_size("model.fusion.hidden", self.hidden, MAX_WIDTH)?;
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "model.fusion.dropout = {}: expected [0, 1)",
                self.dropout
            ));
        }
        if self.kind == FusionKind::Attention {
            check_size("model.fusion.n_heads", self.n_heads, MAX_LAYERS)?;
            check_size("model.fusion.n_layers", self.n_layers, MAX_LAYERS)?;
        }
        Ok(())
    }
}

/// Inputs to a fusion module: per-modality embeddings `[B, D]`, presence `[B]` and the
/// per-modality head outputs (used by late fusion).
pub struct FusionInput {
    pub embeddings: Vec<Tensor<2>>,
    pub present: Vec<Tensor<1>>,
    pub genre_logits: Vec<Tensor<2>>,
    pub ratings: Vec<Tensor<1>>,
}

/// Fused predictions, plus per-modality weights `[B, M]` where the method has them.
pub struct FusionOutput {
    pub genre_logits: Tensor<2>,
    pub rating: Tensor<1>,
    pub weights: Option<Tensor<2>>,
}

/// Softmax over modalities restricted to the present ones: `logits [B, M]`, `present [B, M]`.
/// A row with no modality present gets zeros. The fill value must stay finite in f16 (largest
/// 65504): -inf everywhere in a row would make its softmax NaN, and NaN × 0 is NaN.
pub fn masked_softmax(logits: Tensor<2>, present: Tensor<2>) -> Tensor<2> {
    let masked = logits.mask_fill(present.clone().equal_elem(0.0), -1.0e4);
    burn::tensor::activation::softmax(masked, 1) * present
}

/// Stacks `[B]` presence vectors into `[B, M]`.
pub fn stack_present(present: &[Tensor<1>]) -> Tensor<2> {
    Tensor::stack(present.to_vec(), 1)
}

/// The selected fusion method (exactly one field is set).
#[derive(Module, Debug)]
pub struct Fusion {
    late: Option<late::LateFusion>,
    concat: Option<concat::ConcatFusion>,
    gmu: Option<gmu::GmuFusion>,
    attention: Option<attention::AttentionFusion>,
}

impl Fusion {
    pub fn new(
        c: &FusionConfig,
        n_modalities: usize,
        embed_dim: usize,
        n_genres: usize,
        device: &Device,
    ) -> Self {
        let head = || OutputHead::new(c.hidden, n_genres, c.dropout, device);
        let mut f = Fusion {
            late: None,
            concat: None,
            gmu: None,
            attention: None,
        };
        match c.kind {
            FusionKind::Late => f.late = Some(late::LateFusion::new(n_modalities, device)),
            FusionKind::Concat => {
                f.concat = Some(concat::ConcatFusion::new(
                    c,
                    n_modalities,
                    embed_dim,
                    head(),
                    device,
                ))
            }
            FusionKind::Gmu => {
                f.gmu = Some(gmu::GmuFusion::new(
                    c,
                    n_modalities,
                    embed_dim,
                    head(),
                    device,
                ))
            }
            FusionKind::Attention => {
                f.attention = Some(attention::AttentionFusion::new(
                    c,
                    n_modalities,
                    embed_dim,
                    head(),
                    device,
                ))
            }
        }
        f
    }

    pub fn forward(&self, input: FusionInput) -> FusionOutput {
        if let Some(m) = &self.late {
            m.forward(input)
        } else if let Some(m) = &self.concat {
            m.forward(input)
        } else if let Some(m) = &self.gmu {
            m.forward(input)
        } else if let Some(m) = &self.attention {
            m.forward(input)
        } else {
            unreachable!("Fusion is built with one method")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::FloatDType;

    /// In f32 and in half precision alike: absent modalities get weight 0, and a row with
    /// none present gets zeros rather than NaN.
    #[test]
    fn masked_softmax_zeroes_absent_modalities_in_every_precision() {
        let device = Device::flex();
        for dtype in [FloatDType::F32, FloatDType::F16, FloatDType::BF16] {
            let logits = Tensor::<2>::from_data([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]], &device);
            let present = Tensor::<2>::from_data([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]], &device);
            let w = masked_softmax(logits.cast(dtype), present.cast(dtype))
                .cast(FloatDType::F32)
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap();
            let e = (-2f32).exp();
            let expected = [e / (1.0 + e), 0.0, 1.0 / (1.0 + e), 0.0, 0.0, 0.0];
            for (got, want) in w.iter().zip(expected) {
                assert!((got - want).abs() < 1e-2, "{dtype:?}: {w:?}");
            }
        }
    }
}

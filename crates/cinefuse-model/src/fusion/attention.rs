//! Attention fusion: a learned `[FUSE]` token and one token per modality (embedding + a
//! learned modality-type vector) go through a small transformer whose padding mask hides the
//! missing modalities; the `[FUSE]` token's output feeds the head.

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use super::{FusionConfig, FusionInput, FusionOutput, stack_present};
use crate::head::OutputHead;
use crate::transformer_layer::EncoderStack;

#[derive(Module, Debug)]
pub struct AttentionFusion {
    input: Linear,
    fuse_token: Param<Tensor<1>>,
    modality_type: Param<Tensor<2>>,
    encoder: EncoderStack,
    head: OutputHead,
}

impl AttentionFusion {
    pub fn new(
        c: &FusionConfig,
        n_modalities: usize,
        embed_dim: usize,
        head: OutputHead,
        device: &Device,
    ) -> Self {
        let mut heads = c.n_heads.max(1);
        while !c.hidden.is_multiple_of(heads) {
            heads -= 1;
        }
        Self {
            input: LinearConfig::new(embed_dim, c.hidden).init(device),
            fuse_token: Param::from_tensor(Tensor::random(
                [c.hidden],
                burn::tensor::Distribution::Normal(0.0, 0.02),
                device,
            )),
            modality_type: Param::from_tensor(Tensor::random(
                [n_modalities, c.hidden],
                burn::tensor::Distribution::Normal(0.0, 0.02),
                device,
            )),
            encoder: EncoderStack::new(
                c.n_layers,
                c.hidden,
                2 * c.hidden,
                heads,
                c.dropout,
                device,
            ),
            head,
        }
    }

    pub fn forward(&self, input: FusionInput) -> FusionOutput {
        let present = stack_present(&input.present); // [B, M]
        let [b, _] = present.dims();
        let hidden = self.fuse_token.val().dims()[0];
        let mut tokens = vec![
            self.fuse_token
                .val()
                .unsqueeze_dim::<2>(0)
                .expand([b, hidden]),
        ];
        for (i, (e, p)) in input.embeddings.into_iter().zip(&input.present).enumerate() {
            let t = self.input.forward(e) + self.modality_type.val().slice([i..i + 1, 0..hidden]);
            // Zeroed as well as masked: the missing token carries no data at all.
            tokens.push(t * p.clone().unsqueeze_dim::<2>(1));
        }
        let x: Tensor<3> = Tensor::stack(tokens, 1); // [B, 1+M, H]
        let device = x.device();
        let keep = Tensor::cat(vec![Tensor::<2>::ones([b, 1], &device), present], 1);
        let h = self.encoder.forward(x, keep.equal_elem(0.0));
        let fused = h.slice([0..b, 0..1, 0..hidden]).squeeze_dim::<2>(1);
        let (genre_logits, rating) = self.head.forward(fused);
        FusionOutput {
            genre_logits,
            rating,
            weights: None,
        }
    }
}

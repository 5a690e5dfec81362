//! What an MPNet checkpoint (`"model_type": "mpnet"`, e.g. sentence-transformers'
//! all-mpnet-base-v2) adds to the BERT layout that `bert.rs` builds: a learned bias on the
//! attention scores by bucketed relative distance, shared by every layer; positions that start
//! after the padding id; no segment embeddings; and its own tensor names.

use burn::nn::{Embedding, EmbeddingConfig};
use burn::prelude::*;

/// MPNet's longest distance with buckets of its own; farther ones share the last bucket.
const MAX_DISTANCE: f32 = 128.0;

/// Hugging Face MPNet names → `Bert`'s field paths, with `bert::FEED_FORWARD_KEY_MAP` (the
/// same names) after them. A leading `mpnet.` (task-head checkpoints) is dropped.
pub const MPNET_KEY_MAP: &[(&str, &str)] = &[
    (r"^mpnet\.", ""),
    (r"^embeddings\.word_embeddings\.", "embeddings.word."),
    (
        r"^embeddings\.position_embeddings\.",
        "embeddings.position.",
    ),
    (r"^embeddings\.LayerNorm\.", "embeddings.norm."),
    (r"^encoder\.relative_attention_bias\.", "relative_bias."),
    (
        r"^encoder\.layer\.(\d+)\.attention\.attn\.q\.",
        "layers.$1.query.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.attention\.attn\.k\.",
        "layers.$1.key.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.attention\.attn\.v\.",
        "layers.$1.value.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.attention\.attn\.o\.",
        "layers.$1.attention_out.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.attention\.LayerNorm\.",
        "layers.$1.attention_norm.",
    ),
];

/// Checkpoint tensors a sentence encoder does not use.
pub const MPNET_IGNORED: &[&str] = &[r"^(mpnet\.)?pooler\.", r"position_ids$", r"^lm_head\."];

/// Model tensors an MPNet checkpoint has no counterpart for: the segment embedding `Bert`
/// keeps for BERT checkpoints (zeros, and never added for MPNet).
pub const MPNET_ABSENT: &[&str] = &[r"^embeddings\.token_type\."];

/// The bucket of each relative distance `key - query` (`[len * len]`, row-major by query), as
/// MPNet (and T5, bidirectionally) buckets it: half the buckets for keys after the query, half
/// for keys before; within each half, exact distances below a quarter of the buckets, then
/// logarithmically wider ones up to `MAX_DISTANCE`.
pub fn relative_buckets(len: usize, num_buckets: usize) -> Vec<i64> {
    let half = (num_buckets / 2) as i64;
    let exact = half / 2;
    let mut out = Vec::with_capacity(len * len);
    for query in 0..len as i64 {
        for key in 0..len as i64 {
            let n = query - key;
            let side = if n < 0 { half } else { 0 };
            let n = n.abs();
            let bucket = if n < exact {
                n
            } else {
                // In f32, as the reference computes it, so distances on a bucket's edge agree.
                let wider = (n as f32 / exact as f32).ln() / (MAX_DISTANCE / exact as f32).ln()
                    * (half - exact) as f32;
                (exact + wider as i64).min(half - 1)
            };
            out.push(side + bucket);
        }
    }
    out
}

/// The learned bias table: one score per bucket and head.
pub fn relative_bias_table(num_buckets: usize, heads: usize, device: &Device) -> Embedding {
    EmbeddingConfig::new(num_buckets, heads).init(device)
}

/// The bias added to every layer's attention scores, `[1, heads, len, len]`.
pub fn relative_bias(table: &Embedding, len: usize, device: &Device) -> Tensor<4> {
    let [num_buckets, heads] = table.weight.dims();
    let ids = Tensor::<2, Int>::from_data(
        TensorData::new(relative_buckets(len, num_buckets), [1, len * len]),
        device,
    );
    table
        .forward(ids)
        .reshape([len, len, heads])
        .permute([2, 0, 1])
        .unsqueeze::<4>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buckets of MPNet's reference (Hugging Face's `relative_position_bucket`, 32 buckets)
    /// for a key 0..140 tokens before the query; a key after it takes the other half.
    #[test]
    fn buckets_match_the_reference_rule() {
        let before: [(usize, i64); 10] = [
            (0, 0),
            (7, 7),
            (8, 8),
            (12, 9),
            (16, 10),
            (23, 11),
            (32, 12),
            (46, 13),
            (64, 14),
            (91, 15),
        ];
        let b = relative_buckets(140, 32);
        for n in 0..140 {
            let want = before.iter().rev().find(|(from, _)| n >= *from).unwrap().1;
            let want = if n < 8 { n as i64 } else { want };
            assert_eq!(b[n * 140], want, "a key {n} before the query");
            let after = if n == 0 { 0 } else { 16 + want };
            assert_eq!(b[n], after, "a key {n} after the query");
        }
    }
}

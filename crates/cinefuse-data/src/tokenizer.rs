//! Plot tokenization: a subword tokenizer trained on the training plots with the `tokenizers`
//! crate and saved as `tokenizer.json`, plus truncation and the `[CLS]` prefix used for pooling.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::models::wordlevel::{WordLevel, WordLevelTrainer};
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainer};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::{AddedToken, Tokenizer};

use crate::DataError;

pub const PAD: &str = "[PAD]";
pub const UNK: &str = "[UNK]";
pub const CLS: &str = "[CLS]";
/// Special tokens get the first ids in this order, so `[PAD]` is always 0.
pub const SPECIAL_TOKENS: [&str; 3] = [PAD, UNK, CLS];
pub const PAD_ID: u32 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerKind {
    /// WordPiece subwords (BERT-style).
    Wordpiece,
    /// Byte-pair encoding subwords.
    Bpe,
    /// Whole words only. Its training is fully deterministic, unlike WordPiece/BPE in the
    /// `tokenizers` crate (which break frequency ties in hash-map order).
    Wordlevel,
    /// A pretrained checkpoint's own `tokenizer.json` (`data.preprocess.tokenizer_path`).
    Pretrained,
}

/// Trains a tokenizer on the given texts.
pub fn train_tokenizer(
    kind: TokenizerKind,
    texts: &[&str],
    vocab_size: usize,
    min_frequency: u64,
) -> Result<Tokenizer, DataError> {
    let (model, mut trainer) = untrained_model(kind, vocab_size, min_frequency)?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_normalizer(Some(BertNormalizer::new(true, false, Some(true), true)));
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer
        .train(&mut trainer, texts.iter())
        .map_err(training_failed)?;
    for (expected, tok) in SPECIAL_TOKENS.iter().enumerate() {
        if tokenizer.token_to_id(tok) != Some(expected as u32) {
            return Err(DataError::Invalid(format!(
                "tokenizer did not place {tok} at id {expected}"
            )));
        }
    }
    Ok(tokenizer)
}

fn training_failed(e: Box<dyn std::error::Error + Send + Sync>) -> DataError {
    DataError::Invalid(format!("tokenizer training failed: {e}"))
}

/// The empty model of `kind` and the trainer that fills it, the special tokens first.
fn untrained_model(
    kind: TokenizerKind,
    vocab_size: usize,
    min_frequency: u64,
) -> Result<(ModelWrapper, TrainerWrapper), DataError> {
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect();
    Ok(match kind {
        TokenizerKind::Wordpiece => (
            WordPiece::builder()
                .unk_token(UNK.into())
                .build()
                .map_err(training_failed)?
                .into(),
            WordPieceTrainer::builder()
                .vocab_size(vocab_size)
                .min_frequency(min_frequency)
                .special_tokens(specials)
                .show_progress(false)
                .build()
                .into(),
        ),
        TokenizerKind::Bpe => (
            BPE::builder()
                .unk_token(UNK.into())
                .build()
                .map_err(training_failed)?
                .into(),
            BpeTrainer::builder()
                .vocab_size(vocab_size)
                .min_frequency(min_frequency)
                .special_tokens(specials)
                .show_progress(false)
                .build()
                .into(),
        ),
        TokenizerKind::Pretrained => {
            return Err(DataError::Invalid(
                "a pretrained tokenizer is loaded, not trained (pretrained_tokenizer)".into(),
            ));
        }
        TokenizerKind::Wordlevel => (
            WordLevel::builder()
                .unk_token(UNK.into())
                .build()
                .map_err(training_failed)?
                .into(),
            WordLevelTrainer::builder()
                .vocab_size(vocab_size)
                .min_frequency(min_frequency)
                .special_tokens(specials)
                .show_progress(false)
                .build()
                .map_err(|e| DataError::Invalid(format!("tokenizer trainer: {e}")))?
                .into(),
        ),
    })
}

pub fn save_tokenizer(tokenizer: &Tokenizer, path: &Path) -> Result<(), DataError> {
    let json = tokenizer
        .to_string(true)
        .map_err(|e| DataError::file(path, format!("cannot serialize tokenizer: {e}")))?;
    crate::atomic::write_atomic(path, json.as_bytes())
}

/// A `tokenizer.json`: a regular file (a FIFO or device named as one is refused, not read),
/// at most `MAX_TOKENIZER_BYTES`.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer, DataError> {
    let bytes = crate::user_file::read_capped(path, crate::user_file::MAX_TOKENIZER_BYTES)?;
    Tokenizer::from_bytes(bytes)
        .map_err(|e| DataError::file(path, format!("cannot load tokenizer: {e}")))
}

/// Loads a checkpoint's tokenizer (a folder with `tokenizer.json`, or the file itself) for
/// plots: its own special tokens and template (`[CLS] … [SEP]`, `<s> … </s>`), truncated to
/// `max_len` ids, no padding. Batches pad with id 0 whatever the tokenizer's padding id
/// (MPNet's `<pad>` is 1) and mask the padding by each plot's length, so no encoder reads a
/// padded position.
pub fn pretrained_tokenizer(path: &Path, max_len: usize) -> Result<Tokenizer, DataError> {
    let file = if path.is_dir() {
        path.join("tokenizer.json")
    } else {
        path.to_path_buf()
    };
    let mut tokenizer = load_tokenizer(&file)?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: max_len,
            ..Default::default()
        }))
        .map_err(|e| DataError::file(&file, format!("cannot set truncation: {e}")))?;
    Ok(tokenizer)
}

/// The longest plot text read, in bytes: far more than any model's `max_tokens` covers
/// (tokens are a few bytes each), and a bound on what tokenizing a huge plot costs.
pub const MAX_PLOT_BYTES: usize = 64 * 1024;

/// `text` cut to at most `MAX_PLOT_BYTES` bytes, at a character boundary.
pub fn bounded_plot(text: &str) -> &str {
    if text.len() <= MAX_PLOT_BYTES {
        return text;
    }
    let mut end = MAX_PLOT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Encodes a plot: with a pretrained tokenizer (one with a post-processor), as it was trained,
/// e.g. `[CLS] tokens… [SEP]`; otherwise `[CLS] tokens…`. At most `max_len` ids in total.
pub fn encode_plot(
    tokenizer: &Tokenizer,
    text: &str,
    max_len: usize,
) -> Result<Vec<u32>, DataError> {
    let text = bounded_plot(text);
    if tokenizer.get_post_processor().is_some() {
        let enc = tokenizer
            .encode(text, true)
            .map_err(|e| DataError::Invalid(format!("cannot tokenize plot: {e}")))?;
        return Ok(enc.get_ids().iter().copied().take(max_len).collect());
    }
    let enc = tokenizer
        .encode(text, false)
        .map_err(|e| DataError::Invalid(format!("cannot tokenize plot: {e}")))?;
    let cls = tokenizer.token_to_id(CLS).unwrap_or(2);
    let mut ids = Vec::with_capacity(max_len);
    ids.push(cls);
    ids.extend(enc.get_ids().iter().take(max_len.saturating_sub(1)));
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<&'static str> {
        vec![
            "A lonely robot explores a distant planet.",
            "Two lovers meet in Paris and fall in love.",
            "A detective hunts a killer through the rainy city.",
            "The robot and the detective meet on the planet.",
        ]
    }

    /// A checkpoint's `tokenizer.json` that is a device is refused by name, not read forever.
    #[cfg(unix)]
    #[test]
    fn a_tokenizer_file_that_is_a_device_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("tokenizer.json")).unwrap();
        let e = pretrained_tokenizer(dir.path(), 16)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tokenizer.json") && e.contains("not a regular file"),
            "{e}"
        );
    }

    #[test]
    fn every_kind_trains_saves_loads_and_encodes() {
        let dir = tempfile::tempdir().unwrap();
        for kind in [
            TokenizerKind::Wordpiece,
            TokenizerKind::Bpe,
            TokenizerKind::Wordlevel,
        ] {
            let tok = train_tokenizer(kind, &corpus(), 200, 1).unwrap();
            let path = dir.path().join(format!("{kind:?}.json"));
            save_tokenizer(&tok, &path).unwrap();
            let back = load_tokenizer(&path).unwrap();
            let a = encode_plot(&tok, "The robot meets a detective.", 16).unwrap();
            let b = encode_plot(&back, "The robot meets a detective.", 16).unwrap();
            assert_eq!(a, b, "{kind:?} round trip");
            assert_eq!(a[0], back.token_to_id(CLS).unwrap());
            assert!(a.len() > 3 && a.len() <= 16);
            assert!(a.iter().all(|id| *id != PAD_ID), "no padding inside a plot");
            let short = encode_plot(&tok, "robot robot robot robot robot", 3).unwrap();
            assert_eq!(short.len(), 3, "truncation");
        }
    }

    /// Known words keep their own ids (never `[UNK]`) and decode back to the text; a word the
    /// corpus never had is the only `[UNK]`.
    #[test]
    fn known_words_decode_back_and_only_unknown_ones_are_unk() {
        let text = "the robot and the detective meet on the planet";
        for kind in [
            TokenizerKind::Wordpiece,
            TokenizerKind::Bpe,
            TokenizerKind::Wordlevel,
        ] {
            let tok = train_tokenizer(kind, &corpus(), 200, 1).unwrap();
            let unk = tok.token_to_id(UNK).unwrap();
            let ids = encode_plot(&tok, text, 64).unwrap();
            assert!(
                !ids[1..].contains(&unk),
                "{kind:?}: known words mapped to UNK: {ids:?}"
            );
            let decoded = tok.decode(&ids[1..], true).unwrap();
            let squeezed = |s: &str| s.replace("##", "").replace(' ', "").to_lowercase();
            assert_eq!(squeezed(&decoded), squeezed(text), "{kind:?}: {decoded:?}");
            if kind == TokenizerKind::Wordlevel {
                let ids = encode_plot(&tok, "the zeppelin", 8).unwrap();
                assert_eq!(ids[2], unk, "an unseen word is UNK");
                assert_ne!(ids[1], unk);
            }
        }
    }

    #[test]
    fn huge_plots_are_cut_at_a_character_boundary_before_tokenizing() {
        let huge = "é".repeat(MAX_PLOT_BYTES);
        let cut = bounded_plot(&huge);
        assert!(cut.len() <= MAX_PLOT_BYTES && cut.len() > MAX_PLOT_BYTES - 2);
        assert_eq!(bounded_plot("short"), "short");
        let tok = train_tokenizer(TokenizerKind::Wordlevel, &corpus(), 64, 1).unwrap();
        let ids = encode_plot(&tok, &"robot ".repeat(2_000_000), 16).unwrap();
        assert_eq!(ids.len(), 16);
    }

    #[test]
    fn wordlevel_training_is_deterministic() {
        let a = train_tokenizer(TokenizerKind::Wordlevel, &corpus(), 200, 1).unwrap();
        let b = train_tokenizer(TokenizerKind::Wordlevel, &corpus(), 200, 1).unwrap();
        assert_eq!(a.to_string(false).unwrap(), b.to_string(false).unwrap());
    }
}

//! Pretrained backbones loaded from real checkpoints, a BERT-family text encoder (Hugging Face
//! folders) and EfficientNet-Lite0 (ImageNet), with the loader that maps, checks and applies
//! their tensors; and the one encoder built on any of them (`PretrainedEncoder`: backbone,
//! then a trainable adapter), with its tuning settings.

pub mod adapter;
pub mod backbone;
pub mod bert;
pub mod efficientnet;
pub mod encoder;
pub mod file_digest;
pub mod frozen_part;
pub mod load;
pub mod mpnet;
pub mod portable_file;
#[doc(hidden)]
pub mod testing;
pub mod tuning;

pub use backbone::Backbone;
pub use bert::{Bert, BertConfig};
pub use efficientnet::EfficientNetLite;
pub use encoder::PretrainedEncoder;
pub use load::PretrainedError;
pub use tuning::Tuning;

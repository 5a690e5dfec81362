//! Pretrained backbones loaded from real checkpoints: a BERT-family text encoder (Hugging Face
//! folders) and EfficientNet-Lite0 (ImageNet), with the loader that maps, checks and applies
//! their tensors.

pub mod bert;
pub mod efficientnet;
pub mod load;
#[doc(hidden)]
pub mod testing;

pub use bert::{Bert, BertConfig};
pub use efficientnet::EfficientNetLite;
pub use load::PretrainedError;

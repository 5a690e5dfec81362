//! Models of cinefuse, written against Burn 0.22 (no backend type parameter: the device is
//! chosen at run time). Each modality has an encoder and its own head, so it trains and
//! evaluates alone; a fusion module combines the modalities into the final genre and rating
//! outputs.

pub mod adapter;
pub mod config;
pub mod cpu_kernels;
pub mod encoder;
pub mod fusion;
pub mod head;
pub mod loss;
pub mod meta;
pub mod model;
pub mod poster;
pub mod poster_efficientnet;
pub mod pretrained;
pub mod pretrained_config;
pub mod text;
pub mod text_bag;
pub mod text_bert;
pub mod text_cnn;
pub mod text_ngram;
pub mod text_transformer;
pub mod transformer_layer;

pub use config::{Modality, ModelConfig, ModelShapes, TextBackbone};
pub use loss::{LossConfig, LossParts, LossRows, LossTargets, RatingLoss};
pub use model::{CinefuseModel, ModelOutput};

//! Models of cinefuse, written against Burn 0.22 (no backend type parameter: the device is
//! chosen at run time). Each modality is a `Branch`, an encoder with its own head, so it trains
//! and evaluates alone; a fusion module combines the branches into the final genre and rating
//! outputs.
//!
//! - `encoders/`: the poster, plot and metadata encoders (`PosterEncoder`, `TextEncoder`
//!   enums, one variant per kind)
//! - `pretrained/`: BERT and EfficientNet-Lite0 with their checkpoint loader, and the one
//!   encoder built on any pretrained backbone
//! - `branch`, `head`, `fusion/`, `model`: how the parts make one model
//! - `size_limits`: the largest sizes a config or saved model may ask for
//! - `loss`: the training losses; `cpu_kernels`, `transformer_layer`: building blocks

pub mod branch;
pub mod config;
pub mod cpu_kernels;
pub mod encoders;
pub mod fusion;
pub mod head;
pub mod linear_skip;
pub mod loss;
pub mod model;
pub mod pretrained;
pub mod size_limits;
pub mod tensor_names;
pub mod transformer_layer;

pub use config::{Modality, ModelConfig, ModelShapes, TextBackbone};
pub use loss::{LossConfig, LossParts, LossRows, LossTargets, RatingLoss};
pub use model::{CinefuseModel, ModelOutput};

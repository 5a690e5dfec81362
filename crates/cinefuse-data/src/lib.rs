//! Data layer of cinefuse: the on-disk dataset format, the synthetic demo generator,
//! preprocessing fitted on the training split, the poster cache and Burn batching.

pub mod absent_fields;
pub mod atomic;
pub mod batch;
pub mod dataset;
pub mod error;
pub mod extra;
pub mod feature_cache;
pub mod import;
pub mod movie;
pub mod output_dir;
pub mod output_lock;
pub mod paths;
pub mod poster_cache;
pub mod poster_states;
pub mod prepare;
pub mod prepared;
pub mod scalers;
pub mod split;
pub mod staging;
pub mod synth;
pub mod token_states;
pub mod tokenizer;
pub mod user_file;
pub mod validate;
pub mod vocab;

pub use batch::{MovieBatch, MovieBatcher};
pub use dataset::{MovieDataset, MovieItem};
pub use error::DataError;
pub use movie::Movie;
pub use prepare::{PrepareConfig, prepare_dataset};
pub use prepared::Prepared;

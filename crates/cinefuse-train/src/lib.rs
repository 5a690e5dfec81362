//! Config-driven training, evaluation, export and prediction for cinefuse.

pub mod backbone_features;
pub mod backend;
pub mod bag;
pub mod bench;
pub mod bench_backbones;
pub mod blend;
pub mod blend_train;
pub mod blend_weights;
pub mod config;
pub mod data_setup;
pub mod ensemble;
pub mod evaluate;
pub mod export;
pub mod genre_stacking;
pub mod input_fields;
pub mod interval;
pub mod metadata_neighbours;
pub mod metrics;
pub mod model_card;
pub mod neighbour_vote;
pub mod oof;
pub mod plot_neighbours;
pub mod portable;
pub mod predictions;
pub mod predictor;
pub mod rating_trees;
pub mod run_dir;
pub mod schedule;
pub mod sweep;
pub mod sweep_table;
pub mod tensorboard;
pub mod thresholds;
pub mod trainer;
pub mod tree_forest;

pub use config::TrainConfig;
pub use trainer::{RunSummary, TrainOptions, train};

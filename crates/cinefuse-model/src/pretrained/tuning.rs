//! Settings shared by the pretrained poster and plot encoders (`[model.poster]` /
//! `[model.text]` with `pretrained = "DIR"`).

use std::path::Path;

/// How a backbone is trained on top of: frozen (features computed once and cached), or
/// fine-tuned with a smaller learning rate and optionally only its last layers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    pub freeze: bool,
    /// Backbone learning rate relative to the rest of the model.
    pub lr_scale: f64,
    /// Fine-tune only the last N layers (BERT layers or EfficientNet blocks); all when `None`.
    pub trainable_layers: Option<usize>,
    /// Each layer's rate relative to the layer above (layer-wise learning-rate decay).
    pub layer_decay: f64,
}

/// Checks the shared keys of one `[model.X]` section.
pub fn validate_tuning(
    section: &str,
    pretrained: Option<&Path>,
    tuning: &Tuning,
    feature_dropout: f64,
) -> Result<(), String> {
    if pretrained.is_none() {
        return Err(format!(
            "model.{section}.pretrained: this encoder kind needs a checkpoint folder \
             (e.g. from scripts/fetch_pretrained.sh)"
        ));
    }
    if !(tuning.lr_scale > 0.0 && tuning.lr_scale <= 10.0) {
        return Err(format!(
            "model.{section}.lr_scale = {}: expected a factor in (0, 10]",
            tuning.lr_scale
        ));
    }
    if !(tuning.layer_decay > 0.0 && tuning.layer_decay <= 1.0) {
        return Err(format!(
            "model.{section}.layer_decay = {}: expected a factor in (0, 1]",
            tuning.layer_decay
        ));
    }
    if !(0.0..1.0).contains(&feature_dropout) {
        return Err(format!(
            "model.{section}.feature_dropout = {feature_dropout}: expected [0, 1)"
        ));
    }
    Ok(())
}

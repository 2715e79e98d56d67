//! Per-layer choice of attention for a whole model: what model configs and calibration share.

use burn::config::Config;

use crate::{AttentionKind, DistrAttentionConfig, DistrAttentionError};

/// Which attention each layer of a model uses.
///
/// Resolution order for layer `i`: an explicit entry in `per_layer`, else exact attention for
/// `i < exact_first_layers`, else `default`.
#[derive(Config, Debug, PartialEq)]
pub struct ModelAttentionConfig {
    /// Attention of every layer not covered by the other fields. Default: `Exact`.
    #[config(default = "AttentionKind::Exact")]
    pub default: AttentionKind,
    /// Number of leading layers kept exact (early layers are the most sensitive). Default: 0.
    #[config(default = 0)]
    pub exact_first_layers: usize,
    /// Explicit per-layer choices, as written by calibration; when non-empty its length must
    /// equal the model's number of layers. Default: empty.
    #[config(default = "Vec::new()")]
    pub per_layer: Vec<AttentionKind>,
    /// Also use DistrAttention for single-query decode steps, where a query block has one row
    /// and grouping has little to go on. Default: false (decode steps are exact).
    #[config(default = false)]
    pub distr_decode: bool,
}

impl ModelAttentionConfig {
    /// Every layer exact.
    pub fn exact() -> Self {
        Self::new()
    }

    /// Every layer DistrAttention with `config`.
    pub fn distr(config: DistrAttentionConfig) -> Self {
        Self::new().with_default(AttentionKind::Distr(config))
    }

    /// The attention kind of layer `layer` in a model of `num_layers` layers.
    pub fn kind_for_layer(
        &self,
        layer: usize,
        num_layers: usize,
    ) -> Result<AttentionKind, DistrAttentionError> {
        if !self.per_layer.is_empty() && self.per_layer.len() != num_layers {
            return Err(DistrAttentionError::InvalidParameter {
                name: "per_layer",
                value: format!("{} entries", self.per_layer.len()),
                expected: format!("one entry per layer ({num_layers})"),
            });
        }
        if layer >= num_layers {
            return Err(DistrAttentionError::InvalidParameter {
                name: "layer",
                value: layer.to_string(),
                expected: format!("a layer index below {num_layers}"),
            });
        }
        Ok(match self.per_layer.get(layer) {
            Some(kind) => kind.clone(),
            None if layer < self.exact_first_layers => AttentionKind::Exact,
            None => self.default.clone(),
        })
    }

    /// The op configuration for layer `layer`, for a step with `seq_q` query rows: decode
    /// steps (`seq_q == 1`) are exact unless `distr_decode` is set.
    pub fn op_config_for(
        &self,
        layer: usize,
        num_layers: usize,
        seq_q: usize,
    ) -> Result<DistrAttentionConfig, DistrAttentionError> {
        let kind = self.kind_for_layer(layer, num_layers)?;
        Ok(if seq_q == 1 && !self.distr_decode {
            AttentionKind::Exact.op_config()
        } else {
            kind.op_config()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_first_layers_then_default() {
        let plan = ModelAttentionConfig::distr(DistrAttentionConfig::new().with_group_size(4))
            .with_exact_first_layers(2);
        assert_eq!(plan.kind_for_layer(1, 4).unwrap(), AttentionKind::Exact);
        assert_eq!(plan.op_config_for(3, 4, 16).unwrap().group_size, 4);
        assert!(plan.op_config_for(3, 4, 1).unwrap().is_exact());
        assert!(plan.kind_for_layer(4, 4).is_err());
    }

    #[test]
    fn per_layer_overrides_and_length_check() {
        let plan = ModelAttentionConfig::exact().with_per_layer(vec![
            AttentionKind::Distr(DistrAttentionConfig::new()),
            AttentionKind::Exact,
        ]);
        assert_eq!(plan.op_config_for(0, 2, 8).unwrap().group_size, 2);
        assert!(plan.kind_for_layer(0, 3).is_err());
    }

    #[test]
    fn round_trips_through_json() {
        let plan = ModelAttentionConfig::distr(DistrAttentionConfig::new().with_seed(7))
            .with_exact_first_layers(3);
        let json = serde_json::to_string(&plan).unwrap();
        let back: ModelAttentionConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, plan);
    }
}

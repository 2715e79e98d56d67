//! Per-layer choice of attention for a whole model: what model configs and calibration share.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{config_file_error, load_json, write_json};
use crate::{AttentionKind, DistrAttentionConfig, DistrAttentionError, DECODE_QUERY_ROWS};

/// Which attention each layer of a model uses.
///
/// Resolution order for layer `i`: an explicit entry in `per_layer`, else exact attention for
/// `i < exact_first_layers`, else `default`. A file may leave out any field
/// ([`ModelAttentionConfig::load`]).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelAttentionConfig {
    /// Attention of every layer not covered by the other fields. Default: `Exact`.
    pub default: AttentionKind,
    /// Number of leading layers kept exact (early layers are the most sensitive); at most
    /// the model's number of layers. Default: 0.
    pub exact_first_layers: usize,
    /// Explicit per-layer choices, as written by calibration; when non-empty its length must
    /// equal the model's number of layers. Default: empty.
    pub per_layer: Vec<AttentionKind>,
    /// Also use DistrAttention for decode steps (at most [`DECODE_QUERY_ROWS`] query rows),
    /// where a query block has a handful of rows and grouping has little to go on.
    /// Default: false (decode steps are exact).
    pub distr_decode: bool,
}

impl Default for ModelAttentionConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a call with `seq_q` query rows is a decode step: the same bound up to which the
/// CubeCL backends run split-key decode, so that "decode" means one thing for the choice of
/// attention and for the choice of kernel.
pub fn is_decode_step(seq_q: usize) -> bool {
    seq_q <= DECODE_QUERY_ROWS
}

impl ModelAttentionConfig {
    /// Every layer exact.
    pub fn new() -> Self {
        Self {
            default: AttentionKind::Exact,
            exact_first_layers: 0,
            per_layer: Vec::new(),
            distr_decode: false,
        }
    }

    /// Every layer exact.
    pub fn exact() -> Self {
        Self::new()
    }

    /// Every layer DistrAttention with `config`.
    pub fn distr(config: DistrAttentionConfig) -> Self {
        Self::new().with_default(AttentionKind::Distr(config))
    }

    /// Sets `default`.
    pub fn with_default(mut self, default: AttentionKind) -> Self {
        self.default = default;
        self
    }

    /// Sets `exact_first_layers`.
    pub fn with_exact_first_layers(mut self, exact_first_layers: usize) -> Self {
        self.exact_first_layers = exact_first_layers;
        self
    }

    /// Sets `per_layer`.
    pub fn with_per_layer(mut self, per_layer: Vec<AttentionKind>) -> Self {
        self.per_layer = per_layer;
        self
    }

    /// Sets `distr_decode`.
    pub fn with_distr_decode(mut self, distr_decode: bool) -> Self {
        self.distr_decode = distr_decode;
        self
    }

    /// The plan with every DistrAttention layer's hyperplane seed moved by `offset`: draw
    /// `offset` of the same plan, for results averaged over seeds (the hyperplanes alone can
    /// move an end-to-end metric by a wide margin).
    pub fn reseeded(&self, offset: u64) -> Self {
        Self {
            default: self.default.reseeded(offset),
            per_layer: self.per_layer.iter().map(|kind| kind.reseeded(offset)).collect(),
            ..self.clone()
        }
    }

    /// The attention kind of layer `layer` in a model of `num_layers` layers.
    pub fn kind_for_layer(
        &self,
        layer: usize,
        num_layers: usize,
    ) -> Result<AttentionKind, DistrAttentionError> {
        self.check_layer_count(num_layers)?;
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

    /// The attention of layer `layer` for a call with `seq_q` query rows: decode steps
    /// ([`is_decode_step`]) are exact unless `distr_decode` is set.
    pub fn kind_for_call(
        &self,
        layer: usize,
        num_layers: usize,
        seq_q: usize,
    ) -> Result<AttentionKind, DistrAttentionError> {
        let kind = self.kind_for_layer(layer, num_layers)?;
        Ok(if is_decode_step(seq_q) && !self.distr_decode { AttentionKind::Exact } else { kind })
    }

    /// Checks the plan against a model of `num_layers` layers of `num_heads` query heads of
    /// `head_dim` dimensions, without running it: the layer counts fit, per-head entries have
    /// one configuration per head, and every parameter is in range with group sizes dividing
    /// `head_dim`. Errors name the layer (and the head).
    pub fn check(&self, num_layers: usize, num_heads: usize, head_dim: usize) -> Result<(), DistrAttentionError> {
        self.check_layer_count(num_layers)?;
        for layer in 0..num_layers {
            self.kind_for_layer(layer, num_layers)?
                .check(num_heads, head_dim)
                .map_err(|source| DistrAttentionError::Layer { layer, source: Box::new(source) })?;
        }
        Ok(())
    }

    /// Checks what can be checked without a model: every layer kind's parameters in range.
    pub fn validate(&self) -> Result<(), DistrAttentionError> {
        self.default.validate()?;
        for (layer, kind) in self.per_layer.iter().enumerate() {
            kind.validate()
                .map_err(|source| DistrAttentionError::Layer { layer, source: Box::new(source) })?;
        }
        Ok(())
    }

    /// Reads a plan from a JSON file (as `calibrate` writes them): fields left out take their
    /// defaults, unknown fields and out-of-range parameters are errors naming the file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, DistrAttentionError> {
        let plan: Self = load_json(path.as_ref())?;
        plan.validate().map_err(|error| config_file_error(path.as_ref(), error))?;
        Ok(plan)
    }

    fn check_layer_count(&self, num_layers: usize) -> Result<(), DistrAttentionError> {
        if !self.per_layer.is_empty() && self.per_layer.len() != num_layers {
            return Err(DistrAttentionError::InvalidParameter {
                name: "per_layer",
                value: format!("{} entries", self.per_layer.len()),
                expected: format!("one entry per layer ({num_layers})"),
            });
        }
        if self.exact_first_layers > num_layers {
            return Err(DistrAttentionError::InvalidParameter {
                name: "exact_first_layers",
                value: self.exact_first_layers.to_string(),
                expected: format!("at most the model's {num_layers} layers"),
            });
        }
        Ok(())
    }
}

/// Burn's `Config` trait gives `save` (and a lenient `load`, which the inherent
/// [`ModelAttentionConfig::load`] shadows).
impl burn::config::Config for ModelAttentionConfig {}

impl fmt::Display for ModelAttentionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_json(self, f)
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
        assert_eq!(plan.kind_for_call(3, 4, 16).unwrap(), AttentionKind::Distr(DistrAttentionConfig::new().with_group_size(4)));
        assert!(plan.kind_for_call(3, 4, 1).unwrap().is_exact());
        assert!(plan.kind_for_call(3, 4, DECODE_QUERY_ROWS).unwrap().is_exact());
        assert!(!plan.kind_for_call(3, 4, DECODE_QUERY_ROWS + 1).unwrap().is_exact());
        assert!(plan.kind_for_layer(4, 4).is_err());
    }

    #[test]
    fn per_layer_overrides_and_length_check() {
        let plan = ModelAttentionConfig::exact().with_per_layer(vec![
            AttentionKind::Distr(DistrAttentionConfig::new()),
            AttentionKind::Exact,
        ]);
        assert_eq!(plan.kind_for_call(0, 2, 16).unwrap(), AttentionKind::Distr(DistrAttentionConfig::new()));
        assert!(plan.kind_for_layer(0, 3).is_err());
    }

    #[test]
    fn reseeded_moves_every_distr_seed_and_nothing_else() {
        let plan = ModelAttentionConfig::distr(DistrAttentionConfig::new().with_seed(7))
            .with_per_layer(vec![AttentionKind::Exact, AttentionKind::Distr(DistrAttentionConfig::new().with_group_size(4))])
            .with_exact_first_layers(1);
        let moved = plan.reseeded(3);
        assert_eq!(moved.default, AttentionKind::Distr(DistrAttentionConfig::new().with_seed(10)));
        assert_eq!(moved.per_layer[0], AttentionKind::Exact);
        assert_eq!(moved.per_layer[1], AttentionKind::Distr(DistrAttentionConfig::new().with_group_size(4).with_seed(3)));
        assert_eq!(moved.exact_first_layers, 1);
        assert_eq!(plan.reseeded(0), plan);
    }

    #[test]
    fn round_trips_through_json() {
        let plan = ModelAttentionConfig::distr(DistrAttentionConfig::new().with_seed(7))
            .with_exact_first_layers(3);
        let json = serde_json::to_string(&plan).unwrap();
        let back: ModelAttentionConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, plan);
    }

    #[test]
    fn check_names_the_layer_and_bounds_the_exact_layers() {
        let plan = ModelAttentionConfig::distr(DistrAttentionConfig::new().with_group_size(3));
        let error = plan.check(4, 12, 64).unwrap_err().to_string();
        assert!(error.starts_with("attention of layer 0:") && error.contains("group_size 3"), "{error}");
        let error = plan.with_exact_first_layers(4).check(4, 12, 64);
        assert!(error.is_ok(), "every layer exact: nothing to divide");
        let error = ModelAttentionConfig::exact().with_exact_first_layers(99).check(12, 12, 64).unwrap_err();
        assert!(error.to_string().contains("`exact_first_layers` = 99"), "{error}");
        // A zero group size is a range error, not a division by zero.
        let zero = ModelAttentionConfig::distr(DistrAttentionConfig::new().with_group_size(0));
        assert!(zero.check(2, 12, 64).unwrap_err().to_string().contains("`group_size` = 0"));
    }

    #[test]
    fn per_head_entries_are_checked_against_the_heads() {
        let g4 = DistrAttentionConfig::new().with_group_size(4);
        let per_head = AttentionKind::PerHead(vec![DistrAttentionConfig::exact(), g4.clone(), g4.with_group_size(3)]);
        let plan = ModelAttentionConfig::exact().with_per_layer(vec![AttentionKind::Exact, per_head]);
        let error = plan.check(2, 3, 64).unwrap_err().to_string();
        assert!(error.starts_with("attention of layer 1: attention of head 2:") && error.contains("group_size 3"), "{error}");
        let error = plan.check(2, 4, 64).unwrap_err().to_string();
        assert!(error.contains("3 entries") && error.contains("one entry per query head (4)"), "{error}");
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<ModelAttentionConfig>(&json).unwrap(), plan);
        let moved = plan.reseeded(5);
        assert_eq!(moved.per_layer[1].head_configs(3)[0], DistrAttentionConfig::exact(), "exact heads keep their seed");
        assert_eq!(moved.per_layer[1].head_configs(3)[1].seed, 5);
    }

    #[test]
    fn files_take_defaults_and_refuse_unknown_fields() {
        let path = std::env::temp_dir().join(format!("distr-attn-plan-{}.json", std::process::id()));
        std::fs::write(&path, r#"{"default": {"Distr": {"group_size": 4}}, "exact_first_layers": 2}"#).unwrap();
        let plan = ModelAttentionConfig::load(&path).unwrap();
        let expected = ModelAttentionConfig::distr(DistrAttentionConfig::new().with_group_size(4)).with_exact_first_layers(2);
        assert_eq!(plan, expected);
        std::fs::write(&path, r#"{"per_layer": [{"Distr": {"group_size": 0}}]}"#).unwrap();
        let error = ModelAttentionConfig::load(&path).unwrap_err().to_string();
        assert!(error.contains("layer 0") && error.contains("`group_size` = 0"), "{error}");
        std::fs::write(&path, r#"{"exact_first_layer": 2}"#).unwrap();
        let error = ModelAttentionConfig::load(&path).unwrap_err().to_string();
        std::fs::remove_file(&path).ok();
        assert!(error.contains("unknown field `exact_first_layer`"), "{error}");
    }

    #[test]
    fn the_shipped_plans_load_and_fit_their_models() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        // (file, layers, query heads, head dimension) of DINOv2 ViT-S/14 and SmolLM2-135M.
        for (file, num_layers, num_heads, head_dim) in [
            ("distr-vit/configs/calibrated-0.99.json", 12, 6, 64),
            ("distr-vit/configs/calibrated-0.95.json", 12, 6, 64),
            ("distr-vit/configs/calibrated-gram-0.99.json", 12, 6, 64),
            ("distr-vit/configs/calibrated-gram-0.95.json", 12, 6, 64),
            ("distr-vit/configs/calibrated-heads-0.99.json", 12, 6, 64),
            ("distr-vit/configs/calibrated-heads-0.95.json", 12, 6, 64),
            ("distr-llama/configs/smollm2-calibrated-1pct.json", 30, 9, 64),
            ("distr-llama/configs/smollm2-calibrated-heads-1pct.json", 30, 9, 64),
        ] {
            let plan = ModelAttentionConfig::load(root.join(file)).unwrap_or_else(|error| panic!("{error}"));
            plan.check(num_layers, num_heads, head_dim).unwrap_or_else(|error| panic!("{file}: {error}"));
            assert!(plan.per_layer.iter().any(|kind| *kind != AttentionKind::Exact), "{file}");
        }
    }
}

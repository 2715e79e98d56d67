//! Configuration of the DistrAttention op, with the defaults of the paper.
//!
//! The configuration types derive serde by hand rather than through Burn's `Config` derive:
//! a configuration file may leave out any field that has a default, and a misspelt field is
//! an error naming it instead of being ignored ([`DistrAttentionConfig::load`]).

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::DistrAttentionError;

/// How the representative query column of a group is formed (step 5 of the definition).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "experiment", derive(clap::ValueEnum))]
pub enum Representative {
    /// The first column of the group, in permutation order (the paper's "sample").
    Sample,
    /// The mean of the group's columns: costs one extra pass over the query block but
    /// keeps more of each column's information.
    Mean,
    /// The mean, with each key column fused with weight `<q_c, r> / <r, r>` (over the block's
    /// rows) instead of 1: the least-squares fit of its query column `q_c` onto the
    /// representative `r`. Columns that LSH groups point the same way but may differ in
    /// length; plain sums assume equal lengths, the weights do not. Costs one more pass over
    /// the query block; runs on the tensor-op path only.
    Projected,
    /// The variant of the paper's released kernel: the representative is the *sum* of the
    /// group's query columns, and K' takes the key column of the group's first member only
    /// (a selection, not a sum). The kernel then copies `head_dim / G` key columns per tile
    /// and forms nothing, which is cheaper than summing; the error of a group is
    /// `sum over its columns c of q_c (k_first - k_c)`, distances between *key* columns.
    SampledKeys,
}

/// Length bands of [`Grouping::LshNorms`]: quartiles of the block's column norms (a power of
/// two: the band takes `log2(NORM_BANDS)` bits of the sort key, so `num_projections` is at most
/// [`MAX_NUM_PROJECTIONS`] minus those).
pub const NORM_BANDS: usize = 4;

/// How the columns of a query block are grouped (steps 2-4 of the definition).
///
/// [`Grouping::Lsh`] (and its strided layout) is DistrAttention; the `Gram` groupings choose
/// groups for the error they add instead (`Gram` with `Sample` or `Mean` also in the kernels);
/// `Random` and `IndexOrder` are baselines, to show what looking at the data buys.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "experiment", derive(clap::ValueEnum))]
pub enum Grouping {
    /// Angular locality-sensitive hashing: columns with the same inverse-Gray sign code end
    /// up next to each other.
    Lsh,
    /// A uniformly random permutation per query block, drawn from `seed`.
    Random,
    /// Columns in index order: group `j` holds columns `jG .. jG+G-1`.
    #[cfg_attr(feature = "experiment", value(alias = "index"))]
    IndexOrder,
    /// The LSH order of [`Grouping::Lsh`], grouped with a stride as the paper's released
    /// kernel does: group `j` holds the sorted positions `j, j + d/G, j + 2d/G, ...` rather
    /// than `jG .. jG+G-1`, so its members are columns whose codes lie far apart.
    #[cfg_attr(feature = "experiment", value(alias = "strided"))]
    LshStrided,
    /// The LSH order within bands of the columns' lengths: the block's columns ranked by
    /// squared norm into [`NORM_BANDS`] bands, the band the leading part of the sort key and the
    /// inverse Gray code the rest, so that groups join columns of like direction *and* length
    /// (angular LSH alone ignores length, which `Mean`'s error grows with). Reference path
    /// only.
    LshNorms,
    /// Per query block, groups that minimise a bound on the representative's error, read off
    /// the block's query Gram matrix (distance for `Sample`/`Mean`, angle for `Projected`;
    /// for `SampledKeys` the key columns' distance): see `reference::gram`. With `Sample` or
    /// `Mean` the CubeCL kernels form the same groups in their pre-pass; the other
    /// representatives run on the reference.
    Gram,
    /// [`Grouping::Gram`] with each pair's cost weighted by the mean squared length of its key
    /// columns: a query column's error reaches the scores through its key column. With
    /// `Sample` or `Mean` the CubeCL kernels form the same groups in their pre-pass (the key
    /// lengths from a small reduction over the head's keys first).
    GramKeyWeighted,
    /// [`Grouping::Gram`] with each pair's cost multiplied by the squared distance of its key
    /// columns (over the head's keys). For `Mean` that product is the pair's whole error:
    /// grouping `a` and `b` changes the scores by `-(q_a - q_b)(k_a - k_b)^T / 2`, a rank-one
    /// matrix whose squared norm is `|q_a - q_b|^2 |k_a - k_b|^2 / 4`; columns whose keys agree
    /// cost nothing to group however far apart their queries lie. Reference path only.
    GramKeyDistance,
}

impl Grouping {
    /// Whether the grouping hashes the query columns (and so has hyperplanes to validate).
    pub fn hashes(self) -> bool {
        matches!(self, Grouping::Lsh | Grouping::LshStrided | Grouping::LshNorms)
    }

    /// Whether the groups are chosen from Gram matrices (`reference::gram`): deterministic,
    /// so one draw stands for every seed.
    pub fn is_gram(self) -> bool {
        matches!(self, Grouping::Gram | Grouping::GramKeyWeighted | Grouping::GramKeyDistance)
    }

    /// FLOPs of forming the groups of one head over `tokens` queries (and keys) with
    /// `representative`: the sign codes' products for LSH (`2 N d P`, and `2 N d` for the
    /// lengths of `LshNorms`); for `Gram` with `Sample`
    /// or `Mean` the pairwise squared distances of the query columns as the kernels compute them
    /// (a difference, a product and a sum per pair and row: `3 N d (d - 1) / 2`); for the other
    /// Gram costs the symmetric Gram matrices they read (`N d (d + 1)` each: the queries', and the
    /// keys' for `GramKeyWeighted`, `GramKeyDistance` and `SampledKeys`); none for the
    /// baselines.
    pub fn flops(self, representative: Representative, tokens: usize, head_dim: usize, num_projections: usize) -> f64 {
        let [n, d] = [tokens as f64, head_dim as f64];
        let gram = n * d * (d + 1.0);
        match (self, representative) {
            (Grouping::Lsh | Grouping::LshStrided, _) => 2.0 * n * d * num_projections as f64,
            (Grouping::LshNorms, _) => 2.0 * n * d * (num_projections as f64 + 1.0),
            (Grouping::Gram, Representative::Sample | Representative::Mean) => 1.5 * n * d * (d - 1.0),
            (Grouping::Gram, Representative::Projected) => gram,
            (Grouping::Gram, Representative::SampledKeys) | (Grouping::GramKeyWeighted | Grouping::GramKeyDistance, _) => 2.0 * gram,
            (Grouping::Random | Grouping::IndexOrder, _) => 0.0,
        }
    }
}

/// Configuration of [`distr_attention`](crate::distr_attention).
///
/// `group_size = 1` is exact attention: `num_projections`, `seed`, `representative` and
/// `grouping` are then ignored (and not validated). `block_rows` must still be in range: the
/// fused kernel uses it as its query tile.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DistrAttentionConfig {
    /// Columns of Q fused per group; must divide the head dimension. Default: 2.
    pub group_size: usize,
    /// Query rows that share one grouping (one query block). Default: 128.
    pub block_rows: usize,
    /// Random hyperplanes of the angular LSH, i.e. bits of a column's code. Default: 16.
    pub num_projections: usize,
    /// Seed of the hyperplanes (and of the random grouping baseline). Default: 0.
    pub seed: u64,
    /// How a group's representative query column is formed. Default: `Mean`, which beat
    /// `Sample` averaged over 10 hyperplane draws on 12 held-out photos (DINOv2 saliency
    /// Pearson 0.87 against 0.77) and on held-out text (`distr-llama/RESULTS.md`).
    pub representative: Representative,
    /// How columns are grouped. Default: `Lsh` (DistrAttention proper).
    pub grouping: Grouping,
    /// Score scale, positive. Default: `None`, meaning `1 / sqrt(head_dim)`.
    pub scale: Option<f64>,
    /// Causal masking. With `seq_q < seq_k` the queries are the last `seq_q` positions (a
    /// continuation after cached keys). Default: false.
    pub causal: bool,
}

/// Largest supported `num_projections`: codes, combined with a column index, must fit the
/// 32-bit integers that GPU backends sort.
pub const MAX_NUM_PROJECTIONS: usize = 20;
/// Largest supported `group_size`.
pub const MAX_GROUP_SIZE: usize = 64;
/// Largest supported `block_rows`.
pub const MAX_BLOCK_ROWS: usize = 1024;
/// Largest supported head dimension (`head_dim << MAX_NUM_PROJECTIONS` must fit in `i32`).
pub const MAX_HEAD_DIM: usize = 1024;

impl Default for DistrAttentionConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl DistrAttentionConfig {
    /// DistrAttention with every parameter at its default (group size 2).
    pub fn new() -> Self {
        Self {
            group_size: 2,
            block_rows: 128,
            num_projections: 16,
            seed: 0,
            representative: Representative::Mean,
            grouping: Grouping::Lsh,
            scale: None,
            causal: false,
        }
    }

    /// Exact attention: `group_size = 1`, everything else at its default.
    pub fn exact() -> Self {
        Self::new().with_group_size(1)
    }

    /// Sets `group_size`.
    pub fn with_group_size(mut self, group_size: usize) -> Self {
        self.group_size = group_size;
        self
    }

    /// Sets `block_rows`.
    pub fn with_block_rows(mut self, block_rows: usize) -> Self {
        self.block_rows = block_rows;
        self
    }

    /// Sets `num_projections`.
    pub fn with_num_projections(mut self, num_projections: usize) -> Self {
        self.num_projections = num_projections;
        self
    }

    /// Sets `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets `representative`.
    pub fn with_representative(mut self, representative: Representative) -> Self {
        self.representative = representative;
        self
    }

    /// Sets `grouping`.
    pub fn with_grouping(mut self, grouping: Grouping) -> Self {
        self.grouping = grouping;
        self
    }

    /// Sets `scale`.
    pub fn with_scale(mut self, scale: Option<f64>) -> Self {
        self.scale = scale;
        self
    }

    /// Sets `causal`.
    pub fn with_causal(mut self, causal: bool) -> Self {
        self.causal = causal;
        self
    }

    /// Whether this configuration computes exact attention.
    pub fn is_exact(&self) -> bool {
        self.group_size == 1
    }

    /// The score scale for a given head dimension.
    pub fn scale_for(&self, head_dim: usize) -> f64 {
        self.scale.unwrap_or(1.0 / (head_dim as f64).sqrt())
    }

    /// Checks every parameter against its supported range, without any tensor: what can be
    /// known about a configuration before it meets a model. Exact attention hashes nothing,
    /// so its hashing parameters are not checked.
    pub fn validate(&self) -> Result<(), DistrAttentionError> {
        let range = |name: &'static str, value: usize, max: usize| {
            if value == 0 || value > max {
                Err(DistrAttentionError::InvalidParameter {
                    name,
                    value: value.to_string(),
                    expected: format!("between 1 and {max}"),
                })
            } else {
                Ok(())
            }
        };
        range("group_size", self.group_size, MAX_GROUP_SIZE)?;
        range("block_rows", self.block_rows, MAX_BLOCK_ROWS)?;
        if !self.is_exact() && self.grouping.hashes() {
            // `LshNorms` puts the length band above the code's bits in the same sort key.
            let band_bits = if self.grouping == Grouping::LshNorms { NORM_BANDS.trailing_zeros() as usize } else { 0 };
            range("num_projections", self.num_projections, MAX_NUM_PROJECTIONS - band_bits)?;
        }
        if let Some(scale) = self.scale {
            if !(scale.is_finite() && scale > 0.0) {
                return Err(DistrAttentionError::InvalidParameter {
                    name: "scale",
                    value: scale.to_string(),
                    expected: "a positive finite number (or no scale for 1/sqrt(head_dim))".into(),
                });
            }
        }
        Ok(())
    }

    /// [`Self::validate`], and that the group size divides `head_dim`: whether a layer with
    /// heads of `head_dim` can run this configuration.
    pub fn check_head_dim(&self, head_dim: usize) -> Result<(), DistrAttentionError> {
        self.validate()?;
        if head_dim > MAX_HEAD_DIM {
            return Err(DistrAttentionError::InvalidParameter {
                name: "head_dim",
                value: head_dim.to_string(),
                expected: format!("at most {MAX_HEAD_DIM}"),
            });
        }
        if !head_dim.is_multiple_of(self.group_size) {
            return Err(DistrAttentionError::GroupSize { head_dim, group_size: self.group_size });
        }
        Ok(())
    }

    /// Reads a configuration from a JSON file: fields left out take their defaults, an
    /// unknown field is an error, and so is a parameter out of range ([`Self::validate`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, DistrAttentionError> {
        let config: Self = load_json(path.as_ref())?;
        config.validate().map_err(|error| config_file_error(path.as_ref(), error))?;
        Ok(config)
    }
}

/// Burn's `Config` trait gives `save` (and a lenient `load`, which the inherent
/// [`DistrAttentionConfig::load`] shadows).
impl burn::config::Config for DistrAttentionConfig {}

impl fmt::Display for DistrAttentionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_json(self, f)
    }
}

/// Which attention a layer uses: what a model config stores per layer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum AttentionKind {
    /// Exact softmax attention.
    Exact,
    /// DistrAttention with the given parameters.
    Distr(DistrAttentionConfig),
    /// One configuration per query head, in head order (`group_size` 1: that head exact).
    /// A layer's heads tolerate approximation very differently, so per-head plans convert far
    /// more of a model within an accuracy budget than per-layer ones; runs of heads with the
    /// same configuration are one op call each ([`distr_attention_per_head`](crate::distr_attention_per_head)).
    PerHead(Vec<DistrAttentionConfig>),
}

impl AttentionKind {
    /// The op configuration of each of a layer's `num_heads` query heads (for `PerHead`, its
    /// own list, whose length [`Self::check`] compares with `num_heads`).
    pub fn head_configs(&self, num_heads: usize) -> Vec<DistrAttentionConfig> {
        match self {
            AttentionKind::Exact => vec![DistrAttentionConfig::exact(); num_heads],
            AttentionKind::Distr(config) => vec![config.clone(); num_heads],
            AttentionKind::PerHead(configs) => configs.clone(),
        }
    }

    /// Whether every head computes exact attention.
    pub fn is_exact(&self) -> bool {
        match self {
            AttentionKind::Exact => true,
            AttentionKind::Distr(config) => config.is_exact(),
            AttentionKind::PerHead(configs) => configs.iter().all(DistrAttentionConfig::is_exact),
        }
    }

    /// Every configuration of this kind made causal or not (`Exact` becomes the exact
    /// configuration, `group_size` 1, with that flag).
    pub fn with_causal(self, causal: bool) -> Self {
        match self {
            AttentionKind::Exact => AttentionKind::Distr(DistrAttentionConfig::exact().with_causal(causal)),
            AttentionKind::Distr(config) => AttentionKind::Distr(config.with_causal(causal)),
            AttentionKind::PerHead(configs) => {
                AttentionKind::PerHead(configs.into_iter().map(|config| config.with_causal(causal)).collect())
            }
        }
    }

    /// This kind with every DistrAttention seed moved by `offset` (exact heads unchanged).
    pub fn reseeded(&self, offset: u64) -> Self {
        let reseed = |config: &DistrAttentionConfig| {
            if config.is_exact() {
                config.clone()
            } else {
                config.clone().with_seed(config.seed.wrapping_add(offset))
            }
        };
        match self {
            AttentionKind::Exact => AttentionKind::Exact,
            AttentionKind::Distr(config) => AttentionKind::Distr(reseed(config)),
            AttentionKind::PerHead(configs) => AttentionKind::PerHead(configs.iter().map(reseed).collect()),
        }
    }

    /// Every parameter in range ([`DistrAttentionConfig::validate`]); errors name the head.
    pub fn validate(&self) -> Result<(), DistrAttentionError> {
        self.each_config(DistrAttentionConfig::validate)
    }

    /// Whether a layer of `num_heads` query heads of `head_dim` can run this kind: a per-head
    /// list has one entry per head, and every group size divides `head_dim`. Errors name the
    /// head.
    pub fn check(&self, num_heads: usize, head_dim: usize) -> Result<(), DistrAttentionError> {
        if let AttentionKind::PerHead(configs) = self {
            if configs.len() != num_heads {
                return Err(DistrAttentionError::InvalidParameter {
                    name: "PerHead",
                    value: format!("{} entries", configs.len()),
                    expected: format!("one entry per query head ({num_heads})"),
                });
            }
        }
        self.each_config(|config| config.check_head_dim(head_dim))
    }

    fn each_config(
        &self,
        check: impl Fn(&DistrAttentionConfig) -> Result<(), DistrAttentionError>,
    ) -> Result<(), DistrAttentionError> {
        match self {
            AttentionKind::Exact => check(&DistrAttentionConfig::exact()),
            AttentionKind::Distr(config) => check(config),
            AttentionKind::PerHead(configs) => configs.iter().enumerate().try_for_each(|(head, config)| {
                check(config).map_err(|source| DistrAttentionError::Head { head, source: Box::new(source) })
            }),
        }
    }
}

impl burn::config::Config for AttentionKind {}

impl fmt::Display for AttentionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_json(self, f)
    }
}

/// A JSON configuration file, with errors that name the file and say whether it could not be
/// read (missing, a directory, no permission) or did not parse (and where).
pub(crate) fn load_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, DistrAttentionError> {
    let text = std::fs::read_to_string(path).map_err(|error| DistrAttentionError::ConfigFile {
        path: path.to_path_buf(),
        message: format!("cannot read it: {error}"),
    })?;
    serde_json::from_str(&text).map_err(|error| DistrAttentionError::ConfigFile {
        path: path.to_path_buf(),
        message: error.to_string(),
    })
}

/// A configuration error found in a file, reported with the file's name.
pub(crate) fn config_file_error(path: &Path, error: DistrAttentionError) -> DistrAttentionError {
    DistrAttentionError::ConfigFile { path: path.to_path_buf(), message: error.to_string() }
}

/// Pretty JSON, as Burn's configs display themselves.
pub(crate) fn write_json<T: Serialize>(value: &T, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str(&serde_json::to_string_pretty(value).map_err(|_| fmt::Error)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preset(name: &str) -> DistrAttentionConfig {
        let path = format!(
            "{}/../configs/attention/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        DistrAttentionConfig::load(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
    }

    #[test]
    fn presets_load() {
        assert!(preset("exact").is_exact());
        for (name, group_size) in [("g2", 2), ("g4", 4), ("g8", 8)] {
            let config = preset(name);
            assert_eq!(config.group_size, group_size);
            assert_eq!(config.block_rows, 128);
            assert_eq!(config.num_projections, 16);
            assert_eq!(config.grouping, Grouping::Lsh);
            assert_eq!(config, DistrAttentionConfig::new().with_group_size(group_size), "{name} is the default at G={group_size}");
        }
        let gram = DistrAttentionConfig::new().with_grouping(Grouping::Gram).with_block_rows(64);
        assert_eq!(preset("g2-gram-l64"), gram, "G = 2, Mean, Gram groups of 64-row blocks");
    }

    #[test]
    fn round_trips_through_json() {
        let config = DistrAttentionConfig::new()
            .with_representative(Representative::Mean)
            .with_scale(Some(0.5));
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(
            serde_json::from_str::<DistrAttentionConfig>(&json).unwrap(),
            config
        );
    }

    fn written(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("distr-attn-config-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn files_may_leave_out_defaults_but_not_misspell_fields() {
        let path = written("partial.json", r#"{"group_size": 4, "representative": "Mean"}"#);
        let config = DistrAttentionConfig::load(&path).unwrap();
        assert_eq!(config, DistrAttentionConfig::new().with_group_size(4).with_representative(Representative::Mean));
        let path = written("misspelt.json", r#"{"group_sise": 4}"#);
        let error = DistrAttentionConfig::load(&path).unwrap_err().to_string();
        assert!(error.contains("unknown field `group_sise`") && error.contains("misspelt.json"), "{error}");
    }

    #[test]
    fn load_names_the_file_and_the_problem() {
        let directory = std::env::temp_dir();
        let error = DistrAttentionConfig::load(&directory).unwrap_err().to_string();
        assert!(error.contains("cannot read it") && !error.contains("not found"), "{error}");
        let path = written("zero.json", r#"{"group_size": 0}"#);
        let error = DistrAttentionConfig::load(&path).unwrap_err().to_string();
        assert!(error.contains("zero.json") && error.contains("`group_size` = 0"), "{error}");
    }

    #[test]
    fn a_scale_must_be_positive() {
        for scale in [-0.5, 0.0, f64::NAN] {
            let error = DistrAttentionConfig::new().with_scale(Some(scale)).validate().unwrap_err();
            assert!(matches!(error, DistrAttentionError::InvalidParameter { name: "scale", .. }), "{error}");
        }
        assert!(DistrAttentionConfig::new().with_scale(Some(0.1)).validate().is_ok());
    }
}

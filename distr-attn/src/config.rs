//! Configuration of the DistrAttention op, with the defaults of the paper.

use burn::config::Config;

/// How the representative query column of a group is formed (step 5 of the definition).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
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
}

/// How the columns of a query block are grouped (steps 2-4 of the definition).
///
/// Only [`Grouping::Lsh`] is DistrAttention; the other two exist as baselines for accuracy
/// studies, to show what the hashing buys over grouping without looking at the data.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// Angular locality-sensitive hashing: columns with the same inverse-Gray sign code end
    /// up next to each other.
    Lsh,
    /// A uniformly random permutation per query block, drawn from `seed`.
    Random,
    /// Columns in index order: group `j` holds columns `jG .. jG+G-1`.
    IndexOrder,
}

/// Configuration of [`distr_attention`](crate::distr_attention).
///
/// `group_size = 1` is exact attention: `num_projections`, `seed`, `representative` and
/// `grouping` are then ignored (and not validated). `block_rows` must still be in range: the
/// fused kernel uses it as its query tile.
#[derive(Config, Debug, PartialEq)]
pub struct DistrAttentionConfig {
    /// Columns of Q fused per group; must divide the head dimension. Default: 2.
    #[config(default = 2)]
    pub group_size: usize,
    /// Query rows that share one grouping (one query block). Default: 128.
    #[config(default = 128)]
    pub block_rows: usize,
    /// Random hyperplanes of the angular LSH, i.e. bits of a column's code. Default: 16.
    #[config(default = 16)]
    pub num_projections: usize,
    /// Seed of the hyperplanes (and of the random grouping baseline). Default: 0.
    #[config(default = 0)]
    pub seed: u64,
    /// How a group's representative query column is formed. Default: `Sample`.
    #[config(default = "Representative::Sample")]
    pub representative: Representative,
    /// How columns are grouped. Default: `Lsh` (DistrAttention proper).
    #[config(default = "Grouping::Lsh")]
    pub grouping: Grouping,
    /// Score scale. Default: `None`, meaning `1 / sqrt(head_dim)`.
    pub scale: Option<f64>,
    /// Causal masking. With `seq_q < seq_k` the queries are the last `seq_q` positions (a
    /// continuation after cached keys). Default: false.
    #[config(default = false)]
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

impl DistrAttentionConfig {
    /// Exact attention: `group_size = 1`, everything else at its default.
    pub fn exact() -> Self {
        Self::new().with_group_size(1)
    }

    /// Whether this configuration computes exact attention.
    pub fn is_exact(&self) -> bool {
        self.group_size == 1
    }

    /// The score scale for a given head dimension.
    pub fn scale_for(&self, head_dim: usize) -> f64 {
        self.scale.unwrap_or(1.0 / (head_dim as f64).sqrt())
    }
}

/// Which attention a layer uses: what a model config stores per layer.
#[derive(Config, Debug, PartialEq)]
pub enum AttentionKind {
    /// Exact softmax attention.
    Exact,
    /// DistrAttention with the given parameters.
    Distr(DistrAttentionConfig),
}

impl AttentionKind {
    /// The op configuration this kind runs with; `Exact` is `group_size = 1`.
    pub fn op_config(&self) -> DistrAttentionConfig {
        match self {
            AttentionKind::Exact => DistrAttentionConfig::exact(),
            AttentionKind::Distr(config) => config.clone(),
        }
    }
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
        }
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
}

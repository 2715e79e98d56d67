//! `distr-bench`: times the fused DistrAttention kernels (G = 2, 4, 8), the same kernels as
//! exact flash attention (G = 1), their stage variants and tilings, and Burn's own
//! `attention`, after an optional on-device check of every timed kernel against the tensor-op
//! reference; with `--backward`, the fused backward and training steps instead. JSON lines on
//! stdout with `--json`, a table on stderr.

mod check;
mod timing;
mod variants;

use clap::{Parser, ValueEnum};
use distr_attn::kernel::{TensorCoreTiling, SUPPORTED_BLOCK_ROWS, SUPPORTED_GROUP_SIZES, SUPPORTED_HEAD_DIMS};
use distr_attn::{Grouping, Representative};

pub use variants::{head_group_tuning, tiling_name, Variant};

/// Storage dtype of the inputs (accumulation is f32 throughout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageDtype {
    F16,
    Bf16,
    F32,
}

#[derive(Debug, Parser)]
#[command(about = "Benchmark DistrAttention's fused kernels against exact attention and Burn's attention")]
pub struct Args {
    /// Batch size.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Heads (query and key/value).
    #[arg(long, default_value_t = 16)]
    pub heads: usize,
    /// Key/value heads (grouped-query attention); the default is `--heads`.
    #[arg(long)]
    pub kv_heads: Option<usize>,
    /// Sequence lengths (seq_k, and seq_q unless `--query-rows`), comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1024, 4096, 8192, 16384])]
    pub lengths: Vec<usize>,
    /// Query rows per call, for decode shapes (a KV-cache step has 1): the queries sit at the
    /// last positions of each length. Also times the tensor-op path at up to
    /// `DECODE_QUERY_ROWS` rows.
    #[arg(long)]
    pub query_rows: Option<usize>,
    /// Head dims, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [64, 128])]
    pub head_dims: Vec<usize>,
    /// Storage dtype.
    #[arg(long, value_enum, default_value_t = StorageDtype::F16)]
    pub dtype: StorageDtype,
    /// Causal settings to time, comma separated (`false,true` times both).
    #[arg(long, value_delimiter = ',', default_values_t = [false, true])]
    pub causal: Vec<bool>,
    /// DistrAttention group sizes to time (1 = our exact kernel), comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4, 8])]
    pub group_sizes: Vec<usize>,
    /// Representatives to time for G > 1, comma separated (`sample`, `mean`, `sampled-keys`;
    /// `projected` has no kernel). The first is the one named plainly (`distr_g2`), the others
    /// get their name appended (`distr_g2:sampled-keys`).
    #[arg(long, value_delimiter = ',', value_enum, default_values_t = [Representative::Sample])]
    pub representatives: Vec<Representative>,
    /// Groupings to time for G > 1, comma separated: `lsh` (DistrAttention), `gram` (groups
    /// chosen from the columns' distances, with `sample` or `mean`) and `gram-key-weighted`
    /// (the distances weighted by the key columns' lengths). Groupings after the first
    /// get their name appended (`distr_g2:mean:gram`).
    #[arg(long, value_delimiter = ',', value_enum, default_values_t = [Grouping::Lsh])]
    pub groupings: Vec<Grouping>,
    /// Query rows per block (64 or 128), as in `DistrAttentionConfig`.
    #[arg(long, default_value_t = 128)]
    pub block_rows: usize,
    /// Longest sequence at which Burn's own attention is timed (its fallback paths can
    /// materialise the `[seq, seq]` scores); 0 skips it.
    #[arg(long, default_value_t = 8192)]
    pub burn_max_len: usize,
    /// Stop timing one configuration after about this many milliseconds.
    #[arg(long, default_value_t = 1500.0)]
    pub budget_ms: f64,
    /// Kernel variants to time next to the default (and check with `--check`), comma separated.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub variants: Vec<Variant>,
    /// Tensor-core tilings to time (and check) next to the default, comma separated, each
    /// `<warps>x<row tiles per warp>x<key tile>` with an `r` suffix to keep Q' in registers:
    /// `4x2x64r,8x1x64`.
    #[arg(long, value_delimiter = ',', value_parser = variants::parse_tiling)]
    pub tilings: Vec<TensorCoreTiling>,
    /// Causal calls: also time (and check) the tensor-core forward with its blocks launched this
    /// many (batch, head) pairs at a time, longest first, comma separated: `1,4,16` (each
    /// rounded down to a divisor of batch x heads by the launcher).
    #[arg(long, value_delimiter = ',', value_parser = variants::parse_head_group)]
    pub head_groups: Vec<usize>,
    /// Also time the grouping pre-pass alone for each G > 1.
    #[arg(long)]
    pub grouping_alone: bool,
    /// Time training instead of inference: for each G, the fused backward alone (`:backward`;
    /// where the forward saves its log-sum-exps also `:backward-query-side` and
    /// `:backward-key-side`, dQ's two routes forced, and `:backward-own-log-sums`, without them)
    /// and a forward and backward through `Autodiff` (`:train`), with the memory each leaves
    /// reserved; `--check` then checks the gradients.
    #[arg(long)]
    pub backward: bool,
    /// With `--backward`: longest sequence at which the tensor-op reference's forward and
    /// backward (`:reference-train`, which stores the `[seq, seq]` scores) is timed; 0 skips it.
    #[arg(long, default_value_t = 4096)]
    pub reference_max_len: usize,
    /// Run the kernel-vs-reference suite on the device first; exit non-zero on a mismatch.
    #[arg(long)]
    pub check: bool,
    /// With --check: only the cases whose description contains one of these texts (e.g.
    /// `Gram`, `d=128`, `G=2,BF16`), each with the seed it has in the whole suite.
    #[arg(long, value_delimiter = ',')]
    pub check_only: Vec<String>,
    /// Print one JSON object per measurement on stdout.
    #[arg(long)]
    pub json: bool,
}

impl Args {
    /// Whether `--check-only` selects the check case described by `name` (all without it).
    fn selects(&self, name: &str) -> bool {
        self.check_only.is_empty() || self.check_only.iter().any(|only| name.contains(only.as_str()))
    }

    /// Refuses values the kernels have no specialisation for, before any work.
    fn validate(&self) -> Result<(), String> {
        let positive = [("--batch", self.batch), ("--heads", self.heads)];
        if let Some((flag, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("{flag} must be at least 1"));
        }
        if self.lengths.is_empty() || self.lengths.contains(&0) {
            return Err(format!("--lengths {:?}: every length must be at least 1", self.lengths));
        }
        if let Some(kv_heads) = self.kv_heads {
            if kv_heads == 0 || self.heads % kv_heads != 0 {
                return Err(format!("--kv-heads {kv_heads} must divide --heads {}", self.heads));
            }
        }
        if let Some(rows) = self.query_rows {
            if rows == 0 || self.lengths.iter().any(|&length| rows > length) {
                return Err(format!("--query-rows {rows}: must be between 1 and every length {:?}", self.lengths));
            }
        }
        if let Some(dim) = self.head_dims.iter().find(|dim| !SUPPORTED_HEAD_DIMS.contains(dim)) {
            return Err(format!("--head-dims: {dim} is not one of the supported head dims {SUPPORTED_HEAD_DIMS:?}"));
        }
        if let Some(group) = self.group_sizes.iter().find(|group| !SUPPORTED_GROUP_SIZES.contains(group)) {
            return Err(format!("--group-sizes: {group} is not one of {SUPPORTED_GROUP_SIZES:?}"));
        }
        if self.representatives.is_empty() || self.representatives.contains(&Representative::Projected) {
            return Err(format!(
                "--representatives {:?}: give at least one of sample, mean, sampled-keys (projected has no kernel)",
                self.representatives
            ));
        }
        let gram = |grouping: &Grouping| matches!(grouping, Grouping::Gram | Grouping::GramKeyWeighted);
        if self.groupings.is_empty() || self.groupings.iter().any(|grouping| *grouping != Grouping::Lsh && !gram(grouping)) {
            return Err(format!(
                "--groupings {:?}: give lsh, gram, gram-key-weighted or several (the others have no kernel)",
                self.groupings
            ));
        }
        if self.groupings.iter().any(gram) && self.representatives.contains(&Representative::SampledKeys) {
            return Err("--groupings gram: the kernels form Gram groups for sample and mean only, not sampled-keys".into());
        }
        if !SUPPORTED_BLOCK_ROWS.contains(&self.block_rows) {
            return Err(format!("--block-rows {} is not one of {SUPPORTED_BLOCK_ROWS:?}", self.block_rows));
        }
        if self.budget_ms.is_nan() || self.budget_ms <= 0.0 {
            return Err(format!("--budget-ms {} must be positive", self.budget_ms));
        }
        Ok(())
    }
}

fn main() {
    let args = Args::parse();
    if let Err(message) = args.validate() {
        eprintln!("error: {message}");
        std::process::exit(2);
    }
    let device = Default::default();
    if args.check {
        let suite = if args.backward { check::run_backward_suite::<timing::Bench> } else { check::run_suite::<timing::Bench> };
        if let Err(failures) = suite(&device, &args) {
            eprintln!("check failed:\n{failures}");
            std::process::exit(1);
        }
    }
    timing::run_grid::<timing::Bench>(&args, &device);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Args {
        Args::parse_from(["distr-bench"].iter().chain(extra))
    }

    /// Each of these used to panic inside the benchmark (exit 101); now each is refused up
    /// front with the flag's name.
    #[test]
    fn unsupported_values_are_refused_with_the_flag_name() {
        for (flags, flag) in [
            (&["--block-rows", "100"][..], "--block-rows"),
            (&["--head-dims", "63"], "--head-dims"),
            (&["--lengths", "0"], "--lengths"),
            (&["--batch", "0"], "--batch"),
            (&["--group-sizes", "3"], "--group-sizes"),
            (&["--representatives", "sample,projected"], "--representatives"),
            (&["--heads", "9", "--kv-heads", "2"], "--kv-heads"),
            (&["--lengths", "512,4", "--query-rows", "8"], "--query-rows"),
            (&["--query-rows", "0"], "--query-rows"),
            (&["--groupings", "lsh,random"], "--groupings"),
            (&["--groupings", "gram", "--representatives", "mean,sampled-keys"], "--groupings"),
        ] {
            let error = parse(flags).validate().unwrap_err();
            assert!(error.contains(flag), "{flags:?}: {error}");
        }
        assert!(parse(&[]).validate().is_ok());
        let both = parse(&["--representatives", "sample,sampled-keys"]);
        assert_eq!(both.representatives, [Representative::Sample, Representative::SampledKeys]);
        assert!(both.validate().is_ok());
        let gram = parse(&["--groupings", "lsh,gram", "--representatives", "mean"]);
        assert_eq!(gram.groupings, [Grouping::Lsh, Grouping::Gram]);
        assert!(gram.validate().is_ok());
    }
}

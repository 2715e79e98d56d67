//! The attention options of every model command line, and their translation into a checked
//! [`ModelAttentionConfig`].
//!
//! Options are `Option`s so that an option given where it has no effect (a `--group-size`
//! with exact attention) is an error instead of being ignored; the defaults the help text
//! names are those of [`DistrAttentionConfig::new`].

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::calibration::{HeadRanking, HeadSearch, LayerOrder, LayerSearch};
use super::{require, ExperimentError};
use crate::backends::{BackendKind, BackendRunner, BackendUnavailable, Precision};
use crate::{
    AttentionKind, DistrAttentionConfig, DistrAttentionError, Grouping, ModelAttentionConfig,
    Representative, MAX_GROUP_SIZE,
};

/// Where a model runs: the backend and the float type of its weights and activations.
#[derive(Args, Debug, Clone, Copy)]
pub struct DeviceArgs {
    /// Backend: flex (CPU), wgpu, cuda or ndarray (each but flex needs its cargo feature).
    /// Flex is the faster CPU backend: NdArray copies both operands of every matrix product.
    #[arg(long, default_value = "flex")]
    pub backend: BackendKind,
    /// Float type of weights and activations: f32, f16 or bf16. Half precision runs on Flex,
    /// wgpu (f16) and CUDA (there it is what takes attention to the tensor-core kernel); norms
    /// and losses are computed in f32 whatever this is.
    #[arg(long, default_value = "f32")]
    pub dtype: Precision,
}

impl DeviceArgs {
    /// Runs `runner` on the backend's default device in the chosen float type.
    pub fn run<R: BackendRunner>(self, runner: R) -> Result<R::Output, BackendUnavailable> {
        self.backend.run_in(self.dtype, runner)
    }
}

/// Exact attention or DistrAttention.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionChoice {
    /// Exact softmax attention in every layer.
    Exact,
    /// DistrAttention with the options below (see --exact-first-layers).
    Distr,
}

/// DistrAttention's parameters besides the group size: what calibration varies the group
/// size against.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct DistrArgs {
    /// Query rows that share one grouping [default: 128].
    #[arg(long)]
    pub block_rows: Option<usize>,
    /// Random hyperplanes of the LSH (bits of a column's code) [default: 16].
    #[arg(long)]
    pub num_projections: Option<usize>,
    /// Seed of the LSH hyperplanes (and of --grouping random) [default: 0].
    #[arg(long)]
    pub lsh_seed: Option<u64>,
    /// How a group's representative query column is formed [default: mean].
    #[arg(long, value_enum)]
    pub representative: Option<Representative>,
    /// Column grouping: lsh (DistrAttention), lsh-strided (the paper code's), gram (groups
    /// chosen from the columns' distances; in the kernels with mean or sample),
    /// gram-key-weighted, or the random / index-order baselines [default: lsh].
    #[arg(long, value_enum)]
    pub grouping: Option<Grouping>,
}

impl DistrArgs {
    /// The flags given, as written on the command line.
    fn given(&self) -> Vec<&'static str> {
        [
            ("--block-rows", self.block_rows.is_some()),
            ("--num-projections", self.num_projections.is_some()),
            ("--lsh-seed", self.lsh_seed.is_some()),
            ("--representative", self.representative.is_some()),
            ("--grouping", self.grouping.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect()
    }

    /// The op configuration with `group_size` and these options, every parameter checked
    /// against its range; errors name the flag.
    pub fn op_config(&self, group_size: usize) -> Result<DistrAttentionConfig, ExperimentError> {
        let defaults = DistrAttentionConfig::new();
        let config = defaults
            .clone()
            .with_group_size(group_size)
            .with_block_rows(self.block_rows.unwrap_or(defaults.block_rows))
            .with_num_projections(self.num_projections.unwrap_or(defaults.num_projections))
            .with_seed(self.lsh_seed.unwrap_or(defaults.seed))
            .with_representative(self.representative.unwrap_or(defaults.representative))
            .with_grouping(self.grouping.unwrap_or(defaults.grouping));
        config.validate().map_err(flag_error)?;
        Ok(config)
    }
}

/// A parameter error of the op, told in terms of its command-line flag.
fn flag_error(error: DistrAttentionError) -> ExperimentError {
    match error {
        DistrAttentionError::InvalidParameter { name, value, expected } => {
            ExperimentError::argument(format!("--{}", name.replace('_', "-")), value, expected)
        }
        other => other.into(),
    }
}

/// Which attention each layer uses: exact by default, DistrAttention with `--attention distr`
/// and its parameters, or a per-layer plan from `--config`.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct AttentionArgs {
    /// Attention of the layers [default: exact].
    #[arg(long, value_enum)]
    pub attention: Option<AttentionChoice>,
    /// A per-layer (or per-head) plan: ModelAttentionConfig JSON, as `calibrate` writes it
    /// (fields left out take their defaults). Replaces --attention and the DistrAttention
    /// options.
    #[arg(
        long,
        conflicts_with_all = [
            "attention", "group_size", "block_rows", "num_projections", "lsh_seed",
            "representative", "grouping", "exact_first_layers", "distr_decode",
        ]
    )]
    pub config: Option<PathBuf>,
    /// Query columns fused per group; divides the head dimension [default: 2].
    #[arg(long)]
    pub group_size: Option<usize>,
    #[command(flatten)]
    pub distr: DistrArgs,
    /// Keep the first K layers exact (at most the model's layers) [default: 0].
    #[arg(long)]
    pub exact_first_layers: Option<usize>,
    /// Also use DistrAttention for decode steps (models with a KV cache).
    #[arg(long)]
    pub distr_decode: bool,
}

impl AttentionArgs {
    /// The per-layer plan of these options, each parameter range-checked; check it against
    /// the model with [`ModelAttentionConfig::check`]. DistrAttention options with exact
    /// attention are an error: they would have no effect.
    pub fn plan(&self) -> Result<ModelAttentionConfig, ExperimentError> {
        if let Some(path) = &self.config {
            return Ok(ModelAttentionConfig::load(path)?);
        }
        if self.attention != Some(AttentionChoice::Distr) {
            if let Some(flag) = self.distr_flags().first() {
                return Err(ExperimentError::argument(
                    *flag,
                    "with exact attention",
                    "it applies to DistrAttention only: add --attention distr",
                ));
            }
            return Ok(ModelAttentionConfig::exact());
        }
        let group_size = self.group_size.unwrap_or(DistrAttentionConfig::new().group_size);
        require(
            (1..=MAX_GROUP_SIZE).contains(&group_size),
            "--group-size",
            group_size,
            format!("expected 1 to {MAX_GROUP_SIZE}, dividing the model's head dimension"),
        )?;
        Ok(ModelAttentionConfig::new()
            .with_default(AttentionKind::Distr(self.distr.op_config(group_size)?))
            .with_exact_first_layers(self.exact_first_layers.unwrap_or(0))
            .with_distr_decode(self.distr_decode))
    }

    /// The plan that a command comparing exact attention with DistrAttention (`eval`,
    /// `bench`) runs against exact: `--config`, or DistrAttention with these options, as if
    /// `--attention distr` were given. `--attention exact` leaves nothing to compare.
    pub fn compared_plan(&self, command: &str) -> Result<ModelAttentionConfig, ExperimentError> {
        if self.attention == Some(AttentionChoice::Exact) {
            return Err(ExperimentError::argument(
                "--attention",
                "exact",
                format!("`{command}` compares exact attention with DistrAttention: leave --attention out or give a --config"),
            ));
        }
        AttentionArgs { attention: Some(AttentionChoice::Distr), ..self.clone() }.plan()
    }

    /// The DistrAttention flags given, as written on the command line.
    fn distr_flags(&self) -> Vec<&'static str> {
        let mut flags = Vec::new();
        if self.group_size.is_some() {
            flags.push("--group-size");
        }
        flags.extend(self.distr.given());
        if self.exact_first_layers.is_some() {
            flags.push("--exact-first-layers");
        }
        if self.distr_decode {
            flags.push("--distr-decode");
        }
        flags
    }
}

/// The candidates of a calibration (`calibrate`): per layer, or per query head with
/// `--per-head`.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct SearchArgs {
    /// Group sizes tried per layer (largest first), or that a head may take with --per-head.
    #[arg(long, value_delimiter = ',', default_value = "8,4,2")]
    pub group_sizes: Vec<usize>,
    /// The order in which layers are assigned [default: the model's, see --help of calibrate].
    #[arg(long, value_enum, conflicts_with = "per_head")]
    pub order: Option<LayerOrder>,
    /// Choose per query head instead of per layer: heads ranked by the error each adds alone
    /// on the calibration data, then the longest prefix of the ranking within the budget,
    /// found by bisection.
    #[arg(long)]
    pub per_head: bool,
    /// Rounds of the per-head bisection: each further round drops the candidate that ended
    /// the last and searches the rest [default: 3].
    #[arg(long, requires = "per_head")]
    pub rounds: Option<usize>,
    /// How --per-head ranks the candidates: local (the error each head adds to the residual
    /// stream on the calibration data: one exact pass) or alone (the model's score with each
    /// head alone approximate: one evaluation per head and group size) [default: local].
    #[arg(long, value_enum, requires = "per_head")]
    pub ranking: Option<HeadRanking>,
    #[command(flatten)]
    pub distr: DistrArgs,
}

impl SearchArgs {
    /// Checks the flags (before the model is loaded); errors name the flag.
    pub fn validate(&self) -> Result<DistrAttentionConfig, ExperimentError> {
        require(!self.group_sizes.is_empty(), "--group-sizes", "(none)", "expected at least one group size")?;
        for &group_size in &self.group_sizes {
            require(
                (2..=MAX_GROUP_SIZE).contains(&group_size),
                "--group-sizes",
                group_size,
                format!("expected 2 to {MAX_GROUP_SIZE}, dividing the model's head dimension"),
            )?;
        }
        if let Some(rounds) = self.rounds {
            require(rounds >= 1, "--rounds", rounds, "expected at least 1")?;
        }
        self.distr.op_config(self.group_sizes[0])
    }

    /// The per-layer search over a model of `num_layers` layers of `num_heads` query heads of
    /// `head_dim`, checked against it; `default_order` unless --order is given.
    pub fn search(&self, num_layers: usize, num_heads: usize, head_dim: usize, default_order: LayerOrder) -> Result<LayerSearch, ExperimentError> {
        let search = LayerSearch {
            num_layers,
            num_heads,
            head_dim,
            group_sizes: self.group_sizes.clone(),
            distr: self.validate()?,
            order: self.order.unwrap_or(default_order),
        };
        search.validate()?;
        Ok(search)
    }

    /// The per-head search (`--per-head`) over the same model, checked against it.
    pub fn head_search(&self, num_layers: usize, num_heads: usize, head_dim: usize) -> Result<HeadSearch, ExperimentError> {
        let search = HeadSearch {
            num_layers,
            num_heads,
            head_dim,
            group_sizes: self.group_sizes.clone(),
            distr: self.validate()?,
            rounds: self.rounds.unwrap_or(3),
            ranking: self.ranking.unwrap_or(HeadRanking::Local),
        };
        search.validate()?;
        Ok(search)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Line {
        #[command(flatten)]
        attention: AttentionArgs,
    }

    fn parse(args: &[&str]) -> Result<AttentionArgs, String> {
        Line::try_parse_from(std::iter::once("line").chain(args.iter().copied()))
            .map(|line| line.attention)
            .map_err(|error| error.to_string())
    }

    fn plan(args: &[&str]) -> Result<ModelAttentionConfig, String> {
        parse(args)?.plan().map_err(|error| error.to_string())
    }

    #[test]
    fn exact_is_the_default_and_distr_takes_the_options() {
        assert_eq!(plan(&[]).unwrap(), ModelAttentionConfig::exact());
        let distr = plan(&[
            "--attention", "distr", "--group-size", "4", "--block-rows", "64", "--lsh-seed", "7",
            "--representative", "mean", "--grouping", "index", "--exact-first-layers", "2",
        ])
        .unwrap();
        let op = DistrAttentionConfig::new()
            .with_group_size(4)
            .with_block_rows(64)
            .with_seed(7)
            .with_representative(Representative::Mean)
            .with_grouping(Grouping::IndexOrder);
        assert_eq!(distr, ModelAttentionConfig::distr(op).with_exact_first_layers(2));
    }

    #[test]
    fn options_without_effect_and_out_of_range_are_errors_naming_the_flag() {
        for (args, expected) in [
            (&["--group-size", "4"][..], "invalid --group-size with exact attention"),
            (&["--attention", "exact", "--lsh-seed", "3"], "invalid --lsh-seed with exact attention"),
            (&["--exact-first-layers", "2"], "invalid --exact-first-layers"),
            (&["--attention", "distr", "--group-size", "0"], "invalid --group-size 0"),
            (&["--attention", "distr", "--group-size", "65"], "invalid --group-size 65"),
            (&["--attention", "distr", "--block-rows", "0"], "invalid --block-rows 0"),
            (&["--attention", "distr", "--num-projections", "21"], "invalid --num-projections 21"),
        ] {
            let error = plan(args).unwrap_err();
            assert!(error.contains(expected), "{args:?}: `{error}` does not say `{expected}`");
        }
        let error = parse(&["--config", "plan.json", "--group-size", "4"]).unwrap_err();
        assert!(error.contains("cannot be used with"), "{error}");
    }

    #[test]
    fn comparisons_default_to_distr_and_refuse_exact() {
        let compared = parse(&["--group-size", "4"]).unwrap().compared_plan("eval").unwrap();
        assert_eq!(compared.default.head_configs(1)[0].group_size, 4);
        let error = parse(&["--attention", "exact"]).unwrap().compared_plan("eval").unwrap_err();
        assert!(error.to_string().contains("`eval` compares"), "{error}");
    }
}

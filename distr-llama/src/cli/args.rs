//! Options shared by every command.

use std::path::PathBuf;
use std::time::Instant;

use burn::config::Config;
use clap::{Args, ValueEnum};
use distr_attn::backends::BackendKind;
use distr_attn::{
    AttentionKind, DistrAttentionBackend, DistrAttentionConfig, ModelAttentionConfig, Representative, MAX_BLOCK_ROWS,
    MAX_GROUP_SIZE, MAX_NUM_PROJECTIONS,
};

use crate::checkpoint::{checkpoint_file, load_checkpoint};
use crate::error::{LlamaError, Result};
use crate::model::LlamaConfig;
use crate::pretrained::{load_pretrained, Pretrained};

/// An error naming `flag` and its `value` unless `ok`.
pub(crate) fn require(ok: bool, flag: &'static str, value: impl std::fmt::Display, expected: impl Into<String>) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(LlamaError::Argument { flag, value: value.to_string(), expected: expected.into() })
    }
}

/// Checks `plan` against the loaded model: one entry per layer when it lists layers, and
/// group sizes that divide `head_dim`.
pub(crate) fn check_plan(plan: &ModelAttentionConfig, config: &LlamaConfig) -> Result<()> {
    for layer in 0..config.num_layers {
        let op = plan.kind_for_layer(layer, config.num_layers)?.op_config();
        if config.head_dim % op.group_size != 0 {
            return Err(LlamaError::Config(format!(
                "layer {layer}: group size {} does not divide the model's head_dim {}",
                op.group_size, config.head_dim
            )));
        }
    }
    Ok(())
}

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// A `.gguf` file or a Hugging Face checkpoint directory (config.json, *.safetensors,
    /// tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Backend: ndarray (CPU), wgpu or cuda (when compiled in).
    #[arg(long, default_value = "ndarray")]
    pub backend: BackendKind,
    /// Weights saved by `finetune --out` (the `.mpk` file, extension optional), replacing
    /// those of --model, which still gives the configuration and tokenizer.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
}

impl ModelArgs {
    /// Loads the model, telling stderr what was loaded and how long it took.
    pub fn load<B: DistrAttentionBackend>(&self, device: &B::Device) -> Result<Pretrained<B>> {
        let start = Instant::now();
        let mut pretrained = load_pretrained::<B>(&self.model, device)?;
        if let Some(checkpoint) = &self.checkpoint {
            pretrained.model = load_checkpoint(pretrained.model, checkpoint, device)?;
            eprintln!("weights from checkpoint {}", checkpoint_file(checkpoint).display());
        }
        let config = &pretrained.config;
        eprintln!(
            "loaded {} on {}: {} layers, d_model {}, {} heads / {} kv heads, vocab {}, {:.1}M parameters ({:.1} s)",
            self.model.display(),
            self.backend,
            config.num_layers,
            config.d_model,
            config.num_heads,
            config.num_kv_heads,
            config.vocab_size,
            config.num_parameters() as f64 / 1e6,
            start.elapsed().as_secs_f64()
        );
        Ok(pretrained)
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionChoice {
    Exact,
    Distr,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepresentativeChoice {
    Sample,
    Mean,
    /// The mean, with each key column weighted by the least-squares fit of its query column
    /// onto it (tensor-op path only).
    Projected,
}

/// Which attention each layer uses. `--config` gives a whole `ModelAttentionConfig` JSON;
/// otherwise `--attention distr` with the op parameters below applies to every layer after
/// the first `--exact-first-layers`.
#[derive(Args, Debug, Clone)]
pub struct AttentionArgs {
    /// Attention of the layers: exact, or DistrAttention.
    #[arg(long, default_value = "exact")]
    pub attention: AttentionChoice,
    /// A ModelAttentionConfig JSON file (overrides the options below).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Query columns fused per group (must divide head_dim).
    #[arg(long, default_value_t = 2)]
    pub group_size: usize,
    /// Query rows that share one grouping.
    #[arg(long, default_value_t = 128)]
    pub block_rows: usize,
    /// How a group's representative query column is formed.
    #[arg(long, default_value = "sample")]
    pub representative: RepresentativeChoice,
    /// Random hyperplanes of the LSH.
    #[arg(long, default_value_t = 16)]
    pub num_projections: usize,
    /// Keep the first K layers exact.
    #[arg(long, default_value_t = 0)]
    pub exact_first_layers: usize,
    /// Also use DistrAttention for single-token decode steps.
    #[arg(long)]
    pub distr_decode: bool,
}

impl AttentionArgs {
    /// The per-layer plan of the options; the DistrAttention parameters are range-checked
    /// even when `--attention exact` leaves them unused.
    pub fn plan(&self) -> Result<ModelAttentionConfig> {
        let op_config = self.op_config()?;
        if let Some(path) = &self.config {
            return ModelAttentionConfig::load(path)
                .map_err(|e| LlamaError::Config(format!("cannot read attention config `{}`: {e}", path.display())));
        }
        Ok(match self.attention {
            AttentionChoice::Exact => ModelAttentionConfig::exact(),
            AttentionChoice::Distr => ModelAttentionConfig::new()
                .with_default(AttentionKind::Distr(op_config))
                .with_exact_first_layers(self.exact_first_layers)
                .with_distr_decode(self.distr_decode),
        })
    }

    /// The DistrAttention parameters of the options (`--attention` and `--config` aside),
    /// each checked against the range the op supports.
    pub fn op_config(&self) -> Result<DistrAttentionConfig> {
        require(
            (1..=MAX_GROUP_SIZE).contains(&self.group_size),
            "--group-size",
            self.group_size,
            format!("expected 1 to {MAX_GROUP_SIZE}, dividing the model's head_dim"),
        )?;
        require(
            (1..=MAX_BLOCK_ROWS).contains(&self.block_rows),
            "--block-rows",
            self.block_rows,
            format!("expected 1 to {MAX_BLOCK_ROWS}"),
        )?;
        require(
            (1..=MAX_NUM_PROJECTIONS).contains(&self.num_projections),
            "--num-projections",
            self.num_projections,
            format!("expected 1 to {MAX_NUM_PROJECTIONS}"),
        )?;
        Ok(DistrAttentionConfig::new()
            .with_group_size(self.group_size)
            .with_block_rows(self.block_rows)
            .with_num_projections(self.num_projections)
            .with_representative(match self.representative {
                RepresentativeChoice::Sample => Representative::Sample,
                RepresentativeChoice::Mean => Representative::Mean,
                RepresentativeChoice::Projected => Representative::Projected,
            }))
    }
}

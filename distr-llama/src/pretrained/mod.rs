//! Where weights come from: a GGUF file or a Hugging Face checkpoint directory.
//!
//! Both are read through [`WeightSource`], which answers in Hugging Face tensor names and
//! layout (`[out, in]` matrices, RoPE halves not interleaved); [`build_llama`] turns those
//! into the Burn modules, checking every shape. [`export_hf`] writes a loaded model back out
//! as a Hugging Face directory.

mod export;
mod gguf;
mod hf;
mod random;

use std::path::Path;

use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::{Tensor, TensorData};
use distr_attn::DistrAttentionBackend;

pub use export::{export_hf, hf_config, ExportDtype};
pub use gguf::GgufWeights;
pub use hf::{read_config, HfCheckpoint};
pub use random::RandomWeights;

use crate::error::{LlamaError, Result};
use crate::model::{Attention, Llama, LlamaConfig, Mlp, RotaryEmbedding, TransformerBlock};
use crate::tokenizer::BpeTokenizer;

/// Tensors by Hugging Face name, dequantised to `f32`, with their row-major shape.
pub trait WeightSource {
    fn tensor(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)>;
}

/// A loaded model: configuration, weights and tokenizer.
pub struct Pretrained<B: DistrAttentionBackend> {
    pub config: LlamaConfig,
    pub model: Llama<B>,
    pub tokenizer: BpeTokenizer,
}

impl<B: DistrAttentionBackend> Pretrained<B> {
    /// Writes this model as a Hugging Face checkpoint directory (see [`export_hf`]).
    pub fn export(&self, dir: &Path, dtype: ExportDtype) -> Result<()> {
        export_hf(&self.model, &self.config, &self.tokenizer, dir, dtype)
    }
}

/// Loads a `.gguf` file or a Hugging Face checkpoint directory.
pub fn load_pretrained<B: DistrAttentionBackend>(path: &Path, device: &B::Device) -> Result<Pretrained<B>> {
    if path.is_dir() {
        let checkpoint = HfCheckpoint::open(path)?;
        let tokenizer = BpeTokenizer::from_file(&path.join("tokenizer.json"))?;
        let model = build_llama(&checkpoint.config, &checkpoint, device)?;
        Ok(Pretrained { config: checkpoint.config.clone(), model, tokenizer })
    } else {
        let weights = GgufWeights::open(path)?;
        let tokenizer = BpeTokenizer::from_gguf(&weights.file)?;
        let model = build_llama(&weights.config, &weights, device)?;
        Ok(Pretrained { config: weights.config.clone(), model, tokenizer })
    }
}

/// The configuration and tokenizer of `path` (a `.gguf` file, or a directory with
/// `config.json` and `tokenizer.json`; no weights needed) with seeded random weights.
pub fn load_random<B: DistrAttentionBackend>(path: &Path, seed: u64, device: &B::Device) -> Result<Pretrained<B>> {
    let (config, tokenizer) = if path.is_dir() {
        (read_config(path)?, BpeTokenizer::from_file(&path.join("tokenizer.json"))?)
    } else {
        let weights = GgufWeights::open(path)?;
        (weights.config.clone(), BpeTokenizer::from_gguf(&weights.file)?)
    };
    let model = build_llama(&config, &RandomWeights::new(config.clone(), seed), device)?;
    Ok(Pretrained { config, model, tokenizer })
}

/// Builds a [`Llama`] from `source`, in Hugging Face names.
pub fn build_llama<B: DistrAttentionBackend>(
    config: &LlamaConfig,
    source: &dyn WeightSource,
    device: &B::Device,
) -> Result<Llama<B>> {
    config.validate()?;
    let loader = Loader { source, device };
    let (d_model, head_dim) = (config.d_model, config.head_dim);
    let layers = (0..config.num_layers)
        .map(|i| {
            let prefix = format!("model.layers.{i}");
            Ok(TransformerBlock {
                attention_norm: loader.rms_norm(&format!("{prefix}.input_layernorm.weight"), config)?,
                attention: Attention {
                    query: loader.linear(&format!("{prefix}.self_attn.q_proj.weight"), d_model, config.num_heads * head_dim)?,
                    key: loader.linear(&format!("{prefix}.self_attn.k_proj.weight"), d_model, config.num_kv_heads * head_dim)?,
                    value: loader.linear(&format!("{prefix}.self_attn.v_proj.weight"), d_model, config.num_kv_heads * head_dim)?,
                    output: loader.linear(&format!("{prefix}.self_attn.o_proj.weight"), config.num_heads * head_dim, d_model)?,
                    num_heads: config.num_heads,
                    num_kv_heads: config.num_kv_heads,
                    head_dim,
                    adapters: None,
                },
                mlp_norm: loader.rms_norm(&format!("{prefix}.post_attention_layernorm.weight"), config)?,
                mlp: Mlp {
                    gate: loader.linear(&format!("{prefix}.mlp.gate_proj.weight"), d_model, config.d_ff)?,
                    up: loader.linear(&format!("{prefix}.mlp.up_proj.weight"), d_model, config.d_ff)?,
                    down: loader.linear(&format!("{prefix}.mlp.down_proj.weight"), config.d_ff, d_model)?,
                },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let output = if config.tie_embeddings {
        None
    } else {
        Some(loader.linear("lm_head.weight", d_model, config.vocab_size)?)
    };
    Ok(Llama::new(
        Embedding {
            weight: Param::from_tensor(loader.tensor("model.embed_tokens.weight", [config.vocab_size, d_model])?),
        },
        layers,
        loader.rms_norm("model.norm.weight", config)?,
        output,
        RotaryEmbedding::new(config, device),
        config.max_seq_len,
    ))
}

struct Loader<'a, B: DistrAttentionBackend> {
    source: &'a dyn WeightSource,
    device: &'a B::Device,
}

impl<B: DistrAttentionBackend> Loader<'_, B> {
    fn values<const D: usize>(&self, name: &str, shape: [usize; D]) -> Result<Vec<f32>> {
        let (values, actual) = self.source.tensor(name)?;
        if actual != shape {
            return Err(LlamaError::BadShape { tensor: name.to_string(), actual, expected: shape.to_vec() });
        }
        Ok(values)
    }

    fn tensor<const D: usize>(&self, name: &str, shape: [usize; D]) -> Result<Tensor<B, D>> {
        let values = self.values(name, shape)?;
        Ok(Tensor::from_data(TensorData::new(values, shape), self.device))
    }

    /// A bias-free Linear from a Hugging Face `[d_output, d_input]` weight, transposed on
    /// the host to Burn's `[d_input, d_output]` so the parameter is contiguous.
    fn linear(&self, name: &str, d_input: usize, d_output: usize) -> Result<Linear<B>> {
        let values = self.values(name, [d_output, d_input])?;
        let mut transposed = vec![0.0; values.len()];
        for (row, chunk) in values.chunks_exact(d_input).enumerate() {
            for (column, &value) in chunk.iter().enumerate() {
                transposed[column * d_output + row] = value;
            }
        }
        let weight = Tensor::from_data(TensorData::new(transposed, [d_input, d_output]), self.device);
        Ok(Linear { weight: Param::from_tensor(weight), bias: None })
    }

    fn rms_norm(&self, name: &str, config: &LlamaConfig) -> Result<RmsNorm<B>> {
        Ok(RmsNorm {
            gamma: Param::from_tensor(self.tensor(name, [config.d_model])?),
            epsilon: config.rms_norm_eps,
        })
    }
}

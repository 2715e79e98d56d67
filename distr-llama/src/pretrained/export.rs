//! Writing a loaded model as a Hugging Face checkpoint directory, the inverse of
//! [`HfCheckpoint`](super::HfCheckpoint): `config.json` (the keys `transformers` 5 writes for
//! a `LlamaForCausalLM`), `model.safetensors`, `tokenizer.json` and `tokenizer_config.json`
//! (with the chat template).
//!
//! The model already holds Hugging Face's layout (a GGUF's Q/K rows were put back in RoPE
//! halves on load, see `gguf.rs`), so each tensor is written as `build_llama` reads it: Burn's
//! `[d_input, d_output]` Linear weights transposed back to `[d_output, d_input]`; a tied
//! head has no `lm_head.weight`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use clap::ValueEnum;
use half::{bf16, f16};
use safetensors::tensor::View;
use safetensors::Dtype;
use serde_json::json;

use crate::error::{LlamaError, Result};
use crate::model::{Llama, LlamaConfig};
use crate::tokenizer::BpeTokenizer;

/// The float type of the written tensors.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportDtype {
    /// Lossless for any model loaded here (weights are held in `f32`).
    F32,
    F16,
    /// What Hugging Face publishes most Llamas in.
    Bf16,
}

impl ExportDtype {
    fn safetensors(self) -> Dtype {
        match self {
            Self::F32 => Dtype::F32,
            Self::F16 => Dtype::F16,
            Self::Bf16 => Dtype::BF16,
        }
    }

    /// The name `config.json` gives it (`dtype`).
    pub fn torch_name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::Bf16 => "bfloat16",
        }
    }

    /// Little-endian bytes of `values` in this type (rounded to nearest).
    fn bytes(self, values: &[f32]) -> Vec<u8> {
        match self {
            Self::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Self::F16 => values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
            Self::Bf16 => values.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect(),
        }
    }
}

/// One tensor ready for `model.safetensors`.
struct HostTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }

    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Writes `model` (with `config` and `tokenizer`) into `dir`, creating it; files of the
/// same names are replaced. Refuses a model carrying unmerged LoRA adapters.
pub fn export_hf<B: Backend>(
    model: &Llama<B>,
    config: &LlamaConfig,
    tokenizer: &BpeTokenizer,
    dir: &Path,
    dtype: ExportDtype,
) -> Result<()> {
    config.validate()?;
    if model.layers.iter().any(|layer| layer.attention.adapters.is_some()) {
        return Err(LlamaError::Config("the model has LoRA adapters: merge them before exporting".into()));
    }
    std::fs::create_dir_all(dir).map_err(LlamaError::io(dir))?;

    let mut tensors: Vec<(String, HostTensor)> = Vec::new();
    let mut add = |name: String, values: Vec<f32>, shape: Vec<usize>| {
        tensors.push((name, HostTensor { dtype: dtype.safetensors(), shape, bytes: dtype.bytes(&values) }));
    };
    let (values, shape) = host(model.embedding.weight.val())?;
    add("model.embed_tokens.weight".into(), values, shape);
    for (index, layer) in model.layers.iter().enumerate() {
        let prefix = format!("model.layers.{index}");
        let attention = &layer.attention;
        let linears = [
            ("self_attn.q_proj", &attention.query),
            ("self_attn.k_proj", &attention.key),
            ("self_attn.v_proj", &attention.value),
            ("self_attn.o_proj", &attention.output),
            ("mlp.gate_proj", &layer.mlp.gate),
            ("mlp.up_proj", &layer.mlp.up),
            ("mlp.down_proj", &layer.mlp.down),
        ];
        for (name, linear) in linears {
            let (values, shape) = host(linear.weight.val().transpose())?;
            add(format!("{prefix}.{name}.weight"), values, shape);
        }
        for (name, norm) in [("input_layernorm", &layer.attention_norm), ("post_attention_layernorm", &layer.mlp_norm)] {
            let (values, shape) = host(norm.gamma.val())?;
            add(format!("{prefix}.{name}.weight"), values, shape);
        }
    }
    let (values, shape) = host(model.norm.gamma.val())?;
    add("model.norm.weight".into(), values, shape);
    if let Some(output) = &model.output {
        let (values, shape) = host(output.weight.val().transpose())?;
        add("lm_head.weight".into(), values, shape);
    }

    let path = dir.join("model.safetensors");
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(tensors.iter().map(|(name, tensor)| (name.as_str(), tensor)), Some(metadata), &path)
        .map_err(|e| LlamaError::Safetensors { path: path.clone(), message: e.to_string() })?;

    write_json(&dir.join("config.json"), &hf_config(config, tokenizer, dtype))?;
    tokenizer.save_dir(dir, config.max_seq_len)
}

/// The `config.json` of a `LlamaForCausalLM` as `transformers` 5 writes it (RoPE under
/// `rope_parameters`), which [`HfLlamaConfig`](crate::model::HfLlamaConfig) reads back.
pub fn hf_config(config: &LlamaConfig, tokenizer: &BpeTokenizer, dtype: ExportDtype) -> serde_json::Value {
    let rope_parameters = match &config.rope_scaling {
        None => json!({ "rope_type": "default", "rope_theta": config.rope_theta }),
        Some(scaling) => json!({
            "rope_type": "llama3",
            "rope_theta": config.rope_theta,
            "factor": scaling.factor,
            "low_freq_factor": scaling.low_freq_factor,
            "high_freq_factor": scaling.high_freq_factor,
            "original_max_position_embeddings": scaling.original_max_position_embeddings,
        }),
    };
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.d_ff,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_parameters": rope_parameters,
        "tie_word_embeddings": config.tie_embeddings,
        "attention_bias": false,
        "attention_dropout": 0.0,
        "mlp_bias": false,
        "pretraining_tp": 1,
        "initializer_range": 0.02,
        "use_cache": true,
        "bos_token_id": tokenizer.bos_id(),
        "eos_token_id": tokenizer.eos_id(),
        "dtype": dtype.torch_name(),
    })
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialise");
    std::fs::write(path, text + "\n").map_err(LlamaError::io(path))
}

/// A parameter's values (row-major, made contiguous) and shape on the host.
fn host<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Result<(Vec<f32>, Vec<usize>)> {
    let shape = tensor.dims().to_vec();
    let values = tensor
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| LlamaError::Config(format!("cannot read a parameter back: {e:?}")))?;
    Ok((values, shape))
}

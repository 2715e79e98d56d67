//! Weights and hyper-parameters from a llama.cpp GGUF file.

use std::path::Path;

use crate::error::{LlamaError, Result};
use crate::gguf::GgufFile;
use crate::model::LlamaConfig;
use crate::pretrained::WeightSource;

/// A GGUF file read as a Hugging Face checkpoint.
pub struct GgufWeights {
    pub file: GgufFile,
    pub config: LlamaConfig,
}

/// Which rows of a projection llama.cpp interleaved for its RoPE layout.
enum Rows {
    AsStored,
    /// Q or K: undo the permutation over this many heads.
    RopeInterleaved(usize),
}

impl GgufWeights {
    pub fn open(path: &Path) -> Result<Self> {
        let file = GgufFile::open(path)?;
        let config = config_from_metadata(&file)?;
        Ok(Self { file, config })
    }

    /// The GGUF name of a Hugging Face tensor name, and how its rows are stored.
    fn gguf_name(&self, name: &str) -> Option<(String, Rows)> {
        let global = match name {
            "model.embed_tokens.weight" => Some("token_embd.weight"),
            "model.norm.weight" => Some("output_norm.weight"),
            "lm_head.weight" => Some("output.weight"),
            _ => None,
        };
        if let Some(global) = global {
            return Some((global.to_string(), Rows::AsStored));
        }
        let rest = name.strip_prefix("model.layers.")?;
        let (layer, suffix) = rest.split_once('.')?;
        let (gguf_suffix, rows) = match suffix {
            "input_layernorm.weight" => ("attn_norm.weight", Rows::AsStored),
            "self_attn.q_proj.weight" => ("attn_q.weight", Rows::RopeInterleaved(self.config.num_heads)),
            "self_attn.k_proj.weight" => ("attn_k.weight", Rows::RopeInterleaved(self.config.num_kv_heads)),
            "self_attn.v_proj.weight" => ("attn_v.weight", Rows::AsStored),
            "self_attn.o_proj.weight" => ("attn_output.weight", Rows::AsStored),
            "post_attention_layernorm.weight" => ("ffn_norm.weight", Rows::AsStored),
            "mlp.gate_proj.weight" => ("ffn_gate.weight", Rows::AsStored),
            "mlp.up_proj.weight" => ("ffn_up.weight", Rows::AsStored),
            "mlp.down_proj.weight" => ("ffn_down.weight", Rows::AsStored),
            _ => return None,
        };
        Some((format!("blk.{layer}.{gguf_suffix}"), rows))
    }
}

impl WeightSource for GgufWeights {
    fn tensor(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let (gguf_name, rows) = self
            .gguf_name(name)
            .ok_or_else(|| LlamaError::MissingTensor(name.to_string()))?;
        let (values, shape) = self.file.tensor_f32(&gguf_name)?;
        match rows {
            Rows::AsStored => Ok((values, shape)),
            Rows::RopeInterleaved(heads) => {
                let values = undo_rope_interleave(&gguf_name, values, &shape, heads)?;
                Ok((values, shape))
            }
        }
    }
}

/// llama.cpp's converter stores, within each head, row `2j + t` what Hugging Face has at row
/// `t * half + j` (pairs of adjacent dimensions for its RoPE); this puts the rows back.
fn undo_rope_interleave(name: &str, values: Vec<f32>, shape: &[usize], heads: usize) -> Result<Vec<f32>> {
    let (rows, columns) = match *shape {
        [rows, columns] if rows % (2 * heads) == 0 => (rows, columns),
        _ => {
            return Err(LlamaError::BadShape {
                tensor: name.to_string(),
                actual: shape.to_vec(),
                expected: vec![heads * 2, 0],
            })
        }
    };
    let half = rows / heads / 2;
    let mut out = vec![0.0; values.len()];
    for head in 0..heads {
        for j in 0..half {
            for t in 0..2 {
                let from = (head * 2 * half + 2 * j + t) * columns;
                let to = (head * 2 * half + t * half + j) * columns;
                out[to..to + columns].copy_from_slice(&values[from..from + columns]);
            }
        }
    }
    Ok(out)
}

fn config_from_metadata(file: &GgufFile) -> Result<LlamaConfig> {
    let arch = file.require_str("general.architecture")?;
    if arch != "llama" {
        return Err(LlamaError::Architecture(arch.to_string()));
    }
    let key = |name: &str| format!("llama.{name}");
    let int = |name: &str| file.require_u64(&key(name)).map(|v| v as usize);
    let optional_int = |name: &str| file.get(&key(name)).and_then(|v| v.as_u64()).map(|v| v as usize);
    let optional_float = |name: &str| file.get(&key(name)).and_then(|v| v.as_f64());

    if let Some(kind) = file.get(&key("rope.scaling.type")).and_then(|v| v.as_str()) {
        if kind != "none" {
            return Err(LlamaError::Config(format!("GGUF rope scaling `{kind}` is not supported")));
        }
    }
    if file.tensors.contains_key("rope_freqs.weight") {
        return Err(LlamaError::Config(
            "GGUF `rope_freqs.weight` (Llama 3 frequency factors) is not supported: load the Hugging Face checkpoint instead".into(),
        ));
    }
    let d_model = int("embedding_length")?;
    let num_heads = int("attention.head_count")?;
    let embedding = file
        .tensors
        .get("token_embd.weight")
        .ok_or_else(|| LlamaError::MissingTensor("token_embd.weight".into()))?;
    let vocab_size = match embedding.dims.as_slice() {
        [_, vocab] => *vocab,
        _ => {
            return Err(LlamaError::BadShape {
                tensor: "token_embd.weight".into(),
                actual: embedding.shape(),
                expected: vec![0, d_model],
            })
        }
    };
    let config = LlamaConfig {
        vocab_size,
        d_model,
        num_layers: int("block_count")?,
        num_heads,
        num_kv_heads: optional_int("attention.head_count_kv").unwrap_or(num_heads),
        head_dim: optional_int("attention.key_length")
            .or(optional_int("rope.dimension_count"))
            .unwrap_or(d_model / num_heads.max(1)),
        d_ff: int("feed_forward_length")?,
        rms_norm_eps: optional_float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
        rope_theta: optional_float("rope.freq_base").unwrap_or(10000.0),
        rope_scaling: None,
        max_seq_len: optional_int("context_length").unwrap_or(4096),
        tie_embeddings: !file.tensors.contains_key("output.weight"),
    };
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_rope_interleave_inverts_llama_cpp_permutation() {
        // Two heads of head_dim 4, one column: llama.cpp stores [a0, a2, a1, a3] per head.
        let stored = vec![0.0, 2.0, 1.0, 3.0, 10.0, 12.0, 11.0, 13.0];
        let rows = undo_rope_interleave("q", stored, &[8, 1], 2).unwrap();
        assert_eq!(rows, vec![0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0]);
        assert!(undo_rope_interleave("q", vec![0.0; 6], &[6, 1], 2).is_err());
    }
}

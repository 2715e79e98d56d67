//! Hyper-parameters of a Llama, with presets and the Hugging Face `config.json` form.

use burn::config::Config;
use serde::Deserialize;

use crate::error::{self, LlamaError};

/// Llama 3's RoPE frequency scaling: wavelengths longer than
/// `original_max_position_embeddings / low_freq_factor` are stretched by `factor`, those
/// shorter than `.. / high_freq_factor` are kept, and those in between are interpolated.
#[derive(Config, Debug, PartialEq)]
pub struct RopeScaling {
    /// Stretch of the low frequencies. Default: 8 (Llama 3.1).
    #[config(default = 8.0)]
    pub factor: f64,
    /// Default: 1.
    #[config(default = 1.0)]
    pub low_freq_factor: f64,
    /// Default: 4.
    #[config(default = 4.0)]
    pub high_freq_factor: f64,
    /// Context length the model was pre-trained with. Default: 8192.
    #[config(default = 8192)]
    pub original_max_position_embeddings: usize,
}

/// Configuration of a [`Llama`](crate::model::Llama).
#[derive(Config, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Vocabulary size (rows of the token embedding).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Number of transformer blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention: each serves `num_heads / num_kv_heads`).
    pub num_kv_heads: usize,
    /// Width of each head. Usually `d_model / num_heads`.
    pub head_dim: usize,
    /// Hidden width of the SwiGLU MLP.
    pub d_ff: usize,
    /// RMSNorm epsilon. Default: 1e-5.
    #[config(default = 1e-5)]
    pub rms_norm_eps: f64,
    /// RoPE base. Default: 10000.
    #[config(default = 10000.0)]
    pub rope_theta: f64,
    /// Llama 3 frequency scaling of RoPE. Default: none.
    pub rope_scaling: Option<RopeScaling>,
    /// Longest sequence (prompt plus generated tokens) the RoPE tables cover. Default: 8192.
    #[config(default = 8192)]
    pub max_seq_len: usize,
    /// Whether the output head reuses the token embedding. Default: false.
    #[config(default = false)]
    pub tie_embeddings: bool,
}

impl LlamaConfig {
    /// SmolLM2-135M(-Instruct): 30 layers, width 576, 9 heads over 3 KV heads, tied head.
    pub fn smollm2_135m() -> Self {
        Self::new(49152, 576, 30, 9, 3, 64, 1536)
            .with_rope_theta(100000.0)
            .with_tie_embeddings(true)
    }

    /// Llama 3.2 1B: 16 layers, width 2048, 32 heads over 8 KV heads, Llama 3 RoPE scaling.
    pub fn llama3_2_1b() -> Self {
        Self::new(128256, 2048, 16, 32, 8, 64, 8192)
            .with_rope_theta(500000.0)
            .with_rope_scaling(Some(RopeScaling::new().with_factor(32.0)))
            .with_max_seq_len(131072)
            .with_tie_embeddings(true)
    }

    /// Checks that the shapes fit together.
    pub fn validate(&self) -> error::Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("d_ff", self.d_ff),
            ("max_seq_len", self.max_seq_len),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(LlamaError::Config(format!("{name} must be positive")));
        }
        if self.num_heads % self.num_kv_heads != 0 {
            return Err(LlamaError::Config(format!(
                "num_heads {} is not a multiple of num_kv_heads {}",
                self.num_heads, self.num_kv_heads
            )));
        }
        if self.head_dim % 2 != 0 {
            return Err(LlamaError::Config(format!("head_dim {} must be even for RoPE", self.head_dim)));
        }
        if !(self.rms_norm_eps > 0.0 && self.rope_theta > 0.0) {
            return Err(LlamaError::Config(format!(
                "rms_norm_eps {} and rope_theta {} must be positive",
                self.rms_norm_eps, self.rope_theta
            )));
        }
        Ok(())
    }
}

/// The fields of a Hugging Face `LlamaForCausalLM` `config.json` this crate reads.
///
/// RoPE settings appear as `rope_theta` + `rope_scaling` (transformers 4) or as
/// `rope_parameters` (transformers 5); both are accepted.
#[derive(Debug, Clone, Deserialize)]
pub struct HfLlamaConfig {
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default)]
    pub rms_norm_eps: Option<f64>,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_scaling: Option<HfRopeParameters>,
    #[serde(default)]
    pub rope_parameters: Option<HfRopeParameters>,
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    #[serde(default)]
    pub hidden_act: Option<String>,
    #[serde(default)]
    pub attention_bias: Option<bool>,
    #[serde(default)]
    pub mlp_bias: Option<bool>,
}

/// `rope_scaling` / `rope_parameters` of a `config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct HfRopeParameters {
    #[serde(default, alias = "type")]
    pub rope_type: Option<String>,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub factor: Option<f64>,
    #[serde(default)]
    pub low_freq_factor: Option<f64>,
    #[serde(default)]
    pub high_freq_factor: Option<f64>,
    #[serde(default)]
    pub original_max_position_embeddings: Option<usize>,
}

impl HfLlamaConfig {
    /// The runtime configuration; refuses what this implementation does not compute.
    pub fn to_config(&self) -> error::Result<LlamaConfig> {
        if let Some(model_type) = self.model_type.as_deref().filter(|t| *t != "llama") {
            return Err(LlamaError::Architecture(model_type.to_string()));
        }
        if let Some(act) = self.hidden_act.as_deref().filter(|a| *a != "silu") {
            return Err(LlamaError::Config(format!("hidden_act `{act}` is not supported: expected silu")));
        }
        if self.attention_bias == Some(true) || self.mlp_bias == Some(true) {
            return Err(LlamaError::Config("attention_bias / mlp_bias are not supported".into()));
        }
        let rope = self.rope_parameters.as_ref().or(self.rope_scaling.as_ref());
        let rope_theta = self
            .rope_theta
            .or(rope.and_then(|r| r.rope_theta))
            .unwrap_or(10000.0);
        let rope_scaling = match rope.and_then(|r| r.rope_type.as_deref().map(|t| (r, t))) {
            None | Some((_, "default")) => None,
            Some((r, "llama3")) => {
                let defaults = RopeScaling::new();
                Some(RopeScaling {
                    factor: r.factor.unwrap_or(defaults.factor),
                    low_freq_factor: r.low_freq_factor.unwrap_or(defaults.low_freq_factor),
                    high_freq_factor: r.high_freq_factor.unwrap_or(defaults.high_freq_factor),
                    original_max_position_embeddings: r
                        .original_max_position_embeddings
                        .unwrap_or(defaults.original_max_position_embeddings),
                })
            }
            Some((_, other)) => {
                return Err(LlamaError::Config(format!(
                    "rope type `{other}` is not supported: expected default or llama3"
                )))
            }
        };
        let config = LlamaConfig {
            vocab_size: self.vocab_size,
            d_model: self.hidden_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            num_kv_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim: self
                .head_dim
                .unwrap_or(self.hidden_size / self.num_attention_heads.max(1)),
            d_ff: self.intermediate_size,
            rms_norm_eps: self.rms_norm_eps.unwrap_or(1e-5),
            rope_theta,
            rope_scaling,
            max_seq_len: self.max_position_embeddings.unwrap_or(8192),
            tie_embeddings: self.tie_word_embeddings.unwrap_or(false),
        };
        config.validate()?;
        Ok(config)
    }
}

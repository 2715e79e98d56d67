//! Seeded random weights for a configuration: tiny models in tests, and speed measurements
//! of a real architecture without its weights (latency does not depend on weight values).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{LlamaError, Result};
use crate::model::LlamaConfig;
use crate::pretrained::WeightSource;

/// Answers every Hugging Face tensor name of `config` with seeded values: ones for the
/// RMSNorm scales, normal `N(0, std^2)` for the rest. Each tensor has its own stream
/// (seeded from `seed` and its name), so a tensor does not change when others are added.
pub struct RandomWeights {
    pub config: LlamaConfig,
    pub seed: u64,
    /// Standard deviation of the matrices. Llama's initialisation uses 0.02.
    pub std: f32,
}

impl RandomWeights {
    pub fn new(config: LlamaConfig, seed: u64) -> Self {
        Self { config, seed, std: 0.02 }
    }

    /// The Hugging Face `[out, in]` shape of `name`, or `None` for a name this model lacks.
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let c = &self.config;
        let (heads, kv, d_ff) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.d_ff);
        match name {
            "model.embed_tokens.weight" => return Some(vec![c.vocab_size, c.d_model]),
            "model.norm.weight" => return Some(vec![c.d_model]),
            "lm_head.weight" if !c.tie_embeddings => return Some(vec![c.vocab_size, c.d_model]),
            _ => {}
        }
        let rest = name.strip_prefix("model.layers.")?;
        let (layer, suffix) = rest.split_once('.')?;
        if layer.parse::<usize>().ok()? >= c.num_layers {
            return None;
        }
        Some(match suffix {
            "input_layernorm.weight" | "post_attention_layernorm.weight" => vec![c.d_model],
            "self_attn.q_proj.weight" => vec![heads, c.d_model],
            "self_attn.k_proj.weight" | "self_attn.v_proj.weight" => vec![kv, c.d_model],
            "self_attn.o_proj.weight" => vec![c.d_model, heads],
            "mlp.gate_proj.weight" | "mlp.up_proj.weight" => vec![d_ff, c.d_model],
            "mlp.down_proj.weight" => vec![c.d_model, d_ff],
            _ => return None,
        })
    }
}

impl WeightSource for RandomWeights {
    fn tensor(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let shape = self.shape(name).ok_or_else(|| LlamaError::MissingTensor(name.to_string()))?;
        let len = shape.iter().product();
        if shape.len() == 1 {
            return Ok((vec![1.0; len], shape));
        }
        // FNV-1a of the name: a stable per-tensor stream.
        let name_hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let mut rng = StdRng::seed_from_u64(self.seed ^ name_hash);
        let values = (0..len).map(|_| self.std * standard_normal(&mut rng)).collect();
        Ok((values, shape))
    }
}

/// One draw of `N(0, 1)` (Box-Muller), so that no distribution crate is needed.
fn standard_normal(rng: &mut StdRng) -> f32 {
    let uniform: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let angle: f64 = rng.random::<f64>() * std::f64::consts::TAU;
    ((-2.0 * uniform.ln()).sqrt() * angle.cos()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_the_config_and_values_are_seeded() {
        let config = LlamaConfig::new(32, 16, 2, 4, 2, 4, 24);
        let weights = RandomWeights::new(config.clone(), 3);
        let (q, shape) = weights.tensor("model.layers.1.self_attn.q_proj.weight").unwrap();
        assert_eq!(shape, vec![16, 16]);
        assert_eq!(q, RandomWeights::new(config.clone(), 3).tensor("model.layers.1.self_attn.q_proj.weight").unwrap().0);
        assert_ne!(q, RandomWeights::new(config.clone(), 4).tensor("model.layers.1.self_attn.q_proj.weight").unwrap().0);
        let variance = q.iter().map(|v| v * v).sum::<f32>() / q.len() as f32;
        assert!((variance.sqrt() - 0.02).abs() < 0.006, "std {}", variance.sqrt());
        assert_eq!(weights.tensor("model.norm.weight").unwrap().0, vec![1.0; 16]);
        assert!(weights.tensor("model.layers.2.mlp.up_proj.weight").is_err());
        assert!(weights.tensor("lm_head.weight").is_ok());
    }
}

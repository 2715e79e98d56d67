//! The generation loop: one prefill pass over the prompt, then one decode step per token.

use std::time::Instant;

use burn::tensor::Tensor;
use distr_attn::DistrAttentionBackend;
use serde::Serialize;

use crate::error::{LlamaError, Result};
use crate::model::Llama;
use crate::sampling::Sampler;

/// Timings of one generation; throughput includes reading the logits back to the host.
#[derive(Debug, Clone, Serialize)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
}

impl GenerationStats {
    pub fn prefill_tokens_per_second(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill_seconds
    }

    /// Decode steps after the first generated token (which prefill produced).
    pub fn decode_tokens_per_second(&self) -> f64 {
        self.generated_tokens.saturating_sub(1) as f64 / self.decode_seconds
    }
}

/// Generates up to `max_tokens` tokens after `prompt` with the model's attention plan, calling
/// `on_token` with each id as soon as it is chosen; stops early at any of `stop_ids`. Returns
/// the generated ids.
pub fn generate<B: DistrAttentionBackend>(
    model: &Llama<B>,
    prompt: &[u32],
    max_tokens: usize,
    stop_ids: &[u32],
    sampler: &mut Sampler,
    device: &B::Device,
    mut on_token: impl FnMut(u32) -> Result<()>,
) -> Result<(Vec<u32>, GenerationStats)> {
    if prompt.is_empty() {
        return Err(LlamaError::Empty("the prompt has no tokens"));
    }
    let mut cache = model.new_cache();
    let mut generated = Vec::new();
    let start = Instant::now();
    let mut logits = model.forward_last(model.tokens(prompt, device)?, &mut cache)?;
    let mut next = sampler.sample(&host_row(logits));
    let prefill_seconds = start.elapsed().as_secs_f64();

    let start = Instant::now();
    while generated.len() < max_tokens {
        generated.push(next);
        on_token(next)?;
        if stop_ids.contains(&next) || generated.len() == max_tokens {
            break;
        }
        logits = model.forward_last(model.tokens(&[next], device)?, &mut cache)?;
        next = sampler.sample(&host_row(logits));
    }
    let stats = GenerationStats {
        prompt_tokens: prompt.len(),
        generated_tokens: generated.len(),
        prefill_seconds,
        decode_seconds: start.elapsed().as_secs_f64(),
    };
    Ok((generated, stats))
}

/// The first row of `[batch, vocab]` logits on the host (a device sync).
pub fn host_row<B: DistrAttentionBackend>(logits: Tensor<B, 2>) -> Vec<f32> {
    let [_, vocab] = logits.dims();
    logits
        .narrow(0, 0, 1)
        .reshape([vocab])
        .into_data()
        .convert::<f32>()
        .into_vec()
        .expect("f32 data converts to f32")
}

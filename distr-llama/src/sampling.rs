//! Choosing the next token from logits: greedy, or temperature with nucleus (top-p) sampling.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug)]
pub enum Sampler {
    /// The most likely token: deterministic, what parity checks use.
    Greedy,
    /// Samples from `softmax(logits / temperature)` restricted to the smallest set of tokens
    /// whose probability reaches `top_p`.
    TopP { temperature: f64, top_p: f64, rng: StdRng },
}

impl Sampler {
    /// Greedy when `temperature <= 0`, else top-p sampling seeded with `seed`.
    pub fn new(temperature: f64, top_p: f64, seed: u64) -> Self {
        if temperature <= 0.0 {
            Sampler::Greedy
        } else {
            Sampler::TopP { temperature, top_p: top_p.clamp(0.0, 1.0), rng: StdRng::seed_from_u64(seed) }
        }
    }

    /// The next token id from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        match self {
            Sampler::Greedy => argmax(logits),
            Sampler::TopP { temperature, top_p, rng } => {
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                let mut weights: Vec<(u32, f64)> = logits
                    .iter()
                    .enumerate()
                    .map(|(id, &logit)| (id as u32, ((logit as f64 - max) / *temperature).exp()))
                    .collect();
                weights.sort_by(|a, b| b.1.total_cmp(&a.1));
                let total: f64 = weights.iter().map(|w| w.1).sum();
                let mut kept = 0.0;
                let cut = weights
                    .iter()
                    .position(|w| {
                        kept += w.1 / total;
                        kept >= *top_p
                    })
                    .map_or(weights.len(), |last| last + 1);
                let mut target = rng.random::<f64>() * kept.min(1.0) * total;
                for &(id, weight) in &weights[..cut] {
                    target -= weight;
                    if target <= 0.0 {
                        return id;
                    }
                }
                weights[cut - 1].0
            }
        }
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (index, value) in values.iter().enumerate() {
        if *value > values[best] {
            best = index;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_narrow_top_p_pick_the_maximum() {
        let logits = [0.1, 3.0, -1.0, 2.9];
        assert_eq!(Sampler::new(0.0, 1.0, 0).sample(&logits), 1);
        assert_eq!(Sampler::new(1.0, 0.01, 0).sample(&logits), 1);
        let mut sampler = Sampler::new(1.0, 0.9, 3);
        assert!((0..50).all(|_| [1, 3].contains(&sampler.sample(&logits))));
    }
}

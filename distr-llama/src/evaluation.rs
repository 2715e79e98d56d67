//! Next-token scoring of a text: the pieces of perplexity and top-1 accuracy.

use burn::tensor::activation::log_softmax;
use burn::tensor::{FloatDType, Int, Tensor, TensorData};
use distr_attn::DistrAttentionBackend;

use crate::error::{LlamaError, Result};
use crate::model::Llama;

/// Scores of the targets of one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowScore {
    /// Sum of `-log p(target)` in nats.
    pub negative_log_likelihood: f64,
    /// The model's top-1 prediction for each scored target.
    pub predictions: Vec<u32>,
    /// How many predictions equal their target.
    pub correct: usize,
}

/// Windows `(begin, end, first_target)` over `len` tokens: the first holds the first
/// `context` tokens, each next one ends `stride` tokens later with `context` tokens of
/// history. Every token from the second on is scored exactly once (targets
/// `first_target..end`), each with at least `context - stride` tokens before it.
pub fn windows(len: usize, context: usize, stride: usize) -> Result<Vec<(usize, usize, usize)>> {
    if context < 2 || stride == 0 || stride >= context {
        return Err(LlamaError::Config(format!(
            "context {context} and stride {stride}: need context >= 2 and 1 <= stride < context"
        )));
    }
    if len < 2 {
        // Nothing to score: a perplexity over no targets would be NaN.
        return Err(LlamaError::TooFewTokens { what: "the scored text".into(), tokens: len, needed: 2 });
    }
    let mut windows = Vec::new();
    let mut scored_until = 1;
    while scored_until < len {
        let end = if windows.is_empty() { context.min(len) } else { (scored_until + stride).min(len) };
        windows.push((end.saturating_sub(context), end, scored_until));
        scored_until = end;
    }
    Ok(windows)
}

/// Runs `window` in one forward pass (with the model's attention plan) and scores the targets
/// `window[first_target..]`.
pub fn score_window<B: DistrAttentionBackend>(
    model: &Llama<B>,
    window: &[u32],
    first_target: usize,
    device: &B::Device,
) -> Result<WindowScore> {
    if first_target == 0 || first_target >= window.len() {
        return Err(LlamaError::Config(format!(
            "first target {first_target} must lie in 1..{} (a window of {} tokens)",
            window.len(),
            window.len()
        )));
    }
    let logits = model.forward(model.tokens(window, device)?, &mut model.new_cache())?;
    let [_, seq, vocab] = logits.dims();
    let scored = seq - first_target;
    let logits = logits.narrow(1, first_target - 1, scored).reshape([scored, vocab]);
    let targets: Vec<i64> = window[first_target..].iter().map(|&id| id.into()).collect();
    let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(targets.clone(), [scored]), device).reshape([scored, 1]);
    // In f32 whatever the model's float type: a half-precision sum over the vocabulary loses
    // the small probabilities perplexity is made of.
    let target_log_probs = log_softmax(logits.clone().cast(FloatDType::F32), 1).gather(1, targets);
    let nll: Vec<f32> = host(target_log_probs.reshape([scored]).neg().into_data())?;
    let predictions: Vec<i64> = host(logits.argmax(1).reshape([scored]).into_data())?;
    let predictions: Vec<u32> = predictions.into_iter().map(|id| id as u32).collect();
    let correct = predictions.iter().zip(&window[first_target..]).filter(|(p, t)| p == t).count();
    Ok(WindowScore {
        negative_log_likelihood: nll.iter().map(|&v| f64::from(v)).sum(),
        predictions,
        correct,
    })
}

/// The scores of every target of a token sequence, window after window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextScore {
    /// Sum of `-log p(target)` in nats.
    pub negative_log_likelihood: f64,
    /// The model's top-1 prediction for every token from the second on.
    pub predictions: Vec<u32>,
    /// How many predictions equal their target.
    pub correct: usize,
}

impl TextScore {
    /// Perplexity and top-1 accuracy.
    pub fn perplexity(&self) -> Perplexity {
        let scored = self.predictions.len();
        let mean_nll = self.negative_log_likelihood / scored as f64;
        Perplexity { perplexity: mean_nll.exp(), mean_nll, top1_accuracy: self.correct as f64 / scored as f64, scored }
    }

    /// The fraction of predictions equal to `other`'s (another plan on the same text).
    pub fn agreement(&self, other: &TextScore) -> f64 {
        let agree = self.predictions.iter().zip(&other.predictions).filter(|(a, b)| a == b).count();
        agree as f64 / self.predictions.len().max(1) as f64
    }
}

/// Perplexity and top-1 accuracy of a whole token sequence.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Perplexity {
    pub perplexity: f64,
    pub mean_nll: f64,
    pub top1_accuracy: f64,
    /// Targets scored.
    pub scored: usize,
}

/// Scores every token of `ids` after the first with the model's attention plan, in
/// [`windows`] of `context` tokens that advance by `stride`; `on_window` sees each window's
/// score as soon as it is done (for progress).
pub fn score_text<B: DistrAttentionBackend>(
    model: &Llama<B>,
    ids: &[u32],
    context: usize,
    stride: usize,
    device: &B::Device,
    mut on_window: impl FnMut(&WindowScore),
) -> Result<TextScore> {
    let mut total = TextScore::default();
    for (begin, end, first_target) in windows(ids.len(), context, stride)? {
        let score = score_window(model, &ids[begin..end], first_target - begin, device)?;
        on_window(&score);
        total.negative_log_likelihood += score.negative_log_likelihood;
        total.correct += score.correct;
        total.predictions.extend(score.predictions);
    }
    Ok(total)
}

/// [`score_text`]'s perplexity, without progress.
pub fn perplexity<B: DistrAttentionBackend>(
    model: &Llama<B>,
    ids: &[u32],
    context: usize,
    stride: usize,
    device: &B::Device,
) -> Result<Perplexity> {
    Ok(score_text(model, ids, context, stride, device, |_| {})?.perplexity())
}

fn host<E: burn::tensor::Element>(data: TensorData) -> Result<Vec<E>> {
    data.convert::<E>()
        .into_vec()
        .map_err(|e| LlamaError::Config(format!("cannot read back scores: {e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_score_every_token_once() {
        assert_eq!(windows(10, 10, 5).unwrap(), vec![(0, 10, 1)]);
        assert_eq!(windows(10, 4, 2).unwrap(), vec![(0, 4, 1), (2, 6, 4), (4, 8, 6), (6, 10, 8)]);
        assert_eq!(windows(9, 4, 3).unwrap(), vec![(0, 4, 1), (3, 7, 4), (5, 9, 7)]);
        assert!(windows(10, 4, 4).is_err());
        assert!(windows(10, 4, 0).is_err());
        assert!(windows(10, 1, 1).is_err());
        assert_eq!(windows(2, 4, 2).unwrap(), vec![(0, 2, 1)]);
        for len in [0, 1] {
            assert!(matches!(windows(len, 4, 2), Err(LlamaError::TooFewTokens { tokens, .. }) if tokens == len));
        }
    }
}

//! Step 7's masking and softmax, safe for fully masked rows.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};

use crate::AttentionProblem;

/// The user's mask (broadcast) combined with the causal mask, `[batch, heads, seq_q, seq_k]`,
/// `true` = masked. With `seq_q < seq_k` query `i` sits at position `i + seq_k - seq_q`.
pub(super) fn combined_mask<B: Backend>(
    mask: Option<Tensor<B, 4, Bool>>,
    problem: &AttentionProblem,
    device: &B::Device,
) -> Option<Tensor<B, 4, Bool>> {
    let shape = [problem.batch, problem.heads, problem.seq_q, problem.seq_k];
    let user = mask.map(|mask| mask.expand(shape));
    // One query row at the last position reads every key: nothing to mask (a decode step).
    let causal = (problem.config.causal && problem.seq_q > 1).then(|| {
        let [seq_q, seq_k] = [problem.seq_q, problem.seq_k];
        let offset = (seq_k - seq_q) as i64;
        // Built once as `[seq_q, seq_k]` and broadcast over batch and heads.
        let positions = Tensor::<B, 1, Int>::arange(offset..offset + seq_q as i64, device)
            .reshape([seq_q, 1])
            .expand([seq_q, seq_k]);
        let keys = Tensor::<B, 1, Int>::arange(0..seq_k as i64, device)
            .reshape([1, seq_k])
            .expand([seq_q, seq_k]);
        keys.greater(positions).reshape([1, 1, seq_q, seq_k]).expand(shape)
    });
    match (user, causal) {
        (Some(user), Some(causal)) => Some(user.bool_or(causal)),
        (user, causal) => user.or(causal),
    }
}

/// Softmax over the last dimension with masked entries at exactly zero weight. A row whose
/// entries are all masked gets zero weights (not NaN); NaN and Inf in a row stay in that row.
///
/// `quiet`: Burn's quiet softmax, with an implicit extra logit at zero,
/// `exp(x_j - m) / (exp(-m) + sum_k exp(x_k - m))` for the row maximum `m`.
pub(super) fn masked_softmax<B: Backend>(
    scores: Tensor<B, 4>,
    mask: Option<Tensor<B, 4, Bool>>,
    quiet: bool,
) -> Tensor<B, 4> {
    let scores = match mask {
        Some(mask) => scores.mask_fill(mask, f32::NEG_INFINITY),
        None => scores,
    };
    // Softmax is shift-invariant: the row maximum is a constant for the gradient.
    let row_max = scores.clone().max_dim(3).detach();
    let all_masked = row_max.clone().equal_elem(f32::NEG_INFINITY);
    let row_max = row_max.mask_fill(all_masked, 0.0);
    let weights = scores.sub(row_max.clone()).exp();
    let total = weights.clone().sum_dim(3);
    if quiet {
        // The zero logit's own weight: never zero, so no clamp (and a fully masked row,
        // whose maximum was set to 0 above, divides zeros by one).
        weights.div(total.add(row_max.neg().exp()))
    } else {
        weights.div(total.clamp_min(f32::MIN_POSITIVE))
    }
}

//! The CPU default's fast path: DistrAttention on Flex as Burn's own fused CPU attention
//! (`burn::tensor::module::attention`: gemm on tiles, causal tiles skipped, no
//! `[seq_q, seq_k]` scores beyond a tile) on the expanded query ([`expanded_query`]).
//!
//! Taken only where it computes what the reference computes: finite inputs, no mask tensor, no
//! quiet softmax. Burn's attention turns a NaN in a query row into finite output where the op's
//! contract is NaN in that row, and it has no quiet softmax; those calls, and masked ones,
//! run the reference. So do decode steps (at most [`DECODE_QUERY_ROWS`] query rows), where
//! the reference was measured faster: SmolLM2-135M (2 cores, random weights, 1024 tokens of
//! context) decoded 24 tokens/s through the reference and 15 through Burn's attention, which
//! takes its prefill from 156-173 to 195-200 tokens/s (exact) and from 129-145 to 178-203
//! (G = 2).

use burn::backend::Flex;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, DType, FloatDType, Tensor};

use crate::reference::{distr_attention_reference, expanded_query};
use crate::{AttentionProblem, DECODE_QUERY_ROWS};

/// The op on Flex: Burn's fused attention where it agrees with the reference (see the module
/// doc), the reference elsewhere.
pub(crate) fn distr_attention_flex(
    query: Tensor<Flex, 4>,
    key: Tensor<Flex, 4>,
    value: Tensor<Flex, 4>,
    mask: Option<Tensor<Flex, 4, Bool>>,
    problem: &AttentionProblem,
) -> Tensor<Flex, 4> {
    let decode_step = problem.seq_q <= DECODE_QUERY_ROWS;
    if decode_step || mask.is_some() || problem.quiet_softmax || !all_finite(&[&key, &value]) {
        return distr_attention_reference(query, key, value, mask, problem);
    }
    let dtype = query.dtype();
    let expanded = expanded_query(query.clone(), key.clone(), problem);
    if !all_finite(&[&expanded]) {
        return distr_attention_reference(query, key, value, None, problem);
    }
    // Half precision runs in f32, as in the reference (Burn's attention would cast it anyway).
    let [expanded, key, value] = [expanded, key, value].map(|tensor| match dtype {
        DType::F16 | DType::BF16 => tensor.cast(FloatDType::F32),
        _ => tensor,
    });
    let options = AttentionModuleOptions { scale: Some(problem.scale), softcap: None, is_causal: problem.config.causal };
    let [batch, heads, seq_q, _] = expanded.dims();
    let repeats = heads / problem.kv_heads;
    let output = if repeats == 1 {
        attention(expanded, key, value, None, None, options)
    } else if !problem.config.causal {
        // The query heads of one key head stacked along the rows read its keys where they lie
        // (a causal mask would see the stacked rows' positions).
        let stacked = expanded.reshape([batch, problem.kv_heads, repeats * seq_q, problem.head_dim]);
        let options = AttentionModuleOptions { is_causal: false, ..options };
        attention(stacked, key, value, None, None, options).reshape([batch, heads, seq_q, problem.value_dim])
    } else {
        let repeat = |tensor: Tensor<Flex, 4>| {
            let [batch, kv_heads, seq, dim] = tensor.dims();
            tensor.unsqueeze_dim::<5>(2).expand([batch, kv_heads, repeats, seq, dim]).reshape([batch, heads, seq, dim])
        };
        attention(expanded, repeat(key), repeat(value), None, None, options)
    };
    match dtype {
        DType::F16 => output.cast(FloatDType::F16),
        DType::BF16 => output.cast(FloatDType::BF16),
        _ => output,
    }
}

/// Whether every element of every tensor is finite.
fn all_finite(tensors: &[&Tensor<Flex, 4>]) -> bool {
    tensors.iter().all(|tensor| (*tensor).clone().is_finite().all().into_scalar())
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;
    use crate::{DistrAttentionConfig, Representative};

    /// Burn's attention on the expanded query against the reference: grouped-query heads in
    /// causal prefill (key heads repeated), with fewer query rows than keys, and non-causal
    /// (heads stacked), every representative, f32 and f16.
    #[test]
    fn fast_path_matches_the_reference() {
        let device = Default::default();
        let [heads, kv_heads, head_dim] = [6, 2, 32];
        let representatives =
            [Representative::Sample, Representative::Mean, Representative::SampledKeys, Representative::Projected];
        for (causal, seq_q, seq_k) in [(true, 70, 70), (true, 12, 90), (false, 50, 33)] {
            let random = |heads, seq| Tensor::<Flex, 4>::random([2, heads, seq, head_dim], Distribution::Normal(0.0, 1.0), &device);
            let [query, key, value] = [random(heads, seq_q), random(kv_heads, seq_k), random(kv_heads, seq_k)];
            for dtype in [FloatDType::F32, FloatDType::F16] {
                let [query, key, value] = [&query, &key, &value].map(|tensor| tensor.clone().cast(dtype));
                for (group_size, representative) in [(1, Representative::Mean)].into_iter().chain(representatives.map(|r| (2, r))) {
                    let config = DistrAttentionConfig::new()
                        .with_group_size(group_size)
                        .with_block_rows(16)
                        .with_representative(representative)
                        .with_causal(causal);
                    let problem = AttentionProblem::check(&query, &key, &value, None, &config).unwrap();
                    let fast = distr_attention_flex(query.clone(), key.clone(), value.clone(), None, &problem);
                    let reference = distr_attention_reference(query.clone(), key.clone(), value.clone(), None, &problem);
                    assert_eq!(fast.dtype(), reference.dtype());
                    let difference: f32 =
                        (fast.cast(FloatDType::F32) - reference.cast(FloatDType::F32)).abs().max().into_scalar();
                    // f16 outputs differ by at most a rounding step where the f32 results do.
                    let tolerance = if dtype == FloatDType::F16 { 2e-3 } else { 1e-5 };
                    assert!(
                        difference < tolerance,
                        "causal={causal} seq_q={seq_q} {dtype:?} G={group_size} {representative:?}: {difference}"
                    );
                }
            }
        }
    }
}

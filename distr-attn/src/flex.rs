//! The CPU default's fast path: DistrAttention on Flex as Burn's own fused CPU attention
//! (`burn::tensor::module::attention`: gemm on tiles, causal tiles skipped, no
//! `[seq_q, seq_k]` scores beyond a tile) on the expanded query ([`expanded_query`]).
//!
//! Taken only for causal prefill, where it was measured faster (one call, 2 cores, d = 64,
//! best of four): 9 query / 3 key heads at 1024 rows 70 / 84 ms against the reference's 92 / 97
//! (exact / G = 2), 6 heads at 1370 rows 76 / 90 against 108 / 173. Without the causal mask it
//! gains at G = 2 with more rows (6 heads, 1370 rows: 106 against 147 ms) and loses elsewhere
//! (exact: 3.4 against 2.6 ms at 257 rows, 92 against 78 at 1370; G = 2 with 9/3 heads: 91
//! against 77); decode steps (at most [`DECODE_QUERY_ROWS`] query rows) decoded SmolLM2-135M at
//! 15 tokens/s against the reference's 24. Those calls run the reference, and so do those where
//! Burn's attention would not compute what the reference does: inputs that are not finite
//! (Burn's attention turns a NaN in a query row into finite output, where the op's contract is
//! NaN in that row), a mask tensor, quiet softmax (which it lacks).

use burn::backend::Flex;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Tensor};

use crate::reference::{distr_attention_reference, expanded_query, from_accumulation, repeat_kv_heads, to_accumulation};
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
    let prefill = problem.config.causal && problem.seq_q > DECODE_QUERY_ROWS;
    if !prefill || mask.is_some() || problem.quiet_softmax || !all_finite(&[&key, &value]) {
        return distr_attention_reference(query, key, value, mask, problem);
    }
    let dtype = query.dtype();
    let expanded = expanded_query(query.clone(), key.clone(), problem);
    if !all_finite(&[&expanded]) {
        return distr_attention_reference(query, key, value, None, problem);
    }
    // Half precision runs in f32, as in the reference (Burn's attention would cast it anyway).
    let [expanded, key, value] = [expanded, key, value].map(to_accumulation);
    let options = AttentionModuleOptions { scale: Some(problem.scale), softcap: None, is_causal: true };
    // Burn's causal mask reads a row's position in its own head: grouped-query heads get their
    // key head repeated.
    let [key, value] = [key, value].map(|tensor| repeat_kv_heads(tensor, problem));
    let output = attention(expanded, key, value, None, None, options);
    from_accumulation(output, dtype)
}

/// Whether every element of every tensor is finite.
fn all_finite(tensors: &[&Tensor<Flex, 4>]) -> bool {
    tensors.iter().all(|tensor| (*tensor).clone().is_finite().all().into_scalar())
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, FloatDType};

    use super::*;
    use crate::{DistrAttentionConfig, Representative};

    /// Burn's attention on the expanded query against the reference in causal prefill, with as
    /// many and with fewer query rows than keys, grouped-query heads and not, every
    /// representative, f32 and f16.
    #[test]
    fn fast_path_matches_the_reference() {
        let device = Default::default();
        let [heads, head_dim] = [6, 32];
        let representatives =
            [Representative::Sample, Representative::Mean, Representative::SampledKeys, Representative::Projected];
        for (kv_heads, seq_q, seq_k) in [(2, 70, 70), (2, 12, 90), (6, 40, 40)] {
            let random = |heads, seq| Tensor::<Flex, 4>::random([2, heads, seq, head_dim], Distribution::Normal(0.0, 1.0), &device);
            let [query, key, value] = [random(heads, seq_q), random(kv_heads, seq_k), random(kv_heads, seq_k)];
            for dtype in [FloatDType::F32, FloatDType::F16] {
                let [query, key, value] = [&query, &key, &value].map(|tensor| tensor.clone().cast(dtype));
                for (group_size, representative) in [(1, Representative::Mean)].into_iter().chain(representatives.map(|r| (2, r))) {
                    let config = DistrAttentionConfig::new()
                        .with_group_size(group_size)
                        .with_block_rows(16)
                        .with_representative(representative)
                        .with_causal(true);
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
                        "{heads}/{kv_heads} heads, seq_q={seq_q} {dtype:?} G={group_size} {representative:?}: {difference}"
                    );
                }
            }
        }
    }
}

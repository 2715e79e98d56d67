//! The CPU default's fast path: DistrAttention on Flex as exact attention on the expanded
//! query ([`expanded_query`]), computed by [`block_attention`]: parallel over blocks of query
//! rows, one `gemm` for a block's scores and one for `P V`, causal blocks reading only the keys
//! they may see, no `[seq_q, seq_k]` scores beyond a block.
//!
//! Decode steps (at most [`DECODE_QUERY_ROWS`] query rows) run the reference: through the block
//! kernel SmolLM2-135M decoded at 15-18 tokens/s against the reference's 26-31 (1024 tokens of
//! context, 2 cores). So do calls with a mask tensor, inputs that are not finite (the op's
//! contract is NaN in the rows a NaN reaches, which the block kernel does not trace) and `f64`.

mod block_attention;

use burn::backend::Flex;
use burn::tensor::{Bool, DType, Tensor, TensorData};

use crate::reference::{distr_attention_reference, expanded_query, from_accumulation, to_accumulation};
use crate::{AttentionProblem, DECODE_QUERY_ROWS};
use block_attention::BlockAttention;

/// The op on Flex: the block kernel where it computes what the reference does (see the module
/// doc), the reference elsewhere.
pub(crate) fn distr_attention_flex(
    query: Tensor<Flex, 4>,
    key: Tensor<Flex, 4>,
    value: Tensor<Flex, 4>,
    mask: Option<Tensor<Flex, 4, Bool>>,
    problem: &AttentionProblem,
) -> Tensor<Flex, 4> {
    let dtype = query.dtype();
    let decode = problem.seq_q <= DECODE_QUERY_ROWS;
    if decode || mask.is_some() || dtype == DType::F64 {
        return distr_attention_reference(query, key, value, mask, problem);
    }
    // Half precision runs in f32, as in the reference.
    let [key_f32, value_f32] = [key.clone(), value.clone()].map(to_accumulation);
    if !all_finite(&[&key_f32, &value_f32]) {
        return distr_attention_reference(query, key, value, None, problem);
    }
    let expanded = to_accumulation(expanded_query(query.clone(), key.clone(), problem));
    if !all_finite(&[&expanded]) {
        return distr_attention_reference(query, key, value, None, problem);
    }
    drop((query, key, value));
    let [expanded, key, value] = [expanded, key_f32, value_f32].map(Tensor::into_data);
    let output = BlockAttention::new(problem).run(f32_slice(&expanded), f32_slice(&key), f32_slice(&value));
    let shape = [problem.batch, problem.heads, problem.seq_q, problem.value_dim];
    from_accumulation(Tensor::from_data(TensorData::new(output, shape), &Default::default()), dtype)
}

/// The values of an `f32` tensor's data, which [`to_accumulation`] guarantees for every dtype
/// but `f64`.
fn f32_slice(data: &TensorData) -> &[f32] {
    data.as_slice().expect("to_accumulation gives f32 for every dtype but f64")
}

/// Whether every element of every tensor is finite, conservatively: a tensor passes when its sum
/// is finite, which a NaN or infinity in it prevents (one reduction, where an elementwise test
/// and `all` make a boolean tensor first). Finite elements whose sum overflows fail, and send
/// the call to the reference, which is slower but right.
fn all_finite(tensors: &[&Tensor<Flex, 4>]) -> bool {
    tensors.iter().all(|tensor| (*tensor).clone().sum().into_scalar().is_finite())
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, FloatDType};

    use super::*;
    use crate::{DistrAttentionConfig, Representative};

    /// The block kernel on the expanded query against the reference: causal prefill with as
    /// many and with fewer query rows than keys, not causal, grouped-query heads
    /// and not, quiet softmax, every representative, f32 and f16.
    #[test]
    fn fast_path_matches_the_reference() {
        let device = Default::default();
        let [heads, head_dim] = [6, 32];
        let representatives =
            [Representative::Sample, Representative::Mean, Representative::SampledKeys, Representative::Projected];
        for (kv_heads, seq_q, seq_k, causal) in
            [(2, 70, 70, true), (2, 12, 90, true), (6, 40, 40, true), (2, 9, 33, true), (2, 50, 70, false), (6, 40, 9, false)]
        {
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
                    // Quiet softmax on the non-causal calls.
                    let problem = AttentionProblem::check(&query, &key, &value, None, &config).unwrap().with_quiet_softmax(!causal);
                    let fast = distr_attention_flex(query.clone(), key.clone(), value.clone(), None, &problem);
                    let reference = distr_attention_reference(query.clone(), key.clone(), value.clone(), None, &problem);
                    assert_eq!(fast.dtype(), reference.dtype());
                    let difference: f32 =
                        (fast.cast(FloatDType::F32) - reference.cast(FloatDType::F32)).abs().max().into_scalar();
                    // f16 outputs differ by at most a rounding step where the f32 results do.
                    let tolerance = if dtype == FloatDType::F16 { 2e-3 } else { 1e-5 };
                    assert!(
                        difference < tolerance,
                        "{heads}/{kv_heads} heads, seq_q={seq_q} causal={causal} {dtype:?} G={group_size} {representative:?}: {difference}"
                    );
                }
            }
        }
    }
}

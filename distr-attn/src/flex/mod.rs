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

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::{Bool, DType, Tensor, TensorData};

use crate::reference::{distr_attention_reference, expanded_query, from_accumulation, to_accumulation};
use crate::{AttentionProblem, DECODE_QUERY_ROWS};
use block_attention::{BlockAttention, HeadsView};

/// The op on Flex: the block kernel where it computes what the reference does (see the module
/// doc), the reference elsewhere. The kernel reads its inputs in place where their layout
/// allows (views of a model's projections and cache) and returns a view of
/// `[batch, seq_q, heads, value_dim]` rows, which a model's merge of the heads reads without a
/// copy.
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
    let expanded = to_accumulation(expanded_query(query.clone(), key.clone(), problem));
    let [expanded, key_f32, value_f32] = [expanded, to_accumulation(key.clone()), to_accumulation(value.clone())].map(readable);
    let [expanded, key_f32, value_f32] =
        [&expanded, &key_f32, &value_f32].map(|tensor| heads_view(tensor).expect("readable gives a tensor HeadsView reads"));
    if ![expanded, key_f32, value_f32].iter().all(HeadsView::is_finite) {
        return distr_attention_reference(query, key, value, None, problem);
    }
    let output = BlockAttention::new(problem).run(expanded, key_f32, value_f32);
    let shape = [problem.batch, problem.seq_q, problem.heads, problem.value_dim];
    let output = Tensor::<Flex, 4>::from_data(TensorData::new(output, shape), &Default::default());
    from_accumulation(output.swap_dims(1, 2), dtype)
}

/// An `f32` tensor as [`HeadsView`] can read it: itself where [`heads_view`] reads it, a
/// contiguous copy otherwise (negative strides of a flip, a strided last axis).
fn readable(tensor: Tensor<Flex, 4>) -> FlexTensor {
    let tensor = tensor.into_primitive().tensor();
    if heads_view(&tensor).is_some() { tensor } else { tensor.to_contiguous() }
}

/// The tensor read in place, `None` where [`HeadsView::new`] refuses its layout; every dtype but
/// `f64` is `f32` after [`to_accumulation`].
fn heads_view(tensor: &FlexTensor) -> Option<HeadsView<'_>> {
    let layout = tensor.layout();
    let shape = [0, 1, 2, 3].map(|axis| layout.shape()[axis]);
    let strides = [0, 1, 2, 3].map(|axis| layout.strides()[axis]);
    HeadsView::new(tensor.storage::<f32>(), layout.start_offset(), shape, strides)
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

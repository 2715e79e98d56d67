//! Backend dispatch: the one place that knows which backend runs which implementation.
//!
//! [`DistrAttentionBackend`] is an extension trait in the style of Burn's own op traits. Its
//! default method is the tensor-op reference, so every backend that implements the trait
//! without overriding gets a correct (and, through `Autodiff`, differentiable) op.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::ndarray::{
    FloatNdArrayElement, IntNdArrayElement, NdArray, NdArrayTensor, QuantElement, SharedArray,
};
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Shape, Tensor, TensorPrimitive};
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionBackend, FusionRuntime};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};

use crate::{kernel, reference};
use crate::AttentionProblem;

/// A Burn backend that can run DistrAttention.
///
/// Implemented for NdArray, Flex, the CubeCL backends (Wgpu, Cuda, with or without fusion) and
/// `Autodiff` of any of them. Model code takes `B: DistrAttentionBackend`.
pub trait DistrAttentionBackend: Backend {
    /// Runs DistrAttention on inputs already validated by [`crate::distr_attention`].
    ///
    /// The default is the tensor-op reference; backends with a fused kernel override it.
    fn distr_attention_checked(
        query: Tensor<Self, 4>,
        key: Tensor<Self, 4>,
        value: Tensor<Self, 4>,
        mask: Option<Tensor<Self, 4, Bool>>,
        problem: &AttentionProblem,
    ) -> Tensor<Self, 4> {
        reference::distr_attention_reference(query, key, value, mask, problem)
    }
}

impl<E: FloatNdArrayElement, I: IntNdArrayElement, Q: QuantElement> DistrAttentionBackend
    for NdArray<E, I, Q>
where
    NdArrayTensor: From<SharedArray<E>>,
    NdArrayTensor: From<SharedArray<I>>,
{
}

/// Flex runs the reference: Burn's own attention there (tiled, causal tiles skipped) turns a
/// NaN in a query row into finite output, where the op's contract is NaN in that row.
impl DistrAttentionBackend for Flex {}

/// Gradients flow through the tensor-op reference, which `Autodiff` differentiates; the
/// permutation is computed from detached queries and so is a constant.
impl<B: DistrAttentionBackend, C: CheckpointStrategy> DistrAttentionBackend for Autodiff<B, C> {}

/// Decode-sized calls: at most this many query rows, against at least [`DECODE_MIN_KEYS`]
/// keys, take the tensor-op path on the CubeCL backends. A KV-cache decode step (one query
/// row against the whole cache) gives each (batch, head) a single cube of the kernel, with one
/// busy unit walking every key; the reference's matrix products spread the key axis over the
/// device instead, at the price of a dozen launches per call.
pub const DECODE_QUERY_ROWS: usize = 8;

/// The cache length from which decode-sized calls take the tensor-op path. Measured with
/// SmolLM2-135M on an H200 (`distr-llama/RESULTS.md`): the kernel decodes faster at 512
/// tokens of context (35 against 23-29 tokens/s) and about as fast at 2048; at 8192 the
/// tensor-op path is 2.4-3.3x faster (22.5-30.6 against 9.3 tokens/s). 4096 lies past the
/// crossover that the kernel's linear cost in the cache length puts near 2500.
pub const DECODE_MIN_KEYS: usize = 4096;

/// Why a call on a kernel backend goes to the reference before the kernel is asked, if it
/// does: the kernel has no mask input (causal runs in-kernel), and decode-sized calls against
/// a long cache are faster as tensor ops.
fn reference_first(masked: bool, problem: &AttentionProblem) -> Option<&'static str> {
    if masked {
        Some("a mask tensor (causal runs in-kernel)")
    } else if problem.seq_q <= DECODE_QUERY_ROWS && problem.seq_k >= DECODE_MIN_KEYS {
        Some("decode-sized call against a long cache (DECODE_QUERY_ROWS, DECODE_MIN_KEYS)")
    } else {
        None
    }
}

/// The fused kernel (`kernels-cubecl`) when it covers the call; a mask tensor, decode-sized
/// calls ([`DECODE_QUERY_ROWS`]), f64, quiet softmax and the shapes and options outside the
/// kernel's specialisations take the reference, with a log line saying why.
impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> DistrAttentionBackend
    for CubeBackend<R, F, I, BT>
{
    fn distr_attention_checked(
        query: Tensor<Self, 4>,
        key: Tensor<Self, 4>,
        value: Tensor<Self, 4>,
        mask: Option<Tensor<Self, 4, Bool>>,
        problem: &AttentionProblem,
    ) -> Tensor<Self, 4> {
        if let Some(reason) = reference_first(mask.is_some(), problem) {
            log::debug!("distr_attention: reference path: {reason}");
            return reference::distr_attention_reference(query, key, value, mask, problem);
        }
        let primitives = [&query, &key, &value].map(|tensor| tensor.clone().into_primitive().tensor());
        let [query_primitive, key_primitive, value_primitive] = primitives;
        match kernel::fused_forward(query_primitive, key_primitive, value_primitive, problem) {
            Ok(output) => Tensor::from_primitive(TensorPrimitive::Float(output)),
            Err(reason) => {
                log::info!("distr_attention: reference path: {reason}");
                reference::distr_attention_reference(query, key, value, None, problem)
            }
        }
    }
}

/// Without a mask the call is one custom operation of the fusion stream, run by the inner
/// backend (the fused kernel on `CubeBackend`); with a mask, the reference in fused tensor
/// ops.
impl<B: FusionBackend + DistrAttentionBackend> DistrAttentionBackend for Fusion<B> {
    fn distr_attention_checked(
        query: Tensor<Self, 4>,
        key: Tensor<Self, 4>,
        value: Tensor<Self, 4>,
        mask: Option<Tensor<Self, 4, Bool>>,
        problem: &AttentionProblem,
    ) -> Tensor<Self, 4> {
        if let Some(reason) = reference_first(mask.is_some(), problem) {
            log::debug!("distr_attention: reference path: {reason}");
            return reference::distr_attention_reference(query, key, value, mask, problem);
        }
        let [query, key, value] = [query, key, value].map(|tensor| tensor.into_primitive().tensor());
        let client = query.client.clone();
        let streams = OperationStreams::with_inputs([&query, &key, &value]);
        let shape = Shape::new([problem.batch, problem.heads, problem.seq_q, problem.value_dim]);
        let output = TensorIr::uninit(client.create_empty_handle(), shape, query.dtype);
        let desc = CustomOpIr::new(
            "distr_attention",
            &[query.into_ir(), key.into_ir(), value.into_ir()],
            &[output],
        );
        let operation = FusedDistrAttention::<B> {
            desc: desc.clone(),
            problem: problem.clone(),
            backend: core::marker::PhantomData,
        };
        let output = client
            .register(streams, OperationIr::Custom(desc), operation)
            .output();
        Tensor::from_primitive(TensorPrimitive::Float(output))
    }
}

/// The fusion stream's record of one DistrAttention call.
#[derive(Debug, Clone)]
struct FusedDistrAttention<B> {
    desc: CustomOpIr,
    problem: AttentionProblem,
    backend: core::marker::PhantomData<B>,
}

impl<B: FusionBackend + DistrAttentionBackend> Operation<B::FusionRuntime> for FusedDistrAttention<B> {
    fn execute(&self, handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>) {
        let ([query, key, value], [output]) = self.desc.as_fixed();
        let [query, key, value] = [query, key, value].map(|ir| {
            Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(handles.get_float_tensor::<B>(ir)))
        });
        let result = B::distr_attention_checked(query, key, value, None, &self.problem);
        handles.register_float_tensor::<B>(&output.id, result.into_primitive().tensor());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::TestBackend;
    use crate::DistrAttentionConfig;

    fn problem(seq_q: usize, seq_k: usize) -> AttentionProblem {
        let query = Tensor::<TestBackend, 4>::zeros([1, 2, seq_q, 8], &Default::default());
        let key = Tensor::<TestBackend, 4>::zeros([1, 2, seq_k, 8], &Default::default());
        AttentionProblem::check(&query, &key, &key, None, &DistrAttentionConfig::new()).unwrap()
    }

    #[test]
    fn masks_and_decode_sized_calls_take_the_reference_first() {
        let long = DECODE_MIN_KEYS;
        assert!(reference_first(false, &problem(1, long)).is_some());
        assert!(reference_first(false, &problem(DECODE_QUERY_ROWS, long)).is_some());
        assert_eq!(reference_first(false, &problem(DECODE_QUERY_ROWS + 1, long)), None);
        assert_eq!(reference_first(false, &problem(1, long - 1)), None);
        assert!(reference_first(true, &problem(DECODE_QUERY_ROWS + 1, 64)).is_some());
    }
}

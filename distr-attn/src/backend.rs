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

/// Decode-sized calls: at most this many query rows take split-key decode on the CubeCL
/// backends (the keys spread over the device, the query heads of a key head in one cube), and
/// count as decode steps for [`crate::ModelAttentionConfig`].
pub use kernels_cubecl::DECODE_QUERY_ROWS;

/// Why a call on a kernel backend goes to the reference before the kernel is asked, if it
/// does: the kernels have no mask input (causal runs in-kernel).
fn reference_first(masked: bool) -> Option<&'static str> {
    masked.then_some("a mask tensor (causal runs in-kernel)")
}

/// The fused kernels (`kernels-cubecl`) when they cover the call; a mask tensor, f64, quiet
/// softmax and the shapes and options outside the kernels' specialisations take the
/// reference, with a log line saying why.
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
        if let Some(reason) = reference_first(mask.is_some()) {
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
        if let Some(reason) = reference_first(mask.is_some()) {
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

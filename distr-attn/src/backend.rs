//! Backend dispatch: the one place that knows which backend runs which implementation.
//!
//! [`DistrAttentionBackend`] is an extension trait in the style of Burn's own op traits. Its
//! default method is the tensor-op reference, so every backend that implements the trait
//! without overriding gets a correct (and, through `Autodiff`, differentiable) op.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::ndarray::{
    FloatNdArrayElement, IntNdArrayElement, NdArray, NdArrayTensor, QuantElement, SharedArray,
};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::{Fusion, FusionBackend};

use crate::reference;
use crate::AttentionProblem;

/// A Burn backend that can run DistrAttention.
///
/// Implemented for NdArray, the CubeCL backends (Wgpu, Cuda, with or without fusion) and
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

/// Gradients flow through the tensor-op reference, which `Autodiff` differentiates; the
/// permutation is computed from detached queries and so is a constant.
impl<B: DistrAttentionBackend, C: CheckpointStrategy> DistrAttentionBackend for Autodiff<B, C> {}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> DistrAttentionBackend
    for CubeBackend<R, F, I, BT>
{
}

impl<B: FusionBackend + DistrAttentionBackend> DistrAttentionBackend for Fusion<B> {}

//! Backend dispatch: the one place that knows which backend runs which implementation.
//!
//! [`DistrAttentionBackend`] is an extension trait in the style of Burn's own op traits. Its
//! default methods are the tensor-op reference, so every backend that implements the trait
//! without overriding gets a correct (and, through `Autodiff`, differentiable) op. Backends
//! with the fused kernels override the forward and add a fused backward, which `Autodiff`
//! registers as one operation of its graph instead of differentiating the reference.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ndarray::{
    FloatNdArrayElement, IntNdArrayElement, NdArray, NdArrayTensor, QuantElement, SharedArray,
};
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Bool, DType, Shape, Tensor, TensorPrimitive};
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionBackend, FusionRuntime};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};

use crate::{kernel, reference};
use crate::AttentionProblem;
use kernels_cubecl::KernelError;

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

    /// Whether [`Self::distr_attention_backward`] has a fused kernel for `problem` in `dtype`
    /// on `device`. `Autodiff` asks before the forward: where it has, the op is one node of
    /// the graph whose backward is that kernel; elsewhere the graph differentiates the
    /// reference (which stores the `[seq_q, seq_k]` scores).
    fn has_fused_backward(_problem: &AttentionProblem, _dtype: DType, _device: &Self::Device) -> bool {
        false
    }

    /// The gradients of the loss with respect to query, key and value, given the op's
    /// `output` and `grad_output` (the gradient with respect to it), from the fused backward
    /// kernels. Only called where [`Self::has_fused_backward`] said so; the default has no
    /// kernel and says so.
    fn distr_attention_backward(
        _inputs: [Tensor<Self, 4>; 3],
        _output: Tensor<Self, 4>,
        _grad_output: Tensor<Self, 4>,
        _problem: &AttentionProblem,
    ) -> Result<[Tensor<Self, 4>; 3], KernelError> {
        Err(KernelError::Unsupported {
            name: "backend",
            value: std::any::type_name::<Self>().into(),
            expected: "a CubeCL backend (Wgpu, Cuda) for the fused backward".into(),
        })
    }
}

impl<E: FloatNdArrayElement, I: IntNdArrayElement, Q: QuantElement> DistrAttentionBackend
    for NdArray<E, I, Q>
where
    NdArrayTensor: From<SharedArray<E>>,
    NdArrayTensor: From<SharedArray<I>>,
{
}

/// Flex runs Burn's own fused CPU attention on the expanded query where that computes what the
/// reference does (finite inputs, no mask tensor), the reference elsewhere ([`crate::flex`]).
impl DistrAttentionBackend for Flex {
    fn distr_attention_checked(
        query: Tensor<Self, 4>,
        key: Tensor<Self, 4>,
        value: Tensor<Self, 4>,
        mask: Option<Tensor<Self, 4, Bool>>,
        problem: &AttentionProblem,
    ) -> Tensor<Self, 4> {
        crate::flex::distr_attention_flex(query, key, value, mask, problem)
    }
}

/// Where the inner backend has a fused backward for the call (no mask tensor), the op is one
/// node of the graph: the forward runs on the inner backend, and the backward is the fused
/// kernel ([`FusedAttentionBackward`]). Where it has one only for exact attention (a grouping
/// or representative the kernels lack), that node runs on the expanded query. Elsewhere the
/// gradients flow through the tensor-op reference, which `Autodiff` differentiates, on the
/// expanded query for grouped calls. Either way the permutation is computed from detached
/// queries and is a constant.
impl<B: DistrAttentionBackend, C: CheckpointStrategy> DistrAttentionBackend for Autodiff<B, C> {
    fn distr_attention_checked(
        query: Tensor<Self, 4>,
        key: Tensor<Self, 4>,
        value: Tensor<Self, 4>,
        mask: Option<Tensor<Self, 4, Bool>>,
        problem: &AttentionProblem,
    ) -> Tensor<Self, 4> {
        let (dtype, device) = (query.dtype(), query.device());
        let fused = |problem: &AttentionProblem| mask.is_none() && B::has_fused_backward(problem, dtype, &device);
        if fused(problem) {
            return fused_node::<B, C>(query, key, value, problem);
        }
        if !expandable(problem) {
            return reference::distr_attention_reference(query, key, value, mask, problem);
        }
        // The expanded query is formed in tracked tensor ops, so its gradient reaches the query
        // through them; the exact attention on it is one fused node where the inner backend has
        // a fused backward for exact attention, the differentiated reference elsewhere (which
        // then forms no per-block fused keys: fwd+bwd at G = 2 on Flex, 9 / 3 heads, 512 and
        // 1024 causal rows, 63 / 322 ms against 71 / 372).
        let expanded_problem = problem.expanded();
        let expanded = expanded_query(query, key.clone(), problem);
        if fused(&expanded_problem) {
            return fused_node::<B, C>(expanded, key, value, &expanded_problem);
        }
        reference::distr_attention_reference(expanded, key, value, mask, &expanded_problem)
    }

    fn has_fused_backward(problem: &AttentionProblem, dtype: DType, device: &Self::Device) -> bool {
        B::has_fused_backward(problem, dtype, device)
    }
}

/// The op as one node of an `Autodiff` graph: the forward on the inner backend, the backward
/// its fused kernels ([`FusedAttentionBackward`]). For problems the inner backend said it has
/// a fused backward for.
fn fused_node<B: DistrAttentionBackend, C: CheckpointStrategy>(
    query: Tensor<Autodiff<B, C>, 4>,
    key: Tensor<Autodiff<B, C>, 4>,
    value: Tensor<Autodiff<B, C>, 4>,
    problem: &AttentionProblem,
) -> Tensor<Autodiff<B, C>, 4> {
    let [query, key, value] = [query, key, value].map(|tensor| tensor.into_primitive().tensor());
    let inner = |tensor: &FloatTensor<Autodiff<B, C>>| Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(tensor.primitive.clone()));
    let forward = || B::distr_attention_checked(inner(&query), inner(&key), inner(&value), None, problem);
    let nodes = [query.node.clone(), key.node.clone(), value.node.clone()];
    let output = match FusedAttentionBackward.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let output = forward().into_primitive().tensor();
            let state = FusedAttentionState {
                inputs: [query.primitive, key.primitive, value.primitive],
                output: output.clone(),
                problem: problem.clone(),
            };
            prep.finish(state, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward().into_primitive().tensor()),
    };
    Tensor::from_primitive(TensorPrimitive::Float(output))
}

/// The backward of one fused DistrAttention node of an `Autodiff` graph.
#[derive(Debug)]
struct FusedAttentionBackward;

/// What the fused backward keeps from the forward: the inner backend's inputs and output.
#[derive(Debug, Clone)]
struct FusedAttentionState<B: Backend> {
    inputs: [FloatTensor<B>; 3],
    output: FloatTensor<B>,
    problem: AttentionProblem,
}

impl<B: DistrAttentionBackend> Backward<B, 3> for FusedAttentionBackward {
    type State = FusedAttentionState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad_output = grads.consume::<B>(&ops.node);
        let FusedAttentionState { inputs, output, problem } = ops.state;
        let tensor = |primitive: FloatTensor<B>| Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(primitive));
        // `has_fused_backward` accepted this problem before the forward ran, with the same
        // checks the launch makes: a refusal here is a bug, and there is no gradient to return.
        let gradients = B::distr_attention_backward(inputs.map(tensor), tensor(output), tensor(grad_output), &problem)
            .unwrap_or_else(|reason| panic!("distr_attention: the fused backward refused a call it accepted before the forward: {reason}"));
        for (parent, gradient) in ops.parents.into_iter().zip(gradients) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, gradient.into_primitive().tensor());
            }
        }
    }
}

/// Decode-sized calls: at most this many query rows take split-key decode on the CubeCL
/// backends (the keys spread over the device, the query heads of a key head in one cube), and
/// count as decode steps for [`crate::ModelAttentionConfig`].
pub use kernels_cubecl::DECODE_QUERY_ROWS;

/// Whether exact attention on the expanded query may stand in for `problem` where the
/// kernels refuse it: a grouped call without quiet softmax (which no kernel runs).
fn expandable(problem: &AttentionProblem) -> bool {
    !problem.config.is_exact() && !problem.quiet_softmax
}

/// [`reference::expanded_query`] in the query's dtype, for the kernels.
fn expanded_query<B: Backend>(query: Tensor<B, 4>, key: Tensor<B, 4>, problem: &AttentionProblem) -> Tensor<B, 4> {
    let dtype = query.dtype();
    reference::from_accumulation(reference::expanded_query(query, key, problem), dtype)
}

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
        let primitive = |tensor: &Tensor<Self, 4>| tensor.clone().into_primitive().tensor();
        let output = match kernel::fused_forward(primitive(&query), primitive(&key), primitive(&value), problem) {
            Err(reason) if expandable(problem) => {
                // The kernels do not form these groups (a grouping or representative they
                // lack, a pre-pass beyond the device's shared memory): exact attention on the
                // expanded query is the same attention.
                let expanded = expanded_query(query.clone(), key.clone(), problem);
                kernel::fused_forward(primitive(&expanded), primitive(&key), primitive(&value), &problem.expanded())
                    .map_err(|_| reason)
            }
            result => result,
        };
        match output {
            Ok(output) => Tensor::from_primitive(TensorPrimitive::Float(output)),
            Err(reason) => {
                log::info!("distr_attention: reference path: {reason}");
                reference::distr_attention_reference(query, key, value, None, problem)
            }
        }
    }

    fn has_fused_backward(problem: &AttentionProblem, dtype: DType, device: &Self::Device) -> bool {
        match kernel::check_backward::<R>(problem, dtype, device) {
            Ok(()) => true,
            Err(reason) => {
                log::info!("distr_attention: gradients through the reference: {reason}");
                false
            }
        }
    }

    fn distr_attention_backward(
        inputs: [Tensor<Self, 4>; 3],
        output: Tensor<Self, 4>,
        grad_output: Tensor<Self, 4>,
        problem: &AttentionProblem,
    ) -> Result<[Tensor<Self, 4>; 3], KernelError> {
        let primitive = |tensor: Tensor<Self, 4>| tensor.into_primitive().tensor();
        let gradients = kernel::fused_backward(inputs.map(primitive), primitive(output), primitive(grad_output), problem)?;
        Ok(gradients.map(|gradient| Tensor::from_primitive(TensorPrimitive::Float(gradient))))
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

    fn has_fused_backward(problem: &AttentionProblem, dtype: DType, device: &Self::Device) -> bool {
        B::has_fused_backward(problem, dtype, device)
    }

    /// One custom operation of the fusion stream, as the forward; the inner backend's kernel
    /// runs it.
    fn distr_attention_backward(
        inputs: [Tensor<Self, 4>; 3],
        output: Tensor<Self, 4>,
        grad_output: Tensor<Self, 4>,
        problem: &AttentionProblem,
    ) -> Result<[Tensor<Self, 4>; 3], KernelError> {
        let [query, key, value] = inputs.map(|tensor| tensor.into_primitive().tensor());
        let [output, grad_output] = [output, grad_output].map(|tensor| tensor.into_primitive().tensor());
        let client = query.client.clone();
        let streams = OperationStreams::with_inputs([&query, &key, &value, &output, &grad_output]);
        let gradients = [&query, &key, &value]
            .map(|input| TensorIr::uninit(client.create_empty_handle(), input.shape.clone(), input.dtype));
        let inputs = [query, key, value, output, grad_output].map(|tensor| tensor.into_ir());
        let desc = CustomOpIr::new("distr_attention_backward", &inputs, &gradients);
        let operation = FusedDistrAttentionBackward::<B> {
            desc: desc.clone(),
            problem: problem.clone(),
            backend: core::marker::PhantomData,
        };
        let outputs = client.register(streams, OperationIr::Custom(desc), operation);
        let [grad_query, grad_key, grad_value]: [_; 3] = outputs
            .try_into()
            .unwrap_or_else(|_| unreachable!("the operation was registered with three outputs"));
        Ok([grad_query, grad_key, grad_value].map(|gradient| Tensor::from_primitive(TensorPrimitive::Float(gradient))))
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

/// The fusion stream's record of one fused backward.
#[derive(Debug, Clone)]
struct FusedDistrAttentionBackward<B> {
    desc: CustomOpIr,
    problem: AttentionProblem,
    backend: core::marker::PhantomData<B>,
}

impl<B: FusionBackend + DistrAttentionBackend> Operation<B::FusionRuntime> for FusedDistrAttentionBackward<B> {
    fn execute(&self, handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>) {
        let ([query, key, value, output, grad_output], gradient_irs) = self.desc.as_fixed();
        let [query, key, value, output, grad_output] = [query, key, value, output, grad_output].map(|ir| {
            Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(handles.get_float_tensor::<B>(ir)))
        });
        // Registered only after `has_fused_backward` accepted the problem (see
        // `FusedAttentionBackward`): a refusal here is a bug.
        let gradients = B::distr_attention_backward([query, key, value], output, grad_output, &self.problem)
            .unwrap_or_else(|reason| panic!("distr_attention: the fused backward refused a call it accepted before the forward: {reason}"));
        let [grad_query, grad_key, grad_value]: &[TensorIr; 3] = gradient_irs;
        for (ir, gradient) in [grad_query, grad_key, grad_value].into_iter().zip(gradients) {
            handles.register_float_tensor::<B>(&ir.id, gradient.into_primitive().tensor());
        }
    }
}

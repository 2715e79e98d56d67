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

    /// Whether [`Self::distr_attention_saving_log_sums`] keeps the log-sum-exps of `problem`'s
    /// forward in `dtype` on `device`, asked before the forward (the fusion stream declares its
    /// outputs when it records the call).
    fn saves_log_sums(_problem: &AttentionProblem, _dtype: DType, _device: &Self::Device) -> bool {
        false
    }

    /// The forward of a call whose fused backward follows, with each query row's log-sum-exp
    /// of its scaled scores in base 2 (`[batch, heads, seq_q]`, f32) where
    /// [`Self::saves_log_sums`] said so: the backward then skips the pass over every key tile
    /// that finds them. The default saves none.
    fn distr_attention_saving_log_sums(
        query: Tensor<Self, 4>,
        key: Tensor<Self, 4>,
        value: Tensor<Self, 4>,
        problem: &AttentionProblem,
    ) -> (Tensor<Self, 4>, Option<Tensor<Self, 3>>) {
        (Self::distr_attention_checked(query, key, value, None, problem), None)
    }

    /// The gradients of the loss with respect to query, key and value, given the op's
    /// `output` (and its `log_sums`, where the forward saved them) and `grad_output` (the
    /// gradient with respect to it), from the fused backward kernels. Only called where
    /// [`Self::has_fused_backward`] said so; the default has no kernel and says so.
    fn distr_attention_backward(
        _inputs: [Tensor<Self, 4>; 3],
        _output: Tensor<Self, 4>,
        _log_sums: Option<Tensor<Self, 3>>,
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

/// Flex runs our CPU block kernel on the expanded query where that computes what the reference
/// does (finite inputs, no mask tensor), the reference elsewhere ([`crate::flex`]).
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
            let (output, log_sums) = B::distr_attention_saving_log_sums(inner(&query), inner(&key), inner(&value), problem);
            let output = output.into_primitive().tensor();
            let state = FusedAttentionState {
                inputs: [query.primitive, key.primitive, value.primitive],
                output: output.clone(),
                log_sums: log_sums.map(|log_sums| log_sums.into_primitive().tensor()),
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

/// What the fused backward keeps from the forward: the inner backend's inputs and output, and
/// the rows' log-sum-exps where the forward saved them.
#[derive(Debug, Clone)]
struct FusedAttentionState<B: Backend> {
    inputs: [FloatTensor<B>; 3],
    output: FloatTensor<B>,
    log_sums: Option<FloatTensor<B>>,
    problem: AttentionProblem,
}

impl<B: DistrAttentionBackend> Backward<B, 3> for FusedAttentionBackward {
    type State = FusedAttentionState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad_output = grads.consume::<B>(&ops.node);
        let FusedAttentionState { inputs, output, log_sums, problem } = ops.state;
        let tensor = |primitive: FloatTensor<B>| Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(primitive));
        let log_sums = log_sums.map(|primitive| Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(primitive)));
        // `has_fused_backward` accepted this problem before the forward ran, with the same
        // checks the launch makes: a refusal here is a bug, and there is no gradient to return.
        let gradients = B::distr_attention_backward(inputs.map(tensor), tensor(output), log_sums, tensor(grad_output), &problem)
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

    fn saves_log_sums(problem: &AttentionProblem, dtype: DType, device: &Self::Device) -> bool {
        match kernel::check_saves_log_sums::<R>(problem, dtype, device) {
            Ok(()) => true,
            Err(reason) => {
                log::debug!("distr_attention: the backward finds the log-sum-exps itself: {reason}");
                false
            }
        }
    }

    fn distr_attention_saving_log_sums(
        query: Tensor<Self, 4>,
        key: Tensor<Self, 4>,
        value: Tensor<Self, 4>,
        problem: &AttentionProblem,
    ) -> (Tensor<Self, 4>, Option<Tensor<Self, 3>>) {
        if Self::saves_log_sums(problem, query.dtype(), &query.device()) {
            let primitive = |tensor: &Tensor<Self, 4>| tensor.clone().into_primitive().tensor();
            match kernel::fused_forward_saving_log_sums(primitive(&query), primitive(&key), primitive(&value), problem) {
                Ok((output, log_sums)) => {
                    let float = |tensor| TensorPrimitive::Float(tensor);
                    return (Tensor::from_primitive(float(output)), Some(Tensor::from_primitive(float(log_sums))));
                }
                Err(reason) => log::warn!("distr_attention: the forward saved no log-sum-exps though it was to: {reason}"),
            }
        }
        (Self::distr_attention_checked(query, key, value, None, problem), None)
    }

    fn distr_attention_backward(
        inputs: [Tensor<Self, 4>; 3],
        output: Tensor<Self, 4>,
        log_sums: Option<Tensor<Self, 3>>,
        grad_output: Tensor<Self, 4>,
        problem: &AttentionProblem,
    ) -> Result<[Tensor<Self, 4>; 3], KernelError> {
        let primitive = |tensor: Tensor<Self, 4>| tensor.into_primitive().tensor();
        let log_sums = log_sums.map(|log_sums| log_sums.into_primitive().tensor());
        let gradients = kernel::fused_backward(inputs.map(primitive), primitive(output), log_sums, primitive(grad_output), problem)?;
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
        record_forward::<B>(query, key, value, problem, false).0
    }

    fn saves_log_sums(problem: &AttentionProblem, dtype: DType, device: &Self::Device) -> bool {
        B::saves_log_sums(problem, dtype, device)
    }

    /// One custom operation of the fusion stream with a second output, where the inner
    /// backend saves the log-sum-exps.
    fn distr_attention_saving_log_sums(
        query: Tensor<Self, 4>,
        key: Tensor<Self, 4>,
        value: Tensor<Self, 4>,
        problem: &AttentionProblem,
    ) -> (Tensor<Self, 4>, Option<Tensor<Self, 3>>) {
        let saves = B::saves_log_sums(problem, query.dtype(), &query.device());
        record_forward::<B>(query, key, value, problem, saves)
    }

    fn has_fused_backward(problem: &AttentionProblem, dtype: DType, device: &Self::Device) -> bool {
        B::has_fused_backward(problem, dtype, device)
    }

    /// One custom operation of the fusion stream, as the forward; the inner backend's kernel
    /// runs it.
    fn distr_attention_backward(
        inputs: [Tensor<Self, 4>; 3],
        output: Tensor<Self, 4>,
        log_sums: Option<Tensor<Self, 3>>,
        grad_output: Tensor<Self, 4>,
        problem: &AttentionProblem,
    ) -> Result<[Tensor<Self, 4>; 3], KernelError> {
        let [query, key, value] = inputs.map(|tensor| tensor.into_primitive().tensor());
        let [output, grad_output] = [output, grad_output].map(|tensor| tensor.into_primitive().tensor());
        let log_sums = log_sums.map(|log_sums| log_sums.into_primitive().tensor());
        let client = query.client.clone();
        let gradients = [&query, &key, &value]
            .map(|input| TensorIr::uninit(client.create_empty_handle(), input.shape.clone(), input.dtype));
        let mut inputs = vec![query, key, value, output, grad_output];
        inputs.extend(log_sums);
        let streams = OperationStreams::with_inputs(&inputs);
        let inputs: Vec<TensorIr> = inputs.into_iter().map(|tensor| tensor.into_ir()).collect();
        let desc = CustomOpIr::new("distr_attention_backward", &inputs, &gradients);
        let operation = FusedDistrAttentionBackward::<B> {
            desc: desc.clone(),
            problem: problem.clone(),
            backend: core::marker::PhantomData,
        };
        let [grad_query, grad_key, grad_value] = client.register(streams, OperationIr::Custom(desc), operation).outputs();
        Ok([grad_query, grad_key, grad_value].map(|gradient| Tensor::from_primitive(TensorPrimitive::Float(gradient))))
    }
}

/// Records one forward call in the fusion stream: the output, and the log-sum-exps as a second
/// output where `save_log_sums` (the inner backend said it saves them).
fn record_forward<B: FusionBackend + DistrAttentionBackend>(
    query: Tensor<Fusion<B>, 4>,
    key: Tensor<Fusion<B>, 4>,
    value: Tensor<Fusion<B>, 4>,
    problem: &AttentionProblem,
    save_log_sums: bool,
) -> (Tensor<Fusion<B>, 4>, Option<Tensor<Fusion<B>, 3>>) {
    let [query, key, value] = [query, key, value].map(|tensor| tensor.into_primitive().tensor());
    let client = query.client.clone();
    let streams = OperationStreams::with_inputs([&query, &key, &value]);
    let shape = Shape::new([problem.batch, problem.heads, problem.seq_q, problem.value_dim]);
    let mut outputs = vec![TensorIr::uninit(client.create_empty_handle(), shape, query.dtype)];
    if save_log_sums {
        let shape = Shape::new([problem.batch, problem.heads, problem.seq_q]);
        outputs.push(TensorIr::uninit(client.create_empty_handle(), shape, DType::F32));
    }
    let desc = CustomOpIr::new("distr_attention", &[query.into_ir(), key.into_ir(), value.into_ir()], &outputs);
    let operation = FusedDistrAttention::<B> {
        desc: desc.clone(),
        problem: problem.clone(),
        backend: core::marker::PhantomData,
    };
    let mut outputs = client.register(streams, OperationIr::Custom(desc), operation).into_iter();
    let float = |tensor| TensorPrimitive::Float(tensor);
    let output = Tensor::from_primitive(float(outputs.next().expect("the operation was registered with its output")));
    (output, outputs.next().map(|log_sums| Tensor::from_primitive(float(log_sums))))
}

/// The fusion stream's record of one DistrAttention call: one output, or two where the
/// log-sum-exps are saved.
#[derive(Debug, Clone)]
struct FusedDistrAttention<B> {
    desc: CustomOpIr,
    problem: AttentionProblem,
    backend: core::marker::PhantomData<B>,
}

impl<B: FusionBackend + DistrAttentionBackend> Operation<B::FusionRuntime> for FusedDistrAttention<B> {
    fn execute(&self, handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>) {
        let [query, key, value] = <&[TensorIr; 3]>::try_from(self.desc.inputs.as_slice())
            .unwrap_or_else(|_| unreachable!("the operation was registered with three inputs"))
            .clone()
            .map(|ir| Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(handles.get_float_tensor::<B>(&ir))));
        match self.desc.outputs.as_slice() {
            [output] => {
                let result = B::distr_attention_checked(query, key, value, None, &self.problem);
                handles.register_float_tensor::<B>(&output.id, result.into_primitive().tensor());
            }
            [output, log_sums_ir] => {
                // Recorded with two outputs only where `B::saves_log_sums` accepted the call,
                // with the checks the launch makes: a refusal here is a bug.
                let (result, log_sums) = B::distr_attention_saving_log_sums(query, key, value, &self.problem);
                let log_sums = log_sums.unwrap_or_else(|| {
                    panic!("distr_attention: the forward did not save the log-sum-exps it said it would save")
                });
                handles.register_float_tensor::<B>(&output.id, result.into_primitive().tensor());
                handles.register_float_tensor::<B>(&log_sums_ir.id, log_sums.into_primitive().tensor());
            }
            outputs => unreachable!("the operation was registered with one or two outputs, not {}", outputs.len()),
        }
    }
}

/// The fusion stream's record of one fused backward: query, key, value, output, the output's
/// gradient and, where the forward saved them, the log-sum-exps.
#[derive(Debug, Clone)]
struct FusedDistrAttentionBackward<B> {
    desc: CustomOpIr,
    problem: AttentionProblem,
    backend: core::marker::PhantomData<B>,
}

impl<B: FusionBackend + DistrAttentionBackend> Operation<B::FusionRuntime> for FusedDistrAttentionBackward<B> {
    fn execute(&self, handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>) {
        let mut tensor = |ir: &TensorIr| handles.get_float_tensor::<B>(ir);
        let (tensors, log_sums) = self.desc.inputs.split_at(5);
        let [query, key, value, output, grad_output] = <&[TensorIr; 5]>::try_from(tensors)
            .unwrap_or_else(|_| unreachable!("the operation was registered with at least five inputs"))
            .each_ref()
            .map(|ir| Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(tensor(ir))));
        let log_sums = log_sums.first().map(|ir| Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(tensor(ir))));
        // Registered only after `has_fused_backward` accepted the problem (see
        // `FusedAttentionBackward`): a refusal here is a bug.
        let gradients = B::distr_attention_backward([query, key, value], output, log_sums, grad_output, &self.problem)
            .unwrap_or_else(|reason| panic!("distr_attention: the fused backward refused a call it accepted before the forward: {reason}"));
        for (ir, gradient) in self.desc.outputs.iter().zip(gradients) {
            handles.register_float_tensor::<B>(&ir.id, gradient.into_primitive().tensor());
        }
    }
}

//! The one entry point of the crate: validates a call once, picks the kernels (a [`Strategy`])
//! and launches them: for `G > 1` the grouping pre-pass (and, on tensor cores, K transposed),
//! then one forward kernel, or for decode-sized calls the two passes of split-key decode.

use std::marker::PhantomData;

use cubecl::ir::features::{AtomicUsage, MmaConfig};
use cubecl::ir::{ElemType, FloatKind, Type};
use cubecl::prelude::*;
use cubecl::server::Handle;
use cubecl::zspace::{Shape, Strides};

use crate::block_permutation::{MAX_PROJECTIONS, PLANES_PER_UNIT};
use crate::config::{
    reduced_width, BackwardConfig, CooperativeConfig, CopyStrategy, ExpansionConfig, MAX_BACKWARD_FLOATS_PER_UNIT, DecodeConfig, FragmentLoads, GroupLayout, GroupingConfig, KeyFusion, MatrixShape, Permutation, PortableConfig,
    QueryGradient, Representative, TensorCoreBackwardConfig, TensorCoreConfig, TensorCoreTiling, CHUNK, DECODE_QUERY_ROWS, DECODE_UNITS, PLANE_SIZE,
    SUPPORTED_BLOCK_ROWS, SUPPORTED_GROUP_SIZES, SUPPORTED_HEAD_DIMS,
};
use crate::kernels::backward_keys::backward_keys;
use crate::kernels::backward_queries::backward_queries;
use crate::kernels::backward_row_stats::{backward_row_stats, stat_rows, write_query_gradient};
use crate::kernels::combine_splits::combine_splits;
use crate::kernels::cooperative_forward::cooperative_forward;
use crate::kernels::expanded_query::{expand_query, fold_query_gradient, EXPANSION_UNITS};
use crate::kernels::group_queries::group_queries;
use crate::kernels::key_lengths::{key_lengths, ROW_LANES as KEY_ROW_LANES};
use crate::kernels::portable_forward::portable_forward;
use crate::kernels::split_keys_decode::split_keys_decode;
use crate::kernels::tensor_core_backward_keys::tensor_core_backward_keys;
use crate::kernels::tensor_core_backward_queries::tensor_core_backward_queries;
use crate::kernels::tensor_core_forward::tensor_core_forward;
use crate::kernels::transpose_keys::{transpose_keys, TRANSPOSE_KEYS, TRANSPOSE_UNITS};
use crate::mma_tiles::MAX_SCALE;
use crate::KernelError;

/// Most keys per tile of the portable kernel: fewer barriers per key, within shared memory.
const MAX_PORTABLE_KEY_TILE: usize = 64;
/// Key tiles split-key decode is specialised for, largest first.
const DECODE_KEY_TILES: [usize; 3] = [32, 16, 8];
/// Cubes per streaming multiprocessor that split-key decode aims for (and SMs assumed where
/// the runtime does not say): enough splits to keep every SM busy.
const DECODE_CUBES_PER_SM: usize = 2;
const DECODE_ASSUMED_SMS: usize = 16;
/// Units per cube of [`write_query_gradient`], one per element.
const CONVERSION_UNITS: usize = 256;

/// The four tensors of one attention call, `[batch, heads, seq, dim]` each: `query`
/// `[B, H, Nq, d]`, `key` `[B, Hkv, Nk, d]`, `value` `[B, Hkv, Nk, dv]`, `output`
/// `[B, H, Nq, dv]`, all of one float dtype; strides are free.
pub struct AttentionBindings<R: Runtime> {
    pub query: TensorBinding<R>,
    pub key: TensorBinding<R>,
    pub value: TensorBinding<R>,
    pub output: TensorBinding<R>,
    /// Each query row's log-sum-exp of its scaled scores, in base 2, `[batch, heads, seq_q]`
    /// f32, contiguous: what the backward's query side otherwise computes in a first pass over
    /// every key tile. Given to [`launch_forward`], the forward writes it (the exact
    /// tensor-core forward only; [`check_saves_log_sums`] says beforehand); given to
    /// [`launch_backward`] with the forward's, the tensor-core backward reads it (the portable
    /// backward computes its own). A grouped call's backward scores again on its expanded
    /// query, `Q'' K^T` (see [`crate::kernels::expanded_query`]), equal to the grouped
    /// forward's `Q' K'^T` but for rounding (K' is summed in the storage type), so the grouped
    /// forward's log-sum-exps serve it too.
    pub log_sums: Option<TensorBinding<R>>,
}

/// The LSH hyperplanes on the device, `[num_projections, block_rows]` row-major. They depend
/// only on (seed, num_projections, block_rows): upload them once and keep them.
#[derive(Clone)]
pub struct Hyperplanes<R: Runtime> {
    handle: Handle,
    num_projections: usize,
    block_rows: usize,
    runtime: PhantomData<R>,
}

impl<R: Runtime> Hyperplanes<R> {
    /// Uploads `values` (`num_projections * block_rows` of them).
    pub fn upload(
        client: &ComputeClient<R>,
        values: &[f32],
        num_projections: usize,
        block_rows: usize,
    ) -> Result<Self, KernelError> {
        if num_projections == 0 || num_projections > MAX_PROJECTIONS {
            return Err(KernelError::Unsupported {
                name: "num_projections",
                value: num_projections.to_string(),
                expected: format!("1..={MAX_PROJECTIONS}"),
            });
        }
        if values.len() != num_projections * block_rows {
            return Err(KernelError::Shape {
                tensor: "hyperplanes",
                actual: vec![values.len()],
                expected: format!("[{}] (num_projections x block_rows)", num_projections * block_rows),
            });
        }
        let handle = client.create_from_slice(f32::as_bytes(values));
        Ok(Self { handle, num_projections, block_rows, runtime: PhantomData })
    }
}

/// The tensor-core kernel's variant. The default is the fast one; the others exist to
/// measure each of its stages against its predecessor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TensorCoreVariant {
    /// `None` takes [`TensorCoreTiling::for_shape`].
    pub tiling: Option<TensorCoreTiling>,
    pub copy: CopyStrategy,
    pub fragments: FragmentLoads,
    pub key_fusion: KeyFusion,
    /// Causal calls: how many (batch, head) pairs have their blocks launched together, longest
    /// first, rank-major; `None`: enough pairs for about two cubes per SM. Rounded down to a
    /// divisor of batch x heads.
    pub head_group: Option<usize>,
}

impl Default for TensorCoreVariant {
    fn default() -> Self {
        Self {
            tiling: None,
            copy: CopyStrategy::DoubleBuffered,
            fragments: FragmentLoads::Matrix,
            key_fusion: KeyFusion::Fused,
            head_group: None,
        }
    }
}

/// Which forward kernel runs a call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Split-key decode for calls of at most [`DECODE_QUERY_ROWS`] query rows. Otherwise the
    /// tensor-core kernel (default variant) where the device and the call allow it: f16
    /// or bf16, `mma` m16n8k16 with f32 accumulation, 32-lane planes, rows readable 16 bytes
    /// at a time, a positive scale, enough shared memory. Else the cooperative-matrix kernel
    /// where the device has `cmma` for the dtype (wgpu on Vulkan, Metal; see
    /// [`Strategy::Cooperative`]). The portable kernel otherwise.
    #[default]
    Auto,
    /// The portable kernel.
    Portable,
    /// This tensor-core variant; refused where the device or the call does not allow it.
    TensorCore(TensorCoreVariant),
    /// The cooperative-matrix kernel: f16 or bf16 operands with f32 accumulation in a `cmma`
    /// shape the device lists, planes of one size, a positive scale, enough shared memory;
    /// refused otherwise.
    Cooperative,
    /// Split-key decode; refused above [`DECODE_QUERY_ROWS`] query rows.
    SplitKeys,
}

/// Which kernel a launch ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelPath {
    /// [`crate::kernels::portable_forward`]: f32 arithmetic, every runtime.
    Portable,
    /// [`crate::kernels::tensor_core_forward`]: `mma.sync` m16n8k16, f16/bf16 operands.
    TensorCore,
    /// [`crate::kernels::cooperative_forward`]: `cmma`, f16/bf16 operands.
    Cooperative,
    /// [`crate::kernels::split_keys_decode`] then [`crate::kernels::combine_splits`]: f32
    /// arithmetic, every runtime.
    SplitKeys,
}

/// Run-time options of [`launch_forward`]; the integer fields select the comptime
/// specialisation.
#[derive(Clone)]
pub struct ForwardOptions<'a, R: Runtime> {
    /// Columns fused per group; 1 is exact attention (no pre-pass).
    pub group_size: usize,
    /// Query rows per block (one grouping each) and per cube.
    pub block_rows: usize,
    /// The LSH hyperplanes for `block_rows`; required when `group_size > 1`.
    pub hyperplanes: Option<&'a Hyperplanes<R>>,
    pub representative: Representative,
    pub causal: bool,
    /// Score scale.
    pub scale: f32,
    /// Unroll the per-row loops (CUDA; see [`PortableConfig::unroll`]).
    pub unroll: bool,
    pub strategy: Strategy,
    /// [`Permutation::Lsh`] but to measure the hashing and the sort.
    pub permutation: Permutation,
    /// Which sorted positions form a group.
    pub layout: GroupLayout,
    /// Where the tensor-core backward forms dQ; `None`: on the key side where the call allows
    /// it and it was measured faster (see `key_side_config`), else on the query side. A forced
    /// `KeySide` the call does not allow is refused.
    pub query_gradient: Option<QueryGradient>,
}

/// A validated call: the shapes the kernels are launched with.
#[derive(Clone, Copy, Debug)]
struct Problem {
    batch: usize,
    heads: usize,
    kv_heads: usize,
    seq_q: usize,
    seq_k: usize,
    head_dim: usize,
    value_dim: usize,
    num_blocks: usize,
}

/// The pre-pass's outputs for one call.
pub struct GroupedQueries<R: Runtime> {
    /// Q' `[batch, heads, blocks * block_rows, reduced_width]`, contiguous.
    pub query: TensorBinding<R>,
    /// Column table, `reduced_width * group_size` u32 per (batch * head, block).
    pub key_columns: Handle,
    pub key_columns_len: usize,
}

/// Checks the call, picks the kernels (see [`Strategy`]) and launches them; returns the
/// forward kernel's path.
pub fn launch_forward<R: Runtime>(
    client: &ComputeClient<R>,
    tensors: AttentionBindings<R>,
    dtype: StorageType,
    options: &ForwardOptions<'_, R>,
) -> Result<KernelPath, KernelError> {
    let problem = check(client, &tensors, dtype, options)?;
    let mut plan = plan(client, Some(&tensors), dtype, options, &problem)?;
    if let Some(log_sums) = &tensors.log_sums {
        check_log_sums(log_sums, &problem)?;
        saving_log_sums(&mut plan)?;
    }
    let (query, columns, columns_len) = scored_query(client, tensors.query, &tensors.key, dtype, options)?;
    // SAFETY: `columns` holds `columns_len` u32 (the pre-pass's table, or one unread entry).
    let key_columns = unsafe { ArrayArg::from_raw_parts(columns, columns_len) };
    let cube_count = CubeCount::Static(problem.num_blocks as u32, (problem.batch * problem.heads) as u32, 1);
    match plan {
        Plan::TensorCore { config, head_group } => {
            let (x, y) = forward_cubes(&problem, config.causal, head_group);
            let key = if options.group_size > 1 { transposed_keys(client, &tensors.key, dtype)? } else { tensors.key };
            // SAFETY: `check` and `plan` validated shapes, dtypes, strides (whole 16-byte
            // chunks per row) and shared memory; every row index is guarded by seq_q / seq_k.
            unsafe {
                tensor_core_forward::launch_unchecked::<R>(
                    client,
                    CubeCount::Static(x as u32, y as u32, 1),
                    CubeDim::new_2d(PLANE_SIZE as u32, config.tiling.warps as u32),
                    CHUNK,
                    query.into_tensor_arg(),
                    key.into_tensor_arg(),
                    tensors.value.into_tensor_arg(),
                    key_columns,
                    tensors.output.into_tensor_arg(),
                    log_sums_arg(client, tensors.log_sums),
                    options.scale,
                    config,
                    dtype,
                );
            }
            Ok(KernelPath::TensorCore)
        }
        Plan::Cooperative(config) => {
            let key = if options.group_size > 1 { transposed_keys(client, &tensors.key, dtype)? } else { tensors.key };
            // SAFETY: `check` validated shapes and dtypes and `cooperative_config` the fragment
            // shape, plane size, shared memory and rows in whole 16-byte chunks (Q' and K^T are
            // ours, contiguous and padded to chunks); every row index is guarded by its length.
            unsafe {
                cooperative_forward::launch_unchecked::<R>(
                    client,
                    cube_count,
                    config.cube_dim(),
                    CHUNK,
                    query.into_tensor_arg(),
                    key.into_tensor_arg(),
                    tensors.value.into_tensor_arg(),
                    key_columns,
                    tensors.output.into_tensor_arg(),
                    options.scale * std::f32::consts::LOG2_E,
                    config,
                    dtype,
                );
            }
            Ok(KernelPath::Cooperative)
        }
        Plan::SplitKeys(split) => {
            launch_split_keys(client, query, tensors.key, tensors.value, key_columns, tensors.output, dtype, options, &problem, split);
            Ok(KernelPath::SplitKeys)
        }
        Plan::Portable(config) => {
            // SAFETY: as above; the portable kernel reads any strides element by element.
            unsafe {
                portable_forward::launch_unchecked::<R>(
                    client,
                    cube_count,
                    CubeDim::new_1d(options.block_rows as u32),
                    query.into_tensor_arg(),
                    tensors.key.into_tensor_arg(),
                    tensors.value.into_tensor_arg(),
                    key_columns,
                    tensors.output.into_tensor_arg(),
                    options.scale,
                    config,
                    dtype,
                );
            }
            Ok(KernelPath::Portable)
        }
    }
}

/// The grouping pre-pass alone ([`crate::kernels::group_queries`]): Q' and the column table
/// of every query block. `options.group_size` must be above 1. `key` (`[batch, kv_heads,
/// seq_k, head_dim]`) is read only by [`Permutation::GramKeyWeighted`], for its weights
/// ([`crate::kernels::key_lengths`], launched first). [`launch_forward`] calls it; benchmarks
/// call it to time it.
pub fn launch_grouping<R: Runtime>(
    client: &ComputeClient<R>,
    query: &TensorBinding<R>,
    key: &TensorBinding<R>,
    dtype: StorageType,
    options: &ForwardOptions<'_, R>,
) -> Result<GroupedQueries<R>, KernelError> {
    if options.group_size < 2 {
        return Err(KernelError::Unsupported {
            name: "group_size",
            value: options.group_size.to_string(),
            expected: "at least 2: the pre-pass groups columns".into(),
        });
    }
    let hyperplanes = options.hyperplanes.ok_or(KernelError::Unsupported {
        name: "hyperplanes",
        value: "none".into(),
        expected: format!("hyperplanes for block_rows {} when group_size > 1", options.block_rows),
    })?;
    if hyperplanes.block_rows != options.block_rows {
        return Err(KernelError::Shape {
            tensor: "hyperplanes",
            actual: vec![hyperplanes.num_projections, hyperplanes.block_rows],
            expected: format!("[num_projections, {}] (block_rows)", options.block_rows),
        });
    }
    let [batch, heads, seq_q, head_dim] = [0, 1, 2, 3].map(|axis| query.shape[axis]);
    let config = grouping_config(options, head_dim, hyperplanes.num_projections);
    check_gram_grouping(client, &config)?;
    let width = config.reduced_width();
    let num_blocks = seq_q.div_ceil(options.block_rows);
    let rows = num_blocks * options.block_rows;
    let element_bytes = dtype.size();
    let grouped = client.empty(batch * heads * rows * width * element_bytes);
    let key_columns_len = batch * heads * num_blocks * width * options.group_size;
    let key_columns = client.empty(key_columns_len * 4);
    let (key_lengths, key_lengths_len) = match config.permutation {
        Permutation::GramKeyWeighted => launch_key_lengths(client, key, [batch, heads, head_dim], dtype)?,
        _ => (client.empty(4), 1),
    };
    let shape = Shape::new([batch, heads, rows, width]);
    let strides = Strides::new(&[heads * rows * width, rows * width, width, 1]);
    // SAFETY: `grouped` holds exactly `shape` contiguous elements; the kernel writes every
    // element of the blocks it is launched for and reads `query` within its shape.
    unsafe {
        group_queries::launch_unchecked::<R>(
            client,
            CubeCount::Static(num_blocks as u32, (batch * heads) as u32, 1),
            CubeDim::new_1d(config.units() as u32),
            PLANES_PER_UNIT,
            query.clone().into_tensor_arg(),
            ArrayArg::from_raw_parts(hyperplanes.handle.clone(), hyperplanes.num_projections * hyperplanes.block_rows),
            ArrayArg::from_raw_parts(key_lengths, key_lengths_len),
            TensorArg::from_raw_parts(grouped.clone(), strides.clone(), shape.clone()),
            ArrayArg::from_raw_parts(key_columns.clone(), key_columns_len),
            config,
            dtype,
        );
    }
    let query = TensorBinding { handle: grouped.binding(), strides, shape, runtime: PhantomData };
    Ok(GroupedQueries { query, key_columns, key_columns_len })
}

/// The squared length of every key column over its head's keys
/// ([`crate::kernels::key_lengths`]), `[batch * kv_heads, head_dim]` f32, and its length;
/// `key` must be `[batch, kv_heads, seq_k, head_dim]` with `kv_heads` dividing the query's
/// `heads`.
fn launch_key_lengths<R: Runtime>(
    client: &ComputeClient<R>,
    key: &TensorBinding<R>,
    [batch, heads, head_dim]: [usize; 3],
    dtype: StorageType,
) -> Result<(Handle, usize), KernelError> {
    let kv_heads = key.shape.get(1).copied().unwrap_or(0);
    if key.shape.len() != 4 || key.shape[0] != batch || key.shape[3] != head_dim || kv_heads == 0 || heads % kv_heads != 0 {
        return Err(KernelError::Shape {
            tensor: "key",
            actual: key.shape.to_vec(),
            expected: format!("[{batch}, kv_heads dividing {heads}, seq_k, {head_dim}]"),
        });
    }
    let len = batch * kv_heads * head_dim;
    let lengths = client.empty(len * 4);
    // SAFETY: `lengths` holds one f32 per (batch, key head, column), each written by the unit
    // of its column in the cube of its head; `key` is read within its shape.
    unsafe {
        key_lengths::launch_unchecked::<R>(
            client,
            CubeCount::Static((batch * kv_heads) as u32, 1, 1),
            CubeDim::new_2d(head_dim as u32, KEY_ROW_LANES as u32),
            key.clone().into_tensor_arg(),
            ArrayArg::from_raw_parts(lengths.clone(), len),
            head_dim,
            dtype,
        );
    }
    Ok((lengths, len))
}

/// The query the forward and portable backward kernels score and its column table: for `G > 1`
/// the pre-pass's Q' and table; for exact attention `query` itself and one entry, left
/// unwritten (the kernels read no table, comptime).
fn scored_query<R: Runtime>(
    client: &ComputeClient<R>,
    query: TensorBinding<R>,
    key: &TensorBinding<R>,
    dtype: StorageType,
    options: &ForwardOptions<'_, R>,
) -> Result<(TensorBinding<R>, Handle, usize), KernelError> {
    if options.group_size > 1 {
        let grouped = launch_grouping(client, &query, key, dtype, options)?;
        Ok((grouped.query, grouped.key_columns, grouped.key_columns_len))
    } else {
        Ok((query, client.empty(4), 1))
    }
}

/// Whether [`launch_forward`] can write the log-sum-exps ([`AttentionBindings::log_sums`]) of a
/// call of these query, key and value shapes, asked before the forward runs (rows assumed in
/// whole 16-byte chunks), so that a training step knows whether its backward gets them.
pub fn check_saves_log_sums<R: Runtime>(
    client: &ComputeClient<R>,
    shapes: [&[usize]; 3],
    dtype: StorageType,
    options: &ForwardOptions<'_, R>,
) -> Result<(), KernelError> {
    let problem = check_input_shapes(client, shapes, dtype, options)?;
    saving_log_sums(&mut plan(client, None, dtype, options, &problem)?)
}

/// Marks `plan` to write the log-sum-exps, or says why it cannot: only the tensor-core
/// forward keeps its rows' statistics to the end (see [`AttentionBindings::log_sums`]).
fn saving_log_sums(plan: &mut Plan) -> Result<(), KernelError> {
    match plan {
        Plan::TensorCore { config, .. } => {
            config.saves_log_sums = true;
            Ok(())
        }
        _ => Err(KernelError::Unsupported {
            name: "log_sums",
            value: format!("the {} forward", plan.name()),
            expected: "the tensor-core forward".into(),
        }),
    }
}

/// Whether `log_sums` is `[batch, heads, seq_q]` and contiguous, as the kernels index it.
fn check_log_sums<R: Runtime>(log_sums: &TensorBinding<R>, problem: &Problem) -> Result<(), KernelError> {
    let expected = [problem.batch, problem.heads, problem.seq_q];
    let contiguous = [problem.heads * problem.seq_q, problem.seq_q, 1];
    if log_sums.shape[..] != expected || log_sums.strides[..] != contiguous {
        return Err(KernelError::Shape {
            tensor: "log_sums",
            actual: log_sums.shape.to_vec(),
            expected: format!("{expected:?} (batch, heads, seq_q), contiguous (strides {:?})", log_sums.strides),
        });
    }
    Ok(())
}

/// The kernels' log-sum-exp argument: `log_sums`, or one unread f32 where the comptime
/// configuration neither writes nor reads them.
fn log_sums_arg<R: Runtime>(client: &ComputeClient<R>, log_sums: Option<TensorBinding<R>>) -> TensorArg<R> {
    match log_sums {
        Some(binding) => binding.into_tensor_arg(),
        // SAFETY: one f32 of one element, which the kernels do not touch without log-sum-exps.
        None => unsafe { TensorArg::from_raw_parts(client.empty(4), Strides::new(&[1]), Shape::new([1])) },
    }
}

/// The pre-pass's specialisation for `options` at `head_dim`.
fn grouping_config<R: Runtime>(options: &ForwardOptions<'_, R>, head_dim: usize, num_projections: usize) -> GroupingConfig {
    GroupingConfig {
        head_dim,
        group_size: options.group_size,
        block_rows: options.block_rows,
        num_projections,
        representative: options.representative,
        permutation: options.permutation,
        layout: options.layout,
        unroll: options.unroll,
    }
}

/// What the Gram grouping needs beyond the LSH pre-pass: consecutive groups of a query-side
/// representative, and its distances in shared memory. Other permutations pass.
fn check_gram_grouping<R: Runtime>(client: &ComputeClient<R>, config: &GroupingConfig) -> Result<(), KernelError> {
    if !config.permutation.is_gram() {
        return Ok(());
    }
    if config.layout != GroupLayout::Consecutive {
        return Err(KernelError::Unsupported {
            name: "layout",
            value: format!("{:?}", config.layout),
            expected: "Consecutive with the Gram grouping".into(),
        });
    }
    if config.representative == Representative::SampledKeys {
        return Err(KernelError::Unsupported {
            name: "representative",
            value: "SampledKeys".into(),
            expected: "Sample or Mean with the Gram grouping (SampledKeys pairs by key distance)".into(),
        });
    }
    // The distances (or staged rows); order, members, free columns (mates, for pairs) and
    // nearest columns; the rounds' flag; the arg-min's two entries per unit.
    let bytes = 4 * (config.staged_floats() + 4 * config.head_dim + 1 + 2 * config.units());
    let limit = client.properties().hardware.max_shared_memory_size;
    if bytes > limit {
        return Err(KernelError::Unsupported {
            name: "head_dim",
            value: config.head_dim.to_string(),
            expected: format!("a Gram grouping within the device's {limit} bytes of shared memory ({bytes} needed)"),
        });
    }
    Ok(())
}

/// The tensors of one backward call: the forward's ([`AttentionBindings`], `output` its
/// result), the gradient of the loss with respect to that output, and the three gradients to
/// write, each shaped like its input; strides are free.
pub struct BackwardBindings<R: Runtime> {
    pub forward: AttentionBindings<R>,
    pub grad_output: TensorBinding<R>,
    pub grad_query: TensorBinding<R>,
    pub grad_key: TensorBinding<R>,
    pub grad_value: TensorBinding<R>,
}

/// Gradients of the forward call `options` describes with respect to query, key and value,
/// with no `[seq_q, seq_k]` matrix (scratch is two f32 per query row, and with
/// [`QueryGradient::KeySide`] one per dQ element): on tensor cores
/// ([`crate::kernels::tensor_core_backward_queries`], then
/// [`crate::kernels::tensor_core_backward_keys`]; or the key side forming dQ too, between
/// [`crate::kernels::backward_row_stats`]'s two kernels) where the device and the call allow it (as
/// the forward's tensor-core path, with dO's rows in whole chunks too), grouped calls as exact
/// attention on their expanded query ([`crate::kernels::expanded_query`]); elsewhere the
/// portable kernels ([`crate::kernels::backward_queries`], then
/// [`crate::kernels::backward_keys`]), f32 arithmetic on every runtime, which score grouped
/// calls at their reduced width. Grouped calls run the grouping pre-pass again first (the
/// grouping depends on the queries alone and is a constant of the gradient).
pub fn launch_backward<R: Runtime>(
    client: &ComputeClient<R>,
    tensors: BackwardBindings<R>,
    dtype: StorageType,
    options: &ForwardOptions<'_, R>,
) -> Result<(), KernelError> {
    let problem = check(client, &tensors.forward, dtype, options)?;
    let gradients = [
        ("grad_output", &tensors.grad_output, &tensors.forward.output),
        ("grad_query", &tensors.grad_query, &tensors.forward.query),
        ("grad_key", &tensors.grad_key, &tensors.forward.key),
        ("grad_value", &tensors.grad_value, &tensors.forward.value),
    ];
    for (name, gradient, input) in gradients {
        if gradient.shape != input.shape || gradient.strides.len() != 4 {
            return Err(KernelError::Shape {
                tensor: name,
                actual: gradient.shape.to_vec(),
                expected: format!("{:?}, the shape of its tensor", input.shape),
            });
        }
    }
    if let Some(log_sums) = &tensors.forward.log_sums {
        check_log_sums(log_sums, &problem)?;
    }
    match backward_plan(client, Some(&tensors), dtype, options, &problem)? {
        BackwardPlan::TensorCore(configs) if options.group_size > 1 => launch_expanded_backward(client, tensors, dtype, options, &problem, |tensors| {
            launch_tensor_core_backward(client, tensors, dtype, options.scale, &problem, configs);
            Ok(())
        }),
        BackwardPlan::TensorCore(configs) => {
            launch_tensor_core_backward(client, tensors, dtype, options.scale, &problem, configs);
            Ok(())
        }
        BackwardPlan::Portable(config) => launch_portable_backward(client, tensors, dtype, options, &problem, config),
    }
}

/// The tensor-core backward of exact attention on `tensors` (validated by
/// [`tensor_core_backward_configs`]): query side then key side, or with
/// [`QueryGradient::KeySide`] the row statistics, the key side (dQ too), and dQ's conversion.
fn launch_tensor_core_backward<R: Runtime>(
    client: &ComputeClient<R>,
    tensors: BackwardBindings<R>,
    dtype: StorageType,
    scale: f32,
    problem: &Problem,
    [queries, keys]: [TensorCoreBackwardConfig; 2],
) {
    // Each row's log-sum-exp and `rowsum(dO * O)`, for the key side (rows padded, see
    // `RowStatPair`).
    let stats_len = problem.batch * problem.heads * stat_rows(problem.seq_q) * 2;
    let row_stats = client.empty(stats_len * 4);
    let forward = tensors.forward;
    let key_side_query_gradient = keys.query_gradient == QueryGradient::KeySide;
    let key_cubes = key_side_cubes(problem, &keys);
    // dQ's f32 sums in fragment order, rows padded to 16 (see `backward_row_stats`).
    let sums_len = if key_side_query_gradient { problem.batch * problem.heads * problem.seq_q.div_ceil(16) * 16 * problem.head_dim } else { 2 };
    let grad_query_sums = client.empty(sums_len * 4);
    let gradient_len = problem.batch * problem.heads * problem.seq_q * problem.head_dim;
    let stats_grid = |config: &TensorCoreBackwardConfig| {
        CubeCount::Static(problem.seq_q.div_ceil(config.block_rows()) as u32, (problem.batch * problem.heads) as u32, 1)
    };
    // SAFETY: `check` validated the forward's shapes and dtype, `launch_backward` the
    // gradients' shapes and the saved log-sum-exps', `tensor_core_backward_configs` the chunked
    // rows of every input the kernels copy, shared memory, the grid, and that `KeySide` has the
    // log-sum-exps; `row_stats` holds two f32 per query row (rows padded) and
    // `grad_query_sums` one per dQ element (with `KeySide`), all written by the first kernel
    // before the key side reads or adds to them, and the sums complete before the last kernel
    // reads them (same stream).
    unsafe {
        if key_side_query_gradient {
            backward_row_stats::launch_unchecked::<R>(
                client,
                stats_grid(&keys),
                CubeDim::new_2d(PLANE_SIZE as u32, keys.warps as u32),
                CHUNK,
                forward.output.into_tensor_arg(),
                tensors.grad_output.clone().into_tensor_arg(),
                log_sums_arg(client, forward.log_sums),
                ArrayArg::from_raw_parts(row_stats.clone(), stats_len),
                ArrayArg::from_raw_parts(grad_query_sums.clone(), sums_len),
                keys,
                dtype,
            );
        } else {
            let queries = TensorCoreBackwardConfig { saved_log_sums: forward.log_sums.is_some(), ..queries };
            tensor_core_backward_queries::launch_unchecked::<R>(
                client,
                stats_grid(&queries),
                CubeDim::new_2d(PLANE_SIZE as u32, queries.warps as u32),
                CHUNK,
                forward.query.clone().into_tensor_arg(),
                forward.key.clone().into_tensor_arg(),
                forward.value.clone().into_tensor_arg(),
                forward.output.into_tensor_arg(),
                tensors.grad_output.clone().into_tensor_arg(),
                tensors.grad_query.clone().into_tensor_arg(),
                ArrayArg::from_raw_parts(row_stats.clone(), stats_len),
                log_sums_arg(client, forward.log_sums),
                scale,
                queries,
                dtype,
            );
        }
        tensor_core_backward_keys::launch_unchecked::<R>(
            client,
            CubeCount::Static(key_cubes.0 as u32, key_cubes.1 as u32, 1),
            CubeDim::new_2d(PLANE_SIZE as u32, keys.warps as u32),
            CHUNK,
            forward.query.into_tensor_arg(),
            forward.key.into_tensor_arg(),
            forward.value.into_tensor_arg(),
            tensors.grad_output.into_tensor_arg(),
            ArrayArg::from_raw_parts(row_stats, stats_len),
            tensors.grad_key.into_tensor_arg(),
            tensors.grad_value.into_tensor_arg(),
            ArrayArg::from_raw_parts(grad_query_sums.clone(), sums_len),
            scale,
            keys,
            dtype,
        );
        if key_side_query_gradient {
            write_query_gradient::launch_unchecked::<R>(
                client,
                CubeCount::Static(gradient_len.div_ceil(CONVERSION_UNITS) as u32, 1, 1),
                CubeDim::new_1d(CONVERSION_UNITS as u32),
                ArrayArg::from_raw_parts(grad_query_sums, sums_len),
                tensors.grad_query.into_tensor_arg(),
                dtype,
            );
        }
    }
}

/// The key side's grid `(x, y)`: one cube per block of keys of each (batch, key head) pair,
/// the blocks along x, or along y where [`TensorCoreBackwardConfig::heads_first`].
fn key_side_cubes(problem: &Problem, keys: &TensorCoreBackwardConfig) -> (usize, usize) {
    let (blocks, pairs) = (problem.seq_k.div_ceil(keys.block_rows()), problem.batch * problem.kv_heads);
    if keys.heads_first() {
        (pairs, blocks)
    } else {
        (blocks, pairs)
    }
}

/// The portable backward (`config` from [`backward_config`]); grouped calls score at their
/// reduced width after the pre-pass.
fn launch_portable_backward<R: Runtime>(
    client: &ComputeClient<R>,
    tensors: BackwardBindings<R>,
    dtype: StorageType,
    options: &ForwardOptions<'_, R>,
    problem: &Problem,
    config: BackwardConfig,
) -> Result<(), KernelError> {
    let (query, columns, columns_len) = scored_query(client, tensors.forward.query, &tensors.forward.key, dtype, options)?;
    let stats_len = problem.batch * problem.heads * problem.seq_q * 2;
    let row_stats = client.empty(stats_len * 4);
    // SAFETY: `check` validated the forward's shapes and dtype, `launch_backward` the
    // gradients' shapes, `backward_config` shared memory and the grid; `columns` holds
    // `columns_len` u32 (the pre-pass's table, or one unread entry) and `row_stats` two f32 per
    // query row, all written by the first kernel before the second reads them.
    unsafe {
        backward_queries::launch_unchecked::<R>(
            client,
            CubeCount::Static(problem.num_blocks as u32, (problem.batch * problem.heads) as u32, 1),
            CubeDim::new_1d(options.block_rows as u32),
            query.clone().into_tensor_arg(),
            tensors.forward.key.clone().into_tensor_arg(),
            tensors.forward.value.clone().into_tensor_arg(),
            tensors.forward.output.into_tensor_arg(),
            tensors.grad_output.clone().into_tensor_arg(),
            ArrayArg::from_raw_parts(columns.clone(), columns_len),
            tensors.grad_query.into_tensor_arg(),
            ArrayArg::from_raw_parts(row_stats.clone(), stats_len),
            options.scale,
            config,
            dtype,
        );
        backward_keys::launch_unchecked::<R>(
            client,
            CubeCount::Static(problem.seq_k.div_ceil(options.block_rows) as u32, (problem.batch * problem.kv_heads) as u32, 1),
            CubeDim::new_1d(options.block_rows as u32),
            query.into_tensor_arg(),
            tensors.forward.key.into_tensor_arg(),
            tensors.forward.value.into_tensor_arg(),
            tensors.grad_output.into_tensor_arg(),
            ArrayArg::from_raw_parts(columns, columns_len),
            ArrayArg::from_raw_parts(row_stats, stats_len),
            tensors.grad_key.into_tensor_arg(),
            tensors.grad_value.into_tensor_arg(),
            options.scale,
            config,
            dtype,
        );
    }
    Ok(())
}

/// A grouped call's gradients as exact attention's on its expanded query
/// ([`crate::kernels::expanded_query`]): the pre-pass again, `Q''` from its Q' and column
/// table, `exact` on `(Q'', K, V)` writing dK, dV and dQ'', then dQ folded from dQ''.
fn launch_expanded_backward<R: Runtime>(
    client: &ComputeClient<R>,
    tensors: BackwardBindings<R>,
    dtype: StorageType,
    options: &ForwardOptions<'_, R>,
    problem: &Problem,
    exact: impl FnOnce(BackwardBindings<R>) -> Result<(), KernelError>,
) -> Result<(), KernelError> {
    let grouped = launch_grouping(client, &tensors.forward.query, &tensors.forward.key, dtype, options)?;
    let &Problem { batch, heads, seq_q, head_dim, num_blocks, .. } = problem;
    let config = ExpansionConfig { head_dim, group_size: options.group_size, block_rows: options.block_rows, representative: options.representative };
    let shape = Shape::new([batch, heads, seq_q, head_dim]);
    let strides = Strides::new(&[heads * seq_q * head_dim, seq_q * head_dim, head_dim, 1]);
    let scratch = || {
        let handle = client.empty(batch * heads * seq_q * head_dim * dtype.size());
        TensorBinding { handle: handle.binding(), strides: strides.clone(), shape: shape.clone(), runtime: PhantomData }
    };
    let (expanded, grad_expanded) = (scratch(), scratch());
    let cube_count = CubeCount::Static(num_blocks as u32, (batch * heads) as u32, 1);
    // SAFETY: the table holds `key_columns_len` u32, as the pre-pass allocated it.
    let key_columns = || unsafe { ArrayArg::from_raw_parts(grouped.key_columns.clone(), grouped.key_columns_len) };
    // SAFETY: `expanded` holds exactly `shape` contiguous elements, each written by the cube of
    // its block; Q' and the column table are the pre-pass's for the same grid of blocks.
    unsafe {
        expand_query::launch_unchecked::<R>(
            client,
            cube_count.clone(),
            CubeDim::new_1d(EXPANSION_UNITS as u32),
            grouped.query.into_tensor_arg(),
            key_columns(),
            expanded.clone().into_tensor_arg(),
            config,
            dtype,
        );
    }
    let grad_query = tensors.grad_query;
    exact(BackwardBindings {
        forward: AttentionBindings { query: expanded, ..tensors.forward },
        grad_output: tensors.grad_output,
        grad_query: grad_expanded.clone(),
        grad_key: tensors.grad_key,
        grad_value: tensors.grad_value,
    })?;
    // SAFETY: `grad_expanded` was written whole by `exact` (same stream); `grad_query` has the
    // query's shape (`launch_backward` checked it), each element written by its block's cube.
    unsafe {
        fold_query_gradient::launch_unchecked::<R>(
            client,
            cube_count,
            CubeDim::new_1d(EXPANSION_UNITS as u32),
            grad_expanded.into_tensor_arg(),
            key_columns(),
            grad_query.into_tensor_arg(),
            config,
            dtype,
        );
    }
    Ok(())
}

/// Whether [`launch_backward`] takes a call of these query, key and value shapes (output and
/// gradients shaped to match), checked before the forward runs, so that a training step knows
/// which backward it will get.
pub fn check_backward<R: Runtime>(
    client: &ComputeClient<R>,
    shapes: [&[usize]; 3],
    dtype: StorageType,
    options: &ForwardOptions<'_, R>,
) -> Result<(), KernelError> {
    let problem = check_input_shapes(client, shapes, dtype, options)?;
    backward_plan(client, None, dtype, options, &problem).map(drop)
}

/// The backward kernels a call runs, fully specialised.
enum BackwardPlan {
    Portable(BackwardConfig),
    /// Query side, key side of exact attention; a grouped call runs them on its expanded query.
    TensorCore([TensorCoreBackwardConfig; 2]),
}

/// The tensor-core backward for the calls it takes (grouped ones on their expanded query), the
/// portable one for the rest. Without `tensors`, rows are assumed to be in whole chunks.
fn backward_plan<R: Runtime>(
    client: &ComputeClient<R>,
    tensors: Option<&BackwardBindings<R>>,
    dtype: StorageType,
    options: &ForwardOptions<'_, R>,
    problem: &Problem,
) -> Result<BackwardPlan, KernelError> {
    match tensor_core_backward_configs(client, tensors, dtype, options, problem) {
        Ok(configs) => return Ok(BackwardPlan::TensorCore(configs)),
        Err(reason) => log::debug!("portable backward: {reason}"),
    }
    backward_config(client, options, problem).map(BackwardPlan::Portable)
}

/// The tensor-core backward's two specialisations (query side, key side), or why it cannot run
/// the call here: the device and dtype as the forward's tensor-core path, Q, K, V and dO rows
/// in whole 16-byte chunks (where `tensors` is given), shared memory and the grid.
fn tensor_core_backward_configs<R: Runtime>(
    client: &ComputeClient<R>,
    tensors: Option<&BackwardBindings<R>>,
    dtype: StorageType,
    options: &ForwardOptions<'_, R>,
    problem: &Problem,
) -> Result<[TensorCoreBackwardConfig; 2], KernelError> {
    tensor_core_device(client, dtype, options.scale)?;
    if let Some(tensors) = tensors {
        let forward = &tensors.forward;
        for (name, binding) in [("query", &forward.query), ("key", &forward.key), ("value", &forward.value), ("grad_output", &tensors.grad_output)] {
            whole_chunks(name, binding)?;
        }
    }
    let [queries, keys] = TensorCoreBackwardConfig::for_shape(problem.head_dim, problem.value_dim, options.causal);
    // Without `tensors` (a check before the forward), the log-sum-exps are taken as saved.
    let log_sums_saved = tensors.is_none_or(|tensors| tensors.forward.log_sums.is_some());
    let keys = key_side_config(keys, options.query_gradient, log_sums_saved, atomic_f32_add(client))?;
    let configs = [queries, keys];
    let hardware = &client.properties().hardware;
    for config in configs {
        if !config.is_consistent() {
            return Err(KernelError::Unsupported {
                name: "head_dim",
                value: format!("{} (value_dim {})", config.head_dim, config.value_dim),
                expected: "multiples of 16 on the tensor-core backward".into(),
            });
        }
        if config.shared_bytes() > hardware.max_shared_memory_size || config.units() > hardware.max_units_per_cube as usize {
            return Err(KernelError::Unsupported {
                name: "shared memory",
                value: format!("{} bytes, {} units", config.shared_bytes(), config.units()),
                expected: format!("at most {} bytes and {} units", hardware.max_shared_memory_size, hardware.max_units_per_cube),
            });
        }
    }
    let cubes = [
        (problem.seq_q.div_ceil(configs[0].block_rows()), problem.batch * problem.heads),
        key_side_cubes(problem, &configs[1]),
    ];
    let max_count = hardware.max_cube_count;
    if let Some(too_many) = cubes.iter().find(|(x, y)| *x > max_count.0 as usize || *y > max_count.1 as usize) {
        return Err(KernelError::Unsupported {
            name: "grid",
            value: format!("{too_many:?} cubes"),
            expected: format!("at most {} x {}", max_count.0, max_count.1),
        });
    }
    Ok(configs)
}

/// The backward specialisation: the largest power-of-two tiles (keys for the query side, query
/// rows for the key side, at most [`MAX_PORTABLE_KEY_TILE`]) that fit the f32 kernels' shared
/// memory, and a grid the device takes.
fn backward_config<R: Runtime>(
    client: &ComputeClient<R>,
    options: &ForwardOptions<'_, R>,
    problem: &Problem,
) -> Result<BackwardConfig, KernelError> {
    let limit = f32_kernel_shared_limit(client);
    let mut config = BackwardConfig {
        reduced_width: reduced_width(problem.head_dim, options.group_size),
        head_dim: problem.head_dim,
        value_dim: problem.value_dim,
        group_size: options.group_size,
        key_members: options.representative.key_members(options.group_size),
        representative: options.representative,
        block_rows: options.block_rows,
        key_tile: MAX_PORTABLE_KEY_TILE,
        query_tile: MAX_PORTABLE_KEY_TILE.min(options.block_rows),
        causal: options.causal,
        unroll: options.unroll,
    };
    if config.floats_per_unit() > MAX_BACKWARD_FLOATS_PER_UNIT {
        return Err(KernelError::Unsupported {
            name: "head_dim",
            value: format!("{} with group_size {}", problem.head_dim, options.group_size),
            expected: format!(
                "rows of at most {MAX_BACKWARD_FLOATS_PER_UNIT} f32 per unit in the backward (2 x (head_dim / G) + 2 x value_dim); \
                 larger rows run the reference's backward, which is faster there"
            ),
        });
    }
    while config.query_side_bytes() > limit || config.key_side_bytes() > limit {
        if config.key_tile < 4 || config.query_tile < 4 {
            return Err(KernelError::Unsupported {
                name: "shared memory",
                value: format!("{limit} bytes"),
                expected: format!("room for 4 keys and 4 query rows of width {}", config.reduced_width + config.value_dim),
            });
        }
        if config.query_side_bytes() > limit {
            config.key_tile /= 2;
        }
        if config.key_side_bytes() > limit {
            config.query_tile /= 2;
        }
    }
    let key_blocks = problem.seq_k.div_ceil(options.block_rows);
    let max_count = client.properties().hardware.max_cube_count;
    if key_blocks > max_count.0 as usize || problem.batch * problem.kv_heads > max_count.1 as usize {
        return Err(KernelError::Unsupported {
            name: "grid",
            value: format!("{key_blocks} x {} cubes", problem.batch * problem.kv_heads),
            expected: format!("at most {} x {}", max_count.0, max_count.1),
        });
    }
    Ok(config)
}

/// K `[B, Hkv, Nk, d]` transposed to `[B, Hkv, d, Nk]` with the keys zero-padded to whole
/// 16-byte chunks ([`crate::kernels::transpose_keys`]).
fn transposed_keys<R: Runtime>(
    client: &ComputeClient<R>,
    key: &TensorBinding<R>,
    dtype: StorageType,
) -> Result<TensorBinding<R>, KernelError> {
    let [batch, kv_heads, seq_k, head_dim] = [0, 1, 2, 3].map(|axis| key.shape[axis]);
    let padded = seq_k.next_multiple_of(CHUNK);
    let cubes = (padded.div_ceil(TRANSPOSE_KEYS), batch * kv_heads);
    let max_cubes = client.properties().hardware.max_cube_count;
    if cubes.0 > max_cubes.0 as usize || cubes.1 > max_cubes.1 as usize {
        return Err(KernelError::Unsupported {
            name: "grid",
            value: format!("{cubes:?} cubes to transpose K"),
            expected: format!("at most {:?}", (max_cubes.0, max_cubes.1)),
        });
    }
    let handle = client.empty(batch * kv_heads * head_dim * padded * dtype.size());
    let shape = Shape::new([batch, kv_heads, head_dim, padded]);
    let strides = Strides::new(&[kv_heads * head_dim * padded, head_dim * padded, padded, 1]);
    // SAFETY: `handle` holds exactly `shape` contiguous elements, written whole by the cubes
    // (tiles past `padded` are skipped in the kernel); `key` is read within its shape, in whole
    // 16-byte chunks, which `plan` checked for the tensor-core path.
    unsafe {
        transpose_keys::launch_unchecked::<R>(
            client,
            CubeCount::Static(cubes.0 as u32, cubes.1 as u32, 1),
            CubeDim::new_1d(TRANSPOSE_UNITS as u32),
            CHUNK,
            key.clone().into_tensor_arg(),
            TensorArg::from_raw_parts(handle.clone(), strides.clone(), shape.clone()),
            head_dim,
            dtype,
        );
    }
    Ok(TensorBinding { handle: handle.binding(), strides, shape, runtime: PhantomData })
}

/// The forward kernel a call runs, fully specialised.
enum Plan {
    Portable(PortableConfig),
    /// `head_group`: see [`forward_cubes`].
    TensorCore { config: TensorCoreConfig, head_group: usize },
    Cooperative(CooperativeConfig),
    SplitKeys(SplitKeysPlan),
}

impl Plan {
    fn name(&self) -> &'static str {
        match self {
            Plan::Portable(_) => "portable",
            Plan::TensorCore { .. } => "tensor-core",
            Plan::Cooperative(_) => "cooperative-matrix",
            Plan::SplitKeys(_) => "split-key decode",
        }
    }
}

/// Split-key decode: the specialisation and how the keys are split.
#[derive(Clone, Copy, Debug)]
struct SplitKeysPlan {
    config: DecodeConfig,
    keys_per_split: usize,
    splits: usize,
}

/// Both passes of split-key decode, with their f32 scratch (partial outputs and the
/// per-row maximum and sum of every split).
#[allow(clippy::too_many_arguments)]
fn launch_split_keys<R: Runtime>(
    client: &ComputeClient<R>,
    query: TensorBinding<R>,
    key: TensorBinding<R>,
    value: TensorBinding<R>,
    key_columns: ArrayArg<R>,
    output: TensorBinding<R>,
    dtype: StorageType,
    options: &ForwardOptions<'_, R>,
    problem: &Problem,
    plan: SplitKeysPlan,
) {
    let config = plan.config;
    let batch_kv_heads = problem.batch * problem.kv_heads;
    let output_len = plan.splits * batch_kv_heads * config.rows * config.value_dim;
    let stats_len = plan.splits * batch_kv_heads * config.rows * 2;
    let partial_output = client.empty(output_len * 4);
    let partial_stats = client.empty(stats_len * 4);
    // SAFETY: `check` validated shapes and dtypes and `split_keys_plan` the grid and shared
    // memory; the scratch holds exactly the `[splits, batch * kv_heads, rows, ..]` slots the
    // first pass writes and the second reads, for the rows `heads / kv_heads * seq_q <= rows`.
    unsafe {
        split_keys_decode::launch_unchecked::<R>(
            client,
            CubeCount::Static(plan.splits as u32, batch_kv_heads as u32, 1),
            CubeDim::new_1d(DECODE_UNITS as u32),
            query.into_tensor_arg(),
            key.into_tensor_arg(),
            value.into_tensor_arg(),
            key_columns,
            ArrayArg::from_raw_parts(partial_output.clone(), output_len),
            ArrayArg::from_raw_parts(partial_stats.clone(), stats_len),
            problem.seq_q as u32,
            plan.keys_per_split as u32,
            options.scale,
            config,
            dtype,
        );
        combine_splits::launch_unchecked::<R>(
            client,
            CubeCount::Static(batch_kv_heads as u32, 1, 1),
            CubeDim::new_1d(DECODE_UNITS as u32),
            ArrayArg::from_raw_parts(partial_output, output_len),
            ArrayArg::from_raw_parts(partial_stats, stats_len),
            output.into_tensor_arg(),
            problem.kv_heads as u32,
            plan.splits as u32,
            config,
            dtype,
        );
    }
}

/// The split-key decode specialisation: the largest key tile whose shared arrays fit, and
/// splits of whole tiles, enough of them for [`DECODE_CUBES_PER_SM`] cubes per SM.
fn split_keys_plan<R: Runtime>(
    client: &ComputeClient<R>,
    options: &ForwardOptions<'_, R>,
    problem: &Problem,
) -> Result<SplitKeysPlan, KernelError> {
    if problem.seq_q > DECODE_QUERY_ROWS {
        return Err(KernelError::Unsupported {
            name: "seq_q",
            value: problem.seq_q.to_string(),
            expected: format!("at most {DECODE_QUERY_ROWS} query rows for split-key decode"),
        });
    }
    let hardware = &client.properties().hardware;
    let rows = (problem.heads / problem.kv_heads * problem.seq_q).next_power_of_two();
    let limit = f32_kernel_shared_limit(client);
    let config = DECODE_KEY_TILES
        .into_iter()
        .map(|key_tile| DecodeConfig {
            reduced_width: reduced_width(problem.head_dim, options.group_size),
            head_dim: problem.head_dim,
            value_dim: problem.value_dim,
            group_size: options.group_size,
            key_members: options.representative.key_members(options.group_size),
            rows,
            key_tile,
            causal: options.causal,
            unroll: options.unroll,
        })
        .find(|config| config.shared_bytes() <= limit)
        .ok_or_else(|| KernelError::Unsupported {
            name: "shared memory",
            value: format!("{limit} bytes"),
            expected: format!("room for {rows} query rows (query heads per key head x seq_q) and 8 keys"),
        })?;
    if rows > DECODE_UNITS || DECODE_UNITS > hardware.max_units_per_cube as usize {
        return Err(KernelError::Unsupported {
            name: "split-key decode",
            value: format!("{rows} rows, {DECODE_UNITS} units"),
            expected: format!("at most {DECODE_UNITS} rows and {} units per cube", hardware.max_units_per_cube),
        });
    }
    let batch_kv_heads = problem.batch * problem.kv_heads;
    let sms = hardware.num_streaming_multiprocessors.map_or(DECODE_ASSUMED_SMS, |sms| sms as usize);
    let (keys_per_split, splits) = key_splits(problem.seq_k, batch_kv_heads, sms, config.key_tile);
    if splits > hardware.max_cube_count.0 as usize || batch_kv_heads > hardware.max_cube_count.1 as usize {
        return Err(KernelError::Unsupported {
            name: "grid",
            value: format!("{splits} x {batch_kv_heads} cubes"),
            expected: format!("at most {} x {}", hardware.max_cube_count.0, hardware.max_cube_count.1),
        });
    }
    Ok(SplitKeysPlan { config, keys_per_split, splits })
}

fn plan<R: Runtime>(
    client: &ComputeClient<R>,
    tensors: Option<&AttentionBindings<R>>,
    dtype: StorageType,
    options: &ForwardOptions<'_, R>,
    problem: &Problem,
) -> Result<Plan, KernelError> {
    let variant = match options.strategy {
        Strategy::Portable => return portable_config(client, options, problem).map(Plan::Portable),
        Strategy::SplitKeys => return split_keys_plan(client, options, problem).map(Plan::SplitKeys),
        Strategy::Cooperative => return cooperative_config(client, tensors, dtype, options, problem).map(Plan::Cooperative),
        Strategy::Auto if problem.seq_q <= DECODE_QUERY_ROWS => match split_keys_plan(client, options, problem) {
            Ok(plan) => return Ok(Plan::SplitKeys(plan)),
            Err(reason) => {
                log::debug!("no split-key decode: {reason}");
                TensorCoreVariant::default()
            }
        },
        Strategy::Auto => TensorCoreVariant::default(),
        Strategy::TensorCore(variant) => variant,
    };
    match tensor_core_config(client, tensors, dtype, options, problem, variant) {
        Ok(config) => {
            let head_group = largest_divisor_up_to(
                problem.batch * problem.heads,
                variant.head_group.unwrap_or_else(|| causal_head_group(client, problem, &config)),
            );
            Ok(Plan::TensorCore { config, head_group })
        }
        Err(reason) if options.strategy == Strategy::Auto => {
            log::debug!("no tensor-core kernel: {reason}");
            match cooperative_config(client, tensors, dtype, options, problem) {
                Ok(config) => Ok(Plan::Cooperative(config)),
                Err(reason) => {
                    log::debug!("portable kernel: {reason}");
                    portable_config(client, options, problem).map(Plan::Portable)
                }
            }
        }
        Err(reason) => Err(reason),
    }
}

/// Fragment shapes the cooperative-matrix kernel takes, preferred first.
const COOPERATIVE_SHAPES: [MatrixShape; 2] = [MatrixShape { m: 16, n: 16, k: 16 }, MatrixShape { m: 8, n: 8, k: 8 }];

/// What the cooperative-matrix kernel needs to know of a device.
#[derive(Clone, Debug)]
struct CooperativeDevice {
    /// `cmma` shapes with the call's operands and f32 accumulators.
    shapes: Vec<MatrixShape>,
    plane_size_min: u32,
    plane_size_max: u32,
    max_shared_bytes: usize,
    max_units: usize,
}

impl CooperativeDevice {
    fn of<R: Runtime>(client: &ComputeClient<R>, dtype: StorageType) -> Self {
        let properties = client.properties();
        let hardware = &properties.hardware;
        let f32_type = StorageType::Scalar(ElemType::Float(FloatKind::F32));
        let shapes = COOPERATIVE_SHAPES
            .into_iter()
            .filter(|shape| {
                let wanted = MmaConfig { a_type: dtype, b_type: dtype, cd_type: f32_type, m: shape.m as u32, n: shape.n as u32, k: shape.k as u32 };
                properties.features.matmul.cmma.contains(&wanted)
            })
            .collect();
        Self {
            shapes,
            plane_size_min: hardware.plane_size_min,
            plane_size_max: hardware.plane_size_max,
            max_shared_bytes: hardware.max_shared_memory_size,
            max_units: hardware.max_units_per_cube as usize,
        }
    }

    /// The specialisation for a call, or why this device cannot run it: the first listed
    /// shape, the largest key tile that fits shared memory.
    fn config(
        &self,
        dtype: StorageType,
        scale: f32,
        call: CooperativeConfig,
    ) -> Result<CooperativeConfig, KernelError> {
        let refuse = |name: &'static str, value: String, expected: String| Err(KernelError::Unsupported { name, value, expected });
        if !matches!(dtype, StorageType::Scalar(ElemType::Float(FloatKind::F16 | FloatKind::BF16))) {
            return refuse("dtype", format!("{dtype:?}"), "f16 or bf16 on the cooperative-matrix path".into());
        }
        let Some(&shape) = self.shapes.first() else {
            return refuse("device", "no cmma".into(), "cmma 16x16x16 or 8x8x8 with these operands and f32 accumulators".into());
        };
        if self.plane_size_min != self.plane_size_max {
            return refuse("plane size", format!("{}..={}", self.plane_size_min, self.plane_size_max), "one plane size".into());
        }
        if !(scale > 0.0 && scale <= MAX_SCALE) {
            return refuse("scale", scale.to_string(), format!("a positive scale up to {MAX_SCALE:e} on the cooperative-matrix path"));
        }
        let candidates = CooperativeConfig::KEY_TILES
            .map(|key_tile| CooperativeConfig { shape, plane_size: self.plane_size_max as usize, key_tile, ..call });
        let element_bytes = dtype.size();
        candidates
            .into_iter()
            .find(|config| {
                config.is_consistent()
                    && config.shared_bytes(element_bytes) <= self.max_shared_bytes
                    && config.units() <= self.max_units
            })
            .ok_or_else(|| {
                let smallest = candidates[candidates.len() - 1];
                KernelError::Unsupported {
                    name: "cooperative-matrix tiling",
                    value: format!(
                        "{} bytes of shared memory, {} units, {} lanes per plane",
                        smallest.shared_bytes(element_bytes),
                        smallest.units(),
                        smallest.plane_size
                    ),
                    expected: format!(
                        "at most {} bytes and {} units, whole fragments of {}x{}x{} along every axis",
                        self.max_shared_bytes, self.max_units, shape.m, shape.n, shape.k
                    ),
                }
            })
    }
}

/// The cooperative-matrix specialisation of the call, or why it cannot run here. Q's, K's and
/// V's rows are read 16 bytes at a time (K's by the transposition for `G > 1`); without
/// `tensors`, rows are assumed to be in whole chunks.
fn cooperative_config<R: Runtime>(
    client: &ComputeClient<R>,
    tensors: Option<&AttentionBindings<R>>,
    dtype: StorageType,
    options: &ForwardOptions<'_, R>,
    problem: &Problem,
) -> Result<CooperativeConfig, KernelError> {
    read_in_chunks(tensors, true)?;
    let call = CooperativeConfig {
        reduced_width: reduced_width(problem.head_dim, options.group_size),
        head_dim: problem.head_dim,
        value_dim: problem.value_dim,
        group_size: options.group_size,
        key_members: options.representative.key_members(options.group_size),
        block_rows: options.block_rows,
        key_tile: 0,
        causal: options.causal,
        shape: COOPERATIVE_SHAPES[0],
        plane_size: 0,
    };
    CooperativeDevice::of(client, dtype).config(dtype, options.scale, call)
}

/// The tensor-core specialisation of the call, or why it cannot run here (see
/// [`Strategy::Auto`]). Without `tensors`, rows are assumed to be in whole chunks.
fn tensor_core_config<R: Runtime>(
    client: &ComputeClient<R>,
    tensors: Option<&AttentionBindings<R>>,
    dtype: StorageType,
    options: &ForwardOptions<'_, R>,
    problem: &Problem,
    variant: TensorCoreVariant,
) -> Result<TensorCoreConfig, KernelError> {
    let refuse = |name: &'static str, value: String, expected: &str| {
        Err(KernelError::Unsupported { name, value, expected: expected.into() })
    };
    tensor_core_device(client, dtype, options.scale)?;
    let hardware = &client.properties().hardware;
    // Q and K are read as they are only for exact attention (Q' and K^T otherwise).
    let exact = options.group_size == 1;
    read_in_chunks(tensors, exact)?;
    let config = TensorCoreConfig {
        head_dim: problem.head_dim,
        value_dim: problem.value_dim,
        group_size: options.group_size,
        key_members: options.representative.key_members(options.group_size),
        block_rows: options.block_rows,
        causal: options.causal,
        tiling: variant
            .tiling
            .unwrap_or(TensorCoreTiling::for_shape(
                problem.head_dim,
                options.group_size,
                options.representative.key_members(options.group_size),
                options.block_rows,
            )),
        copy: variant.copy,
        fragments: variant.fragments,
        key_fusion: variant.key_fusion,
        saves_log_sums: false,
    };
    if !config.is_consistent() {
        return refuse("tiling", format!("{:?}", config.tiling), "warps x row tiles x 16 = block_rows");
    }
    if config.shared_bytes() > hardware.max_shared_memory_size || config.units() > hardware.max_units_per_cube as usize {
        return refuse(
            "shared memory",
            format!("{} bytes, {} units", config.shared_bytes(), config.units()),
            &format!("at most {} bytes and {} units", hardware.max_shared_memory_size, hardware.max_units_per_cube),
        );
    }
    Ok(config)
}

/// The tensor-core forward's grid `(x, y)`. Without a mask every block does the same work: x
/// runs over one (batch, head) pair's blocks, y over the pairs. Causal blocks differ (a head's
/// last block sees every key, its first one block of them): launched one pair after another,
/// the launch's last pairs start their longest blocks last and leave SMs idle at its end, while
/// every pair's longest block first makes the cubes that run at once read every head's keys and
/// values, more than L2 holds at long sequences. So causal x runs over `head_group` pairs'
/// blocks, rank-major (each pair's longest block, then each pair's next, ...), y over the groups.
fn forward_cubes(problem: &Problem, causal: bool, head_group: usize) -> (usize, usize) {
    let pairs = problem.batch * problem.heads;
    if causal {
        (head_group * problem.num_blocks, pairs / head_group)
    } else {
        (problem.num_blocks, pairs)
    }
}

/// [`TensorCoreVariant::head_group`]'s default for causal calls: as many pairs as make about
/// [`CAUSAL_CUBES_PER_SM`] cubes per SM, the cubes that run at once. Timed on an H100 against
/// groups of 1 (one pair after another, the grid before), 2, 4, 8, 16 and 64 (every pair at
/// once), B = 4, H = 16, fp16, N = 4096 to 16384, d = 64 and 128, exact and G = 2
/// (`benchmarks/results/2026-12-07-h100-causal-order/`): this picks 8, 4 and 2 pairs at N = 4096,
/// 8192 and 16384, 0.91-0.96x, 0.95-0.98x and 0.98-1.01x the time of one pair after another,
/// where all pairs at once took 1.04-1.08x at N = 16384.
fn causal_head_group<R: Runtime>(client: &ComputeClient<R>, problem: &Problem, config: &TensorCoreConfig) -> usize {
    if !config.causal {
        return 1;
    }
    let sms = client.properties().hardware.num_streaming_multiprocessors.unwrap_or(1) as usize;
    (CAUSAL_CUBES_PER_SM * sms / problem.num_blocks).max(1)
}

/// Cubes of the causal forward per SM that [`causal_head_group`] launches together.
const CAUSAL_CUBES_PER_SM: usize = 2;

/// The largest divisor of `n` that is at most `limit` (at least 1).
fn largest_divisor_up_to(n: usize, limit: usize) -> usize {
    (1..=limit.clamp(1, n.max(1))).rev().find(|divisor| n % divisor == 0).unwrap_or(1)
}

/// Whether the device runs the tensor-core kernels for `dtype` and `scale`: f16 or bf16, `mma`
/// m16n8k16 with f32 accumulation, 32-lane planes, a positive scale up to [`MAX_SCALE`].
fn tensor_core_device<R: Runtime>(client: &ComputeClient<R>, dtype: StorageType, scale: f32) -> Result<(), KernelError> {
    let refuse = |name: &'static str, value: String, expected: &str| {
        Err(KernelError::Unsupported { name, value, expected: expected.into() })
    };
    if !matches!(dtype, StorageType::Scalar(ElemType::Float(FloatKind::F16 | FloatKind::BF16))) {
        return refuse("dtype", format!("{dtype:?}"), "f16 or bf16 on the tensor-core path");
    }
    let properties = client.properties();
    let wanted = MmaConfig {
        a_type: dtype,
        b_type: dtype,
        cd_type: StorageType::Scalar(ElemType::Float(FloatKind::F32)),
        m: 16,
        n: 8,
        k: 16,
    };
    if !properties.features.matmul.mma.contains(&wanted) {
        return refuse("device", "no mma m16n8k16".into(), "mma m16n8k16 with f32 accumulation");
    }
    let hardware = &properties.hardware;
    if hardware.plane_size_min != PLANE_SIZE as u32 || hardware.plane_size_max != PLANE_SIZE as u32 {
        return refuse("plane size", format!("{}..={}", hardware.plane_size_min, hardware.plane_size_max), "32");
    }
    if !(scale > 0.0 && scale <= MAX_SCALE) {
        return refuse("scale", scale.to_string(), &format!("a positive scale up to {MAX_SCALE:e} on the tensor-core path"));
    }
    Ok(())
}

/// The key side's specialisation: forming dQ ([`QueryGradient::KeySide`]) where `requested`
/// allows it and the call can (the forward's log-sum-exps saved, an f32 atomic add, whole n16
/// pairs of head-dim columns per warp); a forced `KeySide` the call cannot take is refused,
/// naming what it lacks. `None` takes it where it was measured faster and checked on the device:
/// non-causal (H100, 2026-12-06, with the row statistics read as 16-byte pairs: 0.85-0.91x the
/// query side's time at N = 4096 and 16384, d = 64 and 128), and causal at head dim 64, on
/// the grid of [`TensorCoreBackwardConfig::heads_first`] (H100, 2026-12-07: 0.88x / 0.92x the
/// query side's time at N = 4096 / 16384, d = 64, after `--check --backward`'s forced causal
/// key side passed at d = 64 and 128; `benchmarks/results/2026-12-07-h100-causal-key-side`).
/// Other causal calls stay on the query side: at d = 128 the key side took 1.12-1.15x its
/// time, and d = 32 has been neither timed nor checked there.
fn key_side_config(
    keys: TensorCoreBackwardConfig,
    requested: Option<QueryGradient>,
    log_sums_saved: bool,
    atomic_add: bool,
) -> Result<TensorCoreBackwardConfig, KernelError> {
    let key_side = keys.forming_query_gradient();
    let lacks = if !log_sums_saved {
        Some("the forward's log-sum-exps")
    } else if !atomic_add {
        Some("an atomic add of f32 pairs on the device")
    } else if !key_side.is_consistent() {
        Some("head-dim columns in whole n16 pairs per warp")
    } else {
        None
    };
    match (requested, lacks) {
        (None, None) if !keys.causal || keys.head_dim == 64 => Ok(key_side),
        (Some(QueryGradient::KeySide), None) => Ok(key_side),
        (Some(QueryGradient::KeySide), Some(needs)) => Err(KernelError::Unsupported {
            name: "query_gradient",
            value: "KeySide".into(),
            expected: format!("a call with {needs}"),
        }),
        _ => Ok(keys),
    }
}

/// Whether the device adds pairs of f32 in global memory atomically (`atomicAdd` on `float2`:
/// CUDA from sm_90).
fn atomic_f32_add<R: Runtime>(client: &ComputeClient<R>) -> bool {
    let atomic_pair = Type::new(StorageType::Atomic(ElemType::Float(FloatKind::F32))).with_vector_size(2);
    client.properties().atomic_type_usage(atomic_pair).contains(AtomicUsage::Add)
}

/// Whether the tensor-core and cooperative-matrix kernels can copy the rows they read whole
/// 16 bytes at a time: V's, and Q's and K's where `query_and_key` (exact attention on tensor
/// cores; every call on cooperative matrices, whose K^T the transposition reads in chunks);
/// without `tensors` (a plan made before the tensors exist), they are assumed to.
fn read_in_chunks<R: Runtime>(tensors: Option<&AttentionBindings<R>>, query_and_key: bool) -> Result<(), KernelError> {
    let Some(tensors) = tensors else { return Ok(()) };
    let chunked = [("value", &tensors.value)]
        .into_iter()
        .chain(query_and_key.then_some(("query", &tensors.query)))
        .chain(query_and_key.then_some(("key", &tensors.key)));
    for (name, binding) in chunked {
        whole_chunks(name, binding)?;
    }
    Ok(())
}

/// Whether the tensor-core kernels can copy `binding`'s rows in whole 16-byte chunks.
fn whole_chunks<R: Runtime>(name: &'static str, binding: &TensorBinding<R>) -> Result<(), KernelError> {
    let chunked = binding.strides[3] == 1
        && binding.strides[..3].iter().all(|stride| stride % CHUNK == 0)
        && binding.handle.offset_start.unwrap_or(0) % 16 == 0;
    if chunked {
        Ok(())
    } else {
        Err(KernelError::Unsupported {
            name,
            value: format!("strides {:?}, offset {:?}", binding.strides, binding.handle.offset_start),
            expected: "contiguous rows, other strides multiples of 8, a 16-byte aligned start".into(),
        })
    }
}

/// The portable specialisation: the largest power-of-two key tile (at most
/// [`MAX_PORTABLE_KEY_TILE`]) whose f32 K' and V tiles fit the device's shared memory.
fn portable_config<R: Runtime>(
    client: &ComputeClient<R>,
    options: &ForwardOptions<'_, R>,
    problem: &Problem,
) -> Result<PortableConfig, KernelError> {
    let width = reduced_width(problem.head_dim, options.group_size);
    let limit = f32_kernel_shared_limit(client);
    let available = limit.saturating_sub(width * options.group_size * 4);
    let per_key = (width + problem.value_dim) * 4;
    let mut key_tile = MAX_PORTABLE_KEY_TILE;
    while key_tile * per_key > available {
        key_tile /= 2;
        if key_tile < 4 {
            return Err(KernelError::Unsupported {
                name: "shared memory",
                value: format!("{limit} bytes"),
                expected: format!("room for 4 keys of {per_key} bytes"),
            });
        }
    }
    Ok(PortableConfig {
        reduced_width: width,
        head_dim: problem.head_dim,
        value_dim: problem.value_dim,
        group_size: options.group_size,
        key_members: options.representative.key_members(options.group_size),
        block_rows: options.block_rows,
        key_tile,
        causal: options.causal,
        unroll: options.unroll,
    })
}

/// Shared memory the f32 kernels (portable forward, split-key decode) size their tiles for:
/// the device's maximum, capped at 48 KiB (the per-cube limit every CUDA device has without an
/// opt-in), so that their tiling does not depend on a device's opt-in maximum; the tensor-core
/// path sizes itself to that maximum instead.
fn f32_kernel_shared_limit<R: Runtime>(client: &ComputeClient<R>) -> usize {
    client.properties().hardware.max_shared_memory_size.min(48 * 1024)
}

/// Keys per split (whole key tiles) and the number of splits: about [`DECODE_CUBES_PER_SM`]
/// cubes per SM over all (batch, kv head) pairs, every key in exactly one split.
fn key_splits(seq_k: usize, batch_kv_heads: usize, sms: usize, key_tile: usize) -> (usize, usize) {
    let wanted = (DECODE_CUBES_PER_SM * sms).div_ceil(batch_kv_heads).max(1);
    let keys_per_split = seq_k.div_ceil(wanted).next_multiple_of(key_tile);
    (keys_per_split, seq_k.div_ceil(keys_per_split))
}

fn one_of(name: &'static str, value: usize, supported: &[usize]) -> Result<(), KernelError> {
    if supported.contains(&value) {
        Ok(())
    } else {
        Err(KernelError::Unsupported { name, value: value.to_string(), expected: format!("{supported:?}") })
    }
}

/// Validates dtype, ranks, shapes, options and the grid.
fn check<R: Runtime>(
    client: &ComputeClient<R>,
    tensors: &AttentionBindings<R>,
    dtype: StorageType,
    options: &ForwardOptions<'_, R>,
) -> Result<Problem, KernelError> {
    let bindings = [&tensors.query, &tensors.key, &tensors.value, &tensors.output];
    for (name, binding) in TENSOR_NAMES.into_iter().zip(bindings) {
        if binding.strides.len() != 4 {
            return Err(KernelError::Shape {
                tensor: name,
                actual: binding.strides.to_vec(),
                expected: "4 strides".into(),
            });
        }
    }
    check_shapes(client, bindings.map(|binding| &binding.shape[..]), dtype, options)
}

/// [`check_shapes`] for a call known by its query, key and value shapes alone (the output
/// shaped to match), before its tensors exist.
fn check_input_shapes<R: Runtime>(
    client: &ComputeClient<R>,
    [query, key, value]: [&[usize]; 3],
    dtype: StorageType,
    options: &ForwardOptions<'_, R>,
) -> Result<Problem, KernelError> {
    if query.len() != 4 || value.len() != 4 {
        return Err(KernelError::Shape {
            tensor: if query.len() != 4 { "query" } else { "value" },
            actual: if query.len() != 4 { query.to_vec() } else { value.to_vec() },
            expected: "a rank-4 tensor".into(),
        });
    }
    let output = [query[0], query[1], query[2], value[3]];
    check_shapes(client, [query, key, value, &output], dtype, options)
}

/// The four tensors of [`AttentionBindings`], in order.
const TENSOR_NAMES: [&str; 4] = ["query", "key", "value", "output"];

/// [`check`] on the shapes of query, key, value and output alone.
fn check_shapes<R: Runtime>(
    client: &ComputeClient<R>,
    shapes: [&[usize]; 4],
    dtype: StorageType,
    options: &ForwardOptions<'_, R>,
) -> Result<Problem, KernelError> {
    if !matches!(dtype, StorageType::Scalar(ElemType::Float(FloatKind::F32 | FloatKind::F16 | FloatKind::BF16))) {
        return Err(KernelError::Unsupported {
            name: "dtype",
            value: format!("{dtype:?}"),
            expected: "f32, f16 or bf16".into(),
        });
    }
    for (name, shape) in TENSOR_NAMES.into_iter().zip(shapes) {
        if shape.len() != 4 || shape.contains(&0) {
            return Err(KernelError::Shape {
                tensor: name,
                actual: shape.to_vec(),
                expected: "a non-empty rank-4 tensor".into(),
            });
        }
    }
    let dims = |shape: &[usize]| [0, 1, 2, 3].map(|axis| shape[axis]);
    let [query, key, value, output] = shapes;
    let [batch, heads, seq_q, head_dim] = dims(query);
    let [_, kv_heads, seq_k, _] = dims(key);
    let value_dim = value[3];
    let expected = [
        ("key", key, [batch, kv_heads, seq_k, head_dim]),
        ("value", value, [batch, kv_heads, seq_k, value_dim]),
        ("output", output, [batch, heads, seq_q, value_dim]),
    ];
    for (name, shape, wanted) in expected {
        if dims(shape) != wanted || heads % kv_heads != 0 {
            return Err(KernelError::Shape {
                tensor: name,
                actual: shape.to_vec(),
                expected: format!("{wanted:?} with heads {heads} a multiple of kv_heads {kv_heads}"),
            });
        }
    }
    one_of("head_dim", head_dim, &SUPPORTED_HEAD_DIMS)?;
    one_of("value_dim", value_dim, &SUPPORTED_HEAD_DIMS)?;
    one_of("group_size", options.group_size, &SUPPORTED_GROUP_SIZES)?;
    one_of("block_rows", options.block_rows, &SUPPORTED_BLOCK_ROWS)?;
    if head_dim % options.group_size != 0 {
        return Err(KernelError::Unsupported {
            name: "group_size",
            value: options.group_size.to_string(),
            expected: format!("a divisor of head_dim {head_dim}"),
        });
    }
    if options.causal && seq_q > seq_k {
        return Err(KernelError::Shape {
            tensor: "query",
            actual: query.to_vec(),
            expected: format!("seq_q <= seq_k = {seq_k} when causal"),
        });
    }
    if options.group_size > 1 {
        let Some(hyperplanes) = options.hyperplanes else {
            return Err(KernelError::Unsupported {
                name: "hyperplanes",
                value: "none".into(),
                expected: "hyperplanes when group_size > 1".into(),
            });
        };
        // Here as well as at the pre-pass's launch, so that the backward's check sees it.
        check_gram_grouping(client, &grouping_config(options, head_dim, hyperplanes.num_projections))?;
    }
    let num_blocks = seq_q.div_ceil(options.block_rows);
    let max_count = client.properties().hardware.max_cube_count;
    if num_blocks > max_count.0 as usize || batch * heads > max_count.1 as usize {
        return Err(KernelError::Unsupported {
            name: "grid",
            value: format!("{num_blocks} x {} cubes", batch * heads),
            expected: format!("at most {} x {}", max_count.0, max_count.1),
        });
    }
    Ok(Problem { batch, heads, kv_heads, seq_q, seq_k, head_dim, value_dim, num_blocks })
}

/// The CUDA C++ source NVRTC would compile for `config` in `dtype` (f16 or bf16): the kernel
/// expanded through `client` (any runtime: the IR does not depend on it) and lowered by
/// CubeCL's CUDA compiler. Lets the tensor-core path be compiled and its register use read
/// without a GPU (`examples/tensor_core_source.rs`, `scripts/ptxas-report.py`).
#[cfg(feature = "cuda")]
pub fn tensor_core_source<R: Runtime>(
    client: &ComputeClient<R>,
    config: TensorCoreConfig,
    dtype: StorageType,
) -> Result<String, KernelError> {
    let cube_dim = CubeDim::new_2d(PLANE_SIZE as u32, config.tiling.warps as u32);
    let kernel = tensor_core_forward::TensorCoreForward::<R>::new(
        KernelSettings::default().cube_dim(cube_dim),
        client.clone(),
        TensorCompilationArg { inplace: None },
        TensorCompilationArg { inplace: None },
        TensorCompilationArg { inplace: None },
        ArrayCompilationArg { inplace: None },
        TensorCompilationArg { inplace: None },
        TensorCompilationArg { inplace: None },
        (),
        CHUNK,
        config,
        dtype,
    );
    cuda_source(kernel.define(), true, "tensor-core kernel", format!("{config:?}"))
}

/// The CUDA source of the cooperative-matrix forward for `config`, without a device: the same
/// kernel that wgpu compiles to SPIR-V for Vulkan, lowered by CubeCL's CUDA compiler to `wmma`,
/// so that NVRTC and ptxas report its registers and spills
/// (`examples/cooperative_source.rs`, `scripts/ptxas-report.py`).
#[cfg(feature = "cuda")]
pub fn cooperative_source<R: Runtime>(
    client: &ComputeClient<R>,
    config: CooperativeConfig,
    dtype: StorageType,
) -> Result<String, KernelError> {
    let kernel = cooperative_kernel::<R>(client, config, dtype);
    cuda_source(kernel.define(), true, "cooperative-matrix kernel", format!("{config:?}"))
}

/// The cooperative-matrix kernel specialised for `config`, for a compiler to lower without a
/// device (its launch goes through `launch_unchecked`).
#[cfg(any(feature = "cuda", all(test, feature = "vulkan")))]
fn cooperative_kernel<R: Runtime>(
    client: &ComputeClient<R>,
    config: CooperativeConfig,
    dtype: StorageType,
) -> cooperative_forward::CooperativeForward<R> {
    cooperative_forward::CooperativeForward::<R>::new(
        KernelSettings::default().cube_dim(config.cube_dim()),
        client.clone(),
        TensorCompilationArg { inplace: None },
        TensorCompilationArg { inplace: None },
        TensorCompilationArg { inplace: None },
        ArrayCompilationArg { inplace: None },
        TensorCompilationArg { inplace: None },
        (),
        CHUNK,
        config,
        dtype,
    )
}

/// The CUDA source of the grouping pre-pass for `config`, without a device (static analysis).
#[cfg(feature = "cuda")]
pub fn grouping_source<R: Runtime>(
    client: &ComputeClient<R>,
    config: GroupingConfig,
    dtype: StorageType,
) -> Result<String, KernelError> {
    let kernel = group_queries::GroupQueries::<R>::new(
        KernelSettings::default().cube_dim(CubeDim::new_1d(config.units() as u32)),
        client.clone(),
        TensorCompilationArg { inplace: None },
        ArrayCompilationArg { inplace: None },
        ArrayCompilationArg { inplace: None },
        TensorCompilationArg { inplace: None },
        ArrayCompilationArg { inplace: None },
        PLANES_PER_UNIT,
        config,
        dtype,
    );
    cuda_source(kernel.define(), false, "grouping pre-pass", format!("{config:?}"))
}

/// The CUDA sources of the two backward kernels for `config` (query side, key side), without a
/// device (static analysis of their registers and spills).
#[cfg(feature = "cuda")]
pub fn backward_sources<R: Runtime>(
    client: &ComputeClient<R>,
    config: BackwardConfig,
    dtype: StorageType,
) -> Result<[String; 2], KernelError> {
    let settings = KernelSettings::default().cube_dim(CubeDim::new_1d(config.block_rows as u32));
    let tensor = || TensorCompilationArg { inplace: None };
    let array = || ArrayCompilationArg { inplace: None };
    let queries = backward_queries::BackwardQueries::<R>::new(
        settings.clone(),
        client.clone(),
        tensor(),
        tensor(),
        tensor(),
        tensor(),
        tensor(),
        array(),
        tensor(),
        array(),
        (),
        config,
        dtype,
    );
    let keys = backward_keys::BackwardKeys::<R>::new(
        settings,
        client.clone(),
        tensor(),
        tensor(),
        tensor(),
        tensor(),
        array(),
        array(),
        tensor(),
        tensor(),
        (),
        config,
        dtype,
    );
    Ok([
        cuda_source(queries.define(), false, "backward, query side", format!("{config:?}"))?,
        cuda_source(keys.define(), false, "backward, key side", format!("{config:?}"))?,
    ])
}

/// The CUDA sources of the two tensor-core backward kernels for `configs` (query side, key
/// side) in `dtype` (f16 or bf16), without a device (static analysis of their registers and
/// spills).
#[cfg(feature = "cuda")]
pub fn tensor_core_backward_sources<R: Runtime>(
    client: &ComputeClient<R>,
    [queries, keys]: [TensorCoreBackwardConfig; 2],
    dtype: StorageType,
) -> Result<[String; 2], KernelError> {
    let settings = |config: TensorCoreBackwardConfig| {
        KernelSettings::default().cube_dim(CubeDim::new_2d(PLANE_SIZE as u32, config.warps as u32))
    };
    let tensor = || TensorCompilationArg { inplace: None };
    let array = || ArrayCompilationArg { inplace: None };
    let query_side = tensor_core_backward_queries::TensorCoreBackwardQueries::<R>::new(
        settings(queries),
        client.clone(),
        tensor(),
        tensor(),
        tensor(),
        tensor(),
        tensor(),
        tensor(),
        array(),
        tensor(),
        (),
        CHUNK,
        queries,
        dtype,
    );
    let key_side = tensor_core_backward_keys::TensorCoreBackwardKeys::<R>::new(
        settings(keys),
        client.clone(),
        tensor(),
        tensor(),
        tensor(),
        tensor(),
        array(),
        tensor(),
        tensor(),
        array(),
        (),
        CHUNK,
        keys,
        dtype,
    );
    Ok([
        cuda_source(query_side.define(), true, "tensor-core backward, query side", format!("{queries:?}"))?,
        cuda_source(key_side.define(), true, "tensor-core backward, key side", format!("{keys:?}"))?,
    ])
}

/// The CUDA sources of the expanded query's two kernels for `config` (`Q''`, then dQ folded
/// from dQ''), without a device.
#[cfg(feature = "cuda")]
pub fn expanded_query_sources<R: Runtime>(
    client: &ComputeClient<R>,
    config: ExpansionConfig,
    dtype: StorageType,
) -> Result<[String; 2], KernelError> {
    let settings = KernelSettings::default().cube_dim(CubeDim::new_1d(EXPANSION_UNITS as u32));
    let tensor = || TensorCompilationArg { inplace: None };
    let array = || ArrayCompilationArg { inplace: None };
    let expand = expand_query::ExpandQuery::<R>::new(settings.clone(), client.clone(), tensor(), array(), tensor(), config, dtype);
    let fold = fold_query_gradient::FoldQueryGradient::<R>::new(settings, client.clone(), tensor(), array(), tensor(), config, dtype);
    Ok([
        cuda_source(expand.define(), false, "expanded query", format!("{config:?}"))?,
        cuda_source(fold.define(), false, "expanded query's gradient", format!("{config:?}"))?,
    ])
}

/// Lowers a kernel's definition with CubeCL's CUDA compiler, with 32-bit addressing: the source
/// NVRTC would be given.
#[cfg(feature = "cuda")]
fn cuda_source(definition: KernelDefinition, fast_math: bool, name: &'static str, value: String) -> Result<String, KernelError> {
    use cubecl::ir::UIntKind;
    use cubecl::Compiler;

    let mut options: <cubecl::cuda::CudaCompiler as Compiler>::CompilationOptions = Default::default();
    options.supports_features.fast_math = fast_math;
    let address_type = StorageType::Scalar(ElemType::UInt(UIntKind::U32));
    cubecl::cuda::CudaCompiler::default()
        .compile(definition, &options, ExecutionMode::Unchecked, address_type)
        .map(|source| source.to_string())
        .map_err(|error| KernelError::Unsupported {
            name,
            value,
            expected: format!("a specialisation CubeCL's CUDA compiler lowers ({error:?})"),
        })
}

#[cfg(test)]
mod tests {
    use cubecl::wgpu::WgpuRuntime;

    use super::*;

    /// A grouped call's gradients through its expanded query (with the portable exact backward
    /// behind it, as lavapipe has no tensor cores) equal the portable grouped backward's, which
    /// scores at the reduced width: every representative, both layouts, G = 2 and 4, causal
    /// and not, grouped-query heads, a padded last block.
    #[test]
    fn expanded_query_backward_matches_the_grouped_backward() {
        let client = WgpuRuntime::client(&Default::default());
        let [batch, heads, kv_heads, seq_q, seq_k, head_dim, block_rows] = [2, 4, 2, 90, 100, 32, 64];
        let dtype = f32::as_type_native_unchecked().storage_type();
        let upload = |shape: [usize; 4], seed: u32| {
            let values: Vec<f32> = (0..shape.iter().product::<usize>() as u32)
                .map(|index| ((index.wrapping_mul(2654435761) ^ seed.wrapping_mul(40503)) % 2001) as f32 / 1000.0 - 1.0)
                .collect();
            let handle = client.create_from_slice(f32::as_bytes(&values));
            let strides = Strides::new(&[shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1]);
            (handle.clone(), TensorBinding { handle: handle.binding(), strides, shape: Shape::new(shape), runtime: PhantomData })
        };
        let read = |handle: &Handle| f32::from_bytes(&client.read_one(handle.clone()).unwrap()).to_vec();
        let planes: Vec<f32> = (0..16 * block_rows).map(|index| ((index * 7919 % 997) as f32 / 498.5) - 1.0).collect();
        let hyperplanes = Hyperplanes::upload(&client, &planes, 16, block_rows).unwrap();
        let query_shape = [batch, heads, seq_q, head_dim];
        let key_shape = [batch, kv_heads, seq_k, head_dim];
        let cases = [
            (Representative::Sample, GroupLayout::Consecutive, 2, false),
            (Representative::Mean, GroupLayout::Consecutive, 4, true),
            (Representative::SampledKeys, GroupLayout::Strided, 2, true),
        ];
        for (representative, layout, group_size, causal) in cases {
            let options = ForwardOptions {
                group_size,
                block_rows,
                hyperplanes: Some(&hyperplanes),
                representative,
                causal,
                scale: 0.5,
                unroll: false,
                strategy: Strategy::Portable,
                permutation: Permutation::Lsh,
                layout,
                query_gradient: None,
            };
            let exact_options = ForwardOptions { group_size: 1, hyperplanes: None, ..options.clone() };
            let inputs = [upload(query_shape, 1), upload(key_shape, 2), upload(key_shape, 3)];
            let (_, output) = upload(query_shape, 4);
            let (_, grad_output) = upload(query_shape, 5);
            let forward = || AttentionBindings {
                query: inputs[0].1.clone(),
                key: inputs[1].1.clone(),
                value: inputs[2].1.clone(),
                output: output.clone(),
                log_sums: None,
            };
            launch_forward(&client, forward(), dtype, &options).unwrap();
            let run = |expanded: bool| {
                let gradients = [upload(query_shape, 0), upload(key_shape, 0), upload(key_shape, 0)];
                let tensors = BackwardBindings {
                    forward: forward(),
                    grad_output: grad_output.clone(),
                    grad_query: gradients[0].1.clone(),
                    grad_key: gradients[1].1.clone(),
                    grad_value: gradients[2].1.clone(),
                };
                if expanded {
                    let problem = check(&client, &tensors.forward, dtype, &options).unwrap();
                    launch_expanded_backward(&client, tensors, dtype, &options, &problem, |tensors| {
                        let problem = check(&client, &tensors.forward, dtype, &exact_options)?;
                        let config = backward_config(&client, &exact_options, &problem)?;
                        launch_portable_backward(&client, tensors, dtype, &exact_options, &problem, config)
                    })
                    .unwrap();
                } else {
                    launch_backward(&client, tensors, dtype, &options).unwrap();
                }
                gradients.map(|(handle, _)| read(&handle))
            };
            let [grouped, expanded] = [run(false), run(true)];
            for (name, (expected, actual)) in ["dQ", "dK", "dV"].iter().zip(grouped.iter().zip(&expanded)) {
                let scale = expected.iter().fold(0.0f32, |max, value| max.max(value.abs()));
                let worst = expected.iter().zip(actual).fold(0.0f32, |max, (e, a)| max.max((e - a).abs()));
                assert!(scale > 0.0 && worst <= 1e-4 * scale, "{representative:?} {layout:?} G={group_size} causal={causal}: {name} off by {worst} (largest {scale})");
            }
        }
    }

    /// Only the exact tensor-core forward writes log-sum-exps. On lavapipe (no tensor cores, so
    /// the portable forward) a forward asked for them is refused naming them, before its kernel
    /// runs (the output keeps its values), exact or grouped; so are log-sum-exps of the wrong
    /// shape, forward or backward.
    #[test]
    fn log_sums_are_refused_where_no_kernel_saves_them() {
        let client = WgpuRuntime::client(&Default::default());
        let dtype = f32::as_type_native_unchecked().storage_type();
        let shape = [1, 2, 40, 32];
        let binding = |shape: &[usize], fill: f32| {
            let handle = client.create_from_slice(f32::as_bytes(&vec![fill; shape.iter().product()]));
            let mut strides = vec![1; shape.len()];
            for axis in (0..shape.len() - 1).rev() {
                strides[axis] = strides[axis + 1] * shape[axis + 1];
            }
            (handle.clone(), TensorBinding { handle: handle.binding(), strides: Strides::new(&strides), shape: Shape::from(shape.to_vec()), runtime: PhantomData })
        };
        let (output_handle, output) = binding(&shape, 7.0);
        let tensors = |log_sums: &[usize]| AttentionBindings {
            query: binding(&shape, 0.5).1,
            key: binding(&shape, 0.25).1,
            value: binding(&shape, 1.0).1,
            output: output.clone(),
            log_sums: Some(binding(log_sums, 0.0).1),
        };
        let options = ForwardOptions {
            group_size: 1,
            block_rows: 64,
            hyperplanes: None,
            representative: Representative::Sample,
            causal: false,
            scale: 0.5,
            unroll: false,
            strategy: Strategy::Auto,
            permutation: Permutation::Lsh,
            layout: GroupLayout::Consecutive,
            query_gradient: None,
        };
        let refused = |result: Result<(), KernelError>, what: &str| match result {
            Err(KernelError::Unsupported { name: "log_sums", .. }) | Err(KernelError::Shape { tensor: "log_sums", .. }) => {}
            other => panic!("{what}: expected a refusal naming log_sums, got {:?}", other.err()),
        };
        let query_shape = &shape[..];
        refused(check_saves_log_sums(&client, [query_shape, query_shape, query_shape], dtype, &options), "check");
        refused(launch_forward(&client, tensors(&[1, 2, 40]), dtype, &options).map(drop), "portable forward");
        refused(launch_forward(&client, tensors(&[2, 40]), dtype, &options).map(drop), "wrong shape");
        let written = f32::from_bytes(&client.read_one(output_handle).unwrap()).to_vec();
        assert!(written.iter().all(|&value| value == 7.0), "a refused forward wrote its output");

        let planes: Vec<f32> = (0..16 * 64).map(|index| (index % 7) as f32 - 3.0).collect();
        let hyperplanes = Hyperplanes::upload(&client, &planes, 16, 64).unwrap();
        let grouped = ForwardOptions { group_size: 2, hyperplanes: Some(&hyperplanes), ..options.clone() };
        refused(launch_forward(&client, tensors(&[1, 2, 40]), dtype, &grouped).map(drop), "portable grouped forward");
        let gradient = || binding(&shape, 0.0).1;
        let backward = |log_sums: &[usize]| BackwardBindings {
            forward: tensors(log_sums),
            grad_output: binding(&shape, 1.0).1,
            grad_query: gradient(),
            grad_key: gradient(),
            grad_value: gradient(),
        };
        refused(launch_backward(&client, backward(&[1, 40, 2]), dtype, &options), "backward, wrong shape");
        refused(launch_backward(&client, backward(&[2, 40]), dtype, &grouped), "grouped backward, wrong shape");
    }

    /// The splits cover every key once in whole tiles, never leave a split empty, and ask for
    /// no more cubes than the device wants: SmolLM2's three key heads at 8192 keys on 132 SMs get 86 splits of 96 keys.
    /// dQ is formed on the key side wherever the call allows it and it was measured faster,
    /// unless the query side is asked for; a forced key side is refused naming what the call
    /// lacks; head dims whose columns do not split into whole n16 pairs per warp (80 and 96, on
    /// 32-row query tiles) and causal calls but those of head dim 64 stay on the query side.
    #[test]
    fn query_gradient_goes_to_the_key_side_where_it_can() {
        let [_, keys] = TensorCoreBackwardConfig::for_shape(64, 64, false);
        let chosen = |requested, saved, atomic| key_side_config(keys, requested, saved, atomic).map(|config| config.query_gradient);
        assert_eq!(chosen(None, true, true).unwrap(), QueryGradient::KeySide);
        assert_eq!(chosen(Some(QueryGradient::QuerySide), true, true).unwrap(), QueryGradient::QuerySide);
        assert_eq!(chosen(None, false, true).unwrap(), QueryGradient::QuerySide);
        assert_eq!(chosen(None, true, false).unwrap(), QueryGradient::QuerySide);
        for (saved, atomic, lacks) in [(false, true, "log-sum-exps"), (true, false, "atomic")] {
            match chosen(Some(QueryGradient::KeySide), saved, atomic) {
                Err(KernelError::Unsupported { name: "query_gradient", expected, .. }) => assert!(expected.contains(lacks), "{expected}"),
                other => panic!("expected a refusal naming query_gradient, got {other:?}"),
            }
        }
        for head_dim in SUPPORTED_HEAD_DIMS {
            for causal in [false, true] {
                let [_, keys] = TensorCoreBackwardConfig::for_shape(head_dim, head_dim, causal);
                let key_side = ![80, 96].contains(&head_dim) && (!causal || head_dim == 64);
                let expected = if key_side { QueryGradient::KeySide } else { QueryGradient::QuerySide };
                assert_eq!(key_side_config(keys, None, true, true).unwrap().query_gradient, expected, "d {head_dim} causal {causal}");
            }
        }
        let [_, causal_128] = TensorCoreBackwardConfig::for_shape(128, 128, true);
        let forced = key_side_config(causal_128, Some(QueryGradient::KeySide), true, true).unwrap();
        assert_eq!(forced.query_gradient, QueryGradient::KeySide, "forced where it is slower but possible");
        // Only causal calls forming dQ put the key heads along x.
        assert!(forced.heads_first() && !causal_128.heads_first());
        assert!(!key_side_config(keys, None, true, true).unwrap().heads_first());
        let [_, causal_64] = TensorCoreBackwardConfig::for_shape(64, 64, true);
        assert!(key_side_config(causal_64, None, true, true).unwrap().heads_first(), "causal d 64 takes the key side by default");
    }

    /// The causal grid, decoded as `tensor_core_forward` decodes it, runs every (pair, block)
    /// once, each group's pairs' longest blocks first; without a mask it is one pair per row.
    #[test]
    fn causal_grid_runs_each_block_once_longest_first() {
        assert_eq!(largest_divisor_up_to(64, 24), 16);
        assert_eq!(largest_divisor_up_to(9, 4), 3);
        assert_eq!(largest_divisor_up_to(7, 100), 7);
        assert_eq!(largest_divisor_up_to(12, 0), 1);
        let (blocks, pairs) = (5, 12);
        let problem = Problem { batch: 3, heads: 4, kv_heads: 2, seq_q: 600, seq_k: 600, head_dim: 64, value_dim: 64, num_blocks: blocks };
        assert_eq!(forward_cubes(&problem, false, 4), (blocks, pairs));
        for group in [1, 2, 3, 4, 6, 12] {
            let (x, y) = forward_cubes(&problem, true, group);
            let mut seen = vec![false; pairs * blocks];
            let mut launched = Vec::new();
            for cube_y in 0..y {
                for cube_x in 0..x {
                    let pairs_per_group = x / blocks;
                    let pair = cube_y * pairs_per_group + cube_x % pairs_per_group;
                    let block = blocks - 1 - cube_x / pairs_per_group;
                    assert!(!std::mem::replace(&mut seen[pair * blocks + block], true), "group {group}: pair {pair} block {block} twice");
                    launched.push((cube_y, block));
                }
            }
            assert!(seen.iter().all(|&run| run), "group {group}");
            for window in launched.windows(2) {
                let ((group_a, block_a), (group_b, block_b)) = (window[0], window[1]);
                assert!(group_a < group_b || block_a >= block_b, "group {group}: a shorter block before a longer one");
            }
        }
    }

    #[test]
    fn key_splits_cover_the_cache_in_whole_tiles() {
        assert_eq!(key_splits(8192, 3, 132, 32), (96, 86));
        for seq_k in [1, 31, 32, 33, 500, 4099, 16384] {
            for batch_kv_heads in [1, 3, 8, 300] {
                let (per_split, splits) = key_splits(seq_k, batch_kv_heads, 132, 16);
                assert_eq!(per_split % 16, 0);
                assert!(per_split * splits >= seq_k && per_split * (splits - 1) < seq_k, "{seq_k} {batch_kv_heads}");
                assert!(splits <= (DECODE_CUBES_PER_SM * 132).div_ceil(batch_kv_heads), "{seq_k} {batch_kv_heads}");
            }
        }
    }

    /// A call of head dim `head_dim` for the cooperative-matrix kernel, before the device picks
    /// its shape and key tile.
    fn cooperative_call(head_dim: usize, group_size: usize) -> CooperativeConfig {
        CooperativeConfig {
            reduced_width: reduced_width(head_dim, group_size),
            head_dim,
            value_dim: head_dim,
            group_size,
            key_members: group_size,
            block_rows: 64,
            key_tile: 0,
            causal: false,
            shape: COOPERATIVE_SHAPES[0],
            plane_size: 0,
        }
    }

    /// The cooperative-matrix path takes the first shape the device lists and the largest key
    /// tile that fits its shared memory, and refuses, naming what is missing, a dtype without
    /// cooperative matrices, a device without them, planes of varying size, a scale the score
    /// floor cannot take and shared memory too small for the smallest tile.
    #[test]
    fn cooperative_config_follows_the_device() {
        let f16 = StorageType::Scalar(ElemType::Float(FloatKind::F16));
        let nvidia = CooperativeDevice {
            shapes: vec![COOPERATIVE_SHAPES[0]],
            plane_size_min: 32,
            plane_size_max: 32,
            max_shared_bytes: 48 * 1024,
            max_units: 1024,
        };
        let exact = nvidia.config(f16, 0.125, cooperative_call(64, 1)).unwrap();
        assert_eq!((exact.shape.m, exact.key_tile, exact.planes(), exact.units(), exact.lanes_per_row()), (16, 64, 4, 128, 2));
        assert!(exact.shared_bytes(2) <= 48 * 1024 && exact.is_consistent());
        let grouped = nvidia.config(f16, 0.125, cooperative_call(64, 2)).unwrap();
        assert_eq!((grouped.reduced_width, grouped.key_tile), (32, 64));
        let wide = nvidia.config(f16, 0.125, cooperative_call(128, 1)).unwrap();
        assert_eq!(wide.key_tile, 32);

        let apple = CooperativeDevice { shapes: vec![COOPERATIVE_SHAPES[1]], ..nvidia.clone() };
        let eight = apple.config(f16, 0.125, cooperative_call(64, 1)).unwrap();
        assert_eq!((eight.shape.k, eight.planes(), eight.units(), eight.lanes_per_row()), (8, 8, 256, 4));

        let refusal = |device: &CooperativeDevice, dtype: StorageType, scale: f32, head_dim: usize| {
            match device.config(dtype, scale, cooperative_call(head_dim, 1)) {
                Err(KernelError::Unsupported { name, .. }) => name,
                other => panic!("expected a refusal, got {other:?}"),
            }
        };
        assert_eq!(refusal(&nvidia, StorageType::Scalar(ElemType::Float(FloatKind::F32)), 0.125, 64), "dtype");
        assert_eq!(refusal(&CooperativeDevice { shapes: Vec::new(), ..nvidia.clone() }, f16, 0.125, 64), "device");
        assert_eq!(refusal(&CooperativeDevice { plane_size_max: 64, ..nvidia.clone() }, f16, 0.125, 64), "plane size");
        assert_eq!(refusal(&nvidia, f16, 0.0, 64), "scale");
        let small = CooperativeDevice { max_shared_bytes: 16 * 1024, ..nvidia.clone() };
        assert_eq!(refusal(&small, f16, 0.125, 128), "cooperative-matrix tiling");
        let narrow = CooperativeDevice { plane_size_min: 8, plane_size_max: 8, ..nvidia };
        assert_eq!(refusal(&narrow, f16, 0.125, 64), "cooperative-matrix tiling");
    }

    /// CubeCL's SPIR-V compiler lowers the cooperative-matrix kernel for every shape the
    /// launcher can pick (lavapipe has no cooperative matrices to run it; the GPU benchmark
    /// checks its results).
    #[cfg(feature = "vulkan")]
    #[test]
    fn cooperative_kernel_compiles_to_spirv() {
        use cubecl::ir::UIntKind;
        use cubecl::wgpu::vulkan::VkSpirvCompiler;
        use cubecl::Compiler;

        let client = WgpuRuntime::client(&Default::default());
        let address_type = StorageType::Scalar(ElemType::UInt(UIntKind::U32));
        for dtype in [FloatKind::F16, FloatKind::BF16].map(|kind| StorageType::Scalar(ElemType::Float(kind))) {
            for (head_dim, group_size, causal, shape) in
                [(64, 1, false, 0), (128, 2, true, 0), (64, 4, true, 1), (96, 2, false, 0)]
            {
                let config = CooperativeConfig {
                    causal,
                    shape: COOPERATIVE_SHAPES[shape],
                    plane_size: 32,
                    key_tile: 32,
                    ..cooperative_call(head_dim, group_size)
                };
                assert!(config.is_consistent(), "{config:?}");
                let kernel = cooperative_kernel::<WgpuRuntime>(&client, config, dtype);
                let mut compiler = VkSpirvCompiler::default();
                let options = Default::default();
                compiler
                    .compile(kernel.define(), &options, ExecutionMode::Unchecked, address_type)
                    .unwrap_or_else(|error| panic!("{config:?} {dtype:?}: {error:?}"));
            }
        }
    }
}

//! The fused DistrAttention forward pass (exact flash attention when `group_size == 1`).
//!
//! One cube per (query block, batch * head), one unit per query row of the block:
//!
//! 1. hash the block's columns and sort them in shared memory ([`crate::block_permutation`]);
//! 2. each unit forms its row of Q' (`head_dim / group_size` values, scale folded in) once;
//! 3. for each tile of `key_tile` keys: the cube loads the K tile fused into K' (the sum of
//!    each group's columns, in the block's permutation) and the V tile into shared memory;
//!    each unit scores its row against the tile, updates its running maximum and sum (online
//!    softmax) and accumulates `P V` in registers;
//! 4. each unit writes its normalised output row.
//!
//! Portable: plain f32 arithmetic, no plane operations or tensor cores, so it runs on every
//! CubeCL runtime (lavapipe included). Shared memory holds f32 tiles, read as 4-wide vectors,
//! sized from the device's limit.
//!
//! [`launch_flash_forward`] picks the path: the tensor-core kernel
//! ([`crate::flash_forward_mma`]) where the device reports `mma` m16n8k16 for the storage
//! type with f32 accumulation and 32-lane planes, and K and V rows can be read 16 bytes at a
//! time (contiguous head dim); this kernel everywhere else.

use cubecl::prelude::*;

use cubecl::ir::features::MmaConfig;
use cubecl::ir::{ElemType, FloatKind};

use crate::block_permutation::{bitonic_sort, column_sort_values, permuted_column, MAX_PROJECTIONS};
use crate::flash_forward_mma::{flash_forward_mma, MmaForwardConfig, MmaTiling, LOAD_WIDTH, PLANE_SIZE};
use crate::grouped_query::grouped_query;
use crate::KernelError;

/// Head dims (and value dims) with a comptime specialisation.
pub const SUPPORTED_HEAD_DIMS: [usize; 5] = [32, 64, 80, 96, 128];
/// Group sizes with a comptime specialisation.
pub const SUPPORTED_GROUP_SIZES: [usize; 4] = [1, 2, 4, 8];
/// Query rows per block (one unit each).
pub const SUPPORTED_BLOCK_ROWS: [usize; 2] = [64, 128];
/// Most keys per tile: fewer barriers per key, within shared memory.
const MAX_KEY_TILE: usize = 64;

/// How the representative query column of a group is formed.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Representative {
    /// The group's first column in permutation order.
    Sample,
    /// The mean of the group's columns.
    Mean,
}

/// Comptime specialisation of [`flash_forward`]: each distinct value is a compiled kernel.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct FlashForwardConfig {
    pub head_dim: usize,
    pub value_dim: usize,
    pub group_size: usize,
    pub block_rows: usize,
    pub key_tile: usize,
    pub num_projections: usize,
    pub representative: Representative,
    pub causal: bool,
    /// Unroll the loops over a row so that Q' and the accumulator live in registers
    /// (CUDA). Off on runtimes whose shader compilers choke on large unrolled bodies (lavapipe).
    pub unroll: bool,
}

#[cube(launch_unchecked)]
fn flash_forward<F: Float>(
    query: &Tensor<F>,
    key: &Tensor<F>,
    value: &Tensor<F>,
    hyperplanes: &Array<f32>,
    output: &mut Tensor<F>,
    scale: f32,
    #[comptime] config: FlashForwardConfig,
    #[define(F)] _dtype: StorageType,
) {
    let head_dim = config.head_dim;
    let value_dim = config.value_dim;
    let group_size = config.group_size;
    let block_rows = config.block_rows;
    let key_tile = config.key_tile;
    let reduced_dim = comptime!(config.head_dim / config.group_size);
    // Shared tiles are read as 4-wide vectors (one 16-byte broadcast load feeds four FMAs);
    // Q' and K' are zero-padded to a multiple of 4 groups.
    let reduced_quads = comptime!(reduced_dim.div_ceil(4));
    let value_quads = comptime!(config.value_dim / 4);
    let sort_size = comptime!(config.head_dim.next_power_of_two());

    let heads = query.shape(1);
    let seq_q = query.shape(2);
    let seq_k = key.shape(2);
    let queries_per_kv_head = heads / key.shape(1);
    let batch = CUBE_POS_Y as usize / heads;
    let head = CUBE_POS_Y as usize % heads;
    let kv_head = head / queries_per_kv_head;
    let unit = UNIT_POS as usize;
    let block_first_row = CUBE_POS_X as usize * block_rows;
    let row = block_first_row + unit;
    let row_valid = row < seq_q;

    let query_block = batch * query.stride(0) + head * query.stride(1) + block_first_row * query.stride(2);
    let key_head = batch * key.stride(0) + kv_head * key.stride(1);
    let value_head = batch * value.stride(0) + kv_head * value.stride(1);

    // Steps 2-4: the block's column permutation, in shared memory.
    let mut order = SharedMemory::<u32>::new(sort_size);
    if comptime!(config.group_size > 1) {
        column_sort_values::<F>(
            query,
            hyperplanes,
            &mut order,
            query_block,
            block_first_row,
            seq_q,
            head_dim,
            sort_size,
            block_rows,
            config.num_projections,
        );
        sync_cube();
        bitonic_sort(&mut order, sort_size, block_rows);
    }

    // Step 5: this unit's row of Q', times the scale.
    let query_row = query_block + unit * query.stride(2);
    let mut reduced_query = Array::<f32>::new(comptime!(reduced_quads * 4));
    #[unroll(config.unroll)]
    for group in 0..comptime!(reduced_quads * 4) {
        let mut representative = 0.0f32;
        if row_valid && group < reduced_dim {
            representative = grouped_query::<F>(
                query,
                &order,
                query_row,
                group,
                group_size,
                config.representative,
                config.unroll,
            );
        }
        reduced_query[group] = representative * scale;
    }

    // Causal: query `row` sits at position `row + seq_k - seq_q`; the block needs no key
    // after its last row's position.
    let mut keys_end = seq_k;
    let mut query_position = 0usize;
    if comptime!(config.causal) {
        let block_last_row = min(seq_q, block_first_row + block_rows) - 1;
        keys_end = block_last_row + seq_k - seq_q + 1;
        query_position = row + seq_k - seq_q;
    }

    let mut fused_keys = SharedMemory::<Vector<f32, Const<4>>>::new(comptime!(config.key_tile * reduced_quads));
    let mut values = SharedMemory::<Vector<f32, Const<4>>>::new(comptime!(config.key_tile * value_quads));
    let mut accumulator = Array::<f32>::new(value_dim);
    #[unroll(config.unroll)]
    for column in 0..value_dim {
        accumulator[column] = 0.0;
    }
    // A finite floor: the first visible key rescales by `exp(floor - score) = 0`, and a
    // fully masked row keeps a zero sum (output zero) without ever computing NaN.
    let mut running_max = f32::new(-3.0e38);
    let mut running_sum = 0.0f32;

    let mut tile_start = 0usize;
    while tile_start < keys_end {
        // Step 6 on the tile: K' (group sums in the block's permutation) and V, as f32.
        let mut element = unit;
        while element < comptime!(config.key_tile * reduced_quads) {
            let key_row = tile_start + element / reduced_quads;
            let first_group = (element % reduced_quads) * 4;
            let mut quad = Vector::<f32, Const<4>>::empty();
            #[unroll]
            for lane in 0..4usize {
                let group = first_group + lane;
                let mut fused = 0.0f32;
                if key_row < seq_k && group < reduced_dim {
                    let key_base = key_head + key_row * key.stride(2);
                    if comptime!(config.group_size == 1) {
                        fused = f32::cast_from(key[key_base + group * key.stride(3)]);
                    } else {
                        #[unroll(config.unroll)]
                        for member in 0..group_size {
                            let column = permuted_column(&order, group * group_size + member);
                            fused += f32::cast_from(key[key_base + column * key.stride(3)]);
                        }
                    }
                }
                quad[lane] = fused;
            }
            fused_keys[element] = quad;
            element += block_rows;
        }
        let mut element = unit;
        while element < comptime!(config.key_tile * value_quads) {
            let key_row = tile_start + element / value_quads;
            let first_column = (element % value_quads) * 4;
            let mut quad = Vector::<f32, Const<4>>::empty();
            #[unroll]
            for lane in 0..4usize {
                let mut loaded = 0.0f32;
                if key_row < seq_k {
                    let column = first_column + lane;
                    loaded = f32::cast_from(value[value_head + key_row * value.stride(2) + column * value.stride(3)]);
                }
                quad[lane] = loaded;
            }
            values[element] = quad;
            element += block_rows;
        }
        sync_cube();

        // Step 7, one key at a time: the running maximum only moves on a new maximum
        // (rare after the first keys), so the accumulator is rescaled only then. The key
        // loop stays rolled (small code, fast compiles); the loops over a row are unrolled.
        for key_index in 0..key_tile {
            if is_visible(tile_start + key_index, seq_k, query_position, config.causal) {
                let mut dot = 0.0f32;
                #[unroll(config.unroll)]
                for quad_index in 0..reduced_quads {
                    let quad = fused_keys[key_index * reduced_quads + quad_index];
                    let first = quad_index * 4;
                    dot += reduced_query[first] * quad[0]
                        + reduced_query[first + 1] * quad[1]
                        + reduced_query[first + 2] * quad[2]
                        + reduced_query[first + 3] * quad[3];
                }
                if dot > running_max {
                    let correction = Exp::exp(running_max - dot);
                    running_sum *= correction;
                    #[unroll(config.unroll)]
                    for column in 0..value_dim {
                        accumulator[column] *= correction;
                    }
                    running_max = dot;
                }
                let weight = Exp::exp(dot - running_max);
                running_sum += weight;
                #[unroll(config.unroll)]
                for quad_index in 0..value_quads {
                    let quad = values[key_index * value_quads + quad_index];
                    let first = quad_index * 4;
                    accumulator[first] += weight * quad[0];
                    accumulator[first + 1] += weight * quad[1];
                    accumulator[first + 2] += weight * quad[2];
                    accumulator[first + 3] += weight * quad[3];
                }
            }
        }
        sync_cube();
        tile_start += key_tile;
    }

    if row_valid {
        let mut inverse_sum = 0.0f32;
        if running_sum > 0.0 {
            inverse_sum = 1.0 / running_sum;
        }
        let output_row = batch * output.stride(0) + head * output.stride(1) + row * output.stride(2);
        #[unroll(config.unroll)]
        for column in 0..value_dim {
            output[output_row + column * output.stride(3)] = F::cast_from(accumulator[column] * inverse_sum);
        }
    }
}

/// Whether key `key_position` exists and, when causal, is not after the query.
#[cube]
fn is_visible(key_position: usize, seq_k: usize, query_position: usize, #[comptime] causal: bool) -> bool {
    let mut visible = key_position < seq_k;
    if comptime!(causal) {
        visible = visible && key_position <= query_position;
    }
    visible
}

/// Run-time options of [`launch_flash_forward`]; the integer fields select the comptime
/// specialisation.
#[derive(Clone, Debug, PartialEq)]
pub struct FlashForwardOptions<'a> {
    /// Columns fused per group; 1 is exact attention (hashing skipped).
    pub group_size: usize,
    /// Query rows per block and per cube.
    pub block_rows: usize,
    /// Hyperplanes of the LSH.
    pub num_projections: usize,
    /// `[num_projections, block_rows]` row-major; ignored when `group_size == 1`.
    pub hyperplanes: &'a [f32],
    pub representative: Representative,
    pub causal: bool,
    /// Score scale.
    pub scale: f32,
    /// Unroll the per-row loops of the portable path (see [`FlashForwardConfig::unroll`]).
    pub unroll: bool,
    /// Take the tensor-core path where the device supports it; `false` forces the portable
    /// path (to compare the two on one device).
    pub tensor_cores: bool,
    /// Tiling of the tensor-core path; `None` takes [`MmaTiling::for_shape`]. Benchmarks
    /// set it to compare tilings.
    pub tiling: Option<MmaTiling>,
}

/// Which kernel a launch ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelPath {
    /// [`flash_forward`]: f32 arithmetic, every runtime.
    Portable,
    /// [`crate::flash_forward_mma`]: `mma.sync` m16n8k16, f16/bf16 operands.
    TensorCore,
}

/// The four tensors of one attention call, `[batch, heads, seq, dim]` each: `query`
/// `[B, H, Nq, d]`, `key` `[B, Hkv, Nk, d]`, `value` `[B, Hkv, Nk, dv]`, `output`
/// `[B, H, Nq, dv]`, all of one float dtype; strides are free.
pub struct AttentionBindings<R: Runtime> {
    pub query: TensorBinding<R>,
    pub key: TensorBinding<R>,
    pub value: TensorBinding<R>,
    pub output: TensorBinding<R>,
}

/// Checks shapes and options, picks the path (see the module doc) and launches it with one
/// cube per (query block, batch * head); returns the path taken.
pub fn launch_flash_forward<R: Runtime>(
    client: &ComputeClient<R>,
    tensors: AttentionBindings<R>,
    dtype: StorageType,
    options: &FlashForwardOptions<'_>,
) -> Result<KernelPath, KernelError> {
    let config = check(client, &tensors, dtype, options)?;
    let [batch, heads, seq_q] = [0, 1, 2].map(|axis| tensors.query.shape[axis]);
    let num_blocks = seq_q.div_ceil(options.block_rows);
    let batch_heads = batch * heads;
    let max_count = client.properties().hardware.max_cube_count;
    if num_blocks > max_count.0 as usize || batch_heads > max_count.1 as usize {
        return Err(KernelError::Unsupported {
            name: "grid",
            value: format!("{num_blocks} x {batch_heads} cubes"),
            expected: format!("at most {} x {}", max_count.0, max_count.1),
        });
    }
    let planes = if config.group_size > 1 { options.hyperplanes } else { &[0.0f32][..] };
    let hyperplanes = client.create_from_slice(f32::as_bytes(planes));
    let cube_count = CubeCount::Static(num_blocks as u32, batch_heads as u32, 1);
    if options.tensor_cores {
        let key_rows_whole = config.group_size > 1 || rows_load_whole(&tensors.key);
        let vector_loads_fit = key_rows_whole && rows_load_whole(&tensors.value);
        if let Some(mma_config) = tensor_core_config(client, dtype, &config, options.tiling).filter(|_| vector_loads_fit) {
            // SAFETY: as below; the fragment layouts assume 32-lane planes, which
            // `tensor_core_config` checked.
            unsafe {
                flash_forward_mma::launch_unchecked::<R>(
                    client,
                    cube_count,
                    CubeDim::new_2d(PLANE_SIZE, (mma_config.units() / PLANE_SIZE as usize) as u32),
                    mma_config.key_width(),
                    LOAD_WIDTH,
                    tensors.query.into_tensor_arg(),
                    tensors.key.into_tensor_arg(),
                    tensors.value.into_tensor_arg(),
                    ArrayArg::from_raw_parts(hyperplanes, planes.len()),
                    tensors.output.into_tensor_arg(),
                    options.scale,
                    mma_config,
                    dtype,
                );
            }
            return Ok(KernelPath::TensorCore);
        }
    }
    // SAFETY: `check` validated ranks, shapes, dtypes and the hyperplane count against the
    // config, and the kernel guards every row index by `seq_q` / `seq_k`.
    unsafe {
        flash_forward::launch_unchecked::<R>(
            client,
            cube_count,
            CubeDim::new_1d(options.block_rows as u32),
            tensors.query.into_tensor_arg(),
            tensors.key.into_tensor_arg(),
            tensors.value.into_tensor_arg(),
            ArrayArg::from_raw_parts(hyperplanes, planes.len()),
            tensors.output.into_tensor_arg(),
            options.scale,
            config,
            dtype,
        );
    }
    Ok(KernelPath::Portable)
}

/// Whether the rows of a `[batch, heads, seq, dim]` tensor can be read [`LOAD_WIDTH`]
/// elements at a time: contiguous along `dim`, every other stride and `dim` a multiple.
fn rows_load_whole<R: Runtime>(binding: &TensorBinding<R>) -> bool {
    binding.strides[3] == 1
        && binding.shape[3] % LOAD_WIDTH == 0
        && binding.strides[..3].iter().all(|stride| stride % LOAD_WIDTH == 0)
}

/// The tensor-core specialisation of `config` with `tiling` (default
/// [`MmaTiling::for_shape`]), if this device can run it: f16 or bf16 storage, `mma`
/// m16n8k16 for that type with f32 accumulation among the device's features, 32-lane planes,
/// a consistent tiling, and the kernel's shared memory within the device's (and CUDA's static
/// 48 KiB) limit.
pub fn tensor_core_config<R: Runtime>(
    client: &ComputeClient<R>,
    dtype: StorageType,
    config: &FlashForwardConfig,
    tiling: Option<MmaTiling>,
) -> Option<MmaForwardConfig> {
    let element_bytes = match dtype {
        StorageType::Scalar(ElemType::Float(FloatKind::F16 | FloatKind::BF16)) => 2,
        _ => return None,
    };
    let properties = client.properties();
    let wanted = MmaConfig {
        a_type: dtype,
        b_type: dtype,
        cd_type: StorageType::Scalar(ElemType::Float(FloatKind::F32)),
        m: 16,
        n: 8,
        k: 16,
    };
    let hardware = &properties.hardware;
    let planes_fit = hardware.plane_size_min == PLANE_SIZE && hardware.plane_size_max == PLANE_SIZE;
    let mma_config = MmaForwardConfig {
        head_dim: config.head_dim,
        value_dim: config.value_dim,
        group_size: config.group_size,
        block_rows: config.block_rows,
        num_projections: config.num_projections,
        representative: config.representative,
        causal: config.causal,
        tiling: tiling.unwrap_or(MmaTiling::for_shape(config.head_dim, config.group_size)),
    };
    let shared_limit = hardware.max_shared_memory_size.min(48 * 1024);
    let fits = mma_config.shared_bytes(element_bytes) <= shared_limit
        && mma_config.units() <= hardware.max_units_per_cube as usize
        && mma_config.is_consistent();
    (properties.features.matmul.mma.contains(&wanted) && planes_fit && fits).then_some(mma_config)
}

fn one_of(name: &'static str, value: usize, supported: &[usize]) -> Result<(), KernelError> {
    if supported.contains(&value) {
        Ok(())
    } else {
        Err(KernelError::Unsupported {
            name,
            value: value.to_string(),
            expected: format!("{supported:?}"),
        })
    }
}

/// Validates the call and builds the comptime config.
fn check<R: Runtime>(
    client: &ComputeClient<R>,
    tensors: &AttentionBindings<R>,
    dtype: StorageType,
    options: &FlashForwardOptions<'_>,
) -> Result<FlashForwardConfig, KernelError> {
    let supported = matches!(
        dtype,
        StorageType::Scalar(ElemType::Float(FloatKind::F32 | FloatKind::F16 | FloatKind::BF16))
    );
    if !supported {
        return Err(KernelError::Unsupported {
            name: "dtype",
            value: format!("{dtype:?}"),
            expected: "f32, f16 or bf16".into(),
        });
    }
    for (name, binding) in [
        ("query", &tensors.query),
        ("key", &tensors.key),
        ("value", &tensors.value),
        ("output", &tensors.output),
    ] {
        if binding.shape.len() != 4 || binding.strides.len() != 4 || binding.shape.contains(&0) {
            return Err(KernelError::Shape {
                tensor: name,
                actual: binding.shape.to_vec(),
                expected: "a non-empty rank-4 tensor".into(),
            });
        }
    }
    let shape = |binding: &TensorBinding<R>| [0, 1, 2, 3].map(|axis| binding.shape[axis]);
    let [batch, heads, seq_q, head_dim] = shape(&tensors.query);
    let [_, kv_heads, seq_k, _] = shape(&tensors.key);
    let value_dim = tensors.value.shape[3];
    let expected = [
        ("key", &tensors.key, [batch, kv_heads, seq_k, head_dim]),
        ("value", &tensors.value, [batch, kv_heads, seq_k, value_dim]),
        ("output", &tensors.output, [batch, heads, seq_q, value_dim]),
    ];
    for (name, binding, dims) in expected {
        if shape(binding) != dims || heads % kv_heads != 0 {
            return Err(KernelError::Shape {
                tensor: name,
                actual: binding.shape.to_vec(),
                expected: format!("{dims:?} with heads {heads} a multiple of kv_heads {kv_heads}"),
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
            actual: tensors.query.shape.to_vec(),
            expected: format!("seq_q <= seq_k = {seq_k} when causal"),
        });
    }
    if options.group_size > 1 {
        if options.num_projections == 0 || options.num_projections > MAX_PROJECTIONS {
            return Err(KernelError::Unsupported {
                name: "num_projections",
                value: options.num_projections.to_string(),
                expected: format!("1..={MAX_PROJECTIONS}"),
            });
        }
        let expected_len = options.num_projections * options.block_rows;
        if options.hyperplanes.len() != expected_len {
            return Err(KernelError::Shape {
                tensor: "hyperplanes",
                actual: vec![options.hyperplanes.len()],
                expected: format!("[{expected_len}] (num_projections x block_rows)"),
            });
        }
    }
    let reduced_dim = head_dim / options.group_size;
    let key_tile = key_tile(client, reduced_dim, value_dim, head_dim)?;
    Ok(FlashForwardConfig {
        head_dim,
        value_dim,
        group_size: options.group_size,
        block_rows: options.block_rows,
        key_tile,
        num_projections: if options.group_size > 1 { options.num_projections } else { 0 },
        representative: options.representative,
        causal: options.causal,
        unroll: options.unroll,
    })
}

/// The largest power-of-two key tile (at most [`MAX_KEY_TILE`]) whose f32 K' and V tiles fit
/// the device's shared memory (and CUDA's 48 KiB static limit) next to the sort buffer.
fn key_tile<R: Runtime>(
    client: &ComputeClient<R>,
    reduced_dim: usize,
    value_dim: usize,
    head_dim: usize,
) -> Result<usize, KernelError> {
    let limit = client.properties().hardware.max_shared_memory_size.min(48 * 1024);
    let available = limit.saturating_sub(head_dim.next_power_of_two() * 4 + 256);
    let per_key = (reduced_dim.div_ceil(4) * 4 + value_dim) * 4;
    let mut tile = MAX_KEY_TILE;
    while tile * per_key > available {
        tile /= 2;
        if tile < 4 {
            return Err(KernelError::Unsupported {
                name: "shared memory",
                value: format!("{limit} bytes"),
                expected: format!("room for 4 keys of {per_key} bytes"),
            });
        }
    }
    Ok(tile)
}

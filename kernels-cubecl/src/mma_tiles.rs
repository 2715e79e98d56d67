//! Device functions of the tensor-core kernels ([`crate::kernels::tensor_core_forward`],
//! [`crate::kernels::tensor_core_backward_queries`], [`crate::kernels::tensor_core_backward_keys`]):
//! 16-byte copies from global into padded shared rows, `mma.sync` m16n8k16 fragments read from
//! those rows (`ldmatrix`, `.trans` for k-major tiles), the multiply-accumulate, `2^x`, and the
//! backward's `rowsum(dO * O)` per row ([`crate::kernels::backward_row_stats`] too).
//!
//! Fragment layouts (PTX m16n8k16, `g = lane / 4`, `t = lane % 4`): an A fragment is four
//! pairs, rows `g` / `g + 8` by columns `2t, 2t + 1` / `2t + 8, 2t + 9`, in the order
//! (g, low k), (g + 8, low k), (g, high k), (g + 8, high k); an accumulator of one n8 block is
//! two f32 pairs, rows `g` and `g + 8` by columns `2t, 2t + 1`. The accumulators of two
//! adjacent n8 blocks are therefore, pair for pair, the A fragment of one k16 step: products
//! feed the next product without leaving registers.

use cubecl::cmma::{MatrixIdent, MmaDefinition};
use cubecl::prelude::barrier::copy_async_checked;
use cubecl::prelude::*;

use crate::config::{CopyStrategy, FragmentLoads, TensorCoreBackwardConfig, TileAccess, CHUNK};

/// Two adjacent elements of a fragment row: one 32-bit register of halves, or two f32 of an
/// accumulator.
pub(crate) type Pair<E> = Vector<E, Const<2>>;

/// Scores of masked keys, and a row's running maximum before its first visible key: finite,
/// and far enough from f32's limit that scaling it by up to [`MAX_SCALE`] (times log2(e)) forms
/// no infinity; the kernels force the probabilities of masked keys to zero. Scores of real
/// inputs stay far above it.
pub(crate) const SCORE_FLOOR: f32 = -1.0e30;

/// How far (in log2 units) a row's scaled scores may rise above its running maximum before the
/// maximum moves and the output accumulators are rescaled (the forward kernels' online
/// softmax): probabilities stay below 2^8, far inside f16's and bf16's range, and the sums and
/// accumulators inside f32's.
pub(crate) const RESCALE_THRESHOLD: f32 = 8.0;

/// The largest score scale the tensor-core kernels take (see [`SCORE_FLOOR`]); the launcher
/// sends larger ones to the portable kernels.
pub(crate) const MAX_SCALE: f32 = 1.0e8;

/// Copies `rows` rows of `chunks` 16-byte chunks, starting at element `source_base` of
/// `source` with `row_stride` elements between rows, into `target` from chunk `target_base`
/// with `target_stride` chunks per row. `checked`: rows from `rows_valid` on, and chunks from
/// `chunks_valid` on, are zero-filled; otherwise all are copied, without the compares and
/// selects (for tiles wholly inside the sequence).
/// [`CopyStrategy::DoubleBuffered`]: asynchronous (`cp.async`), to be committed by the caller.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn copy_rows<F: Float, N8: Size>(
    source: &Tensor<Vector<F, N8>>,
    source_base: usize,
    row_stride: usize,
    rows_valid: usize,
    chunks_valid: usize,
    target: &mut SharedMemory<Vector<F, N8>>,
    target_base: usize,
    #[comptime] rows: usize,
    #[comptime] chunks: usize,
    #[comptime] target_stride: usize,
    #[comptime] checked: bool,
    #[comptime] access: TileAccess,
) {
    let units = access.units;
    let total = comptime!(rows * chunks);
    #[unroll]
    for pass in 0..comptime!(total.div_ceil(units)) {
        let slot = UNIT_POS as usize + pass * units;
        if comptime!(total % units == 0) || slot < total {
            let row = slot / chunks;
            let chunk = slot % chunks;
            let to = target_base + row * target_stride + chunk;
            if comptime!(checked) {
                let valid = row < rows_valid && chunk < chunks_valid;
                // Chunks past the end read the first (always present) for an in-bounds address.
                let source_row = select(valid, row, 0usize);
                let source_chunk = select(valid, chunk, 0usize);
                let from = (source_base + source_row * row_stride) / CHUNK + source_chunk;
                copy_chunk::<F, N8>(source, from, valid, target, to, access);
            } else {
                let from = source_base / CHUNK + row * (row_stride / CHUNK) + chunk;
                copy_chunk::<F, N8>(source, from, true, target, to, access);
            }
        }
    }
}

/// One 16-byte chunk from `source[from]` into `target[to]`, zero if not `valid` (`from` must be
/// in bounds all the same). [`CopyStrategy::DoubleBuffered`]: asynchronous (`cp.async`).
#[cube]
pub(crate) fn copy_chunk<F: Float, N8: Size>(
    source: &Tensor<Vector<F, N8>>,
    from: usize,
    valid: bool,
    target: &mut SharedMemory<Vector<F, N8>>,
    to: usize,
    #[comptime] access: TileAccess,
) {
    match comptime!(access.copy) {
        CopyStrategy::DoubleBuffered => {
            let length = select(valid, 1usize, 0usize);
            copy_async_checked(&source.slice(from, from + length), &mut target.slice_mut(to, to + 1), CHUNK as u32);
        }
        CopyStrategy::Synchronous => {
            let mut loaded = Vector::<F, N8>::new(F::cast_from(0.0f32));
            if valid {
                loaded = source[from];
            }
            target[to] = loaded;
        }
    }
}

/// The A fragment (16 rows x k16) of row tile `row_tile` of a warp whose rows start at row
/// `warp_first` of a row-major `tile` (`stride` chunks per row), `k16` step `step`.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn row_fragment<F: Float, N8: Size>(
    mma: &MmaDefinition<F, F, f32>,
    tile: &SharedMemory<Vector<F, N8>>,
    stride: usize,
    warp_first: usize,
    row_tile: usize,
    step: usize,
    lane: usize,
    #[comptime] access: TileAccess,
) -> Array<Pair<F>> {
    let mut fragment = Array::<Pair<F>>::new(4usize);
    if comptime!(access.fragments == FragmentLoads::Scalar) {
        let pairs = tile.to_slice().with_vector_size::<Const<2>>();
        #[unroll]
        for register in 0..4usize {
            let row = warp_first + row_tile * 16 + lane / 4 + (register % 2) * 8;
            let column = step * 16 + (register / 2) * 8 + (lane % 4) * 2;
            fragment[register] = pairs[(row * stride * CHUNK + column) / 2];
        }
    } else {
        // Lane l addresses row l % 8 of matrix l / 8: matrices (rows 0-7 | 8-15) x (k 0-7 | 8-15)
        // in the order of the A registers.
        let matrix = lane / 8;
        let lane_chunk = (warp_first + (matrix % 2) * 8 + lane % 8) * stride + matrix / 2;
        let chunk = lane_chunk + row_tile * 16 * stride + step * 2;
        let loaded = mma.load_matrix::<Vector<F, N8>, Const<2>>(&tile.slice(chunk, chunk + 1), MatrixIdent::A, 4usize, false);
        #[unroll]
        for register in 0..4usize {
            fragment[register] = loaded[register];
        }
    }
    fragment
}

/// B fragments (k16 x n8) from a tile stored n-major (rows of `stride` chunks from chunk `base`,
/// k contiguous: K for the score product `Q K^T`) for n blocks `2 * block_pair` and
/// `2 * block_pair + 1` at `k16` step `step`: registers 0-1 for the first block, 2-3 for the
/// second.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn key_fragments<F: Float, N8: Size>(
    mma: &MmaDefinition<F, F, f32>,
    keys: &SharedMemory<Vector<F, N8>>,
    base: usize,
    stride: usize,
    block_pair: usize,
    step: usize,
    lane: usize,
    #[comptime] access: TileAccess,
) -> Array<Pair<F>> {
    let mut fragment = Array::<Pair<F>>::new(4usize);
    if comptime!(access.fragments == FragmentLoads::Scalar) {
        let pairs = keys.to_slice().with_vector_size::<Const<2>>();
        #[unroll]
        for register in 0..4usize {
            let key_row = block_pair * 16 + (register / 2) * 8 + lane / 4;
            let column = step * 16 + (register % 2) * 8 + (lane % 4) * 2;
            fragment[register] = pairs[(base * CHUNK + key_row * stride * CHUNK + column) / 2];
        }
    } else {
        // Matrices (keys 0-7 | 8-15) x (k 0-7 | 8-15), k fastest: b0, b1 of each key block.
        let matrix = lane / 8;
        let lane_chunk = base + ((matrix / 2) * 8 + lane % 8) * stride + matrix % 2;
        let chunk = lane_chunk + block_pair * 16 * stride + step * 2;
        let loaded = mma.load_matrix::<Vector<F, N8>, Const<2>>(&keys.slice(chunk, chunk + 1), MatrixIdent::B, 4usize, false);
        #[unroll]
        for register in 0..4usize {
            fragment[register] = loaded[register];
        }
    }
    fragment
}

/// B fragments (k16 x n8) from a tile stored k-major (rows of `stride` chunks from chunk `base`,
/// n contiguous: V for `P V`, K'^T for the grouped score product) for n blocks
/// `2 * block_pair` and `2 * block_pair + 1` at `k16` step `step`: registers 0-1 for the first
/// block, 2-3 for the second.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn transposed_fragments<F: Float, N8: Size>(
    mma: &MmaDefinition<F, F, f32>,
    tile: &SharedMemory<Vector<F, N8>>,
    base: usize,
    stride: usize,
    block_pair: usize,
    step: usize,
    lane: usize,
    #[comptime] access: TileAccess,
) -> Array<Pair<F>> {
    let mut fragment = Array::<Pair<F>>::new(4usize);
    if comptime!(access.fragments == FragmentLoads::Matrix) {
        // Transposed matrices (k 0-7 | 8-15) x (n 0-7 | 8-15), k fastest.
        let matrix = lane / 8;
        let lane_chunk = base + ((matrix % 2) * 8 + lane % 8) * stride + matrix / 2;
        let chunk = lane_chunk + step * 16 * stride + block_pair * 2;
        let loaded = mma.load_matrix::<Vector<F, N8>, Const<2>>(&tile.slice(chunk, chunk + 1), MatrixIdent::B, 4usize, true);
        #[unroll]
        for register in 0..4usize {
            fragment[register] = loaded[register];
        }
    } else {
        let elements = tile.to_slice().with_vector_size::<Const<1>>();
        #[unroll]
        for register in 0..4usize {
            let k_row = step * 16 + (register % 2) * 8 + (lane % 4) * 2;
            let column = block_pair * 16 + (register / 2) * 8 + lane / 4;
            let first = base * CHUNK + k_row * stride * CHUNK + column;
            let mut pair = Pair::<F>::empty();
            pair[0] = elements[first][0];
            pair[1] = elements[first + stride * CHUNK][0];
            fragment[register] = pair;
        }
    }
    fragment
}

/// `accumulators += A B` for the two n8 blocks of one B fragment pair (`b`, from
/// [`key_fragments`] or [`transposed_fragments`]: n blocks `2 * block_pair` and
/// `2 * block_pair + 1`) and each of `row_tiles` A fragments (`a[4 t..4 t + 4]` for row tile
/// `t`): every B register pair read from shared memory feeds `row_tiles` `mma`. Accumulators
/// of row tile `t`, n block `n`: `(t * n_blocks + n) * 2`, two pairs.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn multiply_block_pair<F: Float>(
    mma: &MmaDefinition<F, F, f32>,
    a: &Array<Pair<F>>,
    b: &Array<Pair<F>>,
    accumulators: &mut Array<Pair<f32>>,
    block_pair: usize,
    #[comptime] row_tiles: usize,
    #[comptime] n_blocks: usize,
) {
    #[unroll]
    for half in 0..2usize {
        let mut b_half = Array::<Pair<F>>::new(2usize);
        b_half[0] = b[half * 2];
        b_half[1] = b[half * 2 + 1];
        #[unroll]
        for row_tile in 0..row_tiles {
            let index = (row_tile * n_blocks + block_pair * 2 + half) * 2;
            multiply_accumulate(mma, a, row_tile * 4, &b_half, accumulators, index);
        }
    }
}

/// `accumulators[index..index + 2] += A B` for the A fragment at `a[a_first..a_first + 4]`.
#[cube]
pub(crate) fn multiply_accumulate<F: Float>(
    mma: &MmaDefinition<F, F, f32>,
    a: &Array<Pair<F>>,
    a_first: usize,
    b: &Array<Pair<F>>,
    accumulators: &mut Array<Pair<f32>>,
    index: usize,
) {
    let mut a_tile = Array::<Pair<F>>::new(4usize);
    #[unroll]
    for register in 0..4usize {
        a_tile[register] = a[a_first + register];
    }
    let mut accumulator = Array::<Pair<f32>>::new(2usize);
    accumulator[0] = accumulators[index];
    accumulator[1] = accumulators[index + 1];
    mma.execute_inplace(&a_tile, b, &mut accumulator);
    accumulators[index] = accumulator[0];
    accumulators[index + 1] = accumulator[1];
}

/// `2^x`. CubeCL's CUDA backend compiles without `-ftz`, where `__expf(x)` is a multiply by
/// log2(e) ahead of `ex2.approx` and its denormal guard; `__powf(2, x)` folds the constant
/// logarithm away, one instruction fewer per score, so the softmax works in base 2.
#[cube]
pub(crate) fn exp2(x: f32) -> f32 {
    Powf::powf(f32::new(2.0), x)
}

/// Rows `start..start + rows` of two `[batch, heads, seq, width]` tensors of one head (K and
/// V, or Q and dO) into two shared tiles from chunk `first_base` / `second_base` (rows padded
/// by one chunk, see [`crate::config::TensorCoreConfig::padded_chunks`]); rows from `seq` on are
/// zero-filled, and a tile wholly inside the sequence is copied without the checks.
/// [`CopyStrategy::DoubleBuffered`]: asynchronous, to be committed by the caller.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn copy_row_pair<F: Float, N8: Size>(
    first: &Tensor<Vector<F, N8>>,
    second: &Tensor<Vector<F, N8>>,
    batch: usize,
    head: usize,
    start: usize,
    seq: usize,
    first_target: &mut SharedMemory<Vector<F, N8>>,
    first_base: usize,
    second_target: &mut SharedMemory<Vector<F, N8>>,
    second_base: usize,
    #[comptime] rows: usize,
    #[comptime] first_width: usize,
    #[comptime] second_width: usize,
    #[comptime] access: TileAccess,
) {
    let rows_valid = seq - min(seq, start);
    let first_source = batch * first.stride(0) + head * first.stride(1) + start * first.stride(2);
    let second_source = batch * second.stride(0) + head * second.stride(1) + start * second.stride(2);
    let first_chunks = comptime!(first_width / CHUNK);
    let second_chunks = comptime!(second_width / CHUNK);
    let first_stride = comptime!(first_chunks + 1);
    let second_stride = comptime!(second_chunks + 1);
    if start + rows <= seq {
        copy_rows::<F, N8>(first, first_source, first.stride(2), rows_valid, first_chunks, first_target, first_base, rows, first_chunks, first_stride, false, access);
        copy_rows::<F, N8>(second, second_source, second.stride(2), rows_valid, second_chunks, second_target, second_base, rows, second_chunks, second_stride, false, access);
    } else {
        copy_rows::<F, N8>(first, first_source, first.stride(2), rows_valid, first_chunks, first_target, first_base, rows, first_chunks, first_stride, true, access);
        copy_rows::<F, N8>(second, second_source, second.stride(2), rows_valid, second_chunks, second_target, second_base, rows, second_chunks, second_stride, true, access);
    }
}

/// `accumulators[..] = 0` for `count` pairs.
#[cube]
pub(crate) fn zeroed(#[comptime] count: usize) -> Array<Pair<f32>> {
    let mut accumulators = Array::<Pair<f32>>::new(count);
    #[unroll]
    for index in 0..count {
        accumulators[index] = Pair::<f32>::new(0.0);
    }
    accumulators
}

/// `accumulators += A B` for one warp's 16 rows: A from the row-major `a_tile` (`a_stride`
/// chunks per row, the warp's rows from `warp_first`), `steps` k16 steps; B from the n-major
/// `b_tile` (`b_stride` chunks per row from chunk `b_base`, see [`key_fragments`]), `n_blocks`
/// n8 blocks. Both operands come from shared memory: `S = Q K^T` and `dP = dO V^T` on the
/// query side, `S^T = K Q^T` and `dP^T = V dO^T` on the key side.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn shared_product<F: Float, N8: Size>(
    mma: &MmaDefinition<F, F, f32>,
    a_tile: &SharedMemory<Vector<F, N8>>,
    a_stride: usize,
    warp_first: usize,
    b_tile: &SharedMemory<Vector<F, N8>>,
    b_base: usize,
    b_stride: usize,
    accumulators: &mut Array<Pair<f32>>,
    lane: usize,
    #[comptime] steps: usize,
    #[comptime] n_blocks: usize,
    #[comptime] access: TileAccess,
) {
    #[unroll]
    for step in 0..steps {
        let a = row_fragment(mma, a_tile, a_stride, warp_first, 0usize, step, lane, access);
        #[unroll]
        for block_pair in 0..comptime!(n_blocks / 2) {
            let b = key_fragments(mma, b_tile, b_base, b_stride, block_pair, step, lane, access);
            multiply_block_pair(mma, &a, &b, accumulators, block_pair, 1usize, n_blocks);
        }
    }
}

/// `accumulators += A B` for one warp's 16 rows with A in registers: `a_source`, the f32
/// accumulators of a 16 x (16 `steps`) product (probabilities or their gradients), rounded to
/// the storage type; B from the k-major `b_tile` (`b_stride` chunks per row from chunk `b_base`,
/// see [`transposed_fragments`]), `n_blocks` n8 blocks. `dQ += dS K` on the query side,
/// `dV += P^T dO` and `dK += dS^T Q` on the key side.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn register_product<F: Float, N8: Size>(
    mma: &MmaDefinition<F, F, f32>,
    a_source: &Array<Pair<f32>>,
    b_tile: &SharedMemory<Vector<F, N8>>,
    b_base: usize,
    b_stride: usize,
    accumulators: &mut Array<Pair<f32>>,
    lane: usize,
    #[comptime] steps: usize,
    #[comptime] n_blocks: usize,
    #[comptime] access: TileAccess,
) {
    #[unroll]
    for step in 0..steps {
        let mut a = Array::<Pair<F>>::new(4usize);
        #[unroll]
        for register in 0..4usize {
            let values = a_source[(step * 2 + register / 2) * 2 + register % 2];
            let mut fragment = Pair::<F>::empty();
            fragment[0] = F::cast_from(values[0]);
            fragment[1] = F::cast_from(values[1]);
            a[register] = fragment;
        }
        #[unroll]
        for block_pair in 0..comptime!(n_blocks / 2) {
            let b = transposed_fragments(mma, b_tile, b_base, b_stride, block_pair, step, lane, access);
            multiply_block_pair(mma, &a, &b, accumulators, block_pair, 1usize, n_blocks);
        }
    }
}

/// `rowsum(dO * O)` of this lane's two rows (`warp_first_row + lane / 4` and 8 rows later),
/// zero past `seq_q`: the warp's 16 rows one at a time, each lane taking one 16-byte chunk of
/// dO and the matching elements of O, then one plane sum per row.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn row_deltas<F: Float, N8: Size>(
    output: &Tensor<F>,
    grad_output: &Tensor<Vector<F, N8>>,
    batch: usize,
    head: usize,
    warp_first_row: usize,
    seq_q: usize,
    lane: usize,
    #[comptime] config: TensorCoreBackwardConfig,
) -> Array<f32> {
    let value_chunks = comptime!(config.value_dim / CHUNK);
    let quad_row = lane / 4;
    let mut delta = Array::<f32>::new(2usize);
    delta[0] = 0.0;
    delta[1] = 0.0;
    #[unroll]
    for row_in_warp in 0..16usize {
        let row = warp_first_row + row_in_warp;
        let mut partial = 0.0f32;
        #[unroll]
        for pass in 0..comptime!(value_chunks.div_ceil(32)) {
            let chunk = lane + pass * 32;
            if row < seq_q && chunk < value_chunks {
                let grad_row = batch * grad_output.stride(0) + head * grad_output.stride(1) + row * grad_output.stride(2);
                let output_row = batch * output.stride(0) + head * output.stride(1) + row * output.stride(2);
                let gradients = grad_output[grad_row / CHUNK + chunk];
                #[unroll]
                for element in 0..CHUNK {
                    let column = chunk * CHUNK + element;
                    partial += f32::cast_from(gradients[element]) * f32::cast_from(output[output_row + column * output.stride(3)]);
                }
            }
        }
        let total = plane_sum(partial);
        delta[0] = select(row_in_warp == quad_row, total, delta[0]);
        delta[1] = select(row_in_warp == quad_row + 8, total, delta[1]);
    }
    delta
}

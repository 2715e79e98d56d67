//! The forward pass on tensor cores, FlashAttention-2 style: both products on `mma.sync`
//! m16n8k16 (f16 or bf16 operands, f32 accumulation) through CubeCL's manual
//! [`MmaDefinition`], the online softmax in registers.
//!
//! One cube per (query block, batch * head), [`TensorCoreTiling::warps`] warps, each owning
//! [`TensorCoreTiling::warp_tiles`] tiles of 16 consecutive query rows:
//!
//! 1. the block's rows of the query operand (Q, or Q' from the grouping pre-pass) and the first
//!    K and V tiles are copied into shared memory;
//! 2. per key tile: wait for the tile, start copying the next one into the other stage
//!    ([`CopyStrategy::DoubleBuffered`]: `cp.async`, completed on one mbarrier per stage);
//!    for `G > 1`, where K arrives transposed ([`crate::kernels::transpose_keys`]), form K'^T
//!    (each group's K columns summed, named by the pre-pass's column table: sums of whole
//!    16-byte chunks of rows) into its own tile, or, where K' selects one column per group
//!    ([`TensorCoreConfig::selects_keys`]), copy only those rows of K^T; score
//!    (`S = Q' K'^T`), online softmax, and `O += P V` with the probabilities going from the
//!    score accumulators straight into A fragments (the m16n8 accumulator layout of two key
//!    blocks is the m16k16 A layout);
//! 3. each warp normalises and writes its rows, and, for the backward
//!    ([`TensorCoreConfig::saves_log_sums`]), each row's log-sum-exp in base 2.
//!
//! Fragments come from shared memory through `ldmatrix` (`.trans` for V, which stays
//! key-major, and for K'^T), four registers per instruction; every B fragment feeds one `mma`
//! per row tile of the warp. Shared rows are padded by one 16-byte chunk, which spreads the
//! eight rows of an `ldmatrix` over all banks. Each fragment's address is the lane's own chunk
//! plus a constant (the row tile's, key block's and step's), so the compiler folds the constant
//! into the instruction instead of recomputing the address for every load. The softmax masks
//! only the tiles that reach past `seq_k` or the causal diagonal of the warp's first row, and a
//! warp skips the tiles wholly after its last row. Causal blocks are launched longest first,
//! a group of (batch, head) pairs at a time.
//!
//! Only launched where the device has the m16n8k16 `mma` for the storage type (CUDA, sm_80 and
//! newer); see [`crate::launch`].

use cubecl::cmma::MmaDefinition;
use cubecl::prelude::barrier::Barrier;
use cubecl::prelude::*;

use crate::config::{CopyStrategy, KeyFusion, TensorCoreConfig, CHUNK};
use crate::mma_tiles::{
    copy_chunk, copy_rows, exp2, key_fragments, multiply_block_pair, row_fragment, transposed_fragments, Pair, RESCALE_THRESHOLD, SCORE_FLOOR,
};

/// `N8`: the vector width of the three inputs, [`CHUNK`] (16 bytes). Fast math: `exp` becomes
/// `__expf`; no value is ever infinite or NaN.
#[cube(launch_unchecked, fast_math = FastMath::all())]
#[allow(clippy::too_many_arguments)]
pub(crate) fn tensor_core_forward<F: Float, N8: Size>(
    query: &Tensor<Vector<F, N8>>,
    key: &Tensor<Vector<F, N8>>,
    value: &Tensor<Vector<F, N8>>,
    key_columns: &Array<u32>,
    output: &mut Tensor<F>,
    log_sums: &mut Tensor<f32>,
    scale: f32,
    #[comptime] config: TensorCoreConfig,
    #[define(F)] _dtype: StorageType,
) {
    let warp_tiles = config.tiling.warp_tiles;
    let key_tile = config.tiling.key_tile;
    let units = comptime!(config.units());
    let access = comptime!(config.access());
    let layout = comptime!(config.shared_chunks());
    let query_stride = comptime!(TensorCoreConfig::padded_chunks(config.reduced_width()));
    let key_stride = comptime!(config.key_stage_stride());
    let fused_stride = comptime!(TensorCoreConfig::padded_chunks(config.tiling.key_tile));
    let value_stride = comptime!(TensorCoreConfig::padded_chunks(config.value_dim));
    let score_steps = comptime!(config.reduced_width() / 16);
    let key_blocks = comptime!(config.tiling.key_tile / 8);
    let value_blocks = comptime!(config.value_dim / 8);

    let heads = output.shape(1);
    let seq_q = output.shape(2);
    // `key` is K, or K^T for G > 1: V gives the key count.
    let seq_k = value.shape(2);
    // Causal: x runs over `group` (batch, head) pairs' blocks, rank-major, longest first
    // (see `launch::forward_cubes`); otherwise over one pair's blocks.
    let blocks = seq_q.div_ceil(config.block_rows);
    let mut batch_head = CUBE_POS_Y as usize;
    let mut block = CUBE_POS_X as usize;
    if comptime!(config.causal) {
        let group = CUBE_COUNT_X as usize / blocks;
        batch_head = CUBE_POS_Y as usize * group + CUBE_POS_X as usize % group;
        block = blocks - 1 - CUBE_POS_X as usize / group;
    }
    let batch = batch_head / heads;
    let head = batch_head % heads;
    let kv_head = head / (heads / value.shape(1));
    let block_first_row = block * config.block_rows;
    let lane = UNIT_POS_X as usize;
    let warp_first_in_block = UNIT_POS_Y as usize * comptime!(config.warp_rows());
    let warp_first_row = block_first_row + warp_first_in_block;

    let query_block = batch * query.stride(0) + head * query.stride(1) + block_first_row * query.stride(2);
    let key_head = batch * key.stride(0) + kv_head * key.stride(1);
    let value_head = batch * value.stride(0) + kv_head * value.stride(1);

    let mut query_tile = SharedMemory::<Vector<F, N8>>::new_aligned(layout.query, 16usize);
    let mut key_stages = SharedMemory::<Vector<F, N8>>::new_aligned(comptime!(layout.stages * layout.key_stage), 16usize);
    let mut value_stages =
        SharedMemory::<Vector<F, N8>>::new_aligned(comptime!(layout.stages * layout.value_stage), 16usize);
    let mut fused_keys = SharedMemory::<Vector<F, N8>>::new_aligned(comptime!(layout.fused_keys.max(1)), 16usize);
    let mut columns = SharedMemory::<u32>::new(comptime!(config.reduced_width() * config.group_size));

    if comptime!(config.group_size > 1) {
        let table = (batch_head * blocks + block) * comptime!(config.reduced_width() * config.group_size);
        let mut entry = UNIT_POS as usize;
        while entry < comptime!(config.reduced_width() * config.group_size) {
            columns[entry] = key_columns[table + entry];
            entry += units;
        }
        // The K tile copies read the table.
        if comptime!(config.selects_keys()) {
            sync_cube();
        }
    }

    // Causal: query `row` sits at position `row + seq_k - seq_q`; the block needs no key
    // after its last row's position.
    let mut keys_end = seq_k;
    let mut warp_first_position = seq_k;
    if comptime!(config.causal) {
        let block_last_row = min(seq_q, block_first_row + config.block_rows) - 1;
        keys_end = block_last_row + seq_k - seq_q + 1;
        warp_first_position = warp_first_row + seq_k - seq_q;
    }
    let warp_last_position = warp_first_position + comptime!(config.warp_rows() - 1);
    let num_tiles = keys_end.div_ceil(key_tile);

    let barrier_even = Barrier::shared(units as u32, UNIT_POS == 0);
    let barrier_odd = Barrier::shared(units as u32, UNIT_POS == 0);

    // The query block and the first K and V tiles.
    copy_rows::<F, N8>(
        query,
        query_block,
        query.stride(2),
        seq_q - block_first_row,
        comptime!(config.reduced_width() / CHUNK),
        &mut query_tile,
        0usize,
        config.block_rows,
        comptime!(config.reduced_width() / CHUNK),
        query_stride,
        true,
        access,
    );
    copy_key_value_tile::<F, N8>(
        key,
        value,
        &columns,
        &mut key_stages,
        &mut value_stages,
        key_head,
        value_head,
        seq_k,
        0usize,
        0usize,
        config,
    );
    if comptime!(config.copy == CopyStrategy::DoubleBuffered) {
        barrier_even.commit_copy_async();
    }

    let scale_log2 = scale * f32::new(core::f32::consts::LOG2_E);
    let mma = MmaDefinition::<F, F, f32>::new(16usize, 8usize, 16usize);
    // Accumulator fragments of O: row tile t, value block b, half h (rows g / g + 8) at
    // `(t * value_blocks + b) * 2 + h`; running maximum and sum at `t * 2 + h`.
    let mut output_fragments = Array::<Pair<f32>>::new(comptime!(config.tiling.warp_tiles * config.value_dim / 8 * 2));
    #[unroll]
    for index in 0..comptime!(warp_tiles * value_blocks * 2) {
        output_fragments[index] = Pair::<f32>::new(0.0);
    }
    let mut running_max = Array::<f32>::new(comptime!(config.tiling.warp_tiles * 2));
    let mut running_sum = Array::<f32>::new(comptime!(config.tiling.warp_tiles * 2));
    #[unroll]
    for index in 0..comptime!(warp_tiles * 2) {
        running_max[index] = f32::new(SCORE_FLOOR);
        running_sum[index] = 0.0;
    }
    let mut query_fragments =
        Array::<Pair<F>>::new(comptime!(config.tiling.warp_tiles * config.reduced_width() / 16 * 4));

    for tile in 0..num_tiles {
        let tile_start = tile * key_tile;
        let mut stage = 0usize;
        // Wait for this tile; then the other stage is free (every unit has arrived, so every
        // warp is done with the previous tile) and the next tile starts copying into it.
        if comptime!(config.copy == CopyStrategy::DoubleBuffered) {
            stage = tile % 2;
            if stage == 0 {
                barrier_even.arrive_and_wait();
            } else {
                barrier_odd.arrive_and_wait();
            }
            if tile + 1 < num_tiles {
                copy_key_value_tile::<F, N8>(
                    key,
                    value,
                    &columns,
                    &mut key_stages,
                    &mut value_stages,
                    key_head,
                    value_head,
                    seq_k,
                    tile_start + key_tile,
                    1 - stage,
                    config,
                );
                if stage == 0 {
                    barrier_odd.commit_copy_async();
                } else {
                    barrier_even.commit_copy_async();
                }
            }
        } else {
            if tile > 0 {
                sync_cube();
                copy_key_value_tile::<F, N8>(
                    key,
                    value,
                    &columns,
                    &mut key_stages,
                    &mut value_stages,
                    key_head,
                    value_head,
                    seq_k,
                    tile_start,
                    0usize,
                    config,
                );
            }
            sync_cube();
        }
        if comptime!(config.tiling.query_in_registers) {
            if tile == 0 {
                #[unroll]
                for row_tile in 0..warp_tiles {
                    #[unroll]
                    for step in 0..score_steps {
                        let fragment =
                            row_fragment(&mma, &query_tile, query_stride, warp_first_in_block, row_tile, step, lane, access);
                        #[unroll]
                        for register in 0..4usize {
                            query_fragments[(row_tile * score_steps + step) * 4 + register] = fragment[register];
                        }
                    }
                }
            }
        }
        if comptime!(config.group_size > 1 && !config.selects_keys()) {
            if comptime!(config.key_fusion == KeyFusion::Fused) {
                fuse_keys::<F, N8>(&key_stages, &mut fused_keys, &columns, stage * layout.key_stage, config);
            }
            sync_cube();
        }

        // A warp whose rows all come before the tile (causal) has nothing to do in it.
        if !comptime!(config.causal) || tile_start <= warp_last_position {
            let mut scores = Array::<Pair<f32>>::new(comptime!(config.tiling.warp_tiles * config.tiling.key_tile / 8 * 2));
            #[unroll]
            for index in 0..comptime!(warp_tiles * key_blocks * 2) {
                scores[index] = Pair::<f32>::new(0.0);
            }
            // S = Q' K'^T, one k16 step of every row tile at a time.
            #[unroll]
            for step in 0..score_steps {
                let mut a = Array::<Pair<F>>::new(comptime!(config.tiling.warp_tiles * 4));
                #[unroll]
                for row_tile in 0..warp_tiles {
                    if comptime!(config.tiling.query_in_registers) {
                        #[unroll]
                        for register in 0..4usize {
                            a[row_tile * 4 + register] = query_fragments[(row_tile * score_steps + step) * 4 + register];
                        }
                    } else {
                        let fragment =
                            row_fragment(&mma, &query_tile, query_stride, warp_first_in_block, row_tile, step, lane, access);
                        #[unroll]
                        for register in 0..4usize {
                            a[row_tile * 4 + register] = fragment[register];
                        }
                    }
                }
                #[unroll]
                for block_pair in 0..comptime!(config.tiling.key_tile / 16) {
                    let mut b = Array::<Pair<F>>::new(4usize);
                    if comptime!(config.group_size == 1) {
                        let loaded =
                            key_fragments(&mma, &key_stages, stage * layout.key_stage, key_stride, block_pair, step, lane, access);
                        #[unroll]
                        for register in 0..4usize {
                            b[register] = loaded[register];
                        }
                    } else if comptime!(config.selects_keys()) {
                        let loaded =
                            transposed_fragments(&mma, &key_stages, stage * layout.key_stage, key_stride, block_pair, step, lane, access);
                        #[unroll]
                        for register in 0..4usize {
                            b[register] = loaded[register];
                        }
                    } else {
                        let loaded = transposed_fragments(&mma, &fused_keys, 0usize, fused_stride, block_pair, step, lane, access);
                        #[unroll]
                        for register in 0..4usize {
                            b[register] = loaded[register];
                        }
                    }
                    multiply_block_pair(&mma, &a, &b, &mut scores, block_pair, warp_tiles, key_blocks);
                }
            }

            let positions = RowPositions { warp_first_row, lane, seq_q, seq_k, tile_start };
            let beyond_keys = tile_start + key_tile > seq_k;
            let beyond_diagonal = comptime!(config.causal) && tile_start + key_tile - 1 > warp_first_position;
            if beyond_keys || beyond_diagonal {
                online_softmax(&mut scores, &mut running_max, &mut running_sum, &mut output_fragments, &positions, scale_log2, true, config);
            } else {
                online_softmax(&mut scores, &mut running_max, &mut running_sum, &mut output_fragments, &positions, scale_log2, false, config);
            }

            // O += P V, k16 step s = key blocks 2s and 2s + 1.
            #[unroll]
            for step in 0..comptime!(config.tiling.key_tile / 16) {
                let mut a = Array::<Pair<F>>::new(comptime!(config.tiling.warp_tiles * 4));
                #[unroll]
                for row_tile in 0..warp_tiles {
                    #[unroll]
                    for register in 0..4usize {
                        let probabilities = scores[(row_tile * key_blocks + step * 2 + register / 2) * 2 + register % 2];
                        let mut fragment = Pair::<F>::empty();
                        fragment[0] = F::cast_from(probabilities[0]);
                        fragment[1] = F::cast_from(probabilities[1]);
                        a[row_tile * 4 + register] = fragment;
                    }
                }
                #[unroll]
                for block_pair in 0..comptime!(config.value_dim / 16) {
                    let b = transposed_fragments(&mma, &value_stages, stage * layout.value_stage, value_stride, block_pair, step, lane, access);
                    multiply_block_pair(&mma, &a, &b, &mut output_fragments, block_pair, warp_tiles, value_blocks);
                }
            }
        }
    }

    // Each lane holds columns 2q, 2q + 1 of every value block for rows g and g + 8 of each
    // row tile; its quad's partial sums complete the row's.
    let quad_row = lane / 4;
    let quad_lane = lane % 4;
    #[unroll]
    for row_tile in 0..warp_tiles {
        #[unroll]
        for half in 0..2usize {
            let mut total = running_sum[row_tile * 2 + half];
            total += plane_shuffle_xor(total, 1u32);
            total += plane_shuffle_xor(total, 2u32);
            let mut inverse = 0.0f32;
            if total > 0.0 {
                inverse = 1.0 / total;
            }
            let row = warp_first_row + row_tile * 16 + quad_row + half * 8;
            if comptime!(config.saves_log_sums) {
                if row < seq_q && quad_lane == 0 {
                    // As the backward's first pass would find it: a row without visible keys
                    // gets a log-sum-exp that makes every probability zero.
                    let log_sum = running_max[row_tile * 2 + half] + Log::ln(total) * f32::new(core::f32::consts::LOG2_E);
                    log_sums[batch_head * seq_q + row] = select(total > 0.0, log_sum, f32::new(-SCORE_FLOOR));
                }
            }
            if row < seq_q {
                let output_row = batch * output.stride(0) + head * output.stride(1) + row * output.stride(2);
                #[unroll]
                for value_block in 0..value_blocks {
                    let fragment = output_fragments[(row_tile * value_blocks + value_block) * 2 + half];
                    #[unroll]
                    for element in 0..2usize {
                        let column = value_block * 8 + quad_lane * 2 + element;
                        output[output_row + column * output.stride(3)] = F::cast_from(fragment[element] * inverse);
                    }
                }
            }
        }
    }
}


/// The rows of the K^T tile starting at element `source_base` that K' selects
/// ([`TensorCoreConfig::selects_keys`]) into a K stage from chunk `target_base`: row `j` is
/// K^T's row `columns[j * G]`, group `j`'s first member. The padding groups (column
/// `head_dim`) and chunks from `chunks_valid` on are zero-filled.
#[cube]
#[allow(clippy::too_many_arguments)]
fn copy_selected_rows<F: Float, N8: Size>(
    key: &Tensor<Vector<F, N8>>,
    source_base: usize,
    chunks_valid: usize,
    columns: &SharedMemory<u32>,
    target: &mut SharedMemory<Vector<F, N8>>,
    target_base: usize,
    #[comptime] config: TensorCoreConfig,
) {
    let units = comptime!(config.units());
    let access = comptime!(config.access());
    let chunks = comptime!(config.tiling.key_tile / CHUNK);
    let total = comptime!(config.reduced_width() * config.tiling.key_tile / CHUNK);
    let target_stride = comptime!(config.key_stage_stride());
    #[unroll]
    for pass in 0..comptime!(total.div_ceil(units)) {
        let slot = UNIT_POS as usize + pass * units;
        if comptime!(total % units == 0) || slot < total {
            let group = slot / chunks;
            let chunk = slot % chunks;
            let column = columns[group * config.group_size] as usize;
            let valid = column < config.head_dim && chunk < chunks_valid;
            let source_row = select(valid, column, 0usize);
            let source_chunk = select(valid, chunk, 0usize);
            let from = (source_base + source_row * key.stride(2)) / CHUNK + source_chunk;
            copy_chunk::<F, N8>(key, from, valid, target, target_base + group * target_stride + chunk, access);
        }
    }
}


/// The K (K^T, or the rows of it that K' selects, for `G > 1`) and V tile starting at key
/// `tile_start` into `stage` (see [`copy_rows`]); unchecked where the tile lies wholly inside
/// the sequence.
#[cube]
#[allow(clippy::too_many_arguments)]
fn copy_key_value_tile<F: Float, N8: Size>(
    key: &Tensor<Vector<F, N8>>,
    value: &Tensor<Vector<F, N8>>,
    columns: &SharedMemory<u32>,
    key_stages: &mut SharedMemory<Vector<F, N8>>,
    value_stages: &mut SharedMemory<Vector<F, N8>>,
    key_head: usize,
    value_head: usize,
    seq_k: usize,
    tile_start: usize,
    stage: usize,
    #[comptime] config: TensorCoreConfig,
) {
    if tile_start + config.tiling.key_tile <= seq_k {
        copy_key_value_stage::<F, N8>(
            key, value, columns, key_stages, value_stages, key_head, value_head, seq_k, tile_start, stage, false, config,
        );
    } else {
        copy_key_value_stage::<F, N8>(
            key, value, columns, key_stages, value_stages, key_head, value_head, seq_k, tile_start, stage, true, config,
        );
    }
}

/// [`copy_key_value_tile`]'s copies, `checked` or not (see [`copy_rows`]).
#[cube]
#[allow(clippy::too_many_arguments)]
fn copy_key_value_stage<F: Float, N8: Size>(
    key: &Tensor<Vector<F, N8>>,
    value: &Tensor<Vector<F, N8>>,
    columns: &SharedMemory<u32>,
    key_stages: &mut SharedMemory<Vector<F, N8>>,
    value_stages: &mut SharedMemory<Vector<F, N8>>,
    key_head: usize,
    value_head: usize,
    seq_k: usize,
    tile_start: usize,
    stage: usize,
    #[comptime] checked: bool,
    #[comptime] config: TensorCoreConfig,
) {
    let layout = comptime!(config.shared_chunks());
    let access = comptime!(config.access());
    let key_tile = config.tiling.key_tile;
    let rows_valid = seq_k - min(seq_k, tile_start);
    if comptime!(config.group_size == 1) {
        copy_rows::<F, N8>(
            key,
            key_head + tile_start * key.stride(2),
            key.stride(2),
            rows_valid,
            comptime!(config.head_dim / CHUNK),
            key_stages,
            stage * layout.key_stage,
            key_tile,
            comptime!(config.head_dim / CHUNK),
            comptime!(config.key_stage_stride()),
            checked,
            access,
        );
    } else {
        // K^T rows are the head dim's columns; its keys are padded to whole chunks.
        let padded_keys = seq_k.div_ceil(CHUNK) * CHUNK;
        let chunks_valid = (padded_keys - min(padded_keys, tile_start)) / CHUNK;
        if comptime!(config.selects_keys()) {
            copy_selected_rows::<F, N8>(key, key_head + tile_start, chunks_valid, columns, key_stages, stage * layout.key_stage, config);
        } else {
            copy_rows::<F, N8>(
                key,
                key_head + tile_start,
                key.stride(2),
                config.head_dim,
                chunks_valid,
                key_stages,
                stage * layout.key_stage,
                config.head_dim,
                comptime!(config.tiling.key_tile / CHUNK),
                comptime!(config.key_stage_stride()),
                checked,
                access,
            );
        }
    }
    copy_rows::<F, N8>(
        value,
        value_head + tile_start * value.stride(2),
        value.stride(2),
        rows_valid,
        comptime!(config.value_dim / CHUNK),
        value_stages,
        stage * layout.value_stage,
        key_tile,
        comptime!(config.value_dim / CHUNK),
        comptime!(TensorCoreConfig::padded_chunks(config.value_dim)),
        checked,
        access,
    );
}

/// K'^T of the K^T tile in `key_stages` from chunk `stage_base`: row `j` is the sum of the rows
/// the column table names for group `j` (zero for the padding groups), summed chunk by chunk in
/// the storage type. Consecutive units take consecutive chunks of one row, so a warp reads and
/// writes whole rows without bank conflicts.
#[cube]
fn fuse_keys<F: Float, N8: Size>(
    key_stages: &SharedMemory<Vector<F, N8>>,
    fused_keys: &mut SharedMemory<Vector<F, N8>>,
    columns: &SharedMemory<u32>,
    stage_base: usize,
    #[comptime] config: TensorCoreConfig,
) {
    let units = comptime!(config.units());
    let group_size = config.group_size;
    let groups = comptime!(config.head_dim / config.group_size);
    let chunks = comptime!(config.tiling.key_tile / CHUNK);
    let total = comptime!(config.reduced_width() * config.tiling.key_tile / CHUNK);
    let key_stride = comptime!(config.key_stage_stride());
    let fused_stride = comptime!(TensorCoreConfig::padded_chunks(config.tiling.key_tile));
    #[unroll]
    for pass in 0..comptime!(total.div_ceil(units)) {
        let slot = UNIT_POS as usize + pass * units;
        if comptime!(total % units == 0) || slot < total {
            let group = slot / chunks;
            let chunk = slot % chunks;
            let mut fused = Vector::<F, N8>::new(F::cast_from(0.0f32));
            if group < groups {
                #[unroll]
                for member in 0..group_size {
                    let row = columns[group * group_size + member] as usize;
                    fused += key_stages[stage_base + row * key_stride + chunk];
                }
            }
            fused_keys[group * fused_stride + chunk] = fused;
        }
    }
}





/// Where this lane's score fragments sit in the attention matrix.
#[derive(CubeType)]
struct RowPositions {
    warp_first_row: usize,
    lane: usize,
    seq_q: usize,
    seq_k: usize,
    tile_start: usize,
}

/// Updates each row's running maximum and sum from the tile's raw scores, rescales its output
/// accumulators and turns the scores into probabilities in place. The scale is folded into
/// the exponent in base 2 (`2^(s * scale * log2(e) - max)`, one FMA per score, see [`exp2`];
/// the running maximum is kept in those units; the launcher requires a positive scale, so the
/// raw maximum scales to the scaled one). A row's four lanes agree on its maximum through two
/// shuffles and keep partial sums until the end. `masked`: keys past `seq_k` or (causal) after
/// the row's position get probability 0.
///
/// The maxima move, and the accumulators are rescaled, only when some row of the warp
/// outgrows its maximum by more than [`RESCALE_THRESHOLD`] (a warp-uniform branch); otherwise
/// the probabilities are taken against the previous maximum. After the first tiles that skips
/// the rescale almost always, and the result is the same up to rounding: the final division
/// by the row sum cancels whichever maximum was used.
#[cube]
#[allow(clippy::too_many_arguments)]
fn online_softmax(
    scores: &mut Array<Pair<f32>>,
    running_max: &mut Array<f32>,
    running_sum: &mut Array<f32>,
    output_fragments: &mut Array<Pair<f32>>,
    positions: &RowPositions,
    scale_log2: f32,
    #[comptime] masked: bool,
    #[comptime] config: TensorCoreConfig,
) {
    let key_blocks = comptime!(config.tiling.key_tile / 8);
    let value_blocks = comptime!(config.value_dim / 8);
    let quad_row = positions.lane / 4;
    let quad_lane = positions.lane % 4;
    let mut tile_maxima = Array::<f32>::new(comptime!(config.tiling.warp_tiles * 2));
    let mut outgrown = false;
    #[unroll]
    for row_tile in 0..config.tiling.warp_tiles {
        #[unroll]
        for half in 0..2usize {
            let row = positions.warp_first_row + row_tile * 16 + quad_row + half * 8;
            let mut query_position = positions.seq_k;
            if comptime!(config.causal) {
                query_position = row + positions.seq_k - positions.seq_q;
            }
            let mut tile_max = f32::new(SCORE_FLOOR);
            #[unroll]
            for key_block in 0..key_blocks {
                let index = (row_tile * key_blocks + key_block) * 2 + half;
                let mut block_scores = scores[index];
                #[unroll]
                for element in 0..2usize {
                    let mut score = block_scores[element];
                    if comptime!(masked) {
                        let key_position = positions.tile_start + key_block * 8 + quad_lane * 2 + element;
                        let visible = key_position < positions.seq_k && key_position <= query_position;
                        score = select(visible, score, f32::new(SCORE_FLOOR));
                        block_scores[element] = score;
                    }
                    tile_max = max(tile_max, score);
                }
                if comptime!(masked) {
                    scores[index] = block_scores;
                }
            }
            tile_max = max(tile_max, plane_shuffle_xor(tile_max, 1u32));
            tile_max = max(tile_max, plane_shuffle_xor(tile_max, 2u32));
            let state = row_tile * 2 + half;
            tile_maxima[state] = tile_max * scale_log2;
            outgrown = outgrown || tile_maxima[state] > running_max[state] + f32::new(RESCALE_THRESHOLD);
        }
    }

    if plane_any(outgrown) {
        #[unroll]
        for state in 0..comptime!(config.tiling.warp_tiles * 2) {
            let new_max = max(running_max[state], tile_maxima[state]);
            let correction = exp2(running_max[state] - new_max);
            running_max[state] = new_max;
            running_sum[state] *= correction;
            let row_tile = state / 2;
            let half = state % 2;
            #[unroll]
            for value_block in 0..value_blocks {
                let index = (row_tile * value_blocks + value_block) * 2 + half;
                output_fragments[index] = output_fragments[index] * Pair::<f32>::new(correction);
            }
        }
    }

    #[unroll]
    for row_tile in 0..config.tiling.warp_tiles {
        #[unroll]
        for half in 0..2usize {
            let state = row_tile * 2 + half;
            let row_max = running_max[state];
            let mut tile_sum = 0.0f32;
            #[unroll]
            for key_block in 0..key_blocks {
                let index = (row_tile * key_blocks + key_block) * 2 + half;
                let mut block_scores = scores[index];
                #[unroll]
                for element in 0..2usize {
                    let score = block_scores[element];
                    let mut probability = exp2(score * scale_log2 - row_max);
                    if comptime!(masked) {
                        probability = select(score > f32::new(SCORE_FLOOR), probability, 0.0f32);
                    }
                    block_scores[element] = probability;
                    tile_sum += probability;
                }
                scores[index] = block_scores;
            }
            running_sum[state] += tile_sum;
        }
    }
}


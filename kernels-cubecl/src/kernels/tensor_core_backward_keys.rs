//! The backward pass on tensor cores, key side: dK and dV, after
//! [`crate::kernels::tensor_core_backward_queries`] has written each query row's log-sum-exp
//! (base 2) and `delta = rowsum(dO * O)`. Exact attention.
//!
//! One cube per (block of 16 x [`TensorCoreBackwardConfig::warps`] keys, batch * kv head), each
//! warp owning 16 keys, whose K and V rows stay in shared memory while the Q and dO rows of
//! every query head that shares the key head stream through in tiles (grouped-query attention
//! sums their contributions here, with no atomics; causal starts at the first tile that sees
//! the block's first key). Per tile, for the warp's keys, all on `mma`:
//!
//! 1. `S^T = K Q^T`, `P^T = 2^(S^T s log2(e) - lse)` (zero where masked);
//! 2. `dP^T = V dO^T`, then `dV += P^T dO` with `P^T` going from the accumulators straight
//!    into A fragments;
//! 3. `dS^T = P^T (dP^T - delta)`, `dK += dS^T Q`;
//! 4. with [`QueryGradient::KeySide`], `dQ += dS K` for the tile: each warp stores its `dS^T`
//!    into a shared `[tile, block]` tile as `dS`, and after a barrier each warp multiplies 16 of
//!    the tile's query rows (and a group of head-dim columns) by the block's K and adds the
//!    result to `grad_query_sums` with f32 atomics (every key block of the sequence adds to
//!    each query row). No query-side kernel runs then.
//!
//! Each warp writes `s dK` and `dV` for its keys.

use cubecl::cmma::{MatrixIdent, MmaDefinition};
use cubecl::prelude::barrier::Barrier;
use cubecl::prelude::*;

use crate::config::{CopyStrategy, QueryGradient, TensorCoreBackwardConfig, TensorCoreConfig, PLANE_SIZE};
use crate::kernels::backward_row_stats::{row_stat_pair, stat_rows, RowStatPair};
use crate::mma_tiles::{
    copy_row_pair, exp2, multiply_block_pair, register_product, row_fragment, shared_product, transposed_fragments, zeroed, Pair,
};

/// `N8`: the vector width of the chunked inputs, [`crate::config::CHUNK`] (16 bytes).
#[cube(launch_unchecked, fast_math = FastMath::all())]
#[allow(clippy::too_many_arguments)]
pub(crate) fn tensor_core_backward_keys<F: Float, N8: Size>(
    query: &Tensor<Vector<F, N8>>,
    key: &Tensor<Vector<F, N8>>,
    value: &Tensor<Vector<F, N8>>,
    grad_output: &Tensor<Vector<F, N8>>,
    row_stats: &Array<RowStatPair>,
    grad_key: &mut Tensor<F>,
    grad_value: &mut Tensor<F>,
    grad_query_sums: &mut Array<Atomic<Pair<f32>>>,
    scale: f32,
    #[comptime] config: TensorCoreBackwardConfig,
    #[define(F)] _dtype: StorageType,
) {
    let access = comptime!(config.access());
    let units = comptime!(config.units());
    let block_rows = comptime!(config.block_rows());
    let query_tile = config.tile;
    let query_blocks = comptime!(config.tile / 8);
    let head_blocks = comptime!(config.head_dim / 8);
    let value_blocks = comptime!(config.value_dim / 8);
    let key_stride = comptime!(TensorCoreConfig::padded_chunks(config.head_dim));
    let value_stride = comptime!(TensorCoreConfig::padded_chunks(config.value_dim));
    let stage_chunks = comptime!(config.stage_chunks());
    let query_stage = comptime!(stage_chunks[0]);
    let grad_output_stage = comptime!(stage_chunks[1]);

    let heads = grad_output.shape(1);
    let seq_q = grad_output.shape(2);
    let kv_heads = key.shape(1);
    let seq_k = key.shape(2);
    let heads_per_kv_head = heads / kv_heads;
    let mut batch_kv_head = CUBE_POS_Y as usize;
    let mut key_block = CUBE_POS_X as usize;
    if comptime!(config.heads_first()) {
        batch_kv_head = CUBE_POS_X as usize;
        key_block = CUBE_POS_Y as usize;
    }
    let batch = batch_kv_head / kv_heads;
    let kv_head = batch_kv_head % kv_heads;
    let block_first_key = key_block * block_rows;
    let lane = UNIT_POS_X as usize;
    let quad_row = lane / 4;
    let quad_lane = lane % 4;
    let warp_first_in_block = UNIT_POS_Y as usize * 16;
    let warp_first_key = block_first_key + warp_first_in_block;

    // Causal: query row `i` sees key `j` when `j <= i + seq_k - seq_q`.
    let offset = seq_k - seq_q;
    let mut first_tile = 0usize;
    if comptime!(config.causal) {
        if block_first_key > offset {
            first_tile = (block_first_key - offset) / query_tile;
        }
    }
    let tiles_per_head = seq_q.div_ceil(query_tile) - first_tile;
    let stat_rows = stat_rows(seq_q);
    let steps = heads_per_kv_head * tiles_per_head;

    let mut key_tile = SharedMemory::<Vector<F, N8>>::new_aligned(comptime!(block_rows * key_stride), 16usize);
    let mut value_tile = SharedMemory::<Vector<F, N8>>::new_aligned(comptime!(block_rows * value_stride), 16usize);
    let mut query_stages = SharedMemory::<Vector<F, N8>>::new_aligned(comptime!(config.stages() * query_stage), 16usize);
    let mut grad_output_stages =
        SharedMemory::<Vector<F, N8>>::new_aligned(comptime!(config.stages() * grad_output_stage), 16usize);
    let mut grad_scores_tile = SharedMemory::<Vector<F, N8>>::new_aligned(comptime!(config.grad_scores_chunks()), 16usize);

    let barrier_even = Barrier::shared(units as u32, UNIT_POS == 0);
    let barrier_odd = Barrier::shared(units as u32, UNIT_POS == 0);
    copy_row_pair::<F, N8>(
        key,
        value,
        batch,
        kv_head,
        block_first_key,
        seq_k,
        &mut key_tile,
        0usize,
        &mut value_tile,
        0usize,
        block_rows,
        config.head_dim,
        config.value_dim,
        access,
    );
    copy_row_pair::<F, N8>(
        query,
        grad_output,
        batch,
        kv_head * heads_per_kv_head,
        first_tile * query_tile,
        seq_q,
        &mut query_stages,
        0usize,
        &mut grad_output_stages,
        0usize,
        query_tile,
        config.head_dim,
        config.value_dim,
        access,
    );
    if comptime!(config.copy == CopyStrategy::DoubleBuffered) {
        barrier_even.commit_copy_async();
    }

    let scale_log2 = scale * f32::new(core::f32::consts::LOG2_E);
    let mma = MmaDefinition::<F, F, f32>::new(16usize, 8usize, 16usize);
    let mut grad_key_fragments = zeroed(comptime!(head_blocks * 2));
    let mut grad_value_fragments = zeroed(comptime!(value_blocks * 2));

    for step in 0..steps {
        let head = kv_head * heads_per_kv_head + step / tiles_per_head;
        let tile_start = (first_tile + step % tiles_per_head) * query_tile;
        let mut stage = 0usize;
        if comptime!(config.copy == CopyStrategy::DoubleBuffered) {
            stage = step % 2;
            if stage == 0 {
                barrier_even.arrive_and_wait();
            } else {
                barrier_odd.arrive_and_wait();
            }
            if step + 1 < steps {
                let next = step + 1;
                copy_row_pair::<F, N8>(
                    query,
                    grad_output,
                    batch,
                    kv_head * heads_per_kv_head + next / tiles_per_head,
                    (first_tile + next % tiles_per_head) * query_tile,
                    seq_q,
                    &mut query_stages,
                    (1 - stage) * query_stage,
                    &mut grad_output_stages,
                    (1 - stage) * grad_output_stage,
                    query_tile,
                    config.head_dim,
                    config.value_dim,
                    access,
                );
                if stage == 0 {
                    barrier_odd.commit_copy_async();
                } else {
                    barrier_even.commit_copy_async();
                }
            }
        } else {
            if step > 0 {
                sync_cube();
                copy_row_pair::<F, N8>(
                    query,
                    grad_output,
                    batch,
                    head,
                    tile_start,
                    seq_q,
                    &mut query_stages,
                    0usize,
                    &mut grad_output_stages,
                    0usize,
                    query_tile,
                    config.head_dim,
                    config.value_dim,
                    access,
                );
            }
            sync_cube();
        }

        // A warp whose keys all come after the tile's last query position has nothing to do
        // (its dS stays zero).
        let stats_base = (batch * heads + head) * stat_rows;
        let mut grad_scores = zeroed(comptime!(query_blocks * 2));
        if !comptime!(config.causal) || tile_start + query_tile - 1 + offset >= warp_first_key {
            // S^T = K Q^T for the warp's 16 keys, turned into P^T.
            let mut probabilities = zeroed(comptime!(query_blocks * 2));
            shared_product::<F, N8>(
                &mma,
                &key_tile,
                key_stride,
                warp_first_in_block,
                &query_stages,
                stage * query_stage,
                key_stride,
                &mut probabilities,
                lane,
                comptime!(config.head_dim / 16),
                query_blocks,
                access,
            );
            let masked = tile_start + query_tile > seq_q || (comptime!(config.causal) && tile_start + offset < warp_first_key + 15);
            #[unroll]
            for query_block in 0..query_blocks {
                let stats = row_stat_pair(row_stats, stats_base, tile_start + query_block * 8, quad_lane);
                #[unroll]
                for element in 0..2usize {
                    let row = tile_start + query_block * 8 + quad_lane * 2 + element;
                    let log_sum = stats[element * 2];
                    #[unroll]
                    for half in 0..2usize {
                        let index = query_block * 2 + half;
                        let mut pair = probabilities[index];
                        let mut probability = exp2(pair[element] * scale_log2 - log_sum);
                        if masked {
                            let key_position = warp_first_key + quad_row + half * 8;
                            let visible = row < seq_q && (!comptime!(config.causal) || key_position <= row + offset);
                            probability = select(visible, probability, 0.0f32);
                        }
                        pair[element] = probability;
                        probabilities[index] = pair;
                    }
                }
            }

            // dV += P^T dO: dO's tile is k-major for this product (query rows are its k).
            register_product::<F, N8>(
                &mma,
                &probabilities,
                &grad_output_stages,
                stage * grad_output_stage,
                value_stride,
                &mut grad_value_fragments,
                lane,
                comptime!(config.tile / 16),
                value_blocks,
                access,
            );

            // dP^T = V dO^T, then dS^T = P^T (dP^T - delta) in its place.
            shared_product::<F, N8>(
                &mma,
                &value_tile,
                value_stride,
                warp_first_in_block,
                &grad_output_stages,
                stage * grad_output_stage,
                value_stride,
                &mut grad_scores,
                lane,
                comptime!(config.value_dim / 16),
                query_blocks,
                access,
            );
            #[unroll]
            for query_block in 0..query_blocks {
                // Read again rather than kept from the first loop: the kernel already holds
                // 244 of 255 registers at d = 64 (ptxas); keeping them was not measured.
                let stats = row_stat_pair(row_stats, stats_base, tile_start + query_block * 8, quad_lane);
                let mut deltas = Pair::<f32>::empty();
                deltas[0] = stats[1];
                deltas[1] = stats[3];
                #[unroll]
                for half in 0..2usize {
                    let index = query_block * 2 + half;
                    grad_scores[index] = probabilities[index] * (grad_scores[index] - deltas);
                }
            }

            // dK += dS^T Q.
            register_product::<F, N8>(
                &mma,
                &grad_scores,
                &query_stages,
                stage * query_stage,
                key_stride,
                &mut grad_key_fragments,
                lane,
                comptime!(config.tile / 16),
                head_blocks,
                access,
            );
        }
        if comptime!(config.query_gradient == QueryGradient::KeySide) {
            add_query_gradient::<F, N8>(
                &mma,
                &grad_scores,
                &mut grad_scores_tile,
                &key_tile,
                grad_query_sums,
                (batch * heads + head) * seq_q.div_ceil(16) + tile_start / 16,
                seq_q - tile_start,
                scale,
                lane,
                config,
            );
        }
    }

    #[unroll]
    for half in 0..2usize {
        let key_row = warp_first_key + quad_row + half * 8;
        if key_row < seq_k {
            let grad_key_row = batch * grad_key.stride(0) + kv_head * grad_key.stride(1) + key_row * grad_key.stride(2);
            #[unroll]
            for head_block in 0..head_blocks {
                let fragment = grad_key_fragments[head_block * 2 + half];
                #[unroll]
                for element in 0..2usize {
                    let column = head_block * 8 + quad_lane * 2 + element;
                    grad_key[grad_key_row + column * grad_key.stride(3)] = F::cast_from(fragment[element] * scale);
                }
            }
            let grad_value_row = batch * grad_value.stride(0) + kv_head * grad_value.stride(1) + key_row * grad_value.stride(2);
            #[unroll]
            for value_block in 0..value_blocks {
                let fragment = grad_value_fragments[value_block * 2 + half];
                #[unroll]
                for element in 0..2usize {
                    let column = value_block * 8 + quad_lane * 2 + element;
                    grad_value[grad_value_row + column * grad_value.stride(3)] = F::cast_from(fragment[element]);
                }
            }
        }
    }
}

/// `grad_query_sums += s dS K` for one query tile ([`QueryGradient::KeySide`]): the warp's
/// `dS^T` accumulators (its 16 keys by the tile's query rows) stored as `dS` rows of the shared
/// `[tile, block]` tile, a barrier, then warp `w` multiplies query rows `16 (w % row_tiles)..`
/// by the head-dim columns of group `w / row_tiles` of K (the block's keys are the k of this
/// product; K's tile is k-major for it) and adds the f32 results atomically, two columns per
/// lane and add, row tiles from `rows_valid` on skipped. The sums are in fragment order (see
/// [`crate::kernels::backward_row_stats`]), so that each warp's add covers 256 contiguous
/// bytes; `first_row_tile`: the tile's first row tile there. The caller's next barrier (the
/// start of the next step) keeps the `dS` tile from being overwritten while read.
#[cube]
#[allow(clippy::too_many_arguments)]
fn add_query_gradient<F: Float, N8: Size>(
    mma: &MmaDefinition<F, F, f32>,
    grad_scores: &Array<Pair<f32>>,
    grad_scores_tile: &mut SharedMemory<Vector<F, N8>>,
    key_tile: &SharedMemory<Vector<F, N8>>,
    grad_query_sums: &mut Array<Atomic<Pair<f32>>>,
    first_row_tile: usize,
    rows_valid: usize,
    scale: f32,
    lane: usize,
    #[comptime] config: TensorCoreBackwardConfig,
) {
    let access = comptime!(config.access());
    let stride = comptime!(config.grad_scores_stride());
    let key_stride = comptime!(TensorCoreConfig::padded_chunks(config.head_dim));
    let split = comptime!(config.query_gradient_split());
    let row_tiles = comptime!(split[0]);
    let head_blocks = comptime!(config.head_dim / 8);
    let group_blocks = comptime!(head_blocks / split[1]);
    let warp = UNIT_POS_Y as usize;

    // Each n8 block of `dS^T` (8 keys by 8 query rows, in accumulator layout) is stored
    // transposed (`stmatrix.trans`, sm_90 like the atomics): four blocks per x4 store, matrix
    // `i` being n8 block `2 p + i / 2` of key half `i % 2`, whose stored row `j` (lane
    // `8 i + j` gives its address) is query row `(2 p + i / 2) 8 + j`, 8 keys long.
    let matrix = lane / 8;
    #[unroll]
    for block_pair in 0..comptime!(config.tile / 16) {
        let mut registers = Array::<Pair<F>>::new(4usize);
        #[unroll]
        for index in 0..4usize {
            let pair = grad_scores[block_pair * 4 + index];
            let mut fragment = Pair::<F>::empty();
            fragment[0] = F::cast_from(pair[0]);
            fragment[1] = F::cast_from(pair[1]);
            registers[index] = fragment;
        }
        let query_row = (block_pair * 2 + matrix / 2) * 8 + lane % 8;
        let chunk = query_row * stride + warp * 2 + matrix % 2;
        mma.store_matrix::<Vector<F, N8>, Const<2>>(&mut grad_scores_tile.slice_mut(chunk, chunk + 1), &registers, MatrixIdent::A, 4usize, true);
    }
    sync_cube();

    let row_tile = warp % row_tiles;
    let first_pair = (warp / row_tiles) * comptime!(group_blocks / 2);
    if row_tile * 16 < rows_valid {
        let mut partial = zeroed(comptime!(group_blocks * 2));
        #[unroll]
        for step in 0..comptime!(config.block_rows() / 16) {
            let a = row_fragment::<F, N8>(mma, grad_scores_tile, stride, row_tile * 16, 0usize, step, lane, access);
            #[unroll]
            for block_pair in 0..comptime!(group_blocks / 2) {
                let b = transposed_fragments::<F, N8>(mma, key_tile, 0usize, key_stride, first_pair + block_pair, step, lane, access);
                multiply_block_pair(mma, &a, &b, &mut partial, block_pair, 1usize, group_blocks);
            }
        }
        let first_block = ((first_row_tile + row_tile) * head_blocks + first_pair * 2) * 2;
        #[unroll]
        for index in 0..comptime!(group_blocks * 2) {
            grad_query_sums[(first_block + index) * PLANE_SIZE + lane].fetch_add(partial[index] * Pair::<f32>::new(scale));
        }
    }
}

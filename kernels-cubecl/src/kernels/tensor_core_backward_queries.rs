//! The backward pass on tensor cores, query side: dQ, and the two per-row statistics the key
//! side needs ([`crate::kernels::tensor_core_backward_keys`]). Exact attention (groupings the
//! kernels do not form reach it through their expanded query, `S = Q' K'^T = Q'' K^T`).
//!
//! One cube per (block of 16 x [`TensorCoreBackwardConfig::warps`] query rows, batch * head),
//! each warp owning 16 rows; the block's Q and dO rows stay in shared memory while K and V
//! stream through in tiles ([`CopyStrategy::DoubleBuffered`]: `cp.async` into two stages, as
//! the forward). With `S = s Q K^T`, `P = softmax(S)`:
//!
//! 1. `delta = rowsum(dO * O)` per row, from global memory, one plane sum per row;
//! 2. each row's log-sum-exp (in base 2, with the scale folded into the exponent as in the
//!    forward): the tensor-core forward's where it saved them
//!    ([`TensorCoreBackwardConfig::saved_log_sums`]), else from a first pass over the key
//!    tiles computing `S` (`mma`), so that the backward also follows a forward that saved none;
//! 3. a second pass recomputes `S`, forms `P = 2^(S log2(e) - lse)`, `dP = dO V^T` (`mma`),
//!    `dS = P (dP - delta)` and accumulates `dQ += dS K` (`mma`, `dS` going from the
//!    accumulators straight into A fragments); nothing `[seq_q, seq_k]` is stored;
//! 4. each warp writes `s dQ` for its rows, and the statistics (`lse` in base 2, `delta`).
//!
//! Both passes run as one loop over `2 x tiles` steps so that the copy of the first tile of the
//! second pass overlaps the last of the first. Causal blocks are launched longest first, and
//! a warp skips the tiles wholly after its last row.

use cubecl::cmma::MmaDefinition;
use cubecl::prelude::barrier::Barrier;
use cubecl::prelude::*;

use crate::config::{CopyStrategy, TensorCoreBackwardConfig, TensorCoreConfig};
use crate::kernels::backward_row_stats::stat_rows;
use crate::mma_tiles::{copy_row_pair, exp2, register_product, row_deltas, shared_product, zeroed, Pair, SCORE_FLOOR};

/// `N8`: the vector width of the chunked inputs, [`CHUNK`] (16 bytes).
#[cube(launch_unchecked, fast_math = FastMath::all())]
#[allow(clippy::too_many_arguments)]
pub(crate) fn tensor_core_backward_queries<F: Float, N8: Size>(
    query: &Tensor<Vector<F, N8>>,
    key: &Tensor<Vector<F, N8>>,
    value: &Tensor<Vector<F, N8>>,
    output: &Tensor<F>,
    grad_output: &Tensor<Vector<F, N8>>,
    grad_query: &mut Tensor<F>,
    row_stats: &mut Array<f32>,
    saved_log_sums: &Tensor<f32>,
    scale: f32,
    #[comptime] config: TensorCoreBackwardConfig,
    #[define(F)] _dtype: StorageType,
) {
    let access = comptime!(config.access());
    let units = comptime!(config.units());
    let block_rows = comptime!(config.block_rows());
    let key_tile = config.tile;
    let key_blocks = comptime!(config.tile / 8);
    let head_blocks = comptime!(config.head_dim / 8);
    let query_stride = comptime!(TensorCoreConfig::padded_chunks(config.head_dim));
    let value_stride = comptime!(TensorCoreConfig::padded_chunks(config.value_dim));
    let stage_chunks = comptime!(config.stage_chunks());
    let key_stage = comptime!(stage_chunks[0]);
    let value_stage = comptime!(stage_chunks[1]);

    let heads = grad_query.shape(1);
    let seq_q = grad_query.shape(2);
    let seq_k = value.shape(2);
    let batch_head = CUBE_POS_Y as usize;
    let batch = batch_head / heads;
    let head = batch_head % heads;
    let kv_head = head / (heads / value.shape(1));
    let mut block = CUBE_POS_X as usize;
    if comptime!(config.causal) {
        block = CUBE_COUNT_X as usize - 1 - block;
    }
    let block_first_row = block * block_rows;
    let lane = UNIT_POS_X as usize;
    let quad_row = lane / 4;
    let warp_first_in_block = UNIT_POS_Y as usize * 16;
    let warp_first_row = block_first_row + warp_first_in_block;

    let mut query_tile = SharedMemory::<Vector<F, N8>>::new_aligned(comptime!(block_rows * query_stride), 16usize);
    let mut grad_output_tile = SharedMemory::<Vector<F, N8>>::new_aligned(comptime!(block_rows * value_stride), 16usize);
    let mut key_stages = SharedMemory::<Vector<F, N8>>::new_aligned(comptime!(config.stages() * key_stage), 16usize);
    let mut value_stages = SharedMemory::<Vector<F, N8>>::new_aligned(comptime!(config.stages() * value_stage), 16usize);

    let mut keys_end = seq_k;
    let mut warp_first_position = seq_k;
    if comptime!(config.causal) {
        let block_last_row = min(seq_q, block_first_row + block_rows) - 1;
        keys_end = block_last_row + seq_k - seq_q + 1;
        warp_first_position = warp_first_row + seq_k - seq_q;
    }
    let warp_last_position = warp_first_position + 15;
    let num_tiles = keys_end.div_ceil(key_tile);
    let mut first_pass_tiles = num_tiles;
    if comptime!(config.saved_log_sums) {
        first_pass_tiles = 0;
    }
    let steps = first_pass_tiles + num_tiles;

    let barrier_even = Barrier::shared(units as u32, UNIT_POS == 0);
    let barrier_odd = Barrier::shared(units as u32, UNIT_POS == 0);
    copy_row_pair::<F, N8>(
        query,
        grad_output,
        batch,
        head,
        block_first_row,
        seq_q,
        &mut query_tile,
        0usize,
        &mut grad_output_tile,
        0usize,
        block_rows,
        config.head_dim,
        config.value_dim,
        access,
    );
    copy_row_pair::<F, N8>(
        key,
        value,
        batch,
        kv_head,
        0usize,
        seq_k,
        &mut key_stages,
        0usize,
        &mut value_stages,
        0usize,
        key_tile,
        config.head_dim,
        config.value_dim,
        access,
    );
    if comptime!(config.copy == CopyStrategy::DoubleBuffered) {
        barrier_even.commit_copy_async();
    }

    let delta = row_deltas::<F, N8>(output, grad_output, batch, head, warp_first_row, seq_q, lane, config);

    let scale_log2 = scale * f32::new(core::f32::consts::LOG2_E);
    let mma = MmaDefinition::<F, F, f32>::new(16usize, 8usize, 16usize);
    let mut running_max = Array::<f32>::new(2usize);
    let mut running_sum = Array::<f32>::new(2usize);
    let mut log_sum = Array::<f32>::new(2usize);
    #[unroll]
    for half in 0..2usize {
        running_max[half] = f32::new(SCORE_FLOOR);
        running_sum[half] = 0.0;
        log_sum[half] = 0.0;
        if comptime!(config.saved_log_sums) {
            let row = warp_first_row + quad_row + half * 8;
            if row < seq_q {
                log_sum[half] = saved_log_sums[batch_head * seq_q + row];
            }
        }
    }
    let mut grad_query_fragments = zeroed(comptime!(head_blocks * 2));

    for step in 0..steps {
        let mut second_pass = true;
        if comptime!(!config.saved_log_sums) {
            second_pass = step >= first_pass_tiles;
        }
        let tile_start = (step - select(second_pass, first_pass_tiles, 0usize)) * key_tile;
        let mut stage = 0usize;
        if comptime!(config.copy == CopyStrategy::DoubleBuffered) {
            stage = step % 2;
            if stage == 0 {
                barrier_even.arrive_and_wait();
            } else {
                barrier_odd.arrive_and_wait();
            }
            if step + 1 < steps {
                let next = step + 1 - select(step + 1 >= first_pass_tiles, first_pass_tiles, 0usize);
                copy_row_pair::<F, N8>(
                    key,
                    value,
                    batch,
                    kv_head,
                    next * key_tile,
                    seq_k,
                    &mut key_stages,
                    (1 - stage) * key_stage,
                    &mut value_stages,
                    (1 - stage) * value_stage,
                    key_tile,
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
                    key,
                    value,
                    batch,
                    kv_head,
                    tile_start,
                    seq_k,
                    &mut key_stages,
                    0usize,
                    &mut value_stages,
                    0usize,
                    key_tile,
                    config.head_dim,
                    config.value_dim,
                    access,
                );
            }
            sync_cube();
        }
        if !comptime!(config.saved_log_sums) && step == first_pass_tiles {
            // The first pass is complete: each row's log-sum-exp, in base 2.
            #[unroll]
            for half in 0..2usize {
                let mut total = running_sum[half];
                total += plane_shuffle_xor(total, 1u32);
                total += plane_shuffle_xor(total, 2u32);
                log_sum[half] = select(total > 0.0, running_max[half] + Log::ln(total) * f32::new(core::f32::consts::LOG2_E), f32::new(-SCORE_FLOOR));
            }
        }

        if !comptime!(config.causal) || tile_start <= warp_last_position {
            // S = Q K^T for the warp's 16 rows.
            let mut scores = zeroed(comptime!(key_blocks * 2));
            shared_product::<F, N8>(
                &mma,
                &query_tile,
                query_stride,
                warp_first_in_block,
                &key_stages,
                stage * key_stage,
                query_stride,
                &mut scores,
                lane,
                comptime!(config.head_dim / 16),
                key_blocks,
                access,
            );
            let beyond_keys = tile_start + key_tile > seq_k;
            let beyond_diagonal = comptime!(config.causal) && tile_start + key_tile - 1 > warp_first_position;
            if beyond_keys || beyond_diagonal {
                mask_scores(&mut scores, warp_first_row, lane, seq_q, seq_k, tile_start, config);
            }

            if !second_pass {
                #[unroll]
                for half in 0..2usize {
                    let mut tile_max = f32::new(SCORE_FLOOR);
                    #[unroll]
                    for key_block in 0..key_blocks {
                        let pair = scores[key_block * 2 + half];
                        tile_max = max(tile_max, max(pair[0], pair[1]));
                    }
                    tile_max = max(tile_max, plane_shuffle_xor(tile_max, 1u32));
                    tile_max = max(tile_max, plane_shuffle_xor(tile_max, 2u32));
                    let new_max = max(running_max[half], tile_max * scale_log2);
                    let mut sum = running_sum[half] * exp2(running_max[half] - new_max);
                    #[unroll]
                    for key_block in 0..key_blocks {
                        let pair = scores[key_block * 2 + half];
                        #[unroll]
                        for element in 0..2usize {
                            let score = pair[element];
                            sum += select(score > f32::new(SCORE_FLOOR), exp2(score * scale_log2 - new_max), 0.0f32);
                        }
                    }
                    running_max[half] = new_max;
                    running_sum[half] = sum;
                }
            } else {
                // P, then dP = dO V^T, then dS = P (dP - delta) in place of dP.
                #[unroll]
                for key_block in 0..key_blocks {
                    #[unroll]
                    for half in 0..2usize {
                        let index = key_block * 2 + half;
                        let mut pair = scores[index];
                        #[unroll]
                        for element in 0..2usize {
                            let score = pair[element];
                            pair[element] = select(score > f32::new(SCORE_FLOOR), exp2(score * scale_log2 - log_sum[half]), 0.0f32);
                        }
                        scores[index] = pair;
                    }
                }
                let mut grad_scores = zeroed(comptime!(key_blocks * 2));
                shared_product::<F, N8>(
                    &mma,
                    &grad_output_tile,
                    value_stride,
                    warp_first_in_block,
                    &value_stages,
                    stage * value_stage,
                    value_stride,
                    &mut grad_scores,
                    lane,
                    comptime!(config.value_dim / 16),
                    key_blocks,
                    access,
                );
                #[unroll]
                for index in 0..comptime!(key_blocks * 2) {
                    let half = index % 2;
                    grad_scores[index] = scores[index] * (grad_scores[index] - Pair::<f32>::new(delta[half]));
                }
                // dQ += dS K: K's tile is k-major for this product (keys are its k).
                register_product::<F, N8>(
                    &mma,
                    &grad_scores,
                    &key_stages,
                    stage * key_stage,
                    query_stride,
                    &mut grad_query_fragments,
                    lane,
                    comptime!(config.tile / 16),
                    head_blocks,
                    access,
                );
            }
        }
    }

    let quad_lane = lane % 4;
    let stat_rows = stat_rows(seq_q);
    #[unroll]
    for half in 0..2usize {
        let row = warp_first_row + quad_row + half * 8;
        if row < seq_q {
            let grad_row = batch * grad_query.stride(0) + head * grad_query.stride(1) + row * grad_query.stride(2);
            #[unroll]
            for head_block in 0..head_blocks {
                let fragment = grad_query_fragments[head_block * 2 + half];
                #[unroll]
                for element in 0..2usize {
                    let column = head_block * 8 + quad_lane * 2 + element;
                    grad_query[grad_row + column * grad_query.stride(3)] = F::cast_from(fragment[element] * scale);
                }
            }
        }
        // Rows padded with zeros (see `RowStatPair`).
        if quad_lane == 0 && row < stat_rows {
            let stats = (batch_head * stat_rows + row) * 2;
            row_stats[stats] = select(row < seq_q, log_sum[half], 0.0f32);
            row_stats[stats + 1] = select(row < seq_q, delta[half], 0.0f32);
        }
    }
}

/// Scores of keys past `seq_k` or (causal) after the row's position set to [`SCORE_FLOOR`],
/// whose probabilities both passes then take as zero.
#[cube]
#[allow(clippy::too_many_arguments)]
fn mask_scores(
    scores: &mut Array<Pair<f32>>,
    warp_first_row: usize,
    lane: usize,
    seq_q: usize,
    seq_k: usize,
    tile_start: usize,
    #[comptime] config: TensorCoreBackwardConfig,
) {
    let quad_row = lane / 4;
    let quad_lane = lane % 4;
    #[unroll]
    for half in 0..2usize {
        let mut query_position = seq_k;
        if comptime!(config.causal) {
            query_position = warp_first_row + quad_row + half * 8 + seq_k - seq_q;
        }
        #[unroll]
        for key_block in 0..comptime!(config.tile / 8) {
            let index = key_block * 2 + half;
            let mut pair = scores[index];
            #[unroll]
            for element in 0..2usize {
                let key_position = tile_start + key_block * 8 + quad_lane * 2 + element;
                let visible = key_position < seq_k && key_position <= query_position;
                pair[element] = select(visible, pair[element], f32::new(SCORE_FLOOR));
            }
            scores[index] = pair;
        }
    }
}

//! The backward pass, query side: dQ, and the two per-row statistics the key side needs.
//!
//! One cube per (query block, batch * head), one unit per query row, as the portable forward.
//! With `S = s Q' K'^T`, `P = softmax(S)` and `dO` the gradient of the output:
//!
//! 1. each unit loads its row of Q' (times the scale) and of dO, and forms
//!    `delta = rowsum(dO * O)`;
//! 2. a first pass over the key tiles (K' only) recomputes the row's log-sum-exp `lse`: the
//!    forward does not keep it, so the backward does not depend on which forward kernel ran;
//! 3. a second pass over K' and V tiles forms, key by key, `p = exp(S - lse)`,
//!    `dS = p (dO . v - delta)` and accumulates `dQ' += s dS k'`, never a `[seq_q, seq_k]`
//!    matrix;
//! 4. dQ' goes back to the query columns through the block's column table: the representative
//!    column alone (`Sample`), every member divided by `G` (`Mean`) or every member
//!    (`SampledKeys`, whose Q' is the group's sum). The grouping itself is a constant.
//!
//! `lse` and `delta` go to `row_stats` (two f32 per row) for [`crate::kernels::backward_keys`].

use cubecl::prelude::*;

use crate::config::{BackwardConfig, Representative};
use crate::key_tiles::{is_visible, load_column_table, load_fused_keys, load_scaled_row, row_dot};

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_queries<F: Float>(
    query: &Tensor<F>,
    key: &Tensor<F>,
    value: &Tensor<F>,
    output: &Tensor<F>,
    grad_output: &Tensor<F>,
    key_columns: &Array<u32>,
    grad_query: &mut Tensor<F>,
    row_stats: &mut Array<f32>,
    scale: f32,
    #[comptime] config: BackwardConfig,
    #[define(F)] _dtype: StorageType,
) {
    let head_dim = config.head_dim;
    let value_dim = config.value_dim;
    let group_size = config.group_size;
    let block_rows = config.block_rows;
    let key_tile = config.key_tile;
    let width = config.reduced_width;
    let groups = comptime!(config.head_dim / config.group_size);
    let reduced_quads = comptime!(config.reduced_width / 4);
    let value_quads = comptime!(config.value_dim / 4);

    let heads = grad_query.shape(1);
    let seq_q = grad_query.shape(2);
    let seq_k = key.shape(2);
    let queries_per_kv_head = heads / key.shape(1);
    let batch_head = CUBE_POS_Y as usize;
    let batch = batch_head / heads;
    let head = batch_head % heads;
    let kv_head = head / queries_per_kv_head;
    let block = CUBE_POS_X as usize;
    let unit = UNIT_POS as usize;
    let block_first_row = block * block_rows;
    let row = block_first_row + unit;
    let row_valid = row < seq_q;

    let key_head = batch * key.stride(0) + kv_head * key.stride(1);
    let value_head = batch * value.stride(0) + kv_head * value.stride(1);

    let mut columns = SharedMemory::<u32>::new(comptime!(config.table_entries()));
    let tile = config.fused_key_tile();
    load_column_table(key_columns, &mut columns, batch_head * CUBE_COUNT_X as usize + block, unit, tile);
    let mut reduced_query = Array::<f32>::new(width);
    load_scaled_row::<F>(query, &mut reduced_query, batch, head, row, row_valid, scale, tile);
    let output_row = batch * output.stride(0) + head * output.stride(1) + row * output.stride(2);
    let grad_output_row = batch * grad_output.stride(0) + head * grad_output.stride(1) + row * grad_output.stride(2);
    let mut grad_row = Array::<f32>::new(value_dim);
    let mut delta = 0.0f32;
    #[unroll(config.unroll)]
    for column in 0..value_dim {
        let mut gradient = 0.0f32;
        if row_valid {
            gradient = f32::cast_from(grad_output[grad_output_row + column * grad_output.stride(3)]);
            delta += gradient * f32::cast_from(output[output_row + column * output.stride(3)]);
        }
        grad_row[column] = gradient;
    }

    let mut keys_end = seq_k;
    let mut query_position = 0usize;
    if comptime!(config.causal) {
        let block_last_row = min(seq_q, block_first_row + block_rows) - 1;
        keys_end = block_last_row + seq_k - seq_q + 1;
        query_position = row + seq_k - seq_q;
    }

    let mut fused_keys = SharedMemory::<Vector<f32, Const<4>>>::new(comptime!(config.key_tile * reduced_quads));
    let mut values = SharedMemory::<Vector<f32, Const<4>>>::new(comptime!(config.key_tile * value_quads));
    sync_cube();

    // Pass 1: the row's log-sum-exp.
    let mut running_max = f32::new(-3.0e38);
    let mut running_sum = 0.0f32;
    let mut tile_start = 0usize;
    while tile_start < keys_end {
        load_fused_keys::<F>(key, &columns, &mut fused_keys, key_head, tile_start, seq_k, unit, tile);
        sync_cube();
        for key_index in 0..key_tile {
            if is_visible(tile_start + key_index, seq_k, query_position, config.causal) {
                let dot = row_dot(&reduced_query, &fused_keys, key_index, reduced_quads, config.unroll);
                if dot > running_max {
                    running_sum *= Exp::exp(running_max - dot);
                    running_max = dot;
                }
                running_sum += Exp::exp(dot - running_max);
            }
        }
        sync_cube();
        tile_start += key_tile;
    }
    let log_sum_exp = running_max + Log::ln(running_sum);

    // Pass 2: dQ' = s sum_j dS_j k'_j.
    let mut grad_reduced = Array::<f32>::new(width);
    #[unroll(config.unroll)]
    for group in 0..width {
        grad_reduced[group] = 0.0;
    }
    let mut tile_start = 0usize;
    while tile_start < keys_end {
        load_fused_keys::<F>(key, &columns, &mut fused_keys, key_head, tile_start, seq_k, unit, tile);
        let mut element = unit;
        while element < comptime!(config.key_tile * value_quads) {
            let key_row = tile_start + element / value_quads;
            let first_column = (element % value_quads) * 4;
            let mut quad = Vector::<f32, Const<4>>::empty();
            #[unroll]
            for lane in 0..4usize {
                let mut loaded = 0.0f32;
                if key_row < seq_k {
                    loaded = f32::cast_from(value[value_head + key_row * value.stride(2) + (first_column + lane) * value.stride(3)]);
                }
                quad[lane] = loaded;
            }
            values[element] = quad;
            element += block_rows;
        }
        sync_cube();
        for key_index in 0..key_tile {
            if is_visible(tile_start + key_index, seq_k, query_position, config.causal) {
                let dot = row_dot(&reduced_query, &fused_keys, key_index, reduced_quads, config.unroll);
                let probability = Exp::exp(dot - log_sum_exp);
                let mut grad_probability = 0.0f32;
                #[unroll(config.unroll)]
                for quad_index in 0..value_quads {
                    let quad = values[key_index * value_quads + quad_index];
                    let first = quad_index * 4;
                    grad_probability += grad_row[first] * quad[0]
                        + grad_row[first + 1] * quad[1]
                        + grad_row[first + 2] * quad[2]
                        + grad_row[first + 3] * quad[3];
                }
                let grad_score = probability * (grad_probability - delta);
                #[unroll(config.unroll)]
                for quad_index in 0..reduced_quads {
                    let quad = fused_keys[key_index * reduced_quads + quad_index];
                    let first = quad_index * 4;
                    grad_reduced[first] += grad_score * quad[0];
                    grad_reduced[first + 1] += grad_score * quad[1];
                    grad_reduced[first + 2] += grad_score * quad[2];
                    grad_reduced[first + 3] += grad_score * quad[3];
                }
            }
        }
        sync_cube();
        tile_start += key_tile;
    }

    if row_valid {
        let stats = (batch_head * seq_q + row) * 2;
        row_stats[stats] = log_sum_exp;
        row_stats[stats + 1] = delta;
        let grad_query_row = batch * grad_query.stride(0) + head * grad_query.stride(1) + row * grad_query.stride(2);
        if comptime!(config.group_size == 1) {
            #[unroll(config.unroll)]
            for column in 0..head_dim {
                grad_query[grad_query_row + column * grad_query.stride(3)] = F::cast_from(grad_reduced[column] * scale);
            }
        } else {
            let mut grad_full = Array::<f32>::new(head_dim);
            #[unroll(config.unroll)]
            for column in 0..head_dim {
                grad_full[column] = 0.0;
            }
            #[unroll(config.unroll)]
            for group in 0..groups {
                let gradient = grad_reduced[group] * scale;
                match comptime!(config.representative) {
                    Representative::Sample => {
                        grad_full[columns[group * group_size] as usize] = gradient;
                    }
                    Representative::Mean | Representative::SampledKeys => {
                        let mut member_gradient = gradient;
                        if comptime!(config.representative == Representative::Mean) {
                            member_gradient = gradient / f32::cast_from(group_size as u32);
                        }
                        #[unroll(config.unroll)]
                        for member in 0..group_size {
                            grad_full[columns[group * group_size + member] as usize] = member_gradient;
                        }
                    }
                }
            }
            #[unroll(config.unroll)]
            for column in 0..head_dim {
                grad_query[grad_query_row + column * grad_query.stride(3)] = F::cast_from(grad_full[column]);
            }
        }
    }
}

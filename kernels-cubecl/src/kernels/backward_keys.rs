//! The backward pass, key side: dK and dV, after [`crate::kernels::backward_queries`] has
//! written each query row's log-sum-exp and `delta = rowsum(dO * O)`.
//!
//! One cube per (block of `block_rows` keys, batch * kv head), one unit per key, which keeps
//! its dK and dV rows in registers and visits every query row that reads it: the query heads
//! that share its key head (grouped-query attention sums their contributions here, with no
//! atomics), and under causal masking only the query blocks at or after its position. Per
//! query block:
//!
//! 1. the unit forms its row of the block's K' (the sum of each group's first `key_members`
//!    key columns, from the block's column table);
//! 2. tiles of the block's Q' and dO rows, with their statistics, are staged in shared memory;
//!    for each row, `p = exp(s q' . k' - lse)`, `dV += p dO`, `dS = p (dO . v - delta)` and
//!    `dK' += s dS q'`;
//! 3. dK' goes back to the key columns it was summed from: each of a group's first
//!    `key_members` columns receives the group's entry.

use cubecl::prelude::*;

use crate::config::BackwardConfig;
use crate::key_tiles::load_column_table;

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_keys<F: Float>(
    query: &Tensor<F>,
    key: &Tensor<F>,
    value: &Tensor<F>,
    grad_output: &Tensor<F>,
    key_columns: &Array<u32>,
    row_stats: &Array<f32>,
    grad_key: &mut Tensor<F>,
    grad_value: &mut Tensor<F>,
    scale: f32,
    #[comptime] config: BackwardConfig,
    #[define(F)] _dtype: StorageType,
) {
    let head_dim = config.head_dim;
    let value_dim = config.value_dim;
    let group_size = config.group_size;
    let block_rows = config.block_rows;
    let query_tile = config.query_tile;
    let width = config.reduced_width;
    let groups = comptime!(config.head_dim / config.group_size);
    let reduced_quads = comptime!(config.reduced_width / 4);
    let value_quads = comptime!(config.value_dim / 4);

    let heads = grad_output.shape(1);
    let seq_q = grad_output.shape(2);
    let kv_heads = key.shape(1);
    let seq_k = key.shape(2);
    let queries_per_kv_head = heads / kv_heads;
    let num_blocks = seq_q.div_ceil(block_rows);
    let batch_kv_head = CUBE_POS_Y as usize;
    let batch = batch_kv_head / kv_heads;
    let kv_head = batch_kv_head % kv_heads;
    let unit = UNIT_POS as usize;
    let key_row = CUBE_POS_X as usize * block_rows + unit;
    let key_valid = key_row < seq_k;
    let key_base = batch * key.stride(0) + kv_head * key.stride(1) + key_row * key.stride(2);
    let value_base = batch * value.stride(0) + kv_head * value.stride(1) + key_row * value.stride(2);

    let mut value_row = Array::<f32>::new(value_dim);
    let mut grad_value_row = Array::<f32>::new(value_dim);
    #[unroll(config.unroll)]
    for column in 0..value_dim {
        let mut loaded = 0.0f32;
        if key_valid {
            loaded = f32::cast_from(value[value_base + column * value.stride(3)]);
        }
        value_row[column] = loaded;
        grad_value_row[column] = 0.0;
    }
    // Exact attention accumulates dK in `grad_fused` across blocks (K' is K); G > 1 scatters
    // each block's dK' into this row.
    let mut grad_key_row = Array::<f32>::new(comptime!(if config.group_size == 1 { 1 } else { config.head_dim }));
    if comptime!(config.group_size > 1) {
        #[unroll(config.unroll)]
        for column in 0..head_dim {
            grad_key_row[column] = 0.0;
        }
    }

    // Causal: query row `i` sees key `j` when `j <= i + seq_k - seq_q`; the cube's first key
    // is first seen by row `first_key - (seq_k - seq_q)`.
    let mut first_block = 0usize;
    if comptime!(config.causal) {
        let first_key = CUBE_POS_X as usize * block_rows;
        let offset = seq_k - seq_q;
        if first_key > offset {
            first_block = (first_key - offset) / block_rows;
        }
    }

    let mut columns = SharedMemory::<u32>::new(comptime!(config.table_entries()));
    let mut queries = SharedMemory::<Vector<f32, Const<4>>>::new(comptime!(config.query_tile * reduced_quads));
    let mut grads = SharedMemory::<Vector<f32, Const<4>>>::new(comptime!(config.query_tile * value_quads));
    let mut stats = SharedMemory::<f32>::new(comptime!(config.query_tile * 2));
    let mut fused_key = Array::<f32>::new(width);
    let mut grad_fused = Array::<f32>::new(width);
    #[unroll(config.unroll)]
    for group in 0..width {
        grad_fused[group] = 0.0;
    }

    for head_in_group in 0..queries_per_kv_head {
        let head = kv_head * queries_per_kv_head + head_in_group;
        let batch_head = batch * heads + head;
        for block in first_block..num_blocks {
            if comptime!(config.group_size > 1) {
                load_column_table(key_columns, &mut columns, batch_head * num_blocks + block, unit, config.fused_key_tile());
                sync_cube();
            }
            // This block's row of K'.
            #[unroll(config.unroll)]
            for group in 0..width {
                let mut fused = 0.0f32;
                if key_valid && group < groups {
                    if comptime!(config.group_size == 1) {
                        fused = f32::cast_from(key[key_base + group * key.stride(3)]);
                    } else {
                        #[unroll(config.unroll)]
                        for member in 0..config.key_members {
                            let column = columns[group * group_size + member] as usize;
                            fused += f32::cast_from(key[key_base + column * key.stride(3)]);
                        }
                    }
                }
                fused_key[group] = fused;
                if comptime!(config.group_size > 1) {
                    grad_fused[group] = 0.0;
                }
            }

            let mut tile_row = 0usize;
            while tile_row < block_rows {
                let first_row = block * block_rows + tile_row;
                stage_query_rows::<F>(query, grad_output, row_stats, &mut queries, &mut grads, &mut stats, batch, head, batch_head, first_row, unit, config);
                sync_cube();
                for index in 0..query_tile {
                    let row = first_row + index;
                    let mut visible = key_valid && row < seq_q;
                    if comptime!(config.causal) {
                        visible = visible && key_row <= row + seq_k - seq_q;
                    }
                    if visible {
                        let mut dot = 0.0f32;
                        #[unroll(config.unroll)]
                        for quad_index in 0..reduced_quads {
                            let quad = queries[index * reduced_quads + quad_index];
                            let first = quad_index * 4;
                            dot += fused_key[first] * quad[0]
                                + fused_key[first + 1] * quad[1]
                                + fused_key[first + 2] * quad[2]
                                + fused_key[first + 3] * quad[3];
                        }
                        let probability = Exp::exp(dot * scale - stats[index * 2]);
                        let mut grad_probability = 0.0f32;
                        #[unroll(config.unroll)]
                        for quad_index in 0..value_quads {
                            let quad = grads[index * value_quads + quad_index];
                            let first = quad_index * 4;
                            grad_value_row[first] += probability * quad[0];
                            grad_value_row[first + 1] += probability * quad[1];
                            grad_value_row[first + 2] += probability * quad[2];
                            grad_value_row[first + 3] += probability * quad[3];
                            grad_probability += value_row[first] * quad[0]
                                + value_row[first + 1] * quad[1]
                                + value_row[first + 2] * quad[2]
                                + value_row[first + 3] * quad[3];
                        }
                        let grad_score = probability * (grad_probability - stats[index * 2 + 1]);
                        #[unroll(config.unroll)]
                        for quad_index in 0..reduced_quads {
                            let quad = queries[index * reduced_quads + quad_index];
                            let first = quad_index * 4;
                            grad_fused[first] += grad_score * quad[0];
                            grad_fused[first + 1] += grad_score * quad[1];
                            grad_fused[first + 2] += grad_score * quad[2];
                            grad_fused[first + 3] += grad_score * quad[3];
                        }
                    }
                }
                sync_cube();
                tile_row += query_tile;
            }

            // dK' back to the key columns it was summed from.
            if comptime!(config.group_size > 1) {
                #[unroll(config.unroll)]
                for group in 0..groups {
                    #[unroll(config.unroll)]
                    for member in 0..config.key_members {
                        let column = columns[group * group_size + member] as usize;
                        grad_key_row[column] += grad_fused[group];
                    }
                }
                // The next block's table overwrites this one.
                sync_cube();
            }
        }
    }

    if key_valid {
        let grad_key_base = batch * grad_key.stride(0) + kv_head * grad_key.stride(1) + key_row * grad_key.stride(2);
        if comptime!(config.group_size == 1) {
            #[unroll(config.unroll)]
            for column in 0..head_dim {
                grad_key[grad_key_base + column * grad_key.stride(3)] = F::cast_from(grad_fused[column] * scale);
            }
        } else {
            #[unroll(config.unroll)]
            for column in 0..head_dim {
                grad_key[grad_key_base + column * grad_key.stride(3)] = F::cast_from(grad_key_row[column] * scale);
            }
        }
        let grad_value_base =
            batch * grad_value.stride(0) + kv_head * grad_value.stride(1) + key_row * grad_value.stride(2);
        #[unroll(config.unroll)]
        for column in 0..value_dim {
            grad_value[grad_value_base + column * grad_value.stride(3)] = F::cast_from(grad_value_row[column]);
        }
    }
}

/// Stages `query_tile` rows of Q' and dO from `first_row` (zero past the tensors' rows) and
/// their log-sum-exp and delta (zero past `seq_q`) as f32 in shared memory.
#[cube]
#[allow(clippy::too_many_arguments)]
fn stage_query_rows<F: Float>(
    query: &Tensor<F>,
    grad_output: &Tensor<F>,
    row_stats: &Array<f32>,
    queries: &mut SharedMemory<Vector<f32, Const<4>>>,
    grads: &mut SharedMemory<Vector<f32, Const<4>>>,
    stats: &mut SharedMemory<f32>,
    batch: usize,
    head: usize,
    batch_head: usize,
    first_row: usize,
    unit: usize,
    #[comptime] config: BackwardConfig,
) {
    let reduced_quads = comptime!(config.reduced_width / 4);
    let value_quads = comptime!(config.value_dim / 4);
    let seq_q = grad_output.shape(2);
    // Q' from the pre-pass has whole blocks of rows; Q itself has `seq_q`.
    let query_rows = query.shape(2);
    let query_head = batch * query.stride(0) + head * query.stride(1);
    let grad_head = batch * grad_output.stride(0) + head * grad_output.stride(1);

    let mut element = unit;
    while element < comptime!(config.query_tile * reduced_quads) {
        let row = first_row + element / reduced_quads;
        let first_column = (element % reduced_quads) * 4;
        let mut quad = Vector::<f32, Const<4>>::empty();
        #[unroll]
        for lane in 0..4usize {
            let mut loaded = 0.0f32;
            if row < query_rows {
                loaded = f32::cast_from(query[query_head + row * query.stride(2) + (first_column + lane) * query.stride(3)]);
            }
            quad[lane] = loaded;
        }
        queries[element] = quad;
        element += config.block_rows;
    }
    let mut element = unit;
    while element < comptime!(config.query_tile * value_quads) {
        let row = first_row + element / value_quads;
        let first_column = (element % value_quads) * 4;
        let mut quad = Vector::<f32, Const<4>>::empty();
        #[unroll]
        for lane in 0..4usize {
            let mut loaded = 0.0f32;
            if row < seq_q {
                loaded = f32::cast_from(
                    grad_output[grad_head + row * grad_output.stride(2) + (first_column + lane) * grad_output.stride(3)],
                );
            }
            quad[lane] = loaded;
        }
        grads[element] = quad;
        element += config.block_rows;
    }
    let mut element = unit;
    while element < comptime!(config.query_tile * 2) {
        let row = first_row + element / 2;
        let mut loaded = 0.0f32;
        if row < seq_q {
            loaded = row_stats[(batch_head * seq_q + row) * 2 + element % 2];
        }
        stats[element] = loaded;
        element += config.block_rows;
    }
}

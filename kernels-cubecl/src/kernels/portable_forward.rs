//! The fused forward pass in plain f32 arithmetic: every CubeCL runtime runs it (lavapipe
//! included), and devices without `mma` take it for every dtype.
//!
//! One cube per (query block, batch * head), one unit per query row of the block:
//!
//! 1. each unit loads its row of the query operand (Q, or Q' from the grouping pre-pass),
//!    times the scale, once;
//! 2. for each tile of `key_tile` keys the cube loads the K tile fused into K' (the sum of
//!    each group's first `key_members` columns, named by the pre-pass's column table: the
//!    whole group, or its first member alone) and the V tile into shared
//!    memory; each unit scores its row against the tile, updates its running maximum and sum
//!    (online softmax) and accumulates `P V` in registers;
//! 3. each unit writes its normalised output row.
//!
//! Shared tiles are f32, read as 4-wide vectors (one 16-byte broadcast load feeds four FMAs).

use cubecl::prelude::*;

use crate::config::PortableConfig;
use crate::key_tiles::{is_visible, load_column_table, load_fused_keys, load_scaled_row, row_dot};

#[cube(launch_unchecked)]
pub(crate) fn portable_forward<F: Float>(
    query: &Tensor<F>,
    key: &Tensor<F>,
    value: &Tensor<F>,
    key_columns: &Array<u32>,
    output: &mut Tensor<F>,
    scale: f32,
    #[comptime] config: PortableConfig,
    #[define(F)] _dtype: StorageType,
) {
    let value_dim = config.value_dim;
    let block_rows = config.block_rows;
    let key_tile = config.key_tile;
    let width = config.reduced_width;
    let reduced_quads = comptime!(config.reduced_width / 4);
    let value_quads = comptime!(config.value_dim / 4);

    let heads = output.shape(1);
    let seq_q = output.shape(2);
    let seq_k = key.shape(2);
    let queries_per_kv_head = heads / key.shape(1);
    let batch_head = CUBE_POS_Y as usize;
    let batch = batch_head / heads;
    let head = batch_head % heads;
    let kv_head = head / queries_per_kv_head;
    let unit = UNIT_POS as usize;
    // Causal blocks see more keys the later they sit: launch the longest first.
    let mut block = CUBE_POS_X as usize;
    if comptime!(config.causal) {
        block = CUBE_COUNT_X as usize - 1 - block;
    }
    let block_first_row = block * block_rows;
    let row = block_first_row + unit;
    let row_valid = row < seq_q;

    let key_head = batch * key.stride(0) + kv_head * key.stride(1);
    let value_head = batch * value.stride(0) + kv_head * value.stride(1);

    // G > 1: the block's column table, from the pre-pass.
    let mut columns = SharedMemory::<u32>::new(comptime!(config.reduced_width * config.group_size));
    let tile = config.fused_key_tile();
    load_column_table(key_columns, &mut columns, batch_head * CUBE_COUNT_X as usize + block, unit, tile);
    let mut reduced_query = Array::<f32>::new(width);
    load_scaled_row::<F>(query, &mut reduced_query, batch, head, row, row_valid, scale, tile);

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
    sync_cube();

    let mut tile_start = 0usize;
    while tile_start < keys_end {
        // Step 6 on the tile: K' (group sums through the column table) and V, as f32.
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
                let dot = row_dot(&reduced_query, &fused_keys, key_index, reduced_quads, config.unroll);
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

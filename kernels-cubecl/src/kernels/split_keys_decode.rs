//! Decode against a long cache (flash-decoding): the keys are split across cubes, each cube
//! scores every query row of one key head against its share of the keys, and
//! [`crate::kernels::combine_splits`] merges the partial softmaxes.
//!
//! A decode step has one query row (at most [`crate::config::DECODE_QUERY_ROWS`]); the forward
//! kernels give each (batch, head) one cube for all its keys, so at 8192 keys a few dozen cubes
//! walk the cache while the rest of the device idles. Here the grid is
//! `(splits, batch * kv_heads)`, with enough splits to fill the device.
//!
//! One cube holds the rows of every query head sharing its key head (grouped-query attention),
//! so each K and V tile is read from memory once for all of them. Per tile of `key_tile` keys:
//!
//! 1. the cube loads the K tile as it is (plus a zero column at `head_dim`, where the padding
//!    groups of the column table point) and the V tile, as f32;
//! 2. every unit scores (row, key) pairs: exact rows against K, grouped rows (`G > 1`, Q' from
//!    the pre-pass) against K' formed on the fly through their own head's column table, since
//!    the heads of one key head group their columns differently;
//! 3. unit `r` moves row `r`'s running maximum over the tile, the units turn scores into
//!    weights, and each unit folds its output elements' `P V` into registers.
//!
//! The cube writes each row's unnormalised output, maximum and sum; nothing is normalised here.

use cubecl::prelude::*;

use crate::config::{DecodeConfig, DECODE_UNITS, MAX_FLOOR};

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn split_keys_decode<F: Float>(
    query: &Tensor<F>,
    key: &Tensor<F>,
    value: &Tensor<F>,
    key_columns: &Array<u32>,
    partial_output: &mut Array<f32>,
    partial_stats: &mut Array<f32>,
    seq_q: u32,
    keys_per_split: u32,
    scale: f32,
    #[comptime] config: DecodeConfig,
    #[define(F)] _dtype: StorageType,
) {
    let width = config.reduced_width;
    let head_dim = config.head_dim;
    let value_dim = config.value_dim;
    let group_size = config.group_size;
    let key_tile = config.key_tile;
    let groups = comptime!(config.head_dim / config.group_size);
    let key_stride = comptime!(config.key_stride());
    let table_len = comptime!(config.reduced_width * config.group_size);
    let accumulators = comptime!(config.accumulators_per_unit());

    let seq_q = seq_q as usize;
    let heads = query.shape(1);
    let kv_heads = key.shape(1);
    let heads_per_kv = heads / kv_heads;
    let rows = heads_per_kv * seq_q;
    let seq_k = key.shape(2);
    let batch_kv_head = CUBE_POS_Y as usize;
    let batch = batch_kv_head / kv_heads;
    let kv_head = batch_kv_head % kv_heads;
    let first_head = kv_head * heads_per_kv;
    let split = CUBE_POS_X as usize;
    let unit = UNIT_POS as usize;
    let keys_start = split * keys_per_split as usize;
    let keys_end = min(seq_k, keys_start + keys_per_split as usize);

    // Row `r` is query row `r % seq_q` of head `first_head + r / seq_q`.
    let mut queries = SharedMemory::<f32>::new(comptime!(config.rows * config.reduced_width));
    let mut element = unit;
    while element < rows * width {
        let row = element / width;
        let head = first_head + row / seq_q;
        let source = batch * query.stride(0)
            + head * query.stride(1)
            + (row % seq_q) * query.stride(2)
            + (element % width) * query.stride(3);
        queries[element] = f32::cast_from(query[source]) * scale;
        element += DECODE_UNITS;
    }
    // G > 1: each head's column table (the pre-pass ran one block per head).
    let mut tables = SharedMemory::<u32>::new(comptime!(config.table_entries()));
    if comptime!(config.group_size > 1) {
        let mut entry = unit;
        while entry < heads_per_kv * table_len {
            tables[entry] = key_columns[(batch * heads + first_head) * table_len + entry];
            entry += DECODE_UNITS;
        }
    }

    let mut keys = SharedMemory::<f32>::new(comptime!(config.key_tile * config.key_stride()));
    let mut values = SharedMemory::<f32>::new(comptime!(config.key_tile * config.value_dim));
    let mut scores = SharedMemory::<f32>::new(comptime!(config.rows * config.key_tile));
    let mut maxima = SharedMemory::<f32>::new(config.rows);
    let mut corrections = SharedMemory::<f32>::new(config.rows);
    let mut output = Array::<f32>::new(accumulators);
    #[unroll]
    for slot in 0..accumulators {
        output[slot] = 0.0;
    }
    // Unit `r < rows` keeps row `r`'s softmax state.
    let mut running_max = f32::new(MAX_FLOOR);
    let mut running_sum = 0.0f32;
    let key_head = batch * key.stride(0) + kv_head * key.stride(1);
    let value_head = batch * value.stride(0) + kv_head * value.stride(1);

    let mut tile_start = keys_start;
    while tile_start < keys_end {
        let mut element = unit;
        while element < comptime!(config.key_tile * config.key_stride()) {
            let key_row = tile_start + element / key_stride;
            let column = element % key_stride;
            let mut loaded = 0.0f32;
            if key_row < keys_end && column < head_dim {
                loaded = f32::cast_from(key[key_head + key_row * key.stride(2) + column * key.stride(3)]);
            }
            keys[element] = loaded;
            element += DECODE_UNITS;
        }
        let mut element = unit;
        while element < comptime!(config.key_tile * config.value_dim) {
            let key_row = tile_start + element / value_dim;
            let mut loaded = 0.0f32;
            if key_row < keys_end {
                loaded = f32::cast_from(
                    value[value_head + key_row * value.stride(2) + (element % value_dim) * value.stride(3)],
                );
            }
            values[element] = loaded;
            element += DECODE_UNITS;
        }
        sync_cube();

        let mut pair = unit;
        while pair < rows * key_tile {
            let row = pair / key_tile;
            let key_index = pair % key_tile;
            let mut dot = 0.0f32;
            if is_visible(tile_start + key_index, keys_end, row % seq_q, seq_q, seq_k, config.causal) {
                let query_row = row * width;
                let key_row = key_index * key_stride;
                if comptime!(config.group_size == 1) {
                    #[unroll(config.unroll)]
                    for column in 0..head_dim {
                        dot += queries[query_row + column] * keys[key_row + column];
                    }
                } else {
                    let table = (row / seq_q) * table_len;
                    #[unroll(config.unroll)]
                    for group in 0..groups {
                        let mut fused = 0.0f32;
                        #[unroll(config.unroll)]
                        for member in 0..config.key_members {
                            fused += keys[key_row + tables[table + group * group_size + member] as usize];
                        }
                        dot += queries[query_row + group] * fused;
                    }
                }
            }
            scores[pair] = dot;
            pair += DECODE_UNITS;
        }
        sync_cube();

        // A NaN score never moves the maximum; its weight below is NaN, and so is its row.
        if unit < rows {
            let mut tile_max = running_max;
            for key_index in 0..key_tile {
                let score = scores[unit * key_tile + key_index];
                if is_visible(tile_start + key_index, keys_end, unit % seq_q, seq_q, seq_k, config.causal) && score > tile_max {
                    tile_max = score;
                }
            }
            corrections[unit] = Exp::exp(running_max - tile_max);
            maxima[unit] = tile_max;
            running_max = tile_max;
        }
        sync_cube();

        let mut pair = unit;
        while pair < rows * key_tile {
            let row = pair / key_tile;
            let mut weight = 0.0f32;
            if is_visible(tile_start + pair % key_tile, keys_end, row % seq_q, seq_q, seq_k, config.causal) {
                weight = Exp::exp(scores[pair] - maxima[row]);
            }
            scores[pair] = weight;
            pair += DECODE_UNITS;
        }
        sync_cube();

        if unit < rows {
            let mut tile_sum = 0.0f32;
            for key_index in 0..key_tile {
                tile_sum += scores[unit * key_tile + key_index];
            }
            running_sum = running_sum * corrections[unit] + tile_sum;
        }
        #[unroll]
        for slot in 0..accumulators {
            let element = unit + slot * DECODE_UNITS;
            if element < rows * value_dim {
                let row = element / value_dim;
                let column = element % value_dim;
                let mut accumulated = output[slot] * corrections[row];
                for key_index in 0..key_tile {
                    accumulated += scores[row * key_tile + key_index] * values[key_index * value_dim + column];
                }
                output[slot] = accumulated;
            }
        }
        sync_cube();
        tile_start += key_tile;
    }

    // Layout: `[splits, batch * kv_heads, config.rows, value_dim]` and `[.., config.rows, 2]`.
    let slot_base = split * CUBE_COUNT_Y as usize + batch_kv_head;
    if unit < rows {
        let stats = (slot_base * config.rows + unit) * 2;
        partial_stats[stats] = running_max;
        partial_stats[stats + 1] = running_sum;
    }
    #[unroll]
    for slot in 0..accumulators {
        let element = unit + slot * DECODE_UNITS;
        if element < rows * value_dim {
            partial_output[slot_base * comptime!(config.rows * config.value_dim) + element] = output[slot];
        }
    }
}

/// Whether key `key_position` is in this split and, when causal, not after query row
/// `query_row` (which sits at position `query_row + seq_k - seq_q`).
#[cube]
fn is_visible(
    key_position: usize,
    keys_end: usize,
    query_row: usize,
    seq_q: usize,
    seq_k: usize,
    #[comptime] causal: bool,
) -> bool {
    let mut visible = key_position < keys_end;
    if comptime!(causal) {
        visible = visible && key_position + seq_q <= query_row + seq_k;
    }
    visible
}

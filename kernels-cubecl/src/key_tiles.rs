//! The portable kernels' f32 key tiles: a block's column table and a unit's query row staged,
//! K' formed through the table into shared memory, the score of a row held in registers against
//! one key of the tile, and causal visibility. The portable forward and the query side of the
//! backward share them.

use cubecl::prelude::*;

use crate::config::FusedKeyTile;

/// The column table of block `table_index` (`batch_head * blocks + block`) into shared memory,
/// for `G > 1`; exact attention reads no table.
#[cube]
pub fn load_column_table(
    key_columns: &Array<u32>,
    columns: &mut SharedMemory<u32>,
    table_index: usize,
    unit: usize,
    #[comptime] config: FusedKeyTile,
) {
    if comptime!(config.group_size > 1) {
        let entries = comptime!(config.reduced_width * config.group_size);
        let mut entry = unit;
        while entry < entries {
            columns[entry] = key_columns[table_index * entries + entry];
            entry += config.units;
        }
    }
}

/// Row `row` of the query operand (Q, or Q' from the pre-pass) of (`batch`, `head`), times
/// `scale`, as f32 into `reduced_query` (`reduced_width` entries; zero for an invalid row).
#[cube]
#[allow(clippy::too_many_arguments)]
pub fn load_scaled_row<F: Float>(
    query: &Tensor<F>,
    reduced_query: &mut Array<f32>,
    batch: usize,
    head: usize,
    row: usize,
    row_valid: bool,
    scale: f32,
    #[comptime] config: FusedKeyTile,
) {
    let query_row = batch * query.stride(0) + head * query.stride(1) + row * query.stride(2);
    #[unroll(config.unroll)]
    for group in 0..config.reduced_width {
        let mut element = 0.0f32;
        if row_valid {
            element = f32::cast_from(query[query_row + group * query.stride(3)]);
        }
        reduced_query[group] = element * scale;
    }
}

/// A tile of K' into shared memory as f32 quads: the sum of each group's first `key_members`
/// columns named by the block's column table (K itself for exact attention), zero past `seq_k`
/// and in the padding groups.
#[cube]
#[allow(clippy::too_many_arguments)]
pub fn load_fused_keys<F: Float>(
    key: &Tensor<F>,
    columns: &SharedMemory<u32>,
    fused_keys: &mut SharedMemory<Vector<f32, Const<4>>>,
    key_head: usize,
    tile_start: usize,
    seq_k: usize,
    unit: usize,
    #[comptime] config: FusedKeyTile,
) {
    let reduced_quads = comptime!(config.reduced_width / 4);
    let groups = comptime!(config.head_dim / config.group_size);
    let mut element = unit;
    while element < comptime!(config.key_tile * reduced_quads) {
        let key_row = tile_start + element / reduced_quads;
        let first_group = (element % reduced_quads) * 4;
        let mut quad = Vector::<f32, Const<4>>::empty();
        #[unroll]
        for lane in 0..4usize {
            let group = first_group + lane;
            let mut fused = 0.0f32;
            if key_row < seq_k && group < groups {
                let key_base = key_head + key_row * key.stride(2);
                if comptime!(config.group_size == 1) {
                    fused = f32::cast_from(key[key_base + group * key.stride(3)]);
                } else {
                    #[unroll(config.unroll)]
                    for member in 0..config.key_members {
                        let column = columns[group * config.group_size + member] as usize;
                        fused += f32::cast_from(key[key_base + column * key.stride(3)]);
                    }
                }
            }
            quad[lane] = fused;
        }
        fused_keys[element] = quad;
        element += config.units;
    }
}

/// `q' . k'` for the scaled query row in registers and key `key_index` of the shared tile.
#[cube]
pub fn row_dot(
    reduced_query: &Array<f32>,
    fused_keys: &SharedMemory<Vector<f32, Const<4>>>,
    key_index: usize,
    #[comptime] reduced_quads: usize,
    #[comptime] unroll: bool,
) -> f32 {
    let mut dot = 0.0f32;
    #[unroll(unroll)]
    for quad_index in 0..reduced_quads {
        let quad = fused_keys[key_index * reduced_quads + quad_index];
        let first = quad_index * 4;
        dot += reduced_query[first] * quad[0]
            + reduced_query[first + 1] * quad[1]
            + reduced_query[first + 2] * quad[2]
            + reduced_query[first + 3] * quad[3];
    }
    dot
}

/// Whether key `key_position` exists and, when causal, is not after the query.
#[cube]
pub fn is_visible(key_position: usize, seq_k: usize, query_position: usize, #[comptime] causal: bool) -> bool {
    let mut visible = key_position < seq_k;
    if comptime!(causal) {
        visible = visible && key_position <= query_position;
    }
    visible
}

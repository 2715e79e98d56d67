//! K transposed for the grouped tensor-core path: `[batch, kv_heads, head_dim, keys]` with the
//! keys zero-padded to whole 16-byte chunks.
//!
//! Forming K' means summing whole K columns. In this layout a column is a row of contiguous
//! keys, so the forward kernel sums 16-byte chunks of rows in shared memory (one vector load
//! per member per eight keys) instead of gathering scattered 2-byte elements, and K'^T feeds the
//! score product through `ldmatrix.trans` like V. The transpose reads and writes K once per
//! call.
//!
//! One cube per ([`TRANSPOSE_KEYS`] keys, batch * kv_head): the tile is read in 16-byte chunks
//! of key rows, turned in shared memory and written in 16-byte chunks of columns, so both sides
//! move whole chunks (the tensor-core path's layout rules guarantee aligned, contiguous rows).

use cubecl::prelude::*;

use crate::config::CHUNK;

/// Keys per cube of [`transpose_keys`].
pub(crate) const TRANSPOSE_KEYS: usize = 64;
/// Units per cube of [`transpose_keys`].
pub(crate) const TRANSPOSE_UNITS: usize = 256;
/// Elements of padding after each key row of the shared tile: consecutive keys of one column
/// then start in different banks.
const ROW_PADDING: usize = 2;

#[cube(launch_unchecked)]
pub(crate) fn transpose_keys<F: Float, N8: Size>(
    key: &Tensor<Vector<F, N8>>,
    transposed: &mut Tensor<Vector<F, N8>>,
    #[comptime] head_dim: usize,
    #[define(F)] _dtype: StorageType,
) {
    let pitch = comptime!(head_dim + ROW_PADDING);
    let column_chunks = comptime!(head_dim / CHUNK);
    let key_chunks = comptime!(TRANSPOSE_KEYS / CHUNK);
    // 16-byte chunks in the tile, counted either way.
    let chunks = comptime!(TRANSPOSE_KEYS * head_dim / CHUNK);
    let kv_heads = key.shape(1);
    let seq_k = key.shape(2);
    let padded = transposed.shape(3);
    let batch_head = CUBE_POS_Y as usize;
    let batch = batch_head / kv_heads;
    let kv_head = batch_head % kv_heads;
    let first_key = CUBE_POS_X as usize * TRANSPOSE_KEYS;
    let mut tile = SharedMemory::<F>::new(comptime!(TRANSPOSE_KEYS * (head_dim + ROW_PADDING)));

    let source = batch * key.stride(0) + kv_head * key.stride(1);
    #[unroll]
    for step in 0..comptime!(chunks.div_ceil(TRANSPOSE_UNITS)) {
        let chunk = step * TRANSPOSE_UNITS + UNIT_POS as usize;
        if chunk < chunks {
            let row = chunk / column_chunks;
            let column_chunk = chunk % column_chunks;
            let mut values = Vector::<F, N8>::empty().fill(F::cast_from(0.0f32));
            if first_key + row < seq_k {
                values = key[(source + (first_key + row) * key.stride(2)) / CHUNK + column_chunk];
            }
            #[unroll]
            for lane in 0..CHUNK {
                tile[row * pitch + column_chunk * CHUNK + lane] = values[lane];
            }
        }
    }
    sync_cube();

    let target = batch * transposed.stride(0) + kv_head * transposed.stride(1);
    #[unroll]
    for step in 0..comptime!(chunks.div_ceil(TRANSPOSE_UNITS)) {
        let chunk = step * TRANSPOSE_UNITS + UNIT_POS as usize;
        let column = chunk / key_chunks;
        let key_chunk = chunk % key_chunks;
        if chunk < chunks && first_key + key_chunk * CHUNK < padded {
            let mut values = Vector::<F, N8>::empty();
            #[unroll]
            for lane in 0..CHUNK {
                values[lane] = tile[(key_chunk * CHUNK + lane) * pitch + column];
            }
            transposed[(target + column * transposed.stride(2) + first_key) / CHUNK + key_chunk] = values;
        }
    }
}

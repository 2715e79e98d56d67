//! K transposed for the grouped tensor-core path: `[batch, kv_heads, head_dim, keys]` with the
//! keys zero-padded to whole 16-byte chunks.
//!
//! Forming K' means summing whole K columns. In this layout a column is a row of contiguous
//! keys, so the forward kernel sums 16-byte chunks of rows in shared memory (one vector load
//! per member per eight keys) instead of gathering scattered 2-byte elements, and K'^T feeds the
//! score product through `ldmatrix.trans` like V. The transpose reads and writes K once per
//! call.
//!
//! One unit per (batch * kv_head, chunk of eight keys, column); consecutive units take
//! consecutive columns of one key, so a warp's reads are contiguous.

use cubecl::prelude::*;

use crate::config::CHUNK;

#[cube(launch_unchecked)]
pub(crate) fn transpose_keys<F: Float, N8: Size>(
    key: &Tensor<F>,
    transposed: &mut Tensor<Vector<F, N8>>,
    #[comptime] head_dim: usize,
    #[define(F)] _dtype: StorageType,
) {
    let kv_heads = key.shape(1);
    let seq_k = key.shape(2);
    let chunks = seq_k.div_ceil(CHUNK);
    let position = ABSOLUTE_POS as usize;
    if position < key.shape(0) * kv_heads * chunks * head_dim {
        let column = position % head_dim;
        let rest = position / head_dim;
        let chunk = rest % chunks;
        let batch_head = rest / chunks;
        let batch = batch_head / kv_heads;
        let kv_head = batch_head % kv_heads;
        let source = batch * key.stride(0) + kv_head * key.stride(1) + column * key.stride(3);
        let mut keys = Vector::<F, N8>::empty();
        #[unroll]
        for lane in 0..CHUNK {
            let row = chunk * CHUNK + lane;
            let mut element = F::cast_from(0.0f32);
            if row < seq_k {
                element = key[source + row * key.stride(2)];
            }
            keys[lane] = element;
        }
        let target = batch * transposed.stride(0) + kv_head * transposed.stride(1) + column * transposed.stride(2);
        transposed[target / CHUNK + chunk] = keys;
    }
}

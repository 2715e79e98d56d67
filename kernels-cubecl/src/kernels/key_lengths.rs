//! The squared length of every key column over the head's keys, `[batch * kv_heads, head_dim]`
//! f32: the weights of [`crate::config::Permutation::GramKeyWeighted`], where a query column's
//! error reaches the scores through its key column.
//!
//! One cube per (batch, key head): unit `(x, y)` sums the squares of column `x` over the rows
//! `y, y + ROW_LANES, ...` (consecutive units of a row read consecutive columns), then the
//! first row of units adds the lanes' sums in order.

use cubecl::prelude::*;

/// Row lanes per cube: units per column.
pub(crate) const ROW_LANES: usize = 4;

#[cube(launch_unchecked)]
pub(crate) fn key_lengths<F: Float>(key: &Tensor<F>, lengths: &mut Array<f32>, #[comptime] head_dim: usize, #[define(F)] _dtype: StorageType) {
    let kv_heads = key.shape(1);
    let seq_k = key.shape(2);
    let batch_head = CUBE_POS_X as usize;
    let base = (batch_head / kv_heads) * key.stride(0) + (batch_head % kv_heads) * key.stride(1);
    let column = UNIT_POS_X as usize;
    let lane = UNIT_POS_Y as usize;
    let mut sum = 0.0f32;
    let mut row = lane;
    while row < seq_k {
        let value = f32::cast_from(key[base + row * key.stride(2) + column * key.stride(3)]);
        sum += value * value;
        row += ROW_LANES;
    }
    let mut sums = SharedMemory::<f32>::new(comptime!(ROW_LANES * head_dim));
    sums[lane * head_dim + column] = sum;
    sync_cube();
    if lane == 0 {
        let mut total = 0.0f32;
        #[unroll]
        for other in 0..ROW_LANES {
            total += sums[other * head_dim + column];
        }
        lengths[batch_head * head_dim + column] = total;
    }
}

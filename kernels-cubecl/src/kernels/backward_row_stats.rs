//! The tensor-core backward's prologue and epilogue where the key side forms dQ
//! ([`QueryGradient::KeySide`](crate::config::QueryGradient::KeySide)): no query-side kernel
//! runs, so [`backward_row_stats`] writes what it would have left the key side (each query
//! row's log-sum-exp, here the forward's, and `delta = rowsum(dO * O)`) and zeroes the rows'
//! f32 dQ sums, which the key side's atomics then add to; [`write_query_gradient`] stores the
//! sums as dQ in the storage type.
//!
//! The sums are in the key side's fragment order, so that each warp's atomic add covers
//! contiguous memory: per (batch * head, tile of 16 query rows, 8 head-dim columns), 128 f32
//! as the `mma` accumulators hold them, rows `g` then `g + 8` (`g = lane / 4`), then lane,
//! then two adjacent columns. Rows are padded to whole tiles of 16.

use cubecl::prelude::*;

use crate::config::TensorCoreBackwardConfig;
use crate::mma_tiles::row_deltas;

/// One cube per (block of 16 x [`TensorCoreBackwardConfig::warps`] query rows, batch * head),
/// each warp taking 16 rows: `row_stats[2 r] = lse`, `row_stats[2 r + 1] = delta` (rows padded,
/// see [`RowStatPair`]), and the block's rows of `grad_query_sums` (fragment order, rows padded
/// to 16) zeroed.
#[cube(launch_unchecked)]
pub(crate) fn backward_row_stats<F: Float, N8: Size>(
    output: &Tensor<F>,
    grad_output: &Tensor<Vector<F, N8>>,
    saved_log_sums: &Tensor<f32>,
    row_stats: &mut Array<f32>,
    grad_query_sums: &mut Array<f32>,
    #[comptime] config: TensorCoreBackwardConfig,
    #[define(F)] _dtype: StorageType,
) {
    let heads = grad_output.shape(1);
    let seq_q = grad_output.shape(2);
    let batch_head = CUBE_POS_Y as usize;
    let lane = UNIT_POS_X as usize;
    let block_first_row = CUBE_POS_X as usize * config.block_rows();
    let warp_first_row = block_first_row + UNIT_POS_Y as usize * 16;

    let stat_rows = stat_rows(seq_q);
    let delta = row_deltas::<F, N8>(output, grad_output, batch_head / heads, batch_head % heads, warp_first_row, seq_q, lane, config);
    if lane % 4 == 0 {
        #[unroll]
        for half in 0..2usize {
            let row = warp_first_row + lane / 4 + half * 8;
            if row < stat_rows {
                let mut log_sum = 0.0f32;
                if row < seq_q {
                    log_sum = saved_log_sums[batch_head * seq_q + row];
                }
                let stats = (batch_head * stat_rows + row) * 2;
                row_stats[stats] = log_sum;
                row_stats[stats + 1] = delta[half];
            }
        }
    }

    let units = comptime!(config.units());
    let padded_rows = seq_q.div_ceil(16) * 16;
    let first = (batch_head * padded_rows + block_first_row) * config.head_dim;
    let count = min(padded_rows - block_first_row, config.block_rows()) * config.head_dim;
    for pass in 0..count.div_ceil(units) {
        let index = UNIT_POS as usize + pass * units;
        if index < count {
            grad_query_sums[first + index] = 0.0;
        }
    }
}

/// The statistics of two adjacent query rows, `[lse, delta]` of an even row then of the next:
/// the key side reads both rows a lane's accumulators hold in one 16-byte load, where it made
/// four 4-byte loads behind a bounds check each (by a reading of the code, 33.5 M of the 40 M
/// global loads Nsight Compute counted in one launch:
/// `benchmarks/results/2026-12-06-h100-backward-causal-ncu`). `row_stats` holds one per row
/// pair of each (batch, head), its rows padded with zeros to [`stat_rows`], which whole query
/// tiles fill: no read is checked, and the padding's probabilities are masked to zero, so
/// `0 * (dP - 0)` stays zero.
pub(crate) type RowStatPair = Vector<f32, Const<4>>;

/// Query rows of each (batch, head) in the row statistics: `seq_q` padded to
/// [`TensorCoreBackwardConfig::STAT_ROWS_PADDING`].
#[cube]
pub(crate) fn stat_rows(seq_q: usize) -> usize {
    seq_q.div_ceil(TensorCoreBackwardConfig::STAT_ROWS_PADDING) * TensorCoreBackwardConfig::STAT_ROWS_PADDING
}

/// The statistics of rows `block_first_row + 2 quad_lane` and the next, the rows of one n8
/// block of a query tile that a lane holds; `stats_base`: the (batch, head)'s first row.
#[cube]
pub(crate) fn row_stat_pair(row_stats: &Array<RowStatPair>, stats_base: usize, block_first_row: usize, quad_lane: usize) -> RowStatPair {
    row_stats[(stats_base + block_first_row) / 2 + quad_lane]
}

/// `grad_query = grad_query_sums` in the storage type, one unit per element of `grad_query`
/// (whose strides are free), read from its place in the fragment order.
#[cube(launch_unchecked)]
pub(crate) fn write_query_gradient<F: Float>(grad_query_sums: &Array<f32>, grad_query: &mut Tensor<F>, #[define(F)] _dtype: StorageType) {
    let head_dim = grad_query.shape(3);
    let seq_q = grad_query.shape(2);
    let heads = grad_query.shape(1);
    let index = ABSOLUTE_POS as usize;
    if index < grad_query.shape(0) * heads * seq_q * head_dim {
        let column = index % head_dim;
        let row = (index / head_dim) % seq_q;
        let batch_head = index / (head_dim * seq_q);
        let fragment = (batch_head * seq_q.div_ceil(16) + row / 16) * (head_dim / 8) + column / 8;
        let lane = (row % 8) * 4 + (column % 8) / 2;
        let source = fragment * 128 + ((row % 16) / 8) * 64 + lane * 2 + column % 2;
        let target = (batch_head / heads) * grad_query.stride(0)
            + (batch_head % heads) * grad_query.stride(1)
            + row * grad_query.stride(2)
            + column * grad_query.stride(3);
        grad_query[target] = F::cast_from(grad_query_sums[source]);
    }
}

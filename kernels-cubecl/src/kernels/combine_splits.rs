//! The second pass of split-key decode ([`crate::kernels::split_keys_decode`]): merges each
//! row's partial softmaxes into the output.
//!
//! One cube per (batch, kv head), one unit per output element (looping): with `m_s`, `l_s`,
//! `o_s` a split's maximum, sum and unnormalised output, the row's output is
//! `sum_s exp(m_s - M) o_s / sum_s exp(m_s - M) l_s` with `M = max_s m_s`. A row with no
//! visible key has a zero sum and gets a zero output, as in the forward kernels; a NaN in the
//! row's partials reaches its output.

use cubecl::prelude::*;

use crate::config::{DecodeConfig, DECODE_UNITS, MAX_FLOOR};

#[cube(launch_unchecked)]
pub(crate) fn combine_splits<F: Float>(
    partial_output: &Array<f32>,
    partial_stats: &Array<f32>,
    output: &mut Tensor<F>,
    kv_heads: u32,
    splits: u32,
    #[comptime] config: DecodeConfig,
    #[define(F)] _dtype: StorageType,
) {
    let value_dim = config.value_dim;
    let kv_heads = kv_heads as usize;
    let splits = splits as usize;
    let heads = output.shape(1);
    let seq_q = output.shape(2);
    let heads_per_kv = heads / kv_heads;
    let rows = heads_per_kv * seq_q;
    let batch_kv_head = CUBE_POS_X as usize;
    let batch_kv_heads = CUBE_COUNT_X as usize;
    let batch = batch_kv_head / kv_heads;
    let first_head = (batch_kv_head % kv_heads) * heads_per_kv;

    let mut element = UNIT_POS as usize;
    while element < rows * value_dim {
        let row = element / value_dim;
        let mut maximum = f32::new(MAX_FLOOR);
        for split in 0..splits {
            let split_max = partial_stats[((split * batch_kv_heads + batch_kv_head) * config.rows + row) * 2];
            if split_max > maximum {
                maximum = split_max;
            }
        }
        let mut sum = 0.0f32;
        let mut accumulated = 0.0f32;
        for split in 0..splits {
            let slot = split * batch_kv_heads + batch_kv_head;
            let stats = (slot * config.rows + row) * 2;
            let weight = Exp::exp(partial_stats[stats] - maximum);
            sum += weight * partial_stats[stats + 1];
            accumulated += weight * partial_output[slot * comptime!(config.rows * config.value_dim) + element];
        }
        let mut inverse_sum = 0.0f32;
        if sum > 0.0 {
            inverse_sum = 1.0 / sum;
        }
        let target = batch * output.stride(0)
            + (first_head + row / seq_q) * output.stride(1)
            + (row % seq_q) * output.stride(2)
            + (element % value_dim) * output.stride(3);
        output[target] = F::cast_from(accumulated * inverse_sum);
        element += DECODE_UNITS;
    }
}

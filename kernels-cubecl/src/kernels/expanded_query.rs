//! A grouped call's backward as exact attention's: the expanded query and its gradient folded
//! back.
//!
//! The forward's scores `Q' K'^T` sum, for every group, the representative times the sum of
//! the key columns `K'` takes for it. Distributing the product gives `S = Q'' K^T`, where
//! column `c` of the expanded query `Q''` `[batch, heads, seq_q, head_dim]` holds the
//! representative of `c`'s group wherever `K'` takes key column `c` (every member for `Sample`
//! and `Mean`, the group's first for `SampledKeys`) and zero elsewhere. The gradients of a
//! grouped call with respect to K and V are therefore exact attention's on `(Q'', K, V)`, and
//! its query gradient is that of `Q''` folded back through the grouping (a constant of the
//! gradient, as in the reference):
//!
//! - `dQ'` of group `j` is the sum of `dQ''` over the columns `K'` takes for it;
//! - `dQ` is `dQ'` in the representative's column for `Sample` (zero in the others),
//!   `dQ' / G` in every member's for `Mean`, `dQ'` in every member's for `SampledKeys`
//!   (whose representative is the group's sum); zero in columns no group holds.
//!
//! So a grouped call trains on the exact tensor-core backward, at full width, for the cost of
//! the pre-pass again and these two passes over `[seq_q, head_dim]`.
//!
//! Both kernels: one cube per (query block, batch * head), [`EXPANSION_UNITS`] units walking
//! the block's elements row by row, consecutive units on consecutive columns; each column's
//! group and member come from the block's column table (written by
//! [`crate::kernels::group_queries`]), inverted in shared memory first.

use cubecl::prelude::*;

use crate::config::{ExpansionConfig, Representative};

/// Units per cube of both kernels.
pub(crate) const EXPANSION_UNITS: usize = 256;

/// `Q''` from Q' (`[batch, heads, blocks * block_rows, reduced_width]`) and the column table,
/// every element of `expanded`'s rows in the block written.
#[cube(launch_unchecked)]
pub(crate) fn expand_query<F: Float>(
    grouped: &Tensor<F>,
    key_columns: &Array<u32>,
    expanded: &mut Tensor<F>,
    #[comptime] config: ExpansionConfig,
    #[define(F)] _dtype: StorageType,
) {
    let head_dim = config.head_dim;
    let group_size = config.group_size;
    let key_members = comptime!(config.representative.key_members(config.group_size));
    let heads = expanded.shape(1);
    let (batch, head, first_row, valid_rows) = block_of(expanded.shape(2), heads, config.block_rows);
    let mut table = SharedMemory::<u32>::new(comptime!(config.table_entries()));
    let mut entries = SharedMemory::<u32>::new(head_dim);
    column_entries(key_columns, &mut table, &mut entries, config);

    let grouped_block = batch * grouped.stride(0) + head * grouped.stride(1) + first_row * grouped.stride(2);
    let expanded_block = batch * expanded.stride(0) + head * expanded.stride(1) + first_row * expanded.stride(2);
    let mut element = UNIT_POS as usize;
    while element < valid_rows * head_dim {
        let row = element / head_dim;
        let column = element % head_dim;
        let entry = entries[column] as usize;
        let mut value = F::new(0.0);
        if entry < comptime!(config.table_entries()) && entry % group_size < key_members {
            value = grouped[grouped_block + row * grouped.stride(2) + (entry / group_size) * grouped.stride(3)];
        }
        expanded[expanded_block + row * expanded.stride(2) + column * expanded.stride(3)] = value;
        element += EXPANSION_UNITS;
    }
}

/// dQ from dQ'' (both `[batch, heads, seq_q, head_dim]`), summed in f32, every element of
/// `grad_query`'s rows in the block written.
#[cube(launch_unchecked)]
pub(crate) fn fold_query_gradient<F: Float>(
    grad_expanded: &Tensor<F>,
    key_columns: &Array<u32>,
    grad_query: &mut Tensor<F>,
    #[comptime] config: ExpansionConfig,
    #[define(F)] _dtype: StorageType,
) {
    let head_dim = config.head_dim;
    let group_size = config.group_size;
    let key_members = comptime!(config.representative.key_members(config.group_size));
    let heads = grad_query.shape(1);
    let (batch, head, first_row, valid_rows) = block_of(grad_query.shape(2), heads, config.block_rows);
    let mut table = SharedMemory::<u32>::new(comptime!(config.table_entries()));
    let mut entries = SharedMemory::<u32>::new(head_dim);
    column_entries(key_columns, &mut table, &mut entries, config);

    let source_block = batch * grad_expanded.stride(0) + head * grad_expanded.stride(1) + first_row * grad_expanded.stride(2);
    let target_block = batch * grad_query.stride(0) + head * grad_query.stride(1) + first_row * grad_query.stride(2);
    let mut element = UNIT_POS as usize;
    while element < valid_rows * head_dim {
        let row = element / head_dim;
        let column = element % head_dim;
        let entry = entries[column] as usize;
        let mut value = 0.0f32;
        if entry < comptime!(config.table_entries()) {
            let first_member = entry - entry % group_size;
            let source_row = source_block + row * grad_expanded.stride(2);
            #[unroll]
            for member in 0..key_members {
                let source = table[first_member + member] as usize;
                value += f32::cast_from(grad_expanded[source_row + source * grad_expanded.stride(3)]);
            }
            match comptime!(config.representative) {
                Representative::Sample => {
                    if entry % group_size != 0 {
                        value = 0.0;
                    }
                }
                Representative::Mean => {
                    value /= f32::cast_from(group_size as u32);
                }
                Representative::SampledKeys => {}
            }
        }
        grad_query[target_block + row * grad_query.stride(2) + column * grad_query.stride(3)] = F::cast_from(value);
        element += EXPANSION_UNITS;
    }
}

/// The cube's (batch, head, first query row, rows of the block within `seq_q`).
#[cube]
fn block_of(seq_q: usize, heads: usize, #[comptime] block_rows: usize) -> (usize, usize, usize, usize) {
    let batch_head = CUBE_POS_Y as usize;
    let first_row = CUBE_POS_X as usize * block_rows;
    (batch_head / heads, batch_head % heads, first_row, min(seq_q - first_row, block_rows))
}

/// The block's column table staged in `table`, and its inverse in `entries`: for each of the
/// `head_dim` columns, the table entry (`group * G + member`) that names it, or
/// `table_entries` where no group holds the column. Ends with a barrier.
#[cube]
fn column_entries(
    key_columns: &Array<u32>,
    table: &mut SharedMemory<u32>,
    entries: &mut SharedMemory<u32>,
    #[comptime] config: ExpansionConfig,
) {
    let table_entries = comptime!(config.table_entries());
    let offset = (CUBE_POS_Y as usize * CUBE_COUNT_X as usize + CUBE_POS_X as usize) * table_entries;
    let mut column = UNIT_POS as usize;
    while column < config.head_dim {
        entries[column] = comptime!(config.table_entries() as u32).runtime();
        column += EXPANSION_UNITS;
    }
    sync_cube();
    let mut entry = UNIT_POS as usize;
    while entry < table_entries {
        let column = key_columns[offset + entry];
        table[entry] = column;
        // The padding groups name `head_dim`, a column no row has.
        if (column as usize) < config.head_dim {
            entries[column as usize] = entry as u32;
        }
        entry += EXPANSION_UNITS;
    }
    sync_cube();
}

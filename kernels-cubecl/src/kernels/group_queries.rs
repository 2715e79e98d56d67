//! The grouping pre-pass: steps 2-5 of the definition for every query block, once per call,
//! before the forward kernel.
//!
//! One cube per (query block, batch * head), one unit per query row:
//!
//! 1. hash the block's columns and sort them ([`crate::block_permutation`]), or group them by
//!    their distances ([`crate::gram_grouping`]; weighted by `key_lengths`, the squared key
//!    column lengths of [`crate::kernels::key_lengths`], `[batch * kv_heads, head_dim]`, for
//!    [`Permutation::GramKeyWeighted`]; one unread entry otherwise);
//! 2. write the block's rows of Q' (`[batch, heads, blocks * block_rows, reduced_width]`, zero
//!    in the padding columns and in rows past `seq_q`), its rows staged in shared memory again
//!    a chunk at a time, consecutive units writing consecutive columns;
//! 3. write the block's column table (`reduced_width * group_size` entries per block in
//!    `[batch * heads, blocks]` order): entry `j * G + m` is the K column of member `m` of
//!    group `j` (the sorted position [`crate::config::GroupLayout`] names), or `head_dim` for
//!    the padding groups, which the forward kernels read as zero.
//!
//! Moving this out of the forward kernels leaves their key loop free of the hashing prologue
//! and its barriers, and lets them load Q' like any query: whole rows, 16 bytes at a time.

use cubecl::prelude::*;

use crate::block_permutation::{column_sort_values, permuted_column, rank_sort, stage_rows, PLANES_PER_UNIT, STAGED_ROWS};
use crate::config::{GroupingConfig, Permutation};
use crate::gram_grouping::{column_distances, greedy_groups, improve_groups, matched_pairs, weigh_by_key_lengths, write_order};
use crate::grouped_query::{grouped_query, member_position};

#[cube(launch_unchecked)]
pub(crate) fn group_queries<F: Float, N4: Size>(
    query: &Tensor<F>,
    hyperplanes: &Array<f32>,
    key_lengths: &Array<f32>,
    grouped: &mut Tensor<F>,
    key_columns: &mut Array<u32>,
    #[comptime] config: GroupingConfig,
    #[define(F)] _dtype: StorageType,
) {
    let head_dim = config.head_dim;
    let group_size = config.group_size;
    let block_rows = config.block_rows;
    let units = comptime!(config.units());
    let width = comptime!(config.reduced_width());
    let groups = comptime!(config.head_dim / config.group_size);

    let heads = query.shape(1);
    let seq_q = query.shape(2);
    let batch_head = CUBE_POS_Y as usize;
    let batch = batch_head / heads;
    let head = batch_head % heads;
    let block = CUBE_POS_X as usize;
    let block_first_row = block * block_rows;
    let valid_rows = min(seq_q - block_first_row, block_rows);
    let query_block = batch * query.stride(0) + head * query.stride(1) + block_first_row * query.stride(2);

    let mut staged = SharedMemory::<f32>::new(comptime!(config.staged_floats()));
    let mut order = SharedMemory::<u32>::new(head_dim);
    match comptime!(config.permutation) {
        Permutation::Gram | Permutation::GramKeyWeighted => {
            let mut members = SharedMemory::<u32>::new(head_dim);
            let mut free = SharedMemory::<u32>::new(head_dim);
            let mut nearest = SharedMemory::<u32>::new(head_dim);
            let mut open = SharedMemory::<u32>::new(1usize);
            let mut costs = SharedMemory::<f32>::new(units);
            let mut indices = SharedMemory::<u32>::new(units);
            column_distances::<F>(query, &mut staged, query_block, valid_rows, head_dim, block_rows, units, config.unroll);
            if comptime!(config.permutation == Permutation::GramKeyWeighted) {
                // Query head `head` reads key head `head / (heads / kv_heads)`.
                let kv_heads = key_lengths.len() / (query.shape(0) * head_dim);
                let kv_head = batch * kv_heads + head / (heads / kv_heads);
                weigh_by_key_lengths(&mut staged, key_lengths, kv_head * head_dim, head_dim, units);
            }
            if comptime!(group_size == 2) {
                matched_pairs(&staged, &mut members, &mut free, &mut nearest, &mut open, head_dim, units);
            } else {
                greedy_groups(&staged, &mut members, &mut free, &mut costs, &mut indices, head_dim, group_size, units);
            }
            improve_groups(&staged, &mut members, &mut costs, &mut indices, head_dim, group_size, units);
            write_order(&mut members, &mut order, head_dim, group_size, units);
        }
        Permutation::Identity => {
            let mut column = UNIT_POS as usize;
            while column < head_dim {
                order[column] = column as u32;
                column += units;
            }
            sync_cube();
        }
        _ => {
            let mut planes = SharedMemory::<Vector<f32, N4>>::new(comptime!(
                STAGED_ROWS * config.num_projections.div_ceil(PLANES_PER_UNIT)
            ));
            let mut signs =
                SharedMemory::<u32>::new(comptime!(config.num_projections.div_ceil(PLANES_PER_UNIT) * config.head_dim));
            let mut values = SharedMemory::<u32>::new(head_dim);
            column_sort_values::<F, N4>(
                query,
                hyperplanes,
                &mut staged,
                &mut planes,
                &mut signs,
                &mut values,
                query_block,
                valid_rows,
                head_dim,
                block_rows,
                config.num_projections,
                units,
                config.unroll,
            );
            if comptime!(config.permutation == Permutation::Lsh) {
                rank_sort(&values, &mut order, head_dim, units);
            } else {
                // Unsorted, the packed values still carry each column's own index in their
                // low bits: the identity permutation, at the cost of the hashing.
                let mut column = UNIT_POS as usize;
                while column < head_dim {
                    order[column] = values[column];
                    column += units;
                }
                sync_cube();
            }
        }
    }

    let grouped_block = batch * grouped.stride(0) + head * grouped.stride(1) + block_first_row * grouped.stride(2);
    for chunk in 0..comptime!(config.block_rows / STAGED_ROWS) {
        let first_row = chunk * STAGED_ROWS;
        stage_rows::<F>(query, &mut staged, query_block, first_row, valid_rows, head_dim, units, config.unroll);
        sync_cube();
        #[unroll(config.unroll)]
        for step in 0..comptime!(STAGED_ROWS * width / units) {
            let element = step * units + UNIT_POS as usize;
            let row = element / width;
            let group = element % width;
            let mut representative = 0.0f32;
            if group < groups {
                representative = grouped_query(
                    &staged,
                    &order,
                    row,
                    group,
                    head_dim,
                    group_size,
                    groups,
                    config.representative,
                    config.layout,
                    config.unroll,
                );
            }
            grouped[grouped_block + (first_row + row) * grouped.stride(2) + group * grouped.stride(3)] =
                F::cast_from(representative);
        }
        sync_cube();
    }

    let table = (batch_head * CUBE_COUNT_X as usize + block) * comptime!(width * config.group_size);
    let mut entry = UNIT_POS as usize;
    while entry < comptime!(width * config.group_size) {
        let mut column = comptime!(config.head_dim as u32).runtime();
        if entry / group_size < groups {
            let position = member_position(entry / group_size, entry % group_size, group_size, groups, config.layout);
            column = permuted_column(&order, position) as u32;
        }
        key_columns[table + entry] = column;
        entry += units;
    }
}

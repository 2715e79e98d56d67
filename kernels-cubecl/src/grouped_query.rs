//! Step 5 of the definition inside a kernel: one element of Q', formed from the query block's
//! column permutation ([`crate::block_permutation`]) and its rows staged in shared memory.

use cubecl::prelude::*;

use crate::block_permutation::permuted_column;
use crate::config::{GroupLayout, Representative};

/// Q' at (`row`, `group`) of a block staged in shared memory (`staged`, `[rows, head_dim]`,
/// f32, [`crate::block_permutation::stage_rows`]): the element of the group's first column in
/// the permutation `order` (`Sample`), the mean over its `group_size` columns (`Mean`) or their
/// sum (`SampledKeys`), the members at the sorted positions of `layout`. `unroll` unrolls the
/// loop over a group's columns.
#[cube]
#[allow(clippy::too_many_arguments)]
pub fn grouped_query(
    staged: &SharedMemory<f32>,
    order: &SharedMemory<u32>,
    row: usize,
    group: usize,
    #[comptime] head_dim: usize,
    #[comptime] group_size: usize,
    #[comptime] groups: usize,
    #[comptime] representative: Representative,
    #[comptime] layout: GroupLayout,
    #[comptime] unroll: bool,
) -> f32 {
    let row_base = row * head_dim;
    let mut value = 0.0f32;
    match comptime!(representative) {
        Representative::Sample => {
            value = staged[row_base + permuted_column(order, member_position(group, 0usize, group_size, groups, layout))];
        }
        Representative::Mean | Representative::SampledKeys => {
            #[unroll(unroll)]
            for member in 0..group_size {
                value += staged[row_base + permuted_column(order, member_position(group, member, group_size, groups, layout))];
            }
            if comptime!(representative == Representative::Mean) {
                value /= f32::cast_from(group_size as u32);
            }
        }
    }
    value
}

/// Sorted position of member `member` of group `group` in `layout`, for `groups = head_dim / G`.
#[cube]
pub fn member_position(
    group: usize,
    member: usize,
    #[comptime] group_size: usize,
    #[comptime] groups: usize,
    #[comptime] layout: GroupLayout,
) -> usize {
    match comptime!(layout) {
        GroupLayout::Consecutive => group * group_size + member,
        GroupLayout::Strided => group + member * groups,
    }
}

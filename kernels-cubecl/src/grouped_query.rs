//! Step 5 of the definition inside a kernel: one element of Q', formed from the query block's
//! column permutation ([`crate::block_permutation`]).

use cubecl::prelude::*;

use crate::block_permutation::permuted_column;
use crate::config::{GroupLayout, Representative};

/// Q' at (`query_row`, `group`), `query_row` an offset into `query`: for `group_size == 1` the
/// query element of column `group` itself; otherwise the element of the group's first column
/// in the permutation `order` (`Sample`), the mean over its `group_size` columns (`Mean`) or
/// their sum (`SampledKeys`), in f32, the members at the sorted positions of `layout`.
/// `unroll` unrolls the loop over a group's columns.
#[cube]
#[allow(clippy::too_many_arguments)]
pub fn grouped_query<F: Float>(
    query: &Tensor<F>,
    order: &SharedMemory<u32>,
    query_row: usize,
    group: usize,
    #[comptime] group_size: usize,
    #[comptime] groups: usize,
    #[comptime] representative: Representative,
    #[comptime] layout: GroupLayout,
    #[comptime] unroll: bool,
) -> f32 {
    let mut value = 0.0f32;
    if comptime!(group_size == 1) {
        value = f32::cast_from(query[query_row + group * query.stride(3)]);
    } else {
        match comptime!(representative) {
            Representative::Sample => {
                let column = permuted_column(order, member_position(group, 0usize, group_size, groups, layout));
                value = f32::cast_from(query[query_row + column * query.stride(3)]);
            }
            Representative::Mean | Representative::SampledKeys => {
                #[unroll(unroll)]
                for member in 0..group_size {
                    let column = permuted_column(order, member_position(group, member, group_size, groups, layout));
                    value += f32::cast_from(query[query_row + column * query.stride(3)]);
                }
                if comptime!(representative == Representative::Mean) {
                    value /= f32::cast_from(group_size as u32);
                }
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

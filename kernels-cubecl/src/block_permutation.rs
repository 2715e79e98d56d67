//! Steps 2-4 of the definition inside a cube: the LSH code of each column of the query block,
//! its inverse Gray code, and the sort of the columns by (key, column index).
//!
//! The sort is a bitonic network over `(key << COLUMN_BITS) | column` in shared memory: the
//! packed values are unique, so any correct sort gives the reference's permutation, and the
//! network needs no data-dependent control flow (one barrier per stage).

use cubecl::prelude::*;

/// Bits reserved for the column index in a packed sort value: head dims up to 256.
pub const COLUMN_BITS: u32 = 8;
/// Largest number of hyperplanes whose codes fit next to the column index in 32 bits.
pub const MAX_PROJECTIONS: usize = 24;

/// Hyperplanes one unit of [`column_sort_values_by_plane_group`] projects a column on.
pub const PLANES_PER_UNIT: usize = 4;
/// Query rows [`column_sort_values_by_plane_group`] loads at once.
const ROWS_PER_CHUNK: usize = 8;

/// The packed sort value of every column of the query block, in `order[0..head_dim]`, and
/// `u32::MAX` in the padding `order[head_dim..sort_size]`. The work is spread over (column,
/// group of [`PLANES_PER_UNIT`] hyperplanes) pairs, and each unit reads a query element once
/// for its planes' independent dot products, each summing the block's rows in order (rows past
/// `seq_q` are the zero padding), as the reference does, so the codes are bit-identical. `signs`
/// (`head_dim * num_projections.div_ceil(PLANES_PER_UNIT)`) holds each pair's bits until the
/// units of a column combine them. Synchronises the cube; every unit must call it.
#[cube]
pub fn column_sort_values_by_plane_group<F: Float>(
    query: &Tensor<F>,
    hyperplanes: &Array<f32>,
    signs: &mut SharedMemory<u32>,
    order: &mut SharedMemory<u32>,
    block_base: usize,
    block_first_row: usize,
    seq_q: usize,
    #[comptime] head_dim: usize,
    #[comptime] sort_size: usize,
    #[comptime] block_rows: usize,
    #[comptime] num_projections: usize,
    #[comptime] units: usize,
) {
    let plane_groups = comptime!(num_projections.div_ceil(PLANES_PER_UNIT));
    let row_stride = query.stride(2);
    let column_stride = query.stride(3);
    let valid_rows = min(seq_q - block_first_row, block_rows);
    let mut pair = UNIT_POS as usize;
    while pair < comptime!(head_dim * plane_groups) {
        let column = pair % head_dim;
        let first_plane = (pair / head_dim) * PLANES_PER_UNIT;
        let mut dots = Array::<f32>::new(PLANES_PER_UNIT);
        #[unroll]
        for lane in 0..PLANES_PER_UNIT {
            dots[lane] = 0.0;
        }
        // Rows in unrolled chunks, so that a chunk's loads are in flight together; rows past
        // `seq_q` are skipped, as in the reference's zero padding.
        for chunk in 0..comptime!(block_rows / ROWS_PER_CHUNK) {
            let first_row = chunk * ROWS_PER_CHUNK;
            if first_row < valid_rows {
                let mut xs = Array::<f32>::new(ROWS_PER_CHUNK);
                #[unroll]
                for offset in 0..ROWS_PER_CHUNK {
                    let row = min(first_row + offset, valid_rows - 1);
                    xs[offset] = f32::cast_from(query[block_base + row * row_stride + column * column_stride]);
                }
                #[unroll]
                for offset in 0..ROWS_PER_CHUNK {
                    if first_row + offset < valid_rows {
                        #[unroll]
                        for lane in 0..PLANES_PER_UNIT {
                            let plane = min(first_plane + lane, num_projections - 1);
                            dots[lane] += xs[offset] * hyperplanes[plane * block_rows + first_row + offset];
                        }
                    }
                }
            }
        }
        let mut bits = 0u32;
        #[unroll]
        for lane in 0..PLANES_PER_UNIT {
            if first_plane + lane < num_projections && dots[lane] > 0.0 {
                bits |= 1u32 << ((first_plane + lane) as u32);
            }
        }
        signs[pair] = bits;
        pair += units;
    }
    sync_cube();
    let mut column = UNIT_POS as usize;
    while column < sort_size {
        if column < head_dim {
            let mut code = 0u32;
            #[unroll]
            for group in 0..plane_groups {
                code |= signs[group * head_dim + column];
            }
            order[column] = (inverse_gray(code) << COLUMN_BITS) | (column as u32);
        } else {
            order[column] = u32::MAX;
        }
        column += units;
    }
    sync_cube();
}

/// `b = g ^ g>>1 ^ g>>2 ^ ...`: codes one hyperplane apart get neighbouring keys.
#[cube]
pub fn inverse_gray(code: u32) -> u32 {
    let mut key = code;
    key ^= key >> 1u32;
    key ^= key >> 2u32;
    key ^= key >> 4u32;
    key ^= key >> 8u32;
    key ^= key >> 16u32;
    key
}

/// Sorts `order[0..sort_size]` ascending (`sort_size` a power of two), all units of the cube
/// taking part; every unit must call it (it synchronises the cube).
#[cube]
pub fn bitonic_sort(
    order: &mut SharedMemory<u32>,
    #[comptime] sort_size: usize,
    #[comptime] units: usize,
) {
    let size = sort_size as u32;
    let mut span = 2u32;
    while span <= size {
        let mut distance = span / 2;
        while distance > 0 {
            let mut index = UNIT_POS;
            while index < size {
                let partner = index ^ distance;
                if partner > index {
                    let low = order[index as usize];
                    let high = order[partner as usize];
                    let ascending = (index & span) == 0;
                    let out_of_order = select(ascending, low > high, low < high);
                    if out_of_order {
                        order[index as usize] = high;
                        order[partner as usize] = low;
                    }
                }
                index += units as u32;
            }
            sync_cube();
            distance /= 2;
        }
        span *= 2;
    }
}

/// Column of the block's permutation at sorted position `position`.
#[cube]
pub fn permuted_column(order: &SharedMemory<u32>, position: usize) -> usize {
    (order[position] & ((1u32 << COLUMN_BITS) - 1)) as usize
}

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

/// Writes the packed sort value of every column of the query block into `order[0..head_dim]`
/// and `u32::MAX` into the padding `order[head_dim..sort_size]`.
///
/// Each unit hashes the columns `UNIT_POS, UNIT_POS + block_rows, ..`: the dot product of
/// the column (rows past `seq_q` are the zero padding) with each hyperplane, in f32.
#[cube]
pub fn column_sort_values<F: Float>(
    query: &Tensor<F>,
    hyperplanes: &Array<f32>,
    order: &mut SharedMemory<u32>,
    block_base: usize,
    block_first_row: usize,
    seq_q: usize,
    #[comptime] head_dim: usize,
    #[comptime] sort_size: usize,
    #[comptime] block_rows: usize,
    #[comptime] num_projections: usize,
) {
    let row_stride = query.stride(2);
    let column_stride = query.stride(3);
    let valid_rows = min(seq_q - block_first_row, block_rows);
    let mut column = UNIT_POS as usize;
    while column < sort_size {
        if column < head_dim {
            let mut code = 0u32;
            let mut bit = 1u32;
            for plane in 0..num_projections {
                let mut dot = 0.0f32;
                for row in 0..valid_rows {
                    let x = f32::cast_from(query[block_base + row * row_stride + column * column_stride]);
                    dot += x * hyperplanes[plane * block_rows + row];
                }
                if dot > 0.0 {
                    code += bit;
                }
                bit *= 2;
            }
            order[column] = (inverse_gray(code) << COLUMN_BITS) | (column as u32);
        } else {
            order[column] = u32::MAX;
        }
        column += block_rows;
    }
}

/// [`column_sort_values`] with the work spread over every (column, hyperplane) pair, for
/// cubes with more units than columns (the tensor-core path): each unit computes whole dot
/// products, in the same row order, so the codes are bit-identical; `signs`
/// (`num_projections * head_dim`) holds each pair's bit until the units of a column combine
/// them. Synchronises the cube; every unit must call it.
#[cube]
pub fn column_sort_values_by_pair<F: Float>(
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
    let row_stride = query.stride(2);
    let column_stride = query.stride(3);
    let valid_rows = min(seq_q - block_first_row, block_rows);
    let mut pair = UNIT_POS as usize;
    while pair < comptime!(head_dim * num_projections) {
        let column = pair % head_dim;
        let plane = pair / head_dim;
        let mut dot = 0.0f32;
        for row in 0..valid_rows {
            let x = f32::cast_from(query[block_base + row * row_stride + column * column_stride]);
            dot += x * hyperplanes[plane * block_rows + row];
        }
        let mut sign = 0u32;
        if dot > 0.0 {
            sign = 1u32 << (plane as u32);
        }
        signs[pair] = sign;
        pair += units;
    }
    sync_cube();
    let mut column = UNIT_POS as usize;
    while column < sort_size {
        if column < head_dim {
            let mut code = 0u32;
            for plane in 0..num_projections {
                code |= signs[plane * head_dim + column];
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

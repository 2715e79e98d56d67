//! Steps 2-4 of the definition inside a cube: the LSH code of each column of the query block,
//! its inverse Gray code, and the sort of the columns by (key, column index).
//!
//! The block is read in chunks of [`STAGED_ROWS`] rows staged in shared memory: every unit
//! issues its loads of a chunk together, so a block costs a few memory round trips instead of
//! one per row. The sort ranks the packed `(key << COLUMN_BITS) | column` values: they are
//! unique, so the rank of each is its sorted position and any correct sort gives the
//! reference's permutation.

use cubecl::prelude::*;

/// Bits reserved for the column index in a packed sort value: head dims up to 256.
pub const COLUMN_BITS: u32 = 8;
/// Largest number of hyperplanes whose codes fit next to the column index in 32 bits.
pub const MAX_PROJECTIONS: usize = 24;

/// Hyperplanes one unit of [`column_sort_values`] projects a column on.
pub const PLANES_PER_UNIT: usize = 4;
/// Query rows staged in shared memory at once ([`stage_rows`]): 16 KiB of f32 at head dim 128.
pub const STAGED_ROWS: usize = 32;

/// Rows `first_row .. first_row + STAGED_ROWS` of the query block at `block_base` into
/// `staged` (`[STAGED_ROWS, head_dim]`, f32), zero past `valid_rows`: consecutive units read
/// consecutive columns, and each unit's loads are independent of each other. The caller
/// synchronises the cube before reading `staged`.
#[cube]
pub fn stage_rows<F: Float>(
    query: &Tensor<F>,
    staged: &mut SharedMemory<f32>,
    block_base: usize,
    first_row: usize,
    valid_rows: usize,
    #[comptime] head_dim: usize,
    #[comptime] units: usize,
    #[comptime] unroll: bool,
) {
    #[unroll(unroll)]
    for step in 0..comptime!(STAGED_ROWS * head_dim / units) {
        let element = step * units + UNIT_POS as usize;
        let row = first_row + element / head_dim;
        let mut value = 0.0f32;
        if row < valid_rows {
            value = f32::cast_from(query[block_base + row * query.stride(2) + (element % head_dim) * query.stride(3)]);
        }
        staged[element] = value;
    }
}

/// The packed sort value of every column of the query block, in `values[0..head_dim]`. The
/// work is spread over (column, group of [`PLANES_PER_UNIT`] hyperplanes) pairs; each unit keeps
/// its pairs' dot products in registers while the block's rows pass through `staged` and the
/// hyperplanes' matching entries through `planes` (`[STAGED_ROWS, plane groups]`, one vector per
/// pair and row, so a row costs a unit two shared loads per pair), each summing the rows in
/// order (rows past `valid_rows` are the zero padding), as the reference does, so the codes are
/// bit-identical. `signs` (`head_dim * num_projections.div_ceil(PLANES_PER_UNIT)`) holds each
/// pair's bits until the units of a column combine them. Synchronises the cube; every unit must
/// call it.
#[cube]
#[allow(clippy::too_many_arguments)]
pub fn column_sort_values<F: Float, N4: Size>(
    query: &Tensor<F>,
    hyperplanes: &Array<f32>,
    staged: &mut SharedMemory<f32>,
    planes: &mut SharedMemory<Vector<f32, N4>>,
    signs: &mut SharedMemory<u32>,
    values: &mut SharedMemory<u32>,
    block_base: usize,
    valid_rows: usize,
    #[comptime] head_dim: usize,
    #[comptime] block_rows: usize,
    #[comptime] num_projections: usize,
    #[comptime] units: usize,
    #[comptime] unroll: bool,
) {
    let plane_groups = comptime!(num_projections.div_ceil(PLANES_PER_UNIT));
    let pairs = comptime!(head_dim * plane_groups);
    let pairs_per_unit = comptime!(pairs.div_ceil(units));
    // Each slot's column and plane group; a slot past the last pair computes on group 0 and is
    // dropped when the bits are written.
    let mut columns = Array::<usize>::new(pairs_per_unit);
    let mut groups = Array::<usize>::new(pairs_per_unit);
    let mut dots = Array::<f32>::new(comptime!(pairs_per_unit * PLANES_PER_UNIT));
    #[unroll]
    for slot in 0..pairs_per_unit {
        let pair = slot * units + UNIT_POS as usize;
        columns[slot] = pair % head_dim;
        groups[slot] = select(pair < pairs, pair / head_dim, 0);
        #[unroll]
        for lane in 0..PLANES_PER_UNIT {
            dots[slot * PLANES_PER_UNIT + lane] = 0.0;
        }
    }
    for chunk in 0..comptime!(block_rows / STAGED_ROWS) {
        let first_row = chunk * STAGED_ROWS;
        stage_rows::<F>(query, staged, block_base, first_row, valid_rows, head_dim, units, unroll);
        let mut entry = UNIT_POS as usize;
        while entry < comptime!(STAGED_ROWS * plane_groups) {
            let row = entry / plane_groups;
            let first_plane = (entry % plane_groups) * PLANES_PER_UNIT;
            let mut weights = Vector::<f32, N4>::empty();
            #[unroll]
            for lane in 0..PLANES_PER_UNIT {
                let plane = min(first_plane + lane, num_projections - 1);
                weights[lane] = hyperplanes[plane * block_rows + first_row + row];
            }
            planes[entry] = weights;
            entry += units;
        }
        sync_cube();
        #[unroll(unroll)]
        for row in 0..STAGED_ROWS {
            if first_row + row < valid_rows {
                #[unroll]
                for slot in 0..pairs_per_unit {
                    let x = staged[row * head_dim + columns[slot]];
                    let weights = planes[row * plane_groups + groups[slot]];
                    #[unroll]
                    for lane in 0..PLANES_PER_UNIT {
                        dots[slot * PLANES_PER_UNIT + lane] += x * weights[lane];
                    }
                }
            }
        }
        sync_cube();
    }
    #[unroll]
    for slot in 0..pairs_per_unit {
        let pair = slot * units + UNIT_POS as usize;
        if pair < pairs {
            let first_plane = groups[slot] * PLANES_PER_UNIT;
            let mut bits = 0u32;
            #[unroll]
            for lane in 0..PLANES_PER_UNIT {
                if first_plane + lane < num_projections && dots[slot * PLANES_PER_UNIT + lane] > 0.0 {
                    bits |= 1u32 << ((first_plane + lane) as u32);
                }
            }
            signs[pair] = bits;
        }
    }
    sync_cube();
    let mut column = UNIT_POS as usize;
    while column < head_dim {
        let mut code = 0u32;
        #[unroll]
        for group in 0..plane_groups {
            code |= signs[group * head_dim + column];
        }
        values[column] = (inverse_gray(code) << COLUMN_BITS) | (column as u32);
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

/// `values[0..len]` (distinct) sorted ascending into `order[0..len]`: each unit counts the
/// values below its own, which is that value's position. One pass and one barrier, where a
/// sorting network takes one barrier per stage. Every unit must call it.
#[cube]
pub fn rank_sort(values: &SharedMemory<u32>, order: &mut SharedMemory<u32>, #[comptime] len: usize, #[comptime] units: usize) {
    let mut index = UNIT_POS as usize;
    while index < len {
        let value = values[index];
        let mut rank = 0usize;
        for other in 0..len {
            if values[other] < value {
                rank += 1;
            }
        }
        order[rank] = value;
        index += units;
    }
    sync_cube();
}

/// Column of the block's permutation at sorted position `position`.
#[cube]
pub fn permuted_column(order: &SharedMemory<u32>, position: usize) -> usize {
    (order[position] & ((1u32 << COLUMN_BITS) - 1)) as usize
}

//! The Gram grouping inside a cube ([`crate::config::Permutation::Gram`]): groups of the query
//! block's columns chosen for the error their representative adds, as the reference's
//! `Grouping::Gram` with `Sample` or `Mean` chooses them.
//!
//! 1. [`column_distances`]: the squared distance `|q_a - q_b|^2` between every two columns of
//!    the block, summed over its rows directly (no `|q_a|^2 + |q_b|^2 - 2 q_a q_b`, whose
//!    cancellation would blur exactly the small distances that decide the pairs); each unit
//!    owns [`TILE`] x [`TILE`] tiles of the matrix, so a staged row costs it two loads per 16
//!    products;
//!    for [`crate::config::Permutation::GramKeyWeighted`], [`weigh_by_key_lengths`] then
//!    multiplies each by the mean squared length of the two columns' keys;
//! 2. [`greedy_groups`]: the cheapest free pair opens a group, the free column cheapest to join
//!    it fills it, until every column has a group; each choice is an arg-min over the cube. For
//!    pairs, [`matched_pairs`] reaches the same pairs in a few parallel rounds;
//! 3. [`improve_groups`]: the swap of two columns between two groups that lowers the total the
//!    most, while one does, at most [`MAX_SWAPS`] times;
//! 4. [`write_order`]: members sorted within each group, groups by their first member, as the
//!    permutation the rest of the pre-pass reads.
//!
//! Ties go to the first candidate in the reference's scan order, so both make the same choices
//! wherever the distances are not within rounding of each other.

use cubecl::prelude::*;

use crate::block_permutation::{stage_rows, STAGED_ROWS};

/// Columns per side of a unit's tile of the distance matrix.
pub const TILE: usize = 4;
/// Improving swaps after the greedy start: the reference's `GRAM_MAX_SWAPS`.
pub const MAX_SWAPS: usize = 32;
/// Larger than any distance: "no candidate" in an arg-min.
const NONE_COST: f32 = 3.0e38;
const NONE_INDEX: u32 = 0xFFFF_FFFF;
/// What a NaN or infinite distance counts as, here and in the reference: a cost above every
/// finite one that still takes part in arg-mins, so that such columns still form groups, last
/// and in scan order.
pub const MAX_DISTANCE: f32 = 1.0e38;

/// f32 of shared scratch the grouping needs (the strict upper triangle of the distances); the
/// staged query rows share it, before and after.
pub fn scratch_floats(head_dim: usize) -> usize {
    head_dim * (head_dim - 1) / 2
}

/// Position of the distance between columns `a < b` in the strict upper triangle, row-major.
#[cube]
fn triangle_index(a: usize, b: usize, #[comptime] head_dim: usize) -> usize {
    a * head_dim - a * (a + 1) / 2 + b - a - 1
}

/// The distance between columns `a` and `b` (zero for a column and itself), NaN and infinity
/// read as [`MAX_DISTANCE`].
#[cube]
fn distance(distances: &SharedMemory<f32>, a: usize, b: usize, #[comptime] head_dim: usize) -> f32 {
    let mut value = 0.0f32;
    if a != b {
        let stored = distances[triangle_index(min(a, b), max(a, b), head_dim)];
        value = select(stored <= MAX_DISTANCE, stored, f32::new(MAX_DISTANCE));
    }
    value
}

/// The squared distances between the query block's columns into `scratch` (strict upper
/// triangle, [`triangle_index`]), summed over rows in order in f32. `scratch` also stages the
/// rows ([`stage_rows`]): it holds `max(STAGED_ROWS * head_dim, scratch_floats(head_dim))`.
/// Synchronises the cube; every unit must call it.
#[cube]
#[allow(clippy::too_many_arguments)]
pub fn column_distances<F: Float>(
    query: &Tensor<F>,
    scratch: &mut SharedMemory<f32>,
    block_base: usize,
    valid_rows: usize,
    #[comptime] head_dim: usize,
    #[comptime] block_rows: usize,
    #[comptime] units: usize,
    #[comptime] unroll: bool,
) {
    let tiles = comptime!(head_dim / TILE);
    let tile_pairs = comptime!(tiles * (tiles + 1) / 2);
    let slots = comptime!(tile_pairs.div_ceil(units));
    let products = comptime!(TILE * TILE);
    // Each slot's pair of column tiles (first <= second); a slot past the last pair works on
    // pair 0 and writes nothing.
    let mut firsts = Array::<usize>::new(slots);
    let mut seconds = Array::<usize>::new(slots);
    let mut sums = Array::<f32>::new(comptime!(slots * TILE * TILE));
    #[unroll]
    for slot in 0..slots {
        let mut rest = select(slot * units + (UNIT_POS as usize) < tile_pairs, slot * units + UNIT_POS as usize, 0);
        let mut first = 0usize;
        while rest >= tiles - first {
            rest -= tiles - first;
            first += 1;
        }
        firsts[slot] = first;
        seconds[slot] = first + rest;
        #[unroll]
        for product in 0..products {
            sums[slot * products + product] = 0.0;
        }
    }
    for chunk in 0..comptime!(block_rows / STAGED_ROWS) {
        stage_rows::<F>(query, scratch, block_base, chunk * STAGED_ROWS, valid_rows, head_dim, units, unroll);
        sync_cube();
        #[unroll(unroll)]
        for row in 0..STAGED_ROWS {
            let row_base = row * head_dim;
            #[unroll]
            for slot in 0..slots {
                let mut left = Array::<f32>::new(TILE);
                let mut right = Array::<f32>::new(TILE);
                #[unroll]
                for lane in 0..TILE {
                    left[lane] = scratch[row_base + firsts[slot] * TILE + lane];
                    right[lane] = scratch[row_base + seconds[slot] * TILE + lane];
                }
                #[unroll]
                for i in 0..TILE {
                    #[unroll]
                    for j in 0..TILE {
                        let difference = left[i] - right[j];
                        sums[slot * products + i * TILE + j] += difference * difference;
                    }
                }
            }
        }
        sync_cube();
    }
    #[unroll]
    for slot in 0..slots {
        if slot * units + (UNIT_POS as usize) < tile_pairs {
            #[unroll]
            for i in 0..TILE {
                #[unroll]
                for j in 0..TILE {
                    let a = firsts[slot] * TILE + i;
                    let b = seconds[slot] * TILE + j;
                    if a < b {
                        scratch[triangle_index(a, b, head_dim)] = sums[slot * products + i * TILE + j];
                    }
                }
            }
        }
    }
    sync_cube();
}

/// Each distance in `distances` times the mean of its two columns' squared key lengths
/// (`lengths[lengths_base + column]`), as the reference's `GramKeyWeighted` cost: unit `u`
/// weighs the rows `u, u + units, ...` of the triangle. Synchronises the cube; every unit must
/// call it.
#[cube]
pub fn weigh_by_key_lengths(
    distances: &mut SharedMemory<f32>,
    lengths: &Array<f32>,
    lengths_base: usize,
    #[comptime] head_dim: usize,
    #[comptime] units: usize,
) {
    let mut a = UNIT_POS as usize;
    while a < head_dim {
        let length = lengths[lengths_base + a];
        for b in a + 1..head_dim {
            let index = triangle_index(a, b, head_dim);
            distances[index] = distances[index] * ((length + lengths[lengths_base + b]) / 2.0);
        }
        a += units;
    }
    sync_cube();
}

/// Whether (`cost`, `index`) comes before (`best_cost`, `best_index`): lower cost, then the
/// earlier candidate in scan order.
#[cube]
fn precedes(cost: f32, index: u32, best_cost: f32, best_index: u32) -> bool {
    cost < best_cost || (cost == best_cost && index < best_index)
}

/// The arg-min of (`cost`, `index`) over the cube's units, lower index first among equal costs:
/// a tree over `costs` / `indices` (one entry per unit). Returns the winning index (or
/// `NONE_INDEX`), the same on every unit. Every unit must call it.
#[cube]
fn cube_arg_min(
    cost: f32,
    index: u32,
    costs: &mut SharedMemory<f32>,
    indices: &mut SharedMemory<u32>,
    #[comptime] units: usize,
) -> u32 {
    let unit = UNIT_POS as usize;
    costs[unit] = cost;
    indices[unit] = index;
    sync_cube();
    #[unroll]
    for level in 0..comptime!(units.trailing_zeros()) {
        let stride = comptime!(units >> (level + 1));
        if unit < stride {
            let other_cost = costs[unit + stride];
            let other_index = indices[unit + stride];
            if precedes(other_cost, other_index, costs[unit], indices[unit]) {
                costs[unit] = other_cost;
                indices[unit] = other_index;
            }
        }
        sync_cube();
    }
    let winner = indices[0];
    sync_cube();
    winner
}

/// Groups of `group_size` columns, greedily (the cheapest pair of free columns, then the free
/// column with the least total distance to the group's members, until it is full), into
/// `members` (`head_dim` entries, group-major, in the order chosen). `free` (`head_dim`) is
/// scratch; `costs` / `indices` (one per unit) the arg-min's. Every unit must call it.
#[cube]
#[allow(clippy::too_many_arguments)]
pub fn greedy_groups(
    distances: &SharedMemory<f32>,
    members: &mut SharedMemory<u32>,
    free: &mut SharedMemory<u32>,
    costs: &mut SharedMemory<f32>,
    indices: &mut SharedMemory<u32>,
    #[comptime] head_dim: usize,
    #[comptime] group_size: usize,
    #[comptime] units: usize,
) {
    let mut column = UNIT_POS as usize;
    while column < head_dim {
        free[column] = 1;
        column += units;
    }
    sync_cube();
    for group in 0..comptime!(head_dim / group_size) {
        // Pairs in the reference's scan order: a, then b > a.
        let mut best_cost = f32::new(NONE_COST);
        let mut best_index = NONE_INDEX.runtime();
        let mut pair = UNIT_POS as usize;
        while pair < comptime!(head_dim * head_dim) {
            let a = pair / head_dim;
            let b = pair % head_dim;
            if a < b && free[a] == 1 && free[b] == 1 {
                let cost = distance(distances, a, b, head_dim);
                if cost < best_cost {
                    best_cost = cost;
                    best_index = pair as u32;
                }
            }
            pair += units;
        }
        let pair = cube_arg_min(best_cost, best_index, costs, indices, units);
        if UNIT_POS == 0 {
            let a = pair as usize / head_dim;
            let b = pair as usize % head_dim;
            members[group * group_size] = a as u32;
            members[group * group_size + 1] = b as u32;
            free[a] = 0;
            free[b] = 0;
        }
        sync_cube();
        for member in 2..group_size {
            let mut best_cost = f32::new(NONE_COST);
            let mut best_index = NONE_INDEX.runtime();
            let mut column = UNIT_POS as usize;
            while column < head_dim {
                if free[column] == 1 {
                    let mut joining = 0.0f32;
                    for other in 0..member {
                        joining += distance(distances, members[group * group_size + other] as usize, column, head_dim);
                    }
                    if joining < best_cost {
                        best_cost = joining;
                        best_index = column as u32;
                    }
                }
                column += units;
            }
            let column = cube_arg_min(best_cost, best_index, costs, indices, units);
            if UNIT_POS == 0 {
                members[group * group_size + member] = column;
                free[column as usize] = 0;
            }
            sync_cube();
        }
    }
}

/// Pairs (group size 2) into `members`, the same pairs in the same order as [`greedy_groups`]
/// chooses them, in rounds instead of `head_dim / 2` arg-mins over every pair. Candidates are
/// ordered by distance, then by the pair's scan position, so no two tie. Each round, every
/// free column finds its nearest free column, and columns that are each other's nearest pair
/// up at once. The greedy's next pair is always such a mutual pair, and a mutual pair stays
/// mutual while others pair off, so the rounds end with the greedy's pairs (the locally
/// dominant edges of a matching); every round pairs at least the cheapest free pair. The
/// pairs are then ranked by (distance, scan position): the order the greedy found them in,
/// which the swaps' tie order depends on. `mate` and `nearest` (`head_dim` each) and `open`
/// (one entry) are scratch. Every unit must call it.
#[cube]
#[allow(clippy::too_many_arguments)]
pub fn matched_pairs(
    distances: &SharedMemory<f32>,
    members: &mut SharedMemory<u32>,
    mate: &mut SharedMemory<u32>,
    nearest: &mut SharedMemory<u32>,
    open: &mut SharedMemory<u32>,
    #[comptime] head_dim: usize,
    #[comptime] units: usize,
) {
    let mut column = UNIT_POS as usize;
    while column < head_dim {
        mate[column] = NONE_INDEX;
        column += units;
    }
    sync_cube();
    let mut round = 0usize;
    while round < comptime!(head_dim / 2) {
        if UNIT_POS == 0 {
            open[0] = 0;
        }
        let mut column = UNIT_POS as usize;
        while column < head_dim {
            if mate[column] == NONE_INDEX {
                let mut best_cost = f32::new(NONE_COST);
                let mut best_key = NONE_INDEX.runtime();
                let mut best = NONE_INDEX.runtime();
                for other in 0..head_dim {
                    if other != column && mate[other] == NONE_INDEX {
                        let cost = distance(distances, column, other, head_dim);
                        let key = (min(column, other) * head_dim + max(column, other)) as u32;
                        if precedes(cost, key, best_cost, best_key) {
                            best_cost = cost;
                            best_key = key;
                            best = other as u32;
                        }
                    }
                }
                nearest[column] = best;
            }
            column += units;
        }
        sync_cube();
        // A column reads and writes only its own `mate`: its partner's unit writes the other.
        let mut column = UNIT_POS as usize;
        while column < head_dim {
            if mate[column] == NONE_INDEX {
                let partner = nearest[column];
                if nearest[partner as usize] == column as u32 {
                    mate[column] = partner;
                } else {
                    open[0] = 1;
                }
            }
            column += units;
        }
        sync_cube();
        let unpaired = open[0];
        sync_cube();
        round = select(unpaired == 0, comptime!(head_dim / 2), round + 1);
    }
    // Rank each pair (`column` < its mate) among all pairs by (distance, scan position).
    let mut column = UNIT_POS as usize;
    while column < head_dim {
        let partner = mate[column] as usize;
        if column < partner {
            let cost = distance(distances, column, partner, head_dim);
            let mut rank = 0usize;
            for other in 0..head_dim {
                let other_partner = mate[other] as usize;
                if other < other_partner {
                    let other_cost = distance(distances, other, other_partner, head_dim);
                    if precedes(other_cost, other as u32, cost, column as u32) {
                        rank += 1;
                    }
                }
            }
            members[2 * rank] = column as u32;
            members[2 * rank + 1] = partner as u32;
        }
        column += units;
    }
    sync_cube();
}

/// Total distance from column `column` to the members of group `group`.
#[cube]
fn joining(
    distances: &SharedMemory<f32>,
    members: &SharedMemory<u32>,
    group: usize,
    column: usize,
    #[comptime] head_dim: usize,
    #[comptime] group_size: usize,
) -> f32 {
    let mut total = 0.0f32;
    #[unroll]
    for member in 0..group_size {
        total += distance(distances, members[group * group_size + member] as usize, column, head_dim);
    }
    total
}

/// How much the swap of member `i` of group `first` with member `j` of group `second` changes
/// the groups' total distance: each group loses its member's distances to the rest and gains
/// the other's. For pairs that is four distances (`a` with `b` trades partners `a'`, `b'`).
#[cube]
#[allow(clippy::too_many_arguments)]
fn swap_change(
    distances: &SharedMemory<f32>,
    members: &SharedMemory<u32>,
    first: usize,
    second: usize,
    i: usize,
    j: usize,
    #[comptime] head_dim: usize,
    #[comptime] group_size: usize,
) -> f32 {
    let a = members[first * group_size + i] as usize;
    let b = members[second * group_size + j] as usize;
    if comptime!(group_size == 2) {
        let a_partner = members[first * 2 + 1 - i] as usize;
        let b_partner = members[second * 2 + 1 - j] as usize;
        distance(distances, a_partner, b, head_dim) + distance(distances, b_partner, a, head_dim)
            - distance(distances, a, a_partner, head_dim)
            - distance(distances, b, b_partner, head_dim)
    } else {
        let pair = distance(distances, a, b, head_dim);
        let first_change = joining(distances, members, first, b, head_dim, group_size) - pair
            - joining(distances, members, first, a, head_dim, group_size);
        let second_change = joining(distances, members, second, a, head_dim, group_size) - pair
            - joining(distances, members, second, b, head_dim, group_size);
        first_change + second_change
    }
}

/// Up to [`MAX_SWAPS`] times, the swap of member `i` of one group with member `j` of a later
/// one that lowers the groups' total distance the most, candidates in the reference's scan order
/// (first group, second group, `i`, `j`). Stops when no swap lowers it. Every unit must call it.
#[cube]
pub fn improve_groups(
    distances: &SharedMemory<f32>,
    members: &mut SharedMemory<u32>,
    costs: &mut SharedMemory<f32>,
    indices: &mut SharedMemory<u32>,
    #[comptime] head_dim: usize,
    #[comptime] group_size: usize,
    #[comptime] units: usize,
) {
    let groups = comptime!(head_dim / group_size);
    let per_pair = comptime!(group_size * group_size);
    let candidates = comptime!(groups * groups * group_size * group_size);
    for _ in 0..MAX_SWAPS {
        let mut best_cost = f32::new(NONE_COST);
        let mut best_index = NONE_INDEX.runtime();
        let mut candidate = UNIT_POS as usize;
        while candidate < candidates {
            let first = candidate / (groups * per_pair);
            let second = (candidate / per_pair) % groups;
            if first < second {
                let i = (candidate % per_pair) / group_size;
                let j = candidate % group_size;
                let change = swap_change(distances, members, first, second, i, j, head_dim, group_size);
                if change < f32::new(-1.0e-12) && change < best_cost {
                    best_cost = change;
                    best_index = candidate as u32;
                }
            }
            candidate += units;
        }
        let candidate = cube_arg_min(best_cost, best_index, costs, indices, units);
        if candidate == NONE_INDEX {
            break;
        }
        if UNIT_POS == 0 {
            let candidate = candidate as usize;
            let first = candidate / (groups * per_pair);
            let second = (candidate / per_pair) % groups;
            let i = (candidate % per_pair) / group_size;
            let j = candidate % group_size;
            let a = members[first * group_size + i];
            members[first * group_size + i] = members[second * group_size + j];
            members[second * group_size + j] = a;
        }
        sync_cube();
    }
}

/// The permutation `order` (`head_dim` columns): each group's members in index order, the
/// groups by their first member, so that consecutive positions `jG .. jG + G - 1` are group `j`
/// as the reference orders them. Every unit must call it.
#[cube]
pub fn write_order(
    members: &mut SharedMemory<u32>,
    order: &mut SharedMemory<u32>,
    #[comptime] head_dim: usize,
    #[comptime] group_size: usize,
    #[comptime] units: usize,
) {
    let groups = comptime!(head_dim / group_size);
    let mut group = UNIT_POS as usize;
    while group < groups {
        let base = group * group_size;
        // Bubble sort of at most eight members.
        #[unroll]
        for _ in 1..group_size {
            #[unroll]
            for position in 0..comptime!(group_size - 1) {
                let low = members[base + position];
                let high = members[base + position + 1];
                if low > high {
                    members[base + position] = high;
                    members[base + position + 1] = low;
                }
            }
        }
        group += units;
    }
    sync_cube();
    let mut group = UNIT_POS as usize;
    while group < groups {
        let first = members[group * group_size];
        let mut rank = 0usize;
        for other in 0..groups {
            if members[other * group_size] < first {
                rank += 1;
            }
        }
        #[unroll]
        for member in 0..group_size {
            order[rank * group_size + member] = members[group * group_size + member];
        }
        group += units;
    }
    sync_cube();
}

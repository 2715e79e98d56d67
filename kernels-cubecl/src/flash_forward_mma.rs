//! The tensor-core path of the fused forward pass: both products on `mma.sync` m16n8k16
//! (f16 or bf16 operands, f32 accumulation) through CubeCL's manual [`MmaDefinition`], with
//! the online softmax in registers, FlashAttention-2 style.
//!
//! One cube per (query block, batch * head), one plane (warp of 32) per 16 query rows:
//!
//! 1. the cube hashes the block's columns (one unit per column and group of four hyperplanes)
//!    and sorts them in shared memory ([`crate::block_permutation`]);
//! 2. each warp gathers its 16 rows of Q' straight into A fragments, once;
//! 3. per tile of [`KEY_TILE`] keys the cube stages K' (group sums in the block's permutation,
//!    row-major) and V transposed in shared memory, both as element pairs so that every B
//!    fragment register is one 32-bit load; rows are padded by [`ROW_PAD`] elements so the 32
//!    lanes of a fragment load hit 32 distinct banks. V (and K when `G = 1`) is read from
//!    global memory [`LOAD_WIDTH`] elements (16 bytes) at a time; the grouped K columns are
//!    gathered one by one in the block's permutation;
//! 4. each warp scores its rows against the tile (`S = Q' K'^T`, inner dimension `d / G`
//!    zero-padded, see [`MmaForwardConfig::padded_reduced_dim`]: `G = 8` at `d = 64` pays for
//!    16), masks, updates the running maximum and sum, and feeds
//!    the probabilities to `O += P V` without leaving registers: the m16n8 accumulator layout
//!    of two adjacent key blocks is the m16k16 A layout of the next product.
//!
//! Only launched where the device reports the m16n8k16 configuration for the storage type
//! (CUDA, sm_80 and newer); everything else takes [`crate::flash_forward`]'s portable path.

use cubecl::cmma::MmaDefinition;
use cubecl::prelude::*;

use crate::block_permutation::{
    bitonic_sort, column_sort_values_by_plane_group, permuted_column, PLANES_PER_UNIT,
};
use crate::Representative;

/// Keys per shared-memory tile: four k16 steps of `P V` per barrier pair.
pub const KEY_TILE: usize = 64;
/// Elements of padding per shared row (see the module doc): keeps fragment loads
/// conflict-free for every padded row length the kernel uses.
pub const ROW_PAD: usize = 8;
/// Query rows per warp: the `m` of m16n8k16.
pub const WARP_ROWS: usize = 16;
/// Elements per global load of V (and of K when `G = 1`): 16 bytes of f16/bf16.
pub const LOAD_WIDTH: usize = 8;
/// Lanes per plane that the fragment layouts assume.
pub const PLANE_SIZE: u32 = 32;
/// Scores of masked keys, and the running maximum before the first visible key: finite, so
/// no infinity or NaN is ever formed; probabilities of masked keys are forced to zero.
const SCORE_FLOOR: f32 = -3.0e38;

type Pair<E> = Vector<E, Const<2>>;

/// Comptime specialisation of [`flash_forward_mma`].
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct MmaForwardConfig {
    pub head_dim: usize,
    pub value_dim: usize,
    pub group_size: usize,
    pub block_rows: usize,
    pub num_projections: usize,
    pub representative: Representative,
    pub causal: bool,
}

impl MmaForwardConfig {
    /// Inner dimension of the score product after zero padding: to the mma `k` of 16 for
    /// `G = 1`; to a power of two (at least 16) for `G > 1`, so that a row of K' pairs divides
    /// the cube's units and each unit fuses the same groups in every tile.
    pub fn padded_reduced_dim(&self) -> usize {
        let reduced = self.head_dim / self.group_size;
        if self.group_size == 1 {
            reduced.next_multiple_of(16)
        } else {
            reduced.next_power_of_two().max(16)
        }
    }

    /// Elements per global load of K: [`LOAD_WIDTH`] when its rows are copied whole
    /// (`G = 1`), 1 when grouped columns are gathered.
    pub fn key_width(&self) -> usize {
        if self.group_size == 1 { LOAD_WIDTH } else { 1 }
    }

    /// Units per cube: one warp per [`WARP_ROWS`] query rows.
    pub fn units(&self) -> usize {
        self.block_rows / WARP_ROWS * PLANE_SIZE as usize
    }

    /// Shared memory the kernel declares, in bytes (`element_bytes` per stored element).
    pub fn shared_bytes(&self, element_bytes: usize) -> usize {
        let fused_keys = KEY_TILE * (self.padded_reduced_dim() + ROW_PAD) * element_bytes;
        let values = self.value_dim * (KEY_TILE + ROW_PAD) * element_bytes;
        let order = self.head_dim.next_power_of_two() * 4;
        let signs = if self.group_size > 1 {
            self.num_projections.div_ceil(PLANES_PER_UNIT) * self.head_dim * 4
        } else {
            0
        };
        fused_keys + values + order + signs
    }
}

/// `NK` / `NV`: the vector widths of K and V, [`MmaForwardConfig::key_width`] and
/// [`LOAD_WIDTH`]. Fast math: `exp` becomes `__expf`; no value is ever infinite or NaN.
#[cube(launch_unchecked, fast_math = FastMath::all())]
pub(crate) fn flash_forward_mma<F: Float, NK: Size, NV: Size>(
    query: &Tensor<F>,
    key: &Tensor<Vector<F, NK>>,
    value: &Tensor<Vector<F, NV>>,
    hyperplanes: &Array<f32>,
    output: &mut Tensor<F>,
    scale: f32,
    #[comptime] config: MmaForwardConfig,
    #[define(F)] _dtype: StorageType,
) {
    let group_size = config.group_size;
    let reduced_dim = comptime!(config.head_dim / config.group_size);
    let key_steps = comptime!(config.padded_reduced_dim() / 16);
    // Row lengths of the shared tiles, in pairs.
    let key_row_pairs = comptime!((config.padded_reduced_dim() + ROW_PAD) / 2);
    let value_row_pairs = comptime!((KEY_TILE + ROW_PAD) / 2);
    let value_blocks = comptime!(config.value_dim / 8);
    let units = comptime!(config.units());
    let sort_size = comptime!(config.head_dim.next_power_of_two());

    let heads = query.shape(1);
    let seq_q = query.shape(2);
    let seq_k = key.shape(2);
    let batch = CUBE_POS_Y as usize / heads;
    let head = CUBE_POS_Y as usize % heads;
    let kv_head = head / (heads / key.shape(1));
    let block_first_row = CUBE_POS_X as usize * config.block_rows;
    // Fragment coordinates (PTX's groupID and threadID_in_group).
    let lane = UNIT_POS_X as usize;
    let quad_row = lane / 4;
    let quad_lane = lane % 4;
    let warp_first_row = block_first_row + UNIT_POS_Y as usize * WARP_ROWS;

    let query_head = batch * query.stride(0) + head * query.stride(1);
    let key_head = batch * key.stride(0) + kv_head * key.stride(1);
    let value_head = batch * value.stride(0) + kv_head * value.stride(1);

    // Steps 2-4: the block's column permutation.
    let mut order = SharedMemory::<u32>::new(sort_size);
    if comptime!(config.group_size > 1) {
        let mut signs =
            SharedMemory::<u32>::new(comptime!(config.num_projections.div_ceil(PLANES_PER_UNIT) * config.head_dim));
        column_sort_values_by_plane_group::<F>(
            query,
            hyperplanes,
            &mut signs,
            &mut order,
            query_head + block_first_row * query.stride(2),
            block_first_row,
            seq_q,
            config.head_dim,
            sort_size,
            config.block_rows,
            config.num_projections,
            units,
        );
        bitonic_sort(&mut order, sort_size, units);
    }

    // Step 5: this warp's 16 rows of Q' as A fragments (row g or g + 8, groups 2t, 2t + 1,
    // plus 8 for the upper half of each k16 step); rows past `seq_q` and padding groups are 0.
    let mut query_fragments = Array::<Pair<F>>::new(comptime!(key_steps * 4));
    #[unroll]
    for step in 0..key_steps {
        #[unroll]
        for register in 0..4usize {
            let row = warp_first_row + quad_row + (register % 2) * 8;
            let mut fragment = Pair::<F>::empty();
            #[unroll]
            for element in 0..2usize {
                let group = step * 16 + (register / 2) * 8 + quad_lane * 2 + element;
                let mut representative = 0.0f32;
                if row < seq_q && group < reduced_dim {
                    let query_row = query_head + row * query.stride(2);
                    if comptime!(config.group_size == 1) {
                        representative = f32::cast_from(query[query_row + group * query.stride(3)]);
                    } else {
                        match comptime!(config.representative) {
                            Representative::Sample => {
                                let column = permuted_column(&order, group * group_size);
                                representative = f32::cast_from(query[query_row + column * query.stride(3)]);
                            }
                            Representative::Mean => {
                                #[unroll]
                                for member in 0..group_size {
                                    let column = permuted_column(&order, group * group_size + member);
                                    representative += f32::cast_from(query[query_row + column * query.stride(3)]);
                                }
                                representative /= f32::cast_from(group_size as u32);
                            }
                        }
                    }
                }
                fragment[element] = F::cast_from(representative);
            }
            query_fragments[step * 4 + register] = fragment;
        }
    }

    // Causal: query `row` sits at position `row + seq_k - seq_q`; the block needs no key
    // after its last row's position.
    let mut keys_end = seq_k;
    if comptime!(config.causal) {
        let block_last_row = min(seq_q, block_first_row + config.block_rows) - 1;
        keys_end = block_last_row + seq_k - seq_q + 1;
    }

    let mma = MmaDefinition::<F, F, f32>::new(16usize, 8usize, 16usize);
    let mut fused_keys = SharedMemory::<Pair<F>>::new(comptime!(KEY_TILE * key_row_pairs));
    let mut values = SharedMemory::<Pair<F>>::new(comptime!(config.value_dim * value_row_pairs));
    // Accumulator fragments of O: value block b, half h (rows g / g + 8) at `2 b + h`.
    let mut output_fragments = Array::<Pair<f32>>::new(comptime!(value_blocks * 2));
    #[unroll]
    for index in 0..comptime!(value_blocks * 2) {
        output_fragments[index] = Pair::<f32>::new(0.0);
    }
    let mut running_max = Array::<f32>::new(2usize);
    let mut running_sum = Array::<f32>::new(2usize);
    #[unroll]
    for half in 0..2usize {
        running_max[half] = f32::new(SCORE_FLOOR);
        running_sum[half] = 0.0;
    }

    // G > 1: this unit fuses the same two groups (one K' pair) of every key it handles;
    // their K columns are looked up in the permutation once.
    let pairs_per_row = comptime!(config.padded_reduced_dim() / 2);
    let unit_pair = UNIT_POS as usize % pairs_per_row;
    let mut fused_columns = Array::<usize>::new(comptime!(2 * config.group_size));
    if comptime!(config.group_size > 1) {
        #[unroll]
        for element in 0..2usize {
            #[unroll]
            for member in 0..group_size {
                let group = min(unit_pair * 2 + element, reduced_dim - 1);
                fused_columns[element * group_size + member] =
                    permuted_column(&order, group * group_size + member) * key.stride(3);
            }
        }
    }

    let mut tile_start = 0usize;
    while tile_start < keys_end {
        // Step 6 on the tile: K' as [key][group pair], zero past `seq_k` and in the padding.
        if comptime!(config.group_size == 1) {
            // K' = K: whole rows, LOAD_WIDTH elements per load.
            let mut slot = UNIT_POS as usize;
            while slot < comptime!(KEY_TILE * config.head_dim / LOAD_WIDTH) {
                let key_in_tile = slot / comptime!(config.head_dim / LOAD_WIDTH);
                let chunk = slot % comptime!(config.head_dim / LOAD_WIDTH);
                let key_row = tile_start + key_in_tile;
                let mut loaded = Vector::<F, NK>::new(F::cast_from(0.0f32));
                if key_row < seq_k {
                    loaded = key[(key_head + key_row * key.stride(2)) / LOAD_WIDTH + chunk];
                }
                #[unroll]
                for pair_index in 0..comptime!(LOAD_WIDTH / 2) {
                    let mut pair = Pair::<F>::empty();
                    pair[0] = loaded[pair_index * 2];
                    pair[1] = loaded[pair_index * 2 + 1];
                    fused_keys[key_in_tile * key_row_pairs + chunk * comptime!(LOAD_WIDTH / 2) + pair_index] = pair;
                }
                slot += units;
            }
        } else {
            let mut key_in_tile = UNIT_POS as usize / pairs_per_row;
            while key_in_tile < KEY_TILE {
                let key_row = tile_start + key_in_tile;
                let key_base = key_head + key_row * key.stride(2);
                let mut fused = Pair::<F>::empty();
                #[unroll]
                for element in 0..2usize {
                    let mut sum = 0.0f32;
                    if key_row < seq_k && unit_pair * 2 + element < reduced_dim {
                        #[unroll]
                        for member in 0..group_size {
                            sum += f32::cast_from(key[key_base + fused_columns[element * group_size + member]][0]);
                        }
                    }
                    fused[element] = F::cast_from(sum);
                }
                fused_keys[key_in_tile * key_row_pairs + unit_pair] = fused;
                key_in_tile += comptime!(config.units() / (config.padded_reduced_dim() / 2));
            }
        }
        // V transposed, as [value column][key pair]: a unit loads LOAD_WIDTH columns of two
        // consecutive keys; the 32 lanes of a warp take 32 consecutive key pairs, so each of
        // their pair stores lands on 32 distinct banks.
        let mut slot = UNIT_POS as usize;
        while slot < comptime!(config.value_dim / LOAD_WIDTH * KEY_TILE / 2) {
            let key_pair = slot % comptime!(KEY_TILE / 2);
            let chunk = slot / comptime!(KEY_TILE / 2);
            let first_row = tile_start + key_pair * 2;
            let mut even = Vector::<F, NV>::new(F::cast_from(0.0f32));
            let mut odd = Vector::<F, NV>::new(F::cast_from(0.0f32));
            let chunk_base = value_head / LOAD_WIDTH + chunk;
            if first_row < seq_k {
                even = value[chunk_base + first_row * value.stride(2) / LOAD_WIDTH];
            }
            if first_row + 1 < seq_k {
                odd = value[chunk_base + (first_row + 1) * value.stride(2) / LOAD_WIDTH];
            }
            #[unroll]
            for column in 0..LOAD_WIDTH {
                let mut pair = Pair::<F>::empty();
                pair[0] = even[column];
                pair[1] = odd[column];
                values[(chunk * LOAD_WIDTH + column) * value_row_pairs + key_pair] = pair;
            }
            slot += units;
        }
        sync_cube();

        // Step 7: S for key block j (8 keys) at `2 j + h`.
        let mut scores = Array::<Pair<f32>>::new(comptime!(KEY_TILE / 8 * 2));
        #[unroll]
        for key_block in 0..comptime!(KEY_TILE / 8) {
            let mut accumulator = Array::<Pair<f32>>::new(2usize);
            accumulator[0] = Pair::<f32>::new(0.0);
            accumulator[1] = Pair::<f32>::new(0.0);
            let key_row = (key_block * 8 + quad_row) * key_row_pairs;
            #[unroll]
            for step in 0..key_steps {
                let mut a = Array::<Pair<F>>::new(4usize);
                #[unroll]
                for register in 0..4usize {
                    a[register] = query_fragments[step * 4 + register];
                }
                let mut b = Array::<Pair<F>>::new(2usize);
                #[unroll]
                for register in 0..2usize {
                    b[register] = fused_keys[key_row + step * 8 + register * 4 + quad_lane];
                }
                let product = mma.execute(&a, &b, &accumulator);
                accumulator[0] = product[0];
                accumulator[1] = product[1];
            }
            scores[key_block * 2] = accumulator[0];
            scores[key_block * 2 + 1] = accumulator[1];
        }

        // Online softmax per row half; a row's four lanes agree on its maximum through two
        // shuffles, and keep partial sums until the end.
        #[unroll]
        for half in 0..2usize {
            let row = warp_first_row + quad_row + half * 8;
            let mut query_position = 0usize;
            if comptime!(config.causal) {
                query_position = row + seq_k - seq_q;
            }
            let mut tile_max = f32::new(SCORE_FLOOR);
            #[unroll]
            for key_block in 0..comptime!(KEY_TILE / 8) {
                let mut block_scores = scores[key_block * 2 + half];
                #[unroll]
                for element in 0..2usize {
                    let key_position = tile_start + key_block * 8 + quad_lane * 2 + element;
                    let mut visible = key_position < seq_k;
                    if comptime!(config.causal) {
                        visible = visible && key_position <= query_position;
                    }
                    let score = select(visible, block_scores[element] * scale, f32::new(SCORE_FLOOR));
                    block_scores[element] = score;
                    tile_max = max(tile_max, score);
                }
                scores[key_block * 2 + half] = block_scores;
            }
            tile_max = max(tile_max, plane_shuffle_xor(tile_max, 1u32));
            tile_max = max(tile_max, plane_shuffle_xor(tile_max, 2u32));
            let new_max = max(running_max[half], tile_max);
            let correction = Exp::exp(running_max[half] - new_max);
            running_max[half] = new_max;
            let mut tile_sum = 0.0f32;
            #[unroll]
            for key_block in 0..comptime!(KEY_TILE / 8) {
                let mut block_scores = scores[key_block * 2 + half];
                #[unroll]
                for element in 0..2usize {
                    let score = block_scores[element];
                    let probability = select(score > f32::new(SCORE_FLOOR), Exp::exp(score - new_max), 0.0f32);
                    block_scores[element] = probability;
                    tile_sum += probability;
                }
                scores[key_block * 2 + half] = block_scores;
            }
            running_sum[half] = running_sum[half] * correction + tile_sum;
            #[unroll]
            for value_block in 0..value_blocks {
                output_fragments[value_block * 2 + half] =
                    output_fragments[value_block * 2 + half] * Pair::<f32>::new(correction);
            }
        }

        // O += P V, k16 step s = key blocks 2s and 2s + 1.
        #[unroll]
        for step in 0..comptime!(KEY_TILE / 16) {
            let mut a = Array::<Pair<F>>::new(4usize);
            #[unroll]
            for register in 0..4usize {
                let probabilities = scores[(step * 2 + register / 2) * 2 + register % 2];
                let mut fragment = Pair::<F>::empty();
                fragment[0] = F::cast_from(probabilities[0]);
                fragment[1] = F::cast_from(probabilities[1]);
                a[register] = fragment;
            }
            #[unroll]
            for value_block in 0..value_blocks {
                let column_row = (value_block * 8 + quad_row) * value_row_pairs;
                let mut b = Array::<Pair<F>>::new(2usize);
                #[unroll]
                for register in 0..2usize {
                    b[register] = values[column_row + step * 8 + register * 4 + quad_lane];
                }
                let mut accumulator = Array::<Pair<f32>>::new(2usize);
                accumulator[0] = output_fragments[value_block * 2];
                accumulator[1] = output_fragments[value_block * 2 + 1];
                let product = mma.execute(&a, &b, &accumulator);
                output_fragments[value_block * 2] = product[0];
                output_fragments[value_block * 2 + 1] = product[1];
            }
        }
        sync_cube();
        tile_start += KEY_TILE;
    }

    // Each lane holds columns 2t, 2t + 1 of every value block for rows g and g + 8.
    #[unroll]
    for half in 0..2usize {
        let mut total = running_sum[half];
        total += plane_shuffle_xor(total, 1u32);
        total += plane_shuffle_xor(total, 2u32);
        let mut inverse = 0.0f32;
        if total > 0.0 {
            inverse = 1.0 / total;
        }
        let row = warp_first_row + quad_row + half * 8;
        if row < seq_q {
            let output_row = batch * output.stride(0) + head * output.stride(1) + row * output.stride(2);
            #[unroll]
            for value_block in 0..value_blocks {
                let fragment = output_fragments[value_block * 2 + half];
                #[unroll]
                for element in 0..2usize {
                    let column = value_block * 8 + quad_lane * 2 + element;
                    output[output_row + column * output.stride(3)] = F::cast_from(fragment[element] * inverse);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_permutation::MAX_PROJECTIONS;
    use crate::flash_forward::{SUPPORTED_BLOCK_ROWS, SUPPORTED_GROUP_SIZES};
    use crate::SUPPORTED_HEAD_DIMS;

    /// Every specialisation the launcher may pick fits CUDA's static 48 KiB of shared memory,
    /// pads the score product to whole k16 steps, and (for `G > 1`) has a K' row of pairs that
    /// divides the cube's units, which the once-per-block column lookup relies on.
    #[test]
    fn every_specialisation_fits_shared_memory_and_divides_the_units() {
        for head_dim in SUPPORTED_HEAD_DIMS {
            for group_size in SUPPORTED_GROUP_SIZES.into_iter().filter(|g| head_dim % g == 0) {
                for block_rows in SUPPORTED_BLOCK_ROWS {
                    let config = MmaForwardConfig {
                        head_dim,
                        value_dim: head_dim,
                        group_size,
                        block_rows,
                        num_projections: MAX_PROJECTIONS,
                        representative: Representative::Sample,
                        causal: false,
                    };
                    let padded = config.padded_reduced_dim();
                    assert!(padded % 16 == 0 && padded >= head_dim / group_size, "{config:?}");
                    assert!(config.shared_bytes(2) <= 48 * 1024, "{config:?}");
                    if group_size > 1 {
                        assert_eq!(config.units() % (padded / 2), 0, "{config:?}");
                    }
                }
            }
        }
    }
}

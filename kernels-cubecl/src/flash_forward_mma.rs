//! The tensor-core path of the fused forward pass: both products on `mma.sync` m16n8k16
//! (f16 or bf16 operands, f32 accumulation) through CubeCL's manual [`MmaDefinition`], with
//! the online softmax in registers, FlashAttention-2 style.
//!
//! One cube per (query block, batch * head); each warp (plane of 32) owns
//! [`MmaTiling::warp_tiles`] tiles of 16 query rows:
//!
//! 1. the cube hashes the block's columns (one unit per column and group of four hyperplanes)
//!    and sorts them in shared memory ([`crate::block_permutation`]);
//! 2. each warp gathers its rows of Q' straight into A fragments, once;
//! 3. per tile of [`MmaTiling::key_tile`] keys the cube stages K' (group sums in the block's
//!    permutation, row-major) and V transposed in shared memory, both as element pairs so that
//!    every B fragment register is one 32-bit load; rows are padded by [`ROW_PAD`] elements so
//!    the 32 lanes of a fragment load hit 32 distinct banks. V (and K when `G = 1`) is read
//!    from global memory [`LOAD_WIDTH`] elements (16 bytes) at a time; the grouped K columns
//!    are gathered one by one in the block's permutation. With [`MmaTiling::prefetch`] the
//!    next tile's global loads are issued into registers before the current tile is
//!    computed, so their latency hides behind the tensor-core work;
//! 4. each warp scores its rows against the tile (`S = Q' K'^T`, inner dimension `d / G`
//!    zero-padded, see [`MmaForwardConfig::padded_reduced_dim`]: `G = 8` at `d = 64` pays for
//!    16); every B fragment read from shared memory feeds one mma per row tile of the warp,
//!    which is what keeps shared-memory bandwidth below the tensor cores' rate. The softmax
//!    masks only the tiles that reach past `seq_k` or the causal diagonal, and the
//!    probabilities feed `O += P V` without leaving registers: the m16n8 accumulator layout of
//!    two adjacent key blocks is the m16k16 A layout of the next product.
//!
//! Only launched where the device reports the m16n8k16 configuration for the storage type
//! (CUDA, sm_80 and newer); everything else takes [`crate::flash_forward`]'s portable path.

use cubecl::cmma::MmaDefinition;
use cubecl::prelude::*;

use crate::block_permutation::{
    bitonic_sort, column_sort_values_by_plane_group, permuted_column, PLANES_PER_UNIT,
};
use crate::grouped_query::grouped_query;
use crate::Representative;

/// Elements of padding per shared row (see the module doc): keeps fragment loads
/// conflict-free for every padded row length the kernel uses.
pub const ROW_PAD: usize = 8;
/// Query rows per row tile: the `m` of m16n8k16.
pub const TILE_ROWS: usize = 16;
/// Elements per global load of V (and of K when `G = 1`): 16 bytes of f16/bf16.
pub const LOAD_WIDTH: usize = 8;
/// Lanes per plane that the fragment layouts assume.
pub const PLANE_SIZE: u32 = 32;
/// Most gathered K elements a unit holds in registers for the next tile; above it the
/// gather of grouped keys is not prefetched (the registers would spill).
const MAX_PREFETCHED_GATHERS: usize = 32;
/// Scores of masked keys, and the running maximum before the first visible key: finite, so
/// no infinity or NaN is ever formed; probabilities of masked keys are forced to zero.
const SCORE_FLOOR: f32 = -3.0e38;

type Pair<E> = Vector<E, Const<2>>;

/// How a cube's work is cut up. Each distinct value is a compiled kernel.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct MmaTiling {
    /// Row tiles of [`TILE_ROWS`] query rows per warp. Every B fragment a warp reads from
    /// shared memory feeds this many mma, but each tile's Q', O and S fragments take
    /// registers.
    pub warp_tiles: usize,
    /// Keys per shared-memory tile: 32 or 64.
    pub key_tile: usize,
    /// Issue the next key tile's global loads into registers before computing the current one.
    pub prefetch: bool,
}

impl MmaTiling {
    /// Key tiles the kernel is specialised for.
    pub const KEY_TILES: [usize; 2] = [32, 64];
    /// Row tiles per warp the kernel is specialised for.
    pub const WARP_TILES: [usize; 2] = [1, 2];

    /// The tiling measured fastest on an H200 (`benchmarks/results/2026-12-01-h200-sweep/`, N
    /// = 8192, fp16): exact attention (`group_size == 1`) with one row tile per warp and no
    /// prefetch, whose 128 registers leave room for two cubes of eight warps per SM; grouped
    /// attention with two row tiles of 32-key tiles up to head dim 64 and one row tile of
    /// 64-key tiles above, both prefetching.
    pub fn for_shape(head_dim: usize, group_size: usize) -> Self {
        match (group_size, head_dim) {
            (1, _) => Self { warp_tiles: 1, key_tile: 64, prefetch: false },
            (_, ..=64) => Self { warp_tiles: 2, key_tile: 32, prefetch: true },
            _ => Self { warp_tiles: 1, key_tile: 64, prefetch: true },
        }
    }
}

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
    pub tiling: MmaTiling,
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

    /// Query rows per warp.
    pub fn warp_rows(&self) -> usize {
        TILE_ROWS * self.tiling.warp_tiles
    }

    /// Units per cube: one warp per [`Self::warp_rows`] query rows.
    pub fn units(&self) -> usize {
        self.block_rows / self.warp_rows() * PLANE_SIZE as usize
    }

    /// `G = 1`: 16-byte loads of a K tile per unit.
    fn key_loads(&self) -> usize {
        if self.group_size == 1 {
            (self.tiling.key_tile * self.head_dim / LOAD_WIDTH).div_ceil(self.units())
        } else {
            0
        }
    }

    /// `G > 1`: K' pairs per row of the tile; the cube's units divide into rows of this many.
    fn pairs_per_row(&self) -> usize {
        self.padded_reduced_dim() / 2
    }

    /// `G > 1`: keys of a tile whose K' pair this unit fuses.
    fn keys_per_unit(&self) -> usize {
        if self.group_size == 1 {
            0
        } else {
            self.tiling.key_tile * self.pairs_per_row() / self.units()
        }
    }

    /// `G > 1`: K elements a unit gathers per tile.
    fn gathers(&self) -> usize {
        self.keys_per_unit() * 2 * self.group_size
    }

    /// Whether the next tile's K loads are issued before the current tile is computed.
    fn prefetch_keys(&self) -> bool {
        self.tiling.prefetch && self.gathers() <= MAX_PREFETCHED_GATHERS
    }

    /// (Pairs of 16-byte loads of two consecutive keys' V rows) per unit and tile.
    fn value_loads(&self) -> usize {
        (self.value_dim / LOAD_WIDTH * self.tiling.key_tile / 2).div_ceil(self.units())
    }

    /// Shared memory the kernel declares, in bytes (`element_bytes` per stored element).
    pub fn shared_bytes(&self, element_bytes: usize) -> usize {
        let key_tile = self.tiling.key_tile;
        let fused_keys = key_tile * (self.padded_reduced_dim() + ROW_PAD) * element_bytes;
        let values = self.value_dim * (key_tile + ROW_PAD) * element_bytes;
        let order = self.head_dim.next_power_of_two() * 4;
        let signs = if self.group_size > 1 {
            self.num_projections.div_ceil(PLANES_PER_UNIT) * self.head_dim * 4
        } else {
            0
        };
        fused_keys + values + order + signs
    }

    /// Whether the kernel's index arithmetic holds for this specialisation: whole row tiles
    /// per warp, whole k16 steps of keys, and (`G > 1`) units that divide into rows of K'
    /// pairs and tiles that divide into such rows.
    pub fn is_consistent(&self) -> bool {
        let tiling = &self.tiling;
        let rows_fit = MmaTiling::WARP_TILES.contains(&tiling.warp_tiles)
            && MmaTiling::KEY_TILES.contains(&tiling.key_tile)
            && self.block_rows % self.warp_rows() == 0
            && self.value_dim % 8 == 0;
        let grouped_fit = self.group_size == 1
            || (self.units() % self.pairs_per_row() == 0
                && tiling.key_tile % (self.units() / self.pairs_per_row()) == 0);
        rows_fit && grouped_fit
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
    let warp_tiles = config.tiling.warp_tiles;
    let key_tile = config.tiling.key_tile;
    let reduced_dim = comptime!(config.head_dim / config.group_size);
    let key_steps = comptime!(config.padded_reduced_dim() / 16);
    let key_blocks = comptime!(config.tiling.key_tile / 8);
    // Row lengths of the shared tiles, in pairs.
    let key_row_pairs = comptime!((config.padded_reduced_dim() + ROW_PAD) / 2);
    let value_row_pairs = comptime!((config.tiling.key_tile + ROW_PAD) / 2);
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
    let warp_first_row = block_first_row + UNIT_POS_Y as usize * comptime!(config.warp_rows());

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

    // Step 5: this warp's rows of Q' as A fragments, row tile t at `(t * key_steps + step) * 4`
    // (row g or g + 8, groups 2q, 2q + 1, plus 8 for the upper half of each k16 step); rows
    // past `seq_q` and padding groups are 0.
    let mut query_fragments = Array::<Pair<F>>::new(comptime!(warp_tiles * key_steps * 4));
    #[unroll]
    for tile in 0..warp_tiles {
        #[unroll]
        for step in 0..key_steps {
            #[unroll]
            for register in 0..4usize {
                let row = warp_first_row + tile * TILE_ROWS + quad_row + (register % 2) * 8;
                let mut fragment = Pair::<F>::empty();
                #[unroll]
                for element in 0..2usize {
                    let group = step * 16 + (register / 2) * 8 + quad_lane * 2 + element;
                    let mut representative = 0.0f32;
                    if row < seq_q && group < reduced_dim {
                        let query_row = query_head + row * query.stride(2);
                        representative = grouped_query::<F>(
                            query,
                            &order,
                            query_row,
                            group,
                            group_size,
                            config.representative,
                            true,
                        );
                    }
                    fragment[element] = F::cast_from(representative);
                }
                query_fragments[(tile * key_steps + step) * 4 + register] = fragment;
            }
        }
    }

    // Causal: query `row` sits at position `row + seq_k - seq_q`; the block needs no key
    // after its last row's position, and the warp sees every key up to its first row's
    // position unmasked.
    let mut keys_end = seq_k;
    let mut warp_first_position = seq_k;
    if comptime!(config.causal) {
        let block_last_row = min(seq_q, block_first_row + config.block_rows) - 1;
        keys_end = block_last_row + seq_k - seq_q + 1;
        warp_first_position = warp_first_row + seq_k - seq_q;
    }

    let mma = MmaDefinition::<F, F, f32>::new(16usize, 8usize, 16usize);
    let mut fused_keys = SharedMemory::<Pair<F>>::new(comptime!(config.tiling.key_tile * key_row_pairs));
    let mut values = SharedMemory::<Pair<F>>::new(comptime!(config.value_dim * value_row_pairs));
    // Accumulator fragments of O: row tile t, value block b, half h (rows g / g + 8) at
    // `(t * value_blocks + b) * 2 + h`; running maximum and sum at `t * 2 + h`.
    let mut output_fragments = Array::<Pair<f32>>::new(comptime!(warp_tiles * value_blocks * 2));
    #[unroll]
    for index in 0..comptime!(warp_tiles * value_blocks * 2) {
        output_fragments[index] = Pair::<f32>::new(0.0);
    }
    let mut running_max = Array::<f32>::new(comptime!(warp_tiles * 2));
    let mut running_sum = Array::<f32>::new(comptime!(warp_tiles * 2));
    #[unroll]
    for index in 0..comptime!(warp_tiles * 2) {
        running_max[index] = f32::new(SCORE_FLOOR);
        running_sum[index] = 0.0;
    }

    // G > 1: this unit fuses the same two groups (one K' pair) of every key it handles;
    // their K columns are looked up in the permutation once.
    let pairs_per_row = comptime!(config.pairs_per_row());
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

    // Registers a tile passes through between global and shared memory.
    let mut staged_keys = Array::<Vector<F, NK>>::new(comptime!(config.key_loads().max(1)));
    let mut gathered_keys = Array::<F>::new(comptime!(config.gathers().max(1)));
    let mut staged_values = Array::<Vector<F, NV>>::new(comptime!((2 * config.value_loads()).max(1)));
    if comptime!(config.prefetch_keys()) {
        load_keys(key, &mut staged_keys, &mut gathered_keys, &fused_columns, key_head, seq_k, unit_pair, 0, config);
    }
    if comptime!(config.tiling.prefetch) {
        load_values(value, &mut staged_values, value_head, seq_k, 0, config);
    }

    let mut tile_start = 0usize;
    while tile_start < keys_end {
        // Step 6 on the tile: K' as [key][group pair], zero past `seq_k` and in the padding;
        // V transposed as [value column][key pair].
        if comptime!(!config.prefetch_keys()) {
            load_keys(key, &mut staged_keys, &mut gathered_keys, &fused_columns, key_head, seq_k, unit_pair, tile_start, config);
        }
        if comptime!(!config.tiling.prefetch) {
            load_values(value, &mut staged_values, value_head, seq_k, tile_start, config);
        }
        store_keys(&staged_keys, &gathered_keys, &mut fused_keys, unit_pair, key_row_pairs, config);
        store_values(&staged_values, &mut values, value_row_pairs, config);
        sync_cube();
        let next_tile = tile_start + key_tile;
        if next_tile < keys_end {
            if comptime!(config.prefetch_keys()) {
                load_keys(key, &mut staged_keys, &mut gathered_keys, &fused_columns, key_head, seq_k, unit_pair, next_tile, config);
            }
            if comptime!(config.tiling.prefetch) {
                load_values(value, &mut staged_values, value_head, seq_k, next_tile, config);
            }
        }

        // Step 7: S of row tile t, key block j (8 keys), half h at `(t * key_blocks + j) * 2 + h`.
        let mut scores = Array::<Pair<f32>>::new(comptime!(warp_tiles * key_blocks * 2));
        #[unroll]
        for key_block in 0..key_blocks {
            let mut accumulators = Array::<Pair<f32>>::new(comptime!(warp_tiles * 2));
            #[unroll]
            for index in 0..comptime!(warp_tiles * 2) {
                accumulators[index] = Pair::<f32>::new(0.0);
            }
            let key_row = (key_block * 8 + quad_row) * key_row_pairs;
            #[unroll]
            for step in 0..key_steps {
                let keys = RowTilesProduct { a_first: step * 4, b_first: key_row + step * 8, accumulator_first: 0 };
                mma_row_tiles(&mma, &query_fragments, &fused_keys, &mut accumulators, &keys, quad_lane, comptime!(key_steps * 4), 2usize, warp_tiles);
            }
            #[unroll]
            for tile in 0..warp_tiles {
                scores[(tile * key_blocks + key_block) * 2] = accumulators[tile * 2];
                scores[(tile * key_blocks + key_block) * 2 + 1] = accumulators[tile * 2 + 1];
            }
        }

        // Online softmax, masked only where the tile reaches past `seq_k` or (causal) past the
        // position of the warp's first row.
        let beyond_keys = next_tile > seq_k;
        let beyond_diagonal = comptime!(config.causal) && next_tile - 1 > warp_first_position;
        let row_positions = RowPositions {
            warp_first_row,
            quad_row,
            quad_lane,
            seq_q,
            seq_k,
            tile_start,
        };
        if beyond_keys || beyond_diagonal {
            online_softmax(&mut scores, &mut running_max, &mut running_sum, &mut output_fragments, &row_positions, scale, true, config);
        } else {
            online_softmax(&mut scores, &mut running_max, &mut running_sum, &mut output_fragments, &row_positions, scale, false, config);
        }

        // O += P V, k16 step s = key blocks 2s and 2s + 1.
        #[unroll]
        for step in 0..comptime!(config.tiling.key_tile / 16) {
            let mut a = Array::<Pair<F>>::new(comptime!(warp_tiles * 4));
            #[unroll]
            for tile in 0..warp_tiles {
                #[unroll]
                for register in 0..4usize {
                    let probabilities = scores[(tile * key_blocks + step * 2 + register / 2) * 2 + register % 2];
                    let mut fragment = Pair::<F>::empty();
                    fragment[0] = F::cast_from(probabilities[0]);
                    fragment[1] = F::cast_from(probabilities[1]);
                    a[tile * 4 + register] = fragment;
                }
            }
            #[unroll]
            for value_block in 0..value_blocks {
                let column_row = (value_block * 8 + quad_row) * value_row_pairs;
                let values_step = RowTilesProduct { a_first: 0, b_first: column_row + step * 8, accumulator_first: value_block * 2 };
                mma_row_tiles(&mma, &a, &values, &mut output_fragments, &values_step, quad_lane, 4usize, comptime!(value_blocks * 2), warp_tiles);
            }
        }
        sync_cube();
        tile_start = next_tile;
    }

    // Each lane holds columns 2q, 2q + 1 of every value block for rows g and g + 8 of each
    // row tile.
    #[unroll]
    for tile in 0..warp_tiles {
        #[unroll]
        for half in 0..2usize {
            let mut total = running_sum[tile * 2 + half];
            total += plane_shuffle_xor(total, 1u32);
            total += plane_shuffle_xor(total, 2u32);
            let mut inverse = 0.0f32;
            if total > 0.0 {
                inverse = 1.0 / total;
            }
            let row = warp_first_row + tile * TILE_ROWS + quad_row + half * 8;
            if row < seq_q {
                let output_row = batch * output.stride(0) + head * output.stride(1) + row * output.stride(2);
                #[unroll]
                for value_block in 0..value_blocks {
                    let fragment = output_fragments[(tile * value_blocks + value_block) * 2 + half];
                    #[unroll]
                    for element in 0..2usize {
                        let column = value_block * 8 + quad_lane * 2 + element;
                        output[output_row + column * output.stride(3)] = F::cast_from(fragment[element] * inverse);
                    }
                }
            }
        }
    }
}

/// Where one k16 step of [`mma_row_tiles`] reads and accumulates.
#[derive(CubeType)]
struct RowTilesProduct {
    /// Index of row tile 0's first A register.
    a_first: usize,
    /// Shared-memory index of the step's B fragment for this lane's row `g` (lane `q` of the
    /// quad adds `q`; the second register is 4 pairs on).
    b_first: usize,
    /// Index of row tile 0's first accumulator register.
    accumulator_first: usize,
}

/// One k16 step of a product for every row tile of the warp: the B fragment (k16 x n8) is read
/// from shared memory once, then row tile `t` accumulates `A_t B` into the two registers at
/// `accumulator_first + t * accumulator_stride`, `A_t` being the four registers at
/// `a_first + t * a_stride` of `a_fragments`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn mma_row_tiles<F: Float>(
    mma: &MmaDefinition<F, F, f32>,
    a_fragments: &Array<Pair<F>>,
    shared: &SharedMemory<Pair<F>>,
    accumulators: &mut Array<Pair<f32>>,
    at: &RowTilesProduct,
    quad_lane: usize,
    #[comptime] a_stride: usize,
    #[comptime] accumulator_stride: usize,
    #[comptime] warp_tiles: usize,
) {
    let mut b = Array::<Pair<F>>::new(2usize);
    #[unroll]
    for register in 0..2usize {
        b[register] = shared[at.b_first + register * 4 + quad_lane];
    }
    #[unroll]
    for tile in 0..warp_tiles {
        let mut a = Array::<Pair<F>>::new(4usize);
        #[unroll]
        for register in 0..4usize {
            a[register] = a_fragments[at.a_first + tile * a_stride + register];
        }
        let index = at.accumulator_first + tile * accumulator_stride;
        let mut accumulator = Array::<Pair<f32>>::new(2usize);
        accumulator[0] = accumulators[index];
        accumulator[1] = accumulators[index + 1];
        let product = mma.execute(&a, &b, &accumulator);
        accumulators[index] = product[0];
        accumulators[index + 1] = product[1];
    }
}

/// Issues this unit's global loads of the K tile starting at `tile_start` into registers:
/// whole 16-byte chunks of rows for `G = 1`, the grouped columns of its K' pair for `G > 1`.
/// Rows past `seq_k` and padding groups read as zero.
#[cube]
#[allow(clippy::too_many_arguments)]
fn load_keys<F: Float, NK: Size>(
    key: &Tensor<Vector<F, NK>>,
    staged: &mut Array<Vector<F, NK>>,
    gathered: &mut Array<F>,
    fused_columns: &Array<usize>,
    key_head: usize,
    seq_k: usize,
    unit_pair: usize,
    tile_start: usize,
    #[comptime] config: MmaForwardConfig,
) {
    if comptime!(config.group_size == 1) {
        let chunks_per_row = comptime!(config.head_dim / LOAD_WIDTH);
        #[unroll]
        for load in 0..comptime!(config.key_loads()) {
            let slot = UNIT_POS as usize + load * comptime!(config.units());
            let key_row = tile_start + slot / chunks_per_row;
            let mut loaded = Vector::<F, NK>::new(F::cast_from(0.0f32));
            if slot < comptime!(config.tiling.key_tile * config.head_dim / LOAD_WIDTH) && key_row < seq_k {
                loaded = key[(key_head + key_row * key.stride(2)) / LOAD_WIDTH + slot % chunks_per_row];
            }
            staged[load] = loaded;
        }
    } else {
        let group_size = config.group_size;
        let reduced_dim = comptime!(config.head_dim / config.group_size);
        let rows_of_units = comptime!(config.units() / config.pairs_per_row());
        #[unroll]
        for key_index in 0..comptime!(config.keys_per_unit()) {
            let key_row = tile_start + UNIT_POS as usize / comptime!(config.pairs_per_row()) + key_index * rows_of_units;
            let key_base = key_head + key_row * key.stride(2);
            #[unroll]
            for element in 0..2usize {
                let present = key_row < seq_k && unit_pair * 2 + element < reduced_dim;
                #[unroll]
                for member in 0..group_size {
                    let mut loaded = F::cast_from(0.0f32);
                    if present {
                        loaded = key[key_base + fused_columns[element * group_size + member]][0];
                    }
                    gathered[(key_index * 2 + element) * group_size + member] = loaded;
                }
            }
        }
    }
}

/// Writes the staged K registers into the shared K' tile as element pairs, summing each
/// group's columns in f32 for `G > 1`.
#[cube]
fn store_keys<F: Float, NK: Size>(
    staged: &Array<Vector<F, NK>>,
    gathered: &Array<F>,
    fused_keys: &mut SharedMemory<Pair<F>>,
    unit_pair: usize,
    #[comptime] key_row_pairs: usize,
    #[comptime] config: MmaForwardConfig,
) {
    if comptime!(config.group_size == 1) {
        let chunks_per_row = comptime!(config.head_dim / LOAD_WIDTH);
        #[unroll]
        for load in 0..comptime!(config.key_loads()) {
            let slot = UNIT_POS as usize + load * comptime!(config.units());
            if slot < comptime!(config.tiling.key_tile * config.head_dim / LOAD_WIDTH) {
                let loaded = staged[load];
                let first_pair = (slot / chunks_per_row) * key_row_pairs + (slot % chunks_per_row) * comptime!(LOAD_WIDTH / 2);
                #[unroll]
                for pair_index in 0..comptime!(LOAD_WIDTH / 2) {
                    let mut pair = Pair::<F>::empty();
                    pair[0] = loaded[pair_index * 2];
                    pair[1] = loaded[pair_index * 2 + 1];
                    fused_keys[first_pair + pair_index] = pair;
                }
            }
        }
    } else {
        let group_size = config.group_size;
        let rows_of_units = comptime!(config.units() / config.pairs_per_row());
        #[unroll]
        for key_index in 0..comptime!(config.keys_per_unit()) {
            let key_in_tile = UNIT_POS as usize / comptime!(config.pairs_per_row()) + key_index * rows_of_units;
            let mut fused = Pair::<F>::empty();
            #[unroll]
            for element in 0..2usize {
                let mut sum = 0.0f32;
                #[unroll]
                for member in 0..group_size {
                    sum += f32::cast_from(gathered[(key_index * 2 + element) * group_size + member]);
                }
                fused[element] = F::cast_from(sum);
            }
            fused_keys[key_in_tile * key_row_pairs + unit_pair] = fused;
        }
    }
}

/// Issues this unit's 16-byte global loads of the V tile starting at `tile_start`: chunks of
/// two consecutive keys' rows, so that the store can transpose them into key pairs. Rows past
/// `seq_k` read as zero.
#[cube]
fn load_values<F: Float, NV: Size>(
    value: &Tensor<Vector<F, NV>>,
    staged: &mut Array<Vector<F, NV>>,
    value_head: usize,
    seq_k: usize,
    tile_start: usize,
    #[comptime] config: MmaForwardConfig,
) {
    let key_pairs = comptime!(config.tiling.key_tile / 2);
    #[unroll]
    for load in 0..comptime!(config.value_loads()) {
        let slot = UNIT_POS as usize + load * comptime!(config.units());
        let first_row = tile_start + (slot % key_pairs) * 2;
        let chunk_base = value_head / LOAD_WIDTH + slot / key_pairs;
        let mut even = Vector::<F, NV>::new(F::cast_from(0.0f32));
        let mut odd = Vector::<F, NV>::new(F::cast_from(0.0f32));
        if slot < comptime!(config.value_dim / LOAD_WIDTH * config.tiling.key_tile / 2) {
            if first_row < seq_k {
                even = value[chunk_base + first_row * value.stride(2) / LOAD_WIDTH];
            }
            if first_row + 1 < seq_k {
                odd = value[chunk_base + (first_row + 1) * value.stride(2) / LOAD_WIDTH];
            }
        }
        staged[load * 2] = even;
        staged[load * 2 + 1] = odd;
    }
}

/// Writes the staged V registers transposed into the shared tile: a unit's two rows of
/// [`LOAD_WIDTH`] columns become that many key pairs; the lanes of a warp take consecutive
/// key pairs, so their pair stores land on distinct banks.
#[cube]
fn store_values<F: Float, NV: Size>(
    staged: &Array<Vector<F, NV>>,
    values: &mut SharedMemory<Pair<F>>,
    #[comptime] value_row_pairs: usize,
    #[comptime] config: MmaForwardConfig,
) {
    let key_pairs = comptime!(config.tiling.key_tile / 2);
    #[unroll]
    for load in 0..comptime!(config.value_loads()) {
        let slot = UNIT_POS as usize + load * comptime!(config.units());
        if slot < comptime!(config.value_dim / LOAD_WIDTH * config.tiling.key_tile / 2) {
            let even = staged[load * 2];
            let odd = staged[load * 2 + 1];
            let key_pair = slot % key_pairs;
            let first_column = (slot / key_pairs) * LOAD_WIDTH;
            #[unroll]
            for column in 0..LOAD_WIDTH {
                let mut pair = Pair::<F>::empty();
                pair[0] = even[column];
                pair[1] = odd[column];
                values[(first_column + column) * value_row_pairs + key_pair] = pair;
            }
        }
    }
}

/// Where this lane's score fragments sit in the attention matrix.
#[derive(CubeType)]
struct RowPositions {
    warp_first_row: usize,
    quad_row: usize,
    quad_lane: usize,
    seq_q: usize,
    seq_k: usize,
    tile_start: usize,
}

/// Scales the tile's scores, updates each row's running maximum and sum, rescales its output
/// accumulators and turns the scores into probabilities in place. A row's four lanes agree on
/// its maximum through two shuffles and keep partial sums until the end. `masked`: keys past
/// `seq_k` or (causal) after the row's position score [`SCORE_FLOOR`] and get probability 0.
#[cube]
#[allow(clippy::too_many_arguments)]
fn online_softmax(
    scores: &mut Array<Pair<f32>>,
    running_max: &mut Array<f32>,
    running_sum: &mut Array<f32>,
    output_fragments: &mut Array<Pair<f32>>,
    positions: &RowPositions,
    scale: f32,
    #[comptime] masked: bool,
    #[comptime] config: MmaForwardConfig,
) {
    let key_blocks = comptime!(config.tiling.key_tile / 8);
    let value_blocks = comptime!(config.value_dim / 8);
    #[unroll]
    for tile in 0..config.tiling.warp_tiles {
        #[unroll]
        for half in 0..2usize {
            let row = positions.warp_first_row + tile * TILE_ROWS + positions.quad_row + half * 8;
            let mut query_position = positions.seq_k;
            if comptime!(config.causal) {
                query_position = row + positions.seq_k - positions.seq_q;
            }
            let mut tile_max = f32::new(SCORE_FLOOR);
            #[unroll]
            for key_block in 0..key_blocks {
                let index = (tile * key_blocks + key_block) * 2 + half;
                let mut block_scores = scores[index];
                #[unroll]
                for element in 0..2usize {
                    let mut score = block_scores[element] * scale;
                    if comptime!(masked) {
                        let key_position = positions.tile_start + key_block * 8 + positions.quad_lane * 2 + element;
                        let visible = key_position < positions.seq_k && key_position <= query_position;
                        score = select(visible, score, f32::new(SCORE_FLOOR));
                    }
                    block_scores[element] = score;
                    tile_max = max(tile_max, score);
                }
                scores[index] = block_scores;
            }
            tile_max = max(tile_max, plane_shuffle_xor(tile_max, 1u32));
            tile_max = max(tile_max, plane_shuffle_xor(tile_max, 2u32));
            let state = tile * 2 + half;
            let new_max = max(running_max[state], tile_max);
            let correction = Exp::exp(running_max[state] - new_max);
            running_max[state] = new_max;
            let mut tile_sum = 0.0f32;
            #[unroll]
            for key_block in 0..key_blocks {
                let index = (tile * key_blocks + key_block) * 2 + half;
                let mut block_scores = scores[index];
                #[unroll]
                for element in 0..2usize {
                    let score = block_scores[element];
                    let mut probability = Exp::exp(score - new_max);
                    if comptime!(masked) {
                        probability = select(score > f32::new(SCORE_FLOOR), probability, 0.0f32);
                    }
                    block_scores[element] = probability;
                    tile_sum += probability;
                }
                scores[index] = block_scores;
            }
            running_sum[state] = running_sum[state] * correction + tile_sum;
            #[unroll]
            for value_block in 0..value_blocks {
                let index = (tile * value_blocks + value_block) * 2 + half;
                output_fragments[index] = output_fragments[index] * Pair::<f32>::new(correction);
            }
        }
    }
}

/// The CUDA C++ source NVRTC would compile for `config` in `dtype` (f16 or bf16): the kernel
/// expanded through `client` (any runtime: the IR does not depend on it) and lowered by
/// CubeCL's CUDA compiler. Lets the tensor-core path be compiled and its register use read
/// without a GPU (`examples/tensor_core_source.rs`, `scripts/ptxas-report.py`).
#[cfg(feature = "cuda")]
pub fn tensor_core_source<R: Runtime>(
    client: &ComputeClient<R>,
    config: MmaForwardConfig,
    dtype: StorageType,
) -> Result<String, crate::KernelError> {
    use cubecl::ir::{ElemType, UIntKind};
    use cubecl::Compiler;

    let cube_dim = CubeDim::new_2d(PLANE_SIZE, (config.units() / PLANE_SIZE as usize) as u32);
    let kernel = flash_forward_mma::FlashForwardMma::<R>::new(
        KernelSettings::default().cube_dim(cube_dim),
        client.clone(),
        TensorCompilationArg { inplace: None },
        TensorCompilationArg { inplace: None },
        TensorCompilationArg { inplace: None },
        ArrayCompilationArg { inplace: None },
        TensorCompilationArg { inplace: None },
        (),
        config.key_width(),
        LOAD_WIDTH,
        config,
        dtype,
    );
    let mut options: <cubecl::cuda::CudaCompiler as Compiler>::CompilationOptions = Default::default();
    options.supports_features.fast_math = true;
    let address_type = StorageType::Scalar(ElemType::UInt(UIntKind::U32));
    cubecl::cuda::CudaCompiler::default()
        .compile(kernel.define(), &options, ExecutionMode::Unchecked, address_type)
        .map(|source| source.to_string())
        .map_err(|error| crate::KernelError::Unsupported {
            name: "tensor-core kernel",
            value: format!("{config:?}"),
            expected: format!("a specialisation CubeCL's CUDA compiler lowers ({error:?})"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_permutation::MAX_PROJECTIONS;
    use crate::flash_forward::{SUPPORTED_BLOCK_ROWS, SUPPORTED_GROUP_SIZES};
    use crate::SUPPORTED_HEAD_DIMS;

    fn config(head_dim: usize, group_size: usize, block_rows: usize, tiling: MmaTiling) -> MmaForwardConfig {
        MmaForwardConfig {
            head_dim,
            value_dim: head_dim,
            group_size,
            block_rows,
            num_projections: MAX_PROJECTIONS,
            representative: Representative::Sample,
            causal: false,
            tiling,
        }
    }

    /// The launcher's default tiling of every specialisation is consistent (so the launcher
    /// never falls back to the portable path for want of one), fits CUDA's static 48 KiB of
    /// shared memory and pads the score product to whole k16 steps; with `G > 1` a K' row of
    /// pairs divides the cube's units and a tile divides into rows of units, which the
    /// once-per-block column lookup and the gather loops rely on.
    #[test]
    fn default_tilings_are_consistent_and_fit_shared_memory() {
        for head_dim in SUPPORTED_HEAD_DIMS {
            for group_size in SUPPORTED_GROUP_SIZES.into_iter().filter(|g| head_dim % g == 0) {
                for block_rows in SUPPORTED_BLOCK_ROWS {
                    let config = config(head_dim, group_size, block_rows, MmaTiling::for_shape(head_dim, group_size));
                    let padded = config.padded_reduced_dim();
                    assert!(config.is_consistent(), "{config:?}");
                    assert!(padded % 16 == 0 && padded >= head_dim / group_size, "{config:?}");
                    assert!(config.shared_bytes(2) <= 48 * 1024, "{config:?}");
                    if group_size > 1 {
                        assert_eq!(config.units() % config.pairs_per_row(), 0, "{config:?}");
                        let gathered_pairs = config.keys_per_unit() * config.units();
                        assert_eq!(gathered_pairs, config.tiling.key_tile * config.pairs_per_row(), "{config:?}");
                    }
                }
            }
        }
    }

    /// Prefetching keeps its register budget: where a unit would gather more K elements than
    /// [`MAX_PREFETCHED_GATHERS`], only V is prefetched.
    #[test]
    fn key_prefetch_stays_within_its_register_budget() {
        let wide = config(64, 8, 64, MmaTiling { warp_tiles: 2, key_tile: 64, prefetch: true });
        assert!(wide.gathers() > MAX_PREFETCHED_GATHERS && !wide.prefetch_keys());
        let default = config(64, 2, 128, MmaTiling::for_shape(64, 2));
        assert!(default.gathers() <= MAX_PREFETCHED_GATHERS && default.prefetch_keys());
        let exact = config(128, 1, 128, MmaTiling::for_shape(128, 1));
        assert!(!exact.prefetch_keys() && exact.key_loads() > 0);
    }
}

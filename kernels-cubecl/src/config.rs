//! Comptime types shared by the kernels and the launcher: what a specialisation is, and the
//! limits the launcher checks against. Kernel files import from here, never from each other.

use cubecl::prelude::CubeDim;

/// Head dims (and value dims) with a comptime specialisation: multiples of 16, so that every
/// path's rows split into 16-byte chunks and whole `k16` steps.
pub const SUPPORTED_HEAD_DIMS: [usize; 5] = [32, 64, 80, 96, 128];
/// Group sizes with a comptime specialisation.
pub const SUPPORTED_GROUP_SIZES: [usize; 4] = [1, 2, 4, 8];
/// Query rows per block (and per cube of the forward kernels).
pub const SUPPORTED_BLOCK_ROWS: [usize; 2] = [64, 128];
/// Elements per 16-byte chunk of f16/bf16: the unit of the tensor-core path's copies and of
/// the grouped query's row padding.
pub const CHUNK: usize = 8;
/// Lanes per plane that the tensor-core fragment layouts assume.
pub const PLANE_SIZE: usize = 32;

/// How the representative query column of a group is formed.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Representative {
    /// The group's first column in permutation order.
    Sample,
    /// The mean of the group's columns.
    Mean,
    /// The sum of the group's columns, scored against the key column of the group's first
    /// member only (the paper's released kernel): K' is a selection of key columns rather than
    /// a sum, so the tensor-core path copies `head_dim / G` rows of K^T per tile and forms
    /// nothing.
    SampledKeys,
}

impl Representative {
    /// Key columns summed into each column of K': one where K' selects, `group_size` where it
    /// sums the group.
    pub fn key_members(self, group_size: usize) -> usize {
        match self {
            Representative::SampledKeys => 1,
            Representative::Sample | Representative::Mean => group_size,
        }
    }
}

/// Where the grouping pre-pass takes its column permutation from. [`Permutation::Lsh`] is
/// DistrAttention as defined; [`Permutation::Gram`] chooses the groups from the columns'
/// distances instead; the others exist to measure what hashing and sorting cost.
#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq)]
pub enum Permutation {
    /// Steps 2-4 of the definition: LSH codes, inverse Gray code, sort.
    #[default]
    Lsh,
    /// Groups with a small total squared distance between their query columns, per block
    /// ([`crate::gram_grouping`]): the reference's `Grouping::Gram` for `Sample` and `Mean`.
    /// No hyperplanes; consecutive groups only.
    Gram,
    /// [`Permutation::Gram`] with each pair's distance weighted by the mean squared length of
    /// its two key columns over the head's keys ([`crate::kernels::key_lengths`]): the
    /// reference's `Grouping::GramKeyWeighted` for `Sample` and `Mean`.
    GramKeyWeighted,
    /// The codes are computed but not sorted: the identity permutation at the cost of hashing.
    HashOnly,
    /// The identity permutation, no hashing.
    Identity,
}

impl Permutation {
    /// Whether the groups come from the columns' distances ([`crate::gram_grouping`]).
    pub fn is_gram(self) -> bool {
        matches!(self, Permutation::Gram | Permutation::GramKeyWeighted)
    }
}

/// Which sorted positions form a group.
#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq)]
pub enum GroupLayout {
    /// Group `j` holds sorted positions `jG .. jG + G - 1`: neighbours in the sort.
    #[default]
    Consecutive,
    /// Group `j` holds sorted positions `j, j + d/G, j + 2d/G, ...` (the paper's released
    /// kernel).
    Strided,
}

/// Comptime specialisation of the grouping pre-pass ([`crate::kernels::group_queries`]).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct GroupingConfig {
    pub head_dim: usize,
    pub group_size: usize,
    pub block_rows: usize,
    pub num_projections: usize,
    pub representative: Representative,
    pub permutation: Permutation,
    pub layout: GroupLayout,
    /// Unroll the hashing loops (CUDA; WGPU's shader compilers choke on large bodies).
    pub unroll: bool,
}

impl GroupingConfig {
    /// Units per cube: one per query row of the block.
    pub fn units(&self) -> usize {
        self.block_rows
    }

    /// Width of Q' and of the column table's groups: see [`reduced_width`].
    pub fn reduced_width(&self) -> usize {
        reduced_width(self.head_dim, self.group_size)
    }

    /// f32 of the shared buffer that stages query rows, and for [`Permutation::Gram`] holds
    /// the column distances between two stagings.
    pub fn staged_floats(&self) -> usize {
        let staged = crate::block_permutation::STAGED_ROWS * self.head_dim;
        if self.permutation.is_gram() {
            staged.max(crate::gram_grouping::scratch_floats(self.head_dim))
        } else {
            staged
        }
    }
}

/// Comptime specialisation of the expanded query's kernels
/// ([`crate::kernels::expanded_query`]): the grouping's shape, not how its groups were chosen.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct ExpansionConfig {
    pub head_dim: usize,
    pub group_size: usize,
    pub block_rows: usize,
    pub representative: Representative,
}

impl ExpansionConfig {
    /// Entries of one block's column table: `reduced_width * group_size`.
    pub fn table_entries(&self) -> usize {
        reduced_width(self.head_dim, self.group_size) * self.group_size
    }
}

/// Columns of the score product after grouping, zero-padded to a whole `k16` step: every
/// path multiplies Q' and K' of this width, and the padding columns are zero on both sides.
pub fn reduced_width(head_dim: usize, group_size: usize) -> usize {
    (head_dim / group_size).next_multiple_of(16)
}

/// Comptime specialisation of the portable forward kernel ([`crate::kernels::portable_forward`]).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct PortableConfig {
    /// Columns of the query operand (Q itself, or Q' from the pre-pass).
    pub reduced_width: usize,
    pub head_dim: usize,
    pub value_dim: usize,
    pub group_size: usize,
    /// Key columns summed into each column of K' ([`Representative::key_members`]).
    pub key_members: usize,
    pub block_rows: usize,
    pub key_tile: usize,
    pub causal: bool,
    /// Unroll the loops over a row so that Q' and the accumulator live in registers (CUDA).
    pub unroll: bool,
}

/// A cooperative-matrix fragment shape: `A` is `m x k`, `B` `k x n`, the accumulator
/// `m x n`. Devices list the shapes their `cmma` takes (16 x 16 x 16 on NVIDIA through Vulkan
/// and CUDA, 8 x 8 x 8 on Apple GPUs).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct MatrixShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

/// Comptime specialisation of the cooperative-matrix forward kernel
/// ([`crate::kernels::cooperative_forward`]).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct CooperativeConfig {
    /// Columns of the query operand (Q itself, or Q' from the pre-pass): whole `k` steps.
    pub reduced_width: usize,
    pub head_dim: usize,
    /// Whole `n` blocks.
    pub value_dim: usize,
    pub group_size: usize,
    /// Key columns summed into each column of K' ([`Representative::key_members`]).
    pub key_members: usize,
    /// Query rows per block: `m` rows per plane.
    pub block_rows: usize,
    /// Keys per shared tile: whole `n` blocks and `k` steps.
    pub key_tile: usize,
    pub causal: bool,
    pub shape: MatrixShape,
    /// Lanes per plane; a whole number of lanes per row of `m`.
    pub plane_size: usize,
}

impl CooperativeConfig {
    /// Key tiles the launcher tries, largest first.
    pub const KEY_TILES: [usize; 3] = [64, 32, 16];

    pub fn planes(&self) -> usize {
        self.block_rows / self.shape.m
    }

    pub fn units(&self) -> usize {
        self.planes() * self.plane_size
    }

    /// Lanes that share a query row in the softmax.
    pub fn lanes_per_row(&self) -> usize {
        self.plane_size / self.shape.m
    }

    /// Column-table entries per block: `reduced_width * group_size` for `G > 1`, one unread
    /// entry for exact attention.
    pub fn table_entries(&self) -> usize {
        if self.group_size == 1 {
            1
        } else {
            self.reduced_width * self.group_size
        }
    }

    /// Shared rows of K' (in elements), padded by one 16-byte chunk of operands: the rows
    /// `cmma` reads at once then start in different banks (unpadded, every row of 64 or 128
    /// columns starts in the same one).
    pub fn key_stride(&self) -> usize {
        self.reduced_width + CHUNK
    }

    /// Shared rows of K'^T for `G > 1` (K' is formed from K^T, one row per group), padded as
    /// [`Self::key_stride`].
    pub fn transposed_key_stride(&self) -> usize {
        self.key_tile + CHUNK
    }

    /// Elements of the K' tile: K' rows for exact attention, K'^T rows for `G > 1`; either
    /// way it also stages `key_tile` query rows before the key loop.
    pub fn key_tile_elements(&self) -> usize {
        let rows = self.key_tile * self.key_stride();
        if self.group_size == 1 {
            rows
        } else {
            rows.max(self.reduced_width * self.transposed_key_stride())
        }
    }

    /// The cube: one plane per `shape.m` query rows.
    pub fn cube_dim(&self) -> CubeDim {
        CubeDim::new_2d(self.plane_size as u32, self.planes() as u32)
    }

    /// The 16-byte chunks each unit copies of a `key_tile x width` tile (the cube's units
    /// share the tile's chunks evenly, the last ones fewer).
    pub fn chunks_per_unit(&self, width: usize) -> usize {
        (width * self.key_tile / CHUNK).div_ceil(self.units())
    }

    /// Registers in which each unit holds its chunks of the next key tile: K' rows for exact
    /// attention, the `key_members` K^T chunks of each K'^T chunk for `G > 1`.
    pub fn key_chunks_per_unit(&self) -> usize {
        let members = if self.group_size == 1 { 1 } else { self.key_members };
        self.chunks_per_unit(self.reduced_width) * members
    }

    /// Registers in which each unit holds its chunks of the next value tile.
    pub fn value_chunks_per_unit(&self) -> usize {
        self.chunks_per_unit(self.value_dim)
    }

    /// Shared rows of V, padded as [`Self::key_stride`].
    pub fn value_stride(&self) -> usize {
        self.value_dim + CHUNK
    }

    /// Shared rows of a plane's probabilities, padded as [`Self::key_stride`].
    pub fn probability_stride(&self) -> usize {
        self.key_tile + CHUNK
    }

    /// Shared rows of a plane's f32 scores, padded by 16 bytes.
    pub fn score_stride(&self) -> usize {
        self.key_tile + 4
    }

    /// Shared memory the kernel declares, in bytes, for operands of `element_bytes`: the K' and
    /// V tiles (K' also stages the query rows at the start), each plane's f32 scores and its
    /// probabilities, each row's correction or inverse sum, each plane's rescaling flag, and
    /// the column table.
    pub fn shared_bytes(&self, element_bytes: usize) -> usize {
        let operands = self.key_tile_elements() + self.key_tile * self.value_stride() + self.block_rows * self.probability_stride();
        let floats = self.block_rows * (self.score_stride() + 1) + self.planes() + self.table_entries();
        element_bytes * operands + 4 * floats
    }

    /// Whether the kernel's index arithmetic holds: whole fragments along every axis, whole
    /// planes of rows, lanes dividing a row's keys evenly, in powers of two (the softmax
    /// reduces across them with butterfly shuffles), the query rows staged through the K'
    /// tile in whole chunks of planes, and keys in whole 16-byte chunks.
    pub fn is_consistent(&self) -> bool {
        let MatrixShape { m, n, k } = self.shape;
        let lanes = self.plane_size / m.max(1);
        m > 0
            && n > 0
            && k > 0
            && self.block_rows.is_multiple_of(m)
            && self.reduced_width.is_multiple_of(k)
            && self.value_dim.is_multiple_of(n)
            && self.key_tile.is_multiple_of(n)
            && self.key_tile.is_multiple_of(k)
            && self.plane_size.is_multiple_of(m)
            && lanes.is_power_of_two()
            && self.key_tile.is_multiple_of(lanes)
            && self.key_tile.is_multiple_of(m)
            && self.block_rows.is_multiple_of(self.key_tile)
            && self.key_tile.is_multiple_of(CHUNK)
    }
}

/// Comptime specialisation of the two backward kernels ([`crate::kernels::backward_queries`],
/// [`crate::kernels::backward_keys`]), f32 arithmetic on every runtime.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct BackwardConfig {
    /// Columns of the query operand (Q itself, or Q' from the pre-pass).
    pub reduced_width: usize,
    pub head_dim: usize,
    pub value_dim: usize,
    pub group_size: usize,
    /// Key columns summed into each column of K' ([`Representative::key_members`]).
    pub key_members: usize,
    /// How Q' was formed from Q: decides how dQ' flows back to the query columns.
    pub representative: Representative,
    /// Query rows per block (one grouping each); also the units of both kernels' cubes.
    pub block_rows: usize,
    /// Keys per shared tile of the query-side kernel.
    pub key_tile: usize,
    /// Query rows per shared tile of the key-side kernel.
    pub query_tile: usize,
    pub causal: bool,
    /// Unroll the loops over a row (CUDA; see [`PortableConfig::unroll`]).
    pub unroll: bool,
}

impl BackwardConfig {
    /// Column-table entries per block: `reduced_width * group_size` for `G > 1`, one unread
    /// entry for exact attention.
    pub fn table_entries(&self) -> usize {
        if self.group_size == 1 {
            1
        } else {
            self.reduced_width * self.group_size
        }
    }

    /// Shared memory of the query-side kernel in bytes: the K' and V tiles, f32, and the table.
    pub fn query_side_bytes(&self) -> usize {
        4 * (self.key_tile * (self.reduced_width + self.value_dim) + self.table_entries())
    }

    /// Shared memory of the key-side kernel in bytes: a tile of Q' and dO rows, each row's
    /// log-sum-exp and `rowsum(dO * O)`, and the table.
    pub fn key_side_bytes(&self) -> usize {
        4 * (self.query_tile * (self.reduced_width + self.value_dim + 2) + self.table_entries())
    }

    /// f32 a unit of either kernel holds for its row: K' and V with their gradients on the key
    /// side, Q', dO and dQ' on the query side.
    pub fn floats_per_unit(&self) -> usize {
        (2 * self.reduced_width + 2 * self.value_dim).max(2 * self.reduced_width + self.value_dim)
    }
}

/// Most f32 per unit ([`BackwardConfig::floats_per_unit`]) the backward kernels take. Above
/// it CUDA's compiler moves the whole row into local memory (ptxas, exact attention at
/// d = 128: 32 registers and 3 KB of stack per thread) and the backward ran 40x slower than
/// the reference's tensor-core matmuls on an H200; at 384 (G = 2, d = 128) it spills a little
/// and stays 3x faster than the reference.
pub const MAX_BACKWARD_FLOATS_PER_UNIT: usize = 384;

/// The shape of a K' tile as the portable kernels form it ([`crate::key_tiles`]).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct FusedKeyTile {
    pub reduced_width: usize,
    pub head_dim: usize,
    pub group_size: usize,
    pub key_members: usize,
    pub key_tile: usize,
    /// Units of the cube that loads it.
    pub units: usize,
    pub unroll: bool,
}

impl PortableConfig {
    pub fn fused_key_tile(&self) -> FusedKeyTile {
        FusedKeyTile {
            reduced_width: self.reduced_width,
            head_dim: self.head_dim,
            group_size: self.group_size,
            key_members: self.key_members,
            key_tile: self.key_tile,
            units: self.block_rows,
            unroll: self.unroll,
        }
    }
}

impl BackwardConfig {
    pub fn fused_key_tile(&self) -> FusedKeyTile {
        FusedKeyTile {
            reduced_width: self.reduced_width,
            head_dim: self.head_dim,
            group_size: self.group_size,
            key_members: self.key_members,
            key_tile: self.key_tile,
            units: self.block_rows,
            unroll: self.unroll,
        }
    }
}

/// Most query rows per call that [`crate::Strategy::Auto`] sends to split-key decode
/// ([`crate::kernels::split_keys_decode`]): a decode step has one, speculative or chunked
/// decoding a few. Larger calls fill the device through their query blocks instead.
pub const DECODE_QUERY_ROWS: usize = 8;
/// Units per cube of the split-key decode kernels.
pub const DECODE_UNITS: usize = 128;
/// Split-key decode's running maximum before any key: finite, so that a row with no visible
/// key in a split keeps weight `exp(floor - max) = 0` when the splits combine, never NaN.
pub const MAX_FLOOR: f32 = -3.0e38;

/// Comptime specialisation of split-key decode ([`crate::kernels::split_keys_decode`] and
/// [`crate::kernels::combine_splits`]).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct DecodeConfig {
    /// Columns of the query operand (Q itself, or Q' from the pre-pass).
    pub reduced_width: usize,
    pub head_dim: usize,
    pub value_dim: usize,
    pub group_size: usize,
    /// Key columns summed into each column of K' ([`Representative::key_members`]).
    pub key_members: usize,
    /// Rows a cube holds (query heads per key head times query rows), rounded up to a power
    /// of two so that few specialisations serve every model.
    pub rows: usize,
    pub key_tile: usize,
    pub causal: bool,
    /// Unroll the loops over a row (CUDA; see [`PortableConfig::unroll`]).
    pub unroll: bool,
}

impl DecodeConfig {
    /// Row stride of the shared K tile: one zero column past `head_dim`, where the column
    /// table's padding groups point.
    pub fn key_stride(&self) -> usize {
        self.head_dim + 1
    }

    /// Column-table entries a cube holds: one table per head, at most `rows` heads.
    pub fn table_entries(&self) -> usize {
        if self.group_size == 1 {
            1
        } else {
            self.rows * self.reduced_width * self.group_size
        }
    }

    /// Output elements each unit accumulates in registers.
    pub fn accumulators_per_unit(&self) -> usize {
        (self.rows * self.value_dim).div_ceil(DECODE_UNITS)
    }

    /// Shared memory of the first pass, in bytes (every array is 4-byte elements).
    pub fn shared_bytes(&self) -> usize {
        let queries = self.rows * self.reduced_width;
        let tiles = self.key_tile * (self.key_stride() + self.value_dim);
        let scores = self.rows * self.key_tile;
        4 * (queries + self.table_entries() + tiles + scores + 2 * self.rows)
    }
}

/// How K and V tiles travel from global to shared memory on the tensor-core path.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum CopyStrategy {
    /// Loads into registers, stores to shared memory, a barrier: the copy and the tensor work
    /// of a tile never overlap.
    Synchronous,
    /// `cp.async` into one of two stages, completed on an mbarrier: the next tile's copy runs
    /// while the current tile is computed.
    DoubleBuffered,
}

/// How tensor-core fragments are read from shared memory.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum FragmentLoads {
    /// Each lane reads its own elements: one 32-bit load per Q or K register, two 16-bit loads
    /// per V register (V is stored key-major).
    Scalar,
    /// `ldmatrix` for Q and K, scalar loads for V.
    MatrixQueryKey,
    /// `ldmatrix` everywhere, `.trans` for V: four registers per instruction.
    Matrix,
}

/// How a tensor-core kernel moves tiles: what the shared device functions
/// ([`crate::mma_tiles`]) need to know of its specialisation.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct TileAccess {
    /// Units of the cube, which share every copy.
    pub units: usize,
    pub copy: CopyStrategy,
    pub fragments: FragmentLoads,
}

/// How a tensor-core cube's work is cut up. Each distinct value is a compiled kernel.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct TensorCoreTiling {
    /// Warps per cube.
    pub warps: usize,
    /// Row tiles of 16 query rows per warp: each B fragment read from shared memory feeds this
    /// many `mma`.
    pub warp_tiles: usize,
    /// Keys per tile: 32, 64 or 128.
    pub key_tile: usize,
    /// Keep the block's Q' fragments in registers across key tiles (else reread per tile).
    pub query_in_registers: bool,
}

impl TensorCoreTiling {
    /// Key tiles the kernel is specialised for.
    pub const KEY_TILES: [usize; 3] = [32, 64, 128];
    /// Row tiles per warp the kernel is specialised for.
    pub const WARP_TILES: [usize; 2] = [1, 2];

    /// The default tiling for a shape, from the H200 sweep (`benchmarks/results/2026-12-02-h200-v2/`):
    /// four warps (two row tiles each for 128-row blocks) and 64-key tiles, which beat 32-key
    /// tiles and eight warps of one row tile at head dims 64 and 128. Exact attention keeps Q in
    /// registers where the per-lane accumulators (`warp_tiles * (value_dim + key_tile) / 2` f32)
    /// and Q fragments (`warp_tiles * head_dim / 4`) stay within 160 registers (head dim 64:
    /// 4.30 ms against 4.47 from shared memory at N = 8192); grouped attention rereads Q' from
    /// shared memory, which leaves the registers to the K'^T fragments (G = 2, head dim 64: 4.18
    /// ms against 4.49). Where K' selects key columns (`key_members == 1`) and the head dim is
    /// at most 64, the smaller K stage leaves room for 128-key tiles (G = 2, head dim 64: 3.84
    /// ms against 4.06; head dim 128: 11.0 against 6.6, so not there;
    /// `benchmarks/results/2026-12-02-h200-v3/sweep/`).
    pub fn for_shape(head_dim: usize, group_size: usize, key_members: usize, block_rows: usize) -> Self {
        let warp_tiles = if block_rows >= 128 { 2 } else { 1 };
        let selects_keys = group_size > 1 && key_members == 1;
        let key_tile = if selects_keys && head_dim <= 64 { 128 } else { 64 };
        let registers = warp_tiles * ((head_dim + key_tile) / 2 + head_dim / 4);
        Self {
            warps: block_rows / (16 * warp_tiles),
            warp_tiles,
            key_tile,
            query_in_registers: group_size == 1 && registers <= 160,
        }
    }
}

/// What the grouped tensor-core kernel skips, to measure a stage by its absence. Timing only:
/// anything but [`KeyFusion::Fused`] gives a wrong result.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum KeyFusion {
    /// K' formed from each K tile in shared memory (DistrAttention).
    Fused,
    /// The K' tile is left as it is: the score product runs on stale data.
    Skipped,
}

/// Comptime specialisation of the tensor-core forward kernel
/// ([`crate::kernels::tensor_core_forward`]).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct TensorCoreConfig {
    pub head_dim: usize,
    pub value_dim: usize,
    pub group_size: usize,
    /// Key columns summed into each column of K' ([`Representative::key_members`]).
    pub key_members: usize,
    pub block_rows: usize,
    pub causal: bool,
    pub tiling: TensorCoreTiling,
    pub copy: CopyStrategy,
    pub fragments: FragmentLoads,
    pub key_fusion: KeyFusion,
    /// Write each query row's log-sum-exp for the backward ([`crate::AttentionBindings::log_sums`]).
    pub saves_log_sums: bool,
}

impl TensorCoreConfig {
    /// Units per cube.
    pub fn units(&self) -> usize {
        self.tiling.warps * PLANE_SIZE
    }

    /// Columns of the score product ([`reduced_width`]).
    pub fn reduced_width(&self) -> usize {
        reduced_width(self.head_dim, self.group_size)
    }

    pub fn access(&self) -> TileAccess {
        TileAccess { units: self.units(), copy: self.copy, fragments: self.fragments }
    }

    /// Whether K' is a selection of K columns (`G > 1`, one key member per group): its
    /// columns are then copied straight from K^T into the K stage, and no K' tile is formed.
    pub fn selects_keys(&self) -> bool {
        self.group_size > 1 && self.key_members == 1
    }

    /// Query rows per warp.
    pub fn warp_rows(&self) -> usize {
        16 * self.tiling.warp_tiles
    }

    /// K/V tiles in flight.
    pub fn stages(&self) -> usize {
        match self.copy {
            CopyStrategy::Synchronous => 1,
            CopyStrategy::DoubleBuffered => 2,
        }
    }

    /// Shared rows are padded by one chunk: eight consecutive rows' chunks then fall in eight
    /// distinct bank groups for every supported row length (an even number of chunks), so
    /// `ldmatrix` and `cp.async` are conflict-free without a swizzle.
    pub fn padded_chunks(columns: usize) -> usize {
        columns / CHUNK + 1
    }

    /// Chunks per row of a K stage: rows of `head_dim` columns for exact attention, rows of
    /// `key_tile` keys for `G > 1` (K arrives transposed).
    pub fn key_stage_stride(&self) -> usize {
        if self.group_size == 1 {
            Self::padded_chunks(self.head_dim)
        } else {
            Self::padded_chunks(self.tiling.key_tile)
        }
    }

    /// Rows of a K stage: keys for exact attention, K^T's rows for `G > 1` (all `head_dim` of
    /// them where K' is formed from the tile, only K''s `reduced_width` where it selects).
    pub fn key_stage_rows(&self) -> usize {
        if self.group_size == 1 {
            self.tiling.key_tile
        } else if self.selects_keys() {
            self.reduced_width()
        } else {
            self.head_dim
        }
    }

    /// Chunks of the shared tiles: the query block, the K and V stages and (`G > 1`, K' formed
    /// by sums) K'^T.
    pub fn shared_chunks(&self) -> SharedLayout {
        let key_tile = self.tiling.key_tile;
        let query = self.block_rows * Self::padded_chunks(self.reduced_width());
        let key_stage = self.key_stage_rows() * self.key_stage_stride();
        let value_stage = key_tile * Self::padded_chunks(self.value_dim);
        let fused_keys = if self.group_size > 1 && !self.selects_keys() {
            self.reduced_width() * Self::padded_chunks(key_tile)
        } else {
            0
        };
        SharedLayout { query, key_stage, value_stage, fused_keys, stages: self.stages() }
    }

    /// Shared memory the kernel declares, in bytes: the 16-byte chunks, the column table and two
    /// mbarriers.
    pub fn shared_bytes(&self) -> usize {
        self.shared_chunks().total() * 16 + self.reduced_width() * self.group_size * 4 + 16
    }

    /// Whether the kernel's index arithmetic holds: whole row tiles per warp, whole `k16`
    /// steps of keys, and a supported key tile.
    pub fn is_consistent(&self) -> bool {
        let tiling = &self.tiling;
        TensorCoreTiling::WARP_TILES.contains(&tiling.warp_tiles)
            && TensorCoreTiling::KEY_TILES.contains(&tiling.key_tile)
            && tiling.warps * self.warp_rows() == self.block_rows
            && self.head_dim % 16 == 0
            && self.value_dim % 16 == 0
    }
}

/// Comptime specialisation of the two tensor-core backward kernels
/// ([`crate::kernels::tensor_core_backward_queries`], [`crate::kernels::tensor_core_backward_keys`]),
/// exact attention. Each cube owns a block of rows of one operand (query rows on the query
/// side, keys on the key side), 16 per warp, kept in shared memory; the other operand streams
/// through in tiles of [`Self::tile`] rows.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct TensorCoreBackwardConfig {
    pub head_dim: usize,
    pub value_dim: usize,
    /// Warps per cube, each owning 16 rows of the block.
    pub warps: usize,
    /// Rows per streamed tile: keys on the query side, query rows on the key side (32 or 64).
    pub tile: usize,
    pub causal: bool,
    pub copy: CopyStrategy,
    /// The query side reads the forward's log-sum-exps ([`crate::AttentionBindings::log_sums`])
    /// instead of computing them in a first pass over the key tiles.
    pub saved_log_sums: bool,
    /// Which kernel forms dQ (the key side's specialisation says).
    pub query_gradient: QueryGradient,
}

/// Where the tensor-core backward forms dQ.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum QueryGradient {
    /// A query-side kernel scores every (query block, key tile) pair again for `S`, `dP` and
    /// `dQ += dS K`: seven products per pair over the two kernels, no atomics.
    QuerySide,
    /// The key side, which has `dS` already, also forms `dQ += dS K` per tile (through shared
    /// memory, warps split over the tile's query rows) and adds it to f32 sums with atomics;
    /// five products per pair, as FlashAttention-2. Needs the forward's log-sum-exps (a
    /// prologue kernel turns them and `rowsum(dO * O)` into the key side's row statistics) and
    /// an atomic add of f32 pairs (CUDA sm_90).
    KeySide,
}

impl TensorCoreBackwardConfig {
    /// Tiles the kernels are specialised for.
    pub const TILES: [usize; 2] = [32, 64];
    /// The multiple the key side's row statistics pad each (batch, head)'s query rows to
    /// ([`crate::kernels::backward_row_stats::stat_rows`]): the largest of [`Self::TILES`], so
    /// that every tile the key side reads lies inside.
    pub const STAT_ROWS_PADDING: usize = 64;
    /// Warps of the key side forming dQ: each cube's block of keys adds to every query row's
    /// sums once per tile, so larger blocks mean fewer atomic adds.
    pub const KEY_SIDE_WARPS: usize = 8;

    /// The two kernels' specialisations for a shape (query side, key side): four warps, tiles
    /// of 64 keys on the query side; on the key side 64 query rows up to head (and value) dim
    /// 64 and 32 above, because the key side holds dK, dV, `S^T` and `dP^T` in registers
    /// (`(head_dim + value_dim + 2 tile) / 2` f32 per lane).
    pub fn for_shape(head_dim: usize, value_dim: usize, causal: bool) -> [Self; 2] {
        let config = |tile| Self {
            head_dim,
            value_dim,
            warps: 4,
            tile,
            causal,
            copy: CopyStrategy::DoubleBuffered,
            saved_log_sums: false,
            query_gradient: QueryGradient::QuerySide,
        };
        let key_tile = if head_dim.max(value_dim) <= 64 { 64 } else { 32 };
        [config(64), config(key_tile)]
    }

    /// Rows of the block a cube owns.
    pub fn block_rows(&self) -> usize {
        16 * self.warps
    }

    pub fn units(&self) -> usize {
        self.warps * PLANE_SIZE
    }

    pub fn access(&self) -> TileAccess {
        TileAccess { units: self.units(), copy: self.copy, fragments: FragmentLoads::Matrix }
    }

    /// Streamed tiles in flight.
    pub fn stages(&self) -> usize {
        match self.copy {
            CopyStrategy::Synchronous => 1,
            CopyStrategy::DoubleBuffered => 2,
        }
    }

    /// Chunks of one streamed tile of the `head_dim`-wide operand (K, or Q), and of the
    /// `value_dim`-wide one (V, or dO).
    pub fn stage_chunks(&self) -> [usize; 2] {
        [self.head_dim, self.value_dim].map(|width| self.tile * TensorCoreConfig::padded_chunks(width))
    }

    /// Shared memory either kernel declares, in bytes (at most): the owned block and the
    /// streamed stages of both operands, two mbarriers, and the key side's `dS` tile.
    pub fn shared_bytes(&self) -> usize {
        let row = TensorCoreConfig::padded_chunks(self.head_dim) + TensorCoreConfig::padded_chunks(self.value_dim);
        16 * ((self.block_rows() + self.stages() * self.tile) * row + self.grad_scores_chunks()) + 16
    }

    /// Chunks of the key side's `dS` tile: one (declared, unused) without
    /// [`QueryGradient::KeySide`].
    pub fn grad_scores_chunks(&self) -> usize {
        match self.query_gradient {
            QueryGradient::QuerySide => 1,
            QueryGradient::KeySide => self.tile * self.grad_scores_stride(),
        }
    }

    /// This key side's specialisation forming dQ too ([`QueryGradient::KeySide`]): on the
    /// forward's log-sum-exps, with [`Self::KEY_SIDE_WARPS`] warps.
    pub fn forming_query_gradient(self) -> Self {
        Self { saved_log_sums: true, query_gradient: QueryGradient::KeySide, warps: Self::KEY_SIDE_WARPS, ..self }
    }

    /// Whether the key side's grid runs over the (batch, key head) pairs along x and the key
    /// blocks along y: causal calls forming dQ. CUDA starts cubes x first, so each pair's first
    /// key block (seen by the most query rows) starts before any pair's second, and the cubes
    /// resident together add into different heads' dQ. Measured on an H100 (2026-12-06, causal,
    /// d = 64, N = 4096 and 16384): the key side forming dQ on this grid took 0.87x the time of
    /// the query side (the default); on the blocks-first grid it had taken 1.15-1.25x
    /// (`benchmarks/results/2026-12-06-h100-backward-row-stats`).
    pub fn heads_first(&self) -> bool {
        self.causal && self.query_gradient == QueryGradient::KeySide
    }

    /// Chunks per query row of the key side's `dS` tile (`[tile, block_rows]`, padded by one
    /// chunk as the other tiles).
    pub fn grad_scores_stride(&self) -> usize {
        TensorCoreConfig::padded_chunks(self.block_rows())
    }

    /// How the key side splits `dQ += dS K` of one tile over its warps: row tiles of 16 query
    /// rows, times groups of head-dim columns.
    pub fn query_gradient_split(&self) -> [usize; 2] {
        let row_tiles = self.tile / 16;
        [row_tiles, self.warps / row_tiles.max(1)]
    }

    /// Whether the key side can form dQ ([`QueryGradient::KeySide`]): the warps split into
    /// whole row tiles times column groups of whole n16 pairs.
    pub fn takes_key_side_query_gradient(&self) -> bool {
        let [row_tiles, column_groups] = self.query_gradient_split();
        row_tiles * column_groups == self.warps && (self.head_dim / 8) % (2 * column_groups) == 0
    }

    /// Whether the kernels' index arithmetic holds: whole k16 steps and n16 pairs of every
    /// operand, and a block of rows whose grid writes the row statistics' padding too.
    pub fn is_consistent(&self) -> bool {
        Self::TILES.contains(&self.tile)
            && self.block_rows() % Self::STAT_ROWS_PADDING == 0
            && self.head_dim % 16 == 0
            && self.value_dim % 16 == 0
            && self.warps > 0
            && (self.query_gradient == QueryGradient::QuerySide || (self.saved_log_sums && self.takes_key_side_query_gradient()))
    }
}

/// Sizes of the tensor-core kernel's shared tiles, in 16-byte chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedLayout {
    pub query: usize,
    pub key_stage: usize,
    pub value_stage: usize,
    pub fused_keys: usize,
    pub stages: usize,
}

impl SharedLayout {
    pub fn total(&self) -> usize {
        self.query + self.stages * (self.key_stage + self.value_stage) + self.fused_keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every default tiling is consistent and fits a Hopper cube's 227 KiB; the 64-row blocks
    /// fit the 48 KiB every CUDA device has.
    #[test]
    fn default_tilings_are_consistent_and_fit_shared_memory() {
        for head_dim in SUPPORTED_HEAD_DIMS {
            for group_size in SUPPORTED_GROUP_SIZES.into_iter().filter(|g| head_dim % g == 0) {
                for block_rows in SUPPORTED_BLOCK_ROWS {
                    for (copy, key_members) in [CopyStrategy::Synchronous, CopyStrategy::DoubleBuffered]
                        .into_iter()
                        .flat_map(|copy| [(copy, 1), (copy, group_size)])
                    {
                        let config = TensorCoreConfig {
                            head_dim,
                            value_dim: head_dim,
                            group_size,
                            key_members,
                            block_rows,
                            causal: false,
                            tiling: TensorCoreTiling::for_shape(head_dim, group_size, key_members, block_rows),
                            copy,
                            fragments: FragmentLoads::Matrix,
                            key_fusion: KeyFusion::Fused,
                            saves_log_sums: false,
                        };
                        assert!(config.is_consistent(), "{config:?}");
                        assert!(config.shared_bytes() <= 227 * 1024, "{config:?}");
                        assert!(config.reduced_width() % 16 == 0, "{config:?}");
                    }
                }
            }
        }
    }

    /// The tensor-core backward's specialisations are consistent for every supported head
    /// dim (the key side forming dQ where its warps split), and two cubes of them fit a Hopper
    /// SM's 227 KiB of shared memory.
    #[test]
    fn backward_tilings_are_consistent_and_fit_shared_memory() {
        for head_dim in SUPPORTED_HEAD_DIMS {
            let [queries, keys] = TensorCoreBackwardConfig::for_shape(head_dim, head_dim, false);
            let key_side = keys.forming_query_gradient();
            for config in [queries, keys, key_side].into_iter().filter(|config| config.query_gradient == QueryGradient::QuerySide || config.takes_key_side_query_gradient()) {
                assert!(config.is_consistent(), "{config:?}");
                assert!(2 * config.shared_bytes() <= 227 * 1024, "{config:?}");
            }
        }
    }

    /// One chunk of padding puts the chunks of eight consecutive rows in eight distinct
    /// groups of four banks.
    #[test]
    fn padded_rows_spread_over_all_bank_groups() {
        for columns in SUPPORTED_HEAD_DIMS.into_iter().chain(TensorCoreTiling::KEY_TILES) {
            let stride = TensorCoreConfig::padded_chunks(columns);
            let mut groups: Vec<usize> = (0..8).map(|row| row * stride % 8).collect();
            groups.sort();
            groups.dedup();
            assert_eq!(groups.len(), 8, "{columns} columns");
        }
    }
}

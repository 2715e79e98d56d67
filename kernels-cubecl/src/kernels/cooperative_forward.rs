//! The forward pass on cooperative matrices (`cmma`): tensor cores for backends whose matrix
//! fragments are opaque, such as wgpu on Vulkan (`VK_KHR_cooperative_matrix`, SPIR-V) and
//! Metal, where the manual `mma` of [`crate::kernels::tensor_core_forward`] does not exist.
//!
//! One cube per (query block, batch * head), one plane per `m` query rows of the block:
//!
//! 1. the block's rows of the query operand (Q, or Q' from the grouping pre-pass) pass through
//!    shared memory once, a tile of rows at a time, into each plane's `A` fragments, which stay
//!    in registers for the whole key loop;
//! 2. per tile of `key_tile` keys the cube stores into shared memory the tile's K (exact
//!    attention) or K'^T (`G > 1`: row `j` the sum of the K^T rows of group `j`'s first
//!    `key_members` columns, named by the pre-pass's column table, whole 16-byte chunks at a
//!    time) and its V, which its units loaded into registers while the cube computed on the
//!    tile before, and starts loading the next tile's, so that global memory's latency hides
//!    behind the products; each plane scores its rows against the tile (`S = Q' K'^T`, f32
//!    accumulators) and stores the scores to its shared rows, where its lanes read them once
//!    into registers for the online softmax (a fragment's elements cannot be addressed, so the
//!    scores take this detour) and write the probabilities back as operands, and adds `P V`
//!    into its output accumulators;
//! 3. each plane stores its accumulators one `n` block at a time and writes them normalised.
//!
//! The running maximum moves only when a row's scores outgrow it by [`RESCALE_THRESHOLD`]
//! (log2 units): only then (rarely after the first tiles) do the output accumulators go through
//! shared memory to be rescaled. `lanes_per_row` lanes share a row, each holding the
//! running maximum and its part of the sum; they combine by butterfly shuffles. Shared rows are
//! padded by 16 bytes so that the rows a fragment load or store touches start in different
//! banks. Every copy moves 16 bytes at a time (the launcher requires rows in whole chunks).

use cubecl::cmma::{self, Matrix, MatrixIdent, MatrixLayout};
use cubecl::prelude::*;

use crate::config::{CooperativeConfig, CHUNK};
use crate::key_tiles::is_visible;
use crate::mma_tiles::{exp2, RESCALE_THRESHOLD, SCORE_FLOOR};

/// `key` is K `[batch, kv_heads, seq_k, head_dim]` for exact attention and K^T `[batch,
/// kv_heads, head_dim, seq_k padded to a chunk]` for `G > 1`. `N8`: the vector width of the
/// three inputs, [`CHUNK`] (16 bytes). Fast math: `exp2` becomes the hardware's approximation;
/// no value is ever infinite or NaN.
#[cube(launch_unchecked, fast_math = FastMath::all())]
#[allow(clippy::too_many_arguments)]
pub(crate) fn cooperative_forward<F: Float, N8: Size>(
    query: &Tensor<Vector<F, N8>>,
    key: &Tensor<Vector<F, N8>>,
    value: &Tensor<Vector<F, N8>>,
    key_columns: &Array<u32>,
    output: &mut Tensor<F>,
    scale_log2: f32,
    #[comptime] config: CooperativeConfig,
    #[define(F)] _dtype: StorageType,
) {
    let m = config.shape.m;
    let n = config.shape.n;
    let k = config.shape.k;
    let block_rows = config.block_rows;
    let key_tile = config.key_tile;
    let units = comptime!(config.units());
    let lanes_per_row = comptime!(config.lanes_per_row());
    let value_blocks = comptime!(config.value_dim / config.shape.n);

    let heads = output.shape(1);
    let seq_q = output.shape(2);
    let seq_k = value.shape(2);
    let queries_per_kv_head = heads / key.shape(1);
    let batch_head = CUBE_POS_Y as usize;
    let batch = batch_head / heads;
    let head = batch_head % heads;
    let kv_head = head / queries_per_kv_head;
    let unit = UNIT_POS as usize;
    let plane = UNIT_POS_Y as usize;
    let lane = UNIT_POS_X as usize;
    // Causal blocks see more keys the later they sit: launch the longest first.
    let mut block = CUBE_POS_X as usize;
    if comptime!(config.causal) {
        block = CUBE_COUNT_X as usize - 1 - block;
    }
    let block_first_row = block * block_rows;

    // G > 1: the block's column table, from the pre-pass.
    let mut columns = SharedMemory::<u32>::new(comptime!(config.table_entries()));
    if comptime!(config.group_size > 1) {
        let table = (batch_head * CUBE_COUNT_X as usize + block) * config.table_entries();
        let mut entry = unit;
        while entry < config.table_entries() {
            columns[entry] = key_columns[table + entry];
            entry += units;
        }
    }
    // This lane's row of the plane's `m`, and its share of the row's keys.
    let plane_first_row = plane * m;
    let row = lane % m;
    let part = lane / m;
    let query_row = block_first_row + plane_first_row + row;
    // Causal: query `row` sits at position `row + seq_k - seq_q`; the block needs no key
    // after its last row's position.
    let mut keys_end = seq_k;
    let mut query_position = seq_k;
    if comptime!(config.causal) {
        let block_last_row = min(seq_q, block_first_row + block_rows) - 1;
        keys_end = block_last_row + seq_k - seq_q + 1;
        query_position = query_row + seq_k - seq_q;
    }

    let score_stride = comptime!(config.score_stride());
    let probability_stride = comptime!(config.probability_stride());
    let mut fused_keys = SharedMemory::<Vector<F, N8>>::new(comptime!(config.key_tile_elements() / CHUNK));
    let mut values = SharedMemory::<Vector<F, N8>>::new(comptime!(config.key_tile * config.value_stride() / CHUNK));
    // Each plane's `m` rows of scores (f32) and probabilities (operands); the scores' rows
    // also stage the output accumulators, one `n` block at a time.
    let mut scores = SharedMemory::<f32>::new(comptime!(config.block_rows * config.score_stride()));
    let mut probabilities = SharedMemory::<F>::new(comptime!(config.block_rows * config.probability_stride()));
    // Each row's correction while rescaling, and its inverse sum at the end.
    let mut row_factors = SharedMemory::<f32>::new(config.block_rows);
    let mut rescaling_planes = SharedMemory::<u32>::new(comptime!(config.planes()));
    let plane_scores = plane_first_row * score_stride;
    let plane_probabilities = plane_first_row * probability_stride;

    let queries = load_query_fragments(query, &mut fused_keys, batch, head, block_first_row, plane_first_row, unit, config);

    let mut outputs = Sequence::<Matrix<f32>>::new();
    #[unroll]
    for _ in 0..value_blocks {
        outputs.push(Matrix::<f32>::from_value(MatrixIdent::Accumulator, m, n, k, MatrixLayout::Undefined, f32::new(0.0)));
    }
    let mut running_max = f32::new(SCORE_FLOOR);
    let mut running_sum = 0.0f32;

    let key_head = batch * key.stride(0) + kv_head * key.stride(1);
    let value_head = batch * value.stride(0) + kv_head * value.stride(1);
    // The next tile's chunks wait in registers while the cube computes on this one.
    let mut key_chunks = Array::<Vector<F, N8>>::new(comptime!(config.key_chunks_per_unit()));
    let mut value_chunks = Array::<Vector<F, N8>>::new(comptime!(config.value_chunks_per_unit()));
    load_keys(key, &columns, &mut key_chunks, key_head, 0, seq_k, unit, config);
    load_rows(value, value_head, 0, seq_k, &mut value_chunks, unit, config.key_tile, config.value_dim, config.units());
    let steps = comptime!(config.key_tile / lanes_per_row);
    // Rows `r` and `r + 8` of the scores and probabilities start in the same bank: the later
    // eight rows walk their keys one step ahead, so that a plane's 32 accesses hit 32 banks.
    let rotation = row / 8;
    let mut row_scores = Array::<f32>::new(steps);
    let mut tile_start = 0usize;
    while tile_start < keys_end {
        store_keys(&key_chunks, &mut fused_keys, unit, config);
        store_rows(&value_chunks, &mut values, unit, config.key_tile, config.value_dim, config.value_stride(), config.units());
        sync_cube();
        let next_tile = tile_start + key_tile;
        if next_tile < keys_end {
            load_keys(key, &columns, &mut key_chunks, key_head, next_tile, seq_k, unit, config);
            load_rows(value, value_head, next_tile, seq_k, &mut value_chunks, unit, config.key_tile, config.value_dim, config.units());
        }

        score_tile(&queries, &fused_keys, &mut scores, plane_scores, config);
        sync_cube();

        // The online softmax over this lane's keys of its row, read from shared memory once.
        let mut tile_max = f32::new(SCORE_FLOOR);
        #[unroll]
        for step in 0..steps {
            let column = ((step + rotation) % steps) * lanes_per_row + part;
            let mut score = f32::new(SCORE_FLOOR);
            if is_visible(tile_start + column, seq_k, query_position, config.causal) {
                score = scores[plane_scores + row * score_stride + column] * scale_log2;
            }
            row_scores[step] = score;
            tile_max = max(tile_max, score);
        }
        tile_max = row_reduce_max(tile_max, config);
        let mut correction = f32::new(1.0);
        let mut rescales = false;
        if tile_max > running_max + f32::new(RESCALE_THRESHOLD) {
            // A row still at the floor has no output yet: nothing to rescale.
            rescales = running_max > f32::new(SCORE_FLOOR);
            correction = exp2(running_max - tile_max);
            running_max = tile_max;
        }
        running_sum *= correction;
        #[unroll]
        for step in 0..steps {
            let column = ((step + rotation) % steps) * lanes_per_row + part;
            let mut probability = 0.0f32;
            if is_visible(tile_start + column, seq_k, query_position, config.causal) {
                probability = exp2(row_scores[step] - running_max);
            }
            running_sum += probability;
            probabilities[plane_probabilities + row * probability_stride + column] = F::cast_from(probability);
        }
        // Whether any plane rescales decides for the whole cube, so that the rescaling's
        // barriers stay uniform; rows that kept their maximum have a correction of 1.
        if part == 0 {
            row_factors[plane_first_row + row] = correction;
        }
        let plane_rescales = plane_any(rescales);
        if lane == 0 {
            rescaling_planes[plane] = select(plane_rescales, 1u32, 0u32);
        }
        sync_cube();
        let mut cube_rescales = false;
        #[unroll]
        for other in 0..comptime!(config.planes()) {
            cube_rescales = cube_rescales || rescaling_planes[other] != 0;
        }
        if cube_rescales {
            #[unroll]
            for value_block in 0..value_blocks {
                rescale_block(outputs.index(value_block), &mut scores, &row_factors, plane_first_row, plane_scores, lane, config);
            }
        }

        // O += P V, each probability fragment feeding every `n` block of the output.
        #[unroll]
        for step in 0..comptime!(config.key_tile / config.shape.k) {
            let probability_fragment = Matrix::<F>::from_slice(
                MatrixIdent::A,
                m,
                n,
                k,
                MatrixLayout::RowMajor,
                &probabilities.slice(plane_probabilities + step * k, comptime!(config.block_rows * config.probability_stride())),
                comptime!(config.probability_stride() as u32),
            );
            #[unroll]
            for value_block in 0..value_blocks {
                let value_fragment = unsafe { Matrix::<F>::uninitialized(MatrixIdent::B, m, n, k, MatrixLayout::RowMajor) };
                cmma::load(
                    &value_fragment,
                    &values.slice(
                        comptime!((step * config.shape.k * config.value_stride() + value_block * config.shape.n) / CHUNK),
                        comptime!(config.key_tile * config.value_stride() / CHUNK),
                    ),
                    comptime!(config.value_stride() as u32),
                );
                let accumulator = outputs.index(value_block);
                cmma::execute::<F, F, f32, f32>(&probability_fragment, &value_fragment, accumulator, accumulator);
            }
        }
        sync_cube();
        tile_start = next_tile;
    }

    // Normalise and write: the row's sum over its lanes, the inverse through shared memory to
    // the lanes that write the row's elements.
    let total = row_reduce_sum(running_sum, config);
    if part == 0 {
        let mut inverse = 0.0f32;
        if total > 0.0 {
            inverse = 1.0 / total;
        }
        row_factors[plane_first_row + row] = inverse;
    }
    let output_head = batch * output.stride(0) + head * output.stride(1);
    #[unroll]
    for value_block in 0..value_blocks {
        cmma::store(
            &mut scores.slice_mut(plane_scores, comptime!(config.block_rows * config.score_stride())),
            outputs.index(value_block),
            comptime!(config.score_stride() as u32),
            MatrixLayout::RowMajor,
        );
        sync_cube();
        let mut element = lane;
        while element < comptime!(config.shape.m * config.shape.n) {
            let block_row = element / n;
            let output_row = block_first_row + plane_first_row + block_row;
            if output_row < seq_q {
                let column = element % n;
                let scaled = scores[plane_scores + block_row * score_stride + column] * row_factors[plane_first_row + block_row];
                output[output_head + output_row * output.stride(2) + (value_block * n + column) * output.stride(3)] =
                    F::cast_from(scaled);
            }
            element += config.plane_size;
        }
        sync_cube();
    }
}

/// This unit's chunks of rows `first_row..first_row + rows` of one head of `source` (at
/// element `head_offset`, rows contiguous), `columns` wide, into `chunks`: chunk `i` is the
/// tile's chunk `unit + i * units`, zero from row `rows_valid` on.
#[cube]
#[allow(clippy::too_many_arguments)]
fn load_rows<F: Float, N: Size>(
    source: &Tensor<Vector<F, N>>,
    head_offset: usize,
    first_row: usize,
    rows_valid: usize,
    chunks: &mut Array<Vector<F, N>>,
    unit: usize,
    #[comptime] rows: usize,
    #[comptime] columns: usize,
    #[comptime] units: usize,
) {
    let vectors = comptime!(columns / CHUNK);
    let slots = comptime!(rows * columns / CHUNK);
    #[unroll]
    for index in 0..comptime!(slots.div_ceil(units)) {
        let slot = unit + index * units;
        let source_row = first_row + slot / vectors;
        let mut loaded = Vector::<F, N>::new(F::cast_from(0.0f32));
        if slot < slots && source_row < rows_valid {
            loaded = source[(head_offset + source_row * source.stride(2)) / CHUNK + slot % vectors];
        }
        chunks[index] = loaded;
    }
}

/// The chunks [`load_rows`] took into `target`'s rows of `target_stride` elements.
#[cube]
fn store_rows<F: Float, N: Size>(
    chunks: &Array<Vector<F, N>>,
    target: &mut SharedMemory<Vector<F, N>>,
    unit: usize,
    #[comptime] rows: usize,
    #[comptime] columns: usize,
    #[comptime] target_stride: usize,
    #[comptime] units: usize,
) {
    let vectors = comptime!(columns / CHUNK);
    let slots = comptime!(rows * columns / CHUNK);
    #[unroll]
    for index in 0..comptime!(slots.div_ceil(units)) {
        let slot = unit + index * units;
        if slot < slots {
            target[(slot / vectors) * comptime!(target_stride / CHUNK) + slot % vectors] = chunks[index];
        }
    }
}

/// This unit's chunks of the key tile from `tile_start`: K's rows for exact attention; for
/// `G > 1` the K^T chunks that [`store_keys`] sums into K'^T, `key_members` per chunk of K'^T
/// (row `j` of K'^T sums the K^T rows of group `j`'s first `key_members` columns, named by the
/// block's column table), zero in the padding groups and past K^T's padded keys. Consecutive
/// units take consecutive chunks of one row.
#[cube]
#[allow(clippy::too_many_arguments)]
fn load_keys<F: Float, N8: Size>(
    key: &Tensor<Vector<F, N8>>,
    columns: &SharedMemory<u32>,
    chunks: &mut Array<Vector<F, N8>>,
    key_head: usize,
    tile_start: usize,
    seq_k: usize,
    unit: usize,
    #[comptime] config: CooperativeConfig,
) {
    if comptime!(config.group_size == 1) {
        load_rows(key, key_head, tile_start, seq_k, chunks, unit, config.key_tile, config.reduced_width, config.units());
    } else {
        let tile_chunks = comptime!(config.key_tile / CHUNK);
        let groups = comptime!(config.head_dim / config.group_size);
        let slots = comptime!(config.reduced_width * config.key_tile / CHUNK);
        #[unroll]
        for index in 0..comptime!(slots.div_ceil(config.units())) {
            let slot = unit + index * config.units();
            let group = slot / tile_chunks;
            let key_chunk = tile_start / CHUNK + slot % tile_chunks;
            let present = slot < slots && group < groups && key_chunk * CHUNK < key.shape(3);
            #[unroll]
            for member in 0..config.key_members {
                let mut loaded = Vector::<F, N8>::new(F::cast_from(0.0f32));
                if present {
                    let row = columns[group * config.group_size + member] as usize;
                    loaded = key[(key_head + row * key.stride(2)) / CHUNK + key_chunk];
                }
                chunks[index * config.key_members + member] = loaded;
            }
        }
    }
}

/// The chunks [`load_keys`] took into the K' tile: K' rows for exact attention, K'^T rows (each
/// chunk the sum of its members) for `G > 1`. The members add in f32: Vulkan has no bf16
/// arithmetic (`VK_KHR_shader_bfloat16` converts and multiplies matrices only), and bf16 sums
/// in the storage type came out NaN there.
#[cube]
fn store_keys<F: Float, N8: Size>(
    chunks: &Array<Vector<F, N8>>,
    fused_keys: &mut SharedMemory<Vector<F, N8>>,
    unit: usize,
    #[comptime] config: CooperativeConfig,
) {
    if comptime!(config.group_size == 1) {
        store_rows(chunks, fused_keys, unit, config.key_tile, config.reduced_width, config.key_stride(), config.units());
    } else {
        let tile_chunks = comptime!(config.key_tile / CHUNK);
        let slots = comptime!(config.reduced_width * config.key_tile / CHUNK);
        #[unroll]
        for index in 0..comptime!(slots.div_ceil(config.units())) {
            let slot = unit + index * config.units();
            if slot < slots {
                let mut fused = Vector::<f32, N8>::cast_from(chunks[index * config.key_members]);
                #[unroll]
                for member in 1..config.key_members {
                    fused += Vector::<f32, N8>::cast_from(chunks[index * config.key_members + member]);
                }
                fused_keys[(slot / tile_chunks) * comptime!(config.transposed_key_stride() / CHUNK) + slot % tile_chunks] =
                    Vector::<F, N8>::cast_from(fused);
            }
        }
    }
}

/// The plane's `A` fragments of its `m` query rows, one per `k` step: the block's rows go
/// through the K' tile (free before the key loop) a tile of rows at a time, zero past the
/// query's rows and columns, and each plane loads its fragments from the tile that holds its
/// rows.
#[cube]
#[allow(clippy::too_many_arguments)]
fn load_query_fragments<F: Float, N8: Size>(
    query: &Tensor<Vector<F, N8>>,
    staging: &mut SharedMemory<Vector<F, N8>>,
    batch: usize,
    head: usize,
    block_first_row: usize,
    plane_first_row: usize,
    unit: usize,
    #[comptime] config: CooperativeConfig,
) -> Sequence<Matrix<F>> {
    let m = config.shape.m;
    let n = config.shape.n;
    let k = config.shape.k;
    let mut fragments = Sequence::<Matrix<F>>::new();
    #[unroll]
    for _ in 0..comptime!(config.reduced_width / config.shape.k) {
        fragments.push(unsafe { Matrix::<F>::uninitialized(MatrixIdent::A, m, n, k, MatrixLayout::RowMajor) });
    }
    let query_head = batch * query.stride(0) + head * query.stride(1);
    let mut chunks = Array::<Vector<F, N8>>::new(comptime!(config.chunks_per_unit(config.reduced_width)));
    #[unroll]
    for chunk in 0..comptime!(config.block_rows / config.key_tile) {
        let chunk_first_row = chunk * config.key_tile;
        load_rows(
            query,
            query_head,
            block_first_row + chunk_first_row,
            query.shape(2),
            &mut chunks,
            unit,
            config.key_tile,
            config.reduced_width,
            config.units(),
        );
        store_rows(&chunks, staging, unit, config.key_tile, config.reduced_width, config.key_stride(), config.units());
        sync_cube();
        if plane_first_row >= chunk_first_row && plane_first_row < chunk_first_row + config.key_tile {
            let first = (plane_first_row - chunk_first_row) * comptime!(config.key_stride() / CHUNK);
            #[unroll]
            for step in 0..comptime!(config.reduced_width / config.shape.k) {
                cmma::load(
                    fragments.index(step),
                    &staging.slice(
                        first + comptime!(step * config.shape.k / CHUNK),
                        comptime!(config.key_tile_elements() / CHUNK),
                    ),
                    comptime!(config.key_stride() as u32),
                );
            }
        }
        sync_cube();
    }
    fragments
}

/// `S = Q' K'^T` for the plane's `m` rows against the tile, one `n` block of keys at a time,
/// stored as f32 rows of the plane's scores.
#[cube]
fn score_tile<F: Float, N8: Size>(
    queries: &Sequence<Matrix<F>>,
    fused_keys: &SharedMemory<Vector<F, N8>>,
    scores: &mut SharedMemory<f32>,
    plane_scores: usize,
    #[comptime] config: CooperativeConfig,
) {
    let m = config.shape.m;
    let n = config.shape.n;
    let k = config.shape.k;
    #[unroll]
    for key_block in 0..comptime!(config.key_tile / config.shape.n) {
        let accumulator = Matrix::<f32>::from_value(MatrixIdent::Accumulator, m, n, k, MatrixLayout::Undefined, f32::new(0.0));
        #[unroll]
        for step in 0..comptime!(config.reduced_width / config.shape.k) {
            let key_fragment = key_fragment(fused_keys, key_block, step, config);
            cmma::execute::<F, F, f32, f32>(queries.index(step), &key_fragment, &accumulator, &accumulator);
        }
        cmma::store(
            &mut scores.slice_mut(plane_scores + key_block * n, comptime!(config.block_rows * config.score_stride())),
            &accumulator,
            comptime!(config.score_stride() as u32),
            MatrixLayout::RowMajor,
        );
    }
}

/// K'^T's `k x n` block (`step`, `key_block`) as a `B` fragment: K' rows read column-major
/// for exact attention, K'^T rows read row-major for `G > 1`.
#[cube]
fn key_fragment<F: Float, N8: Size>(
    fused_keys: &SharedMemory<Vector<F, N8>>,
    #[comptime] key_block: usize,
    #[comptime] step: usize,
    #[comptime] config: CooperativeConfig,
) -> Matrix<F> {
    let m = config.shape.m;
    let n = config.shape.n;
    let k = config.shape.k;
    let end = comptime!(config.key_tile_elements() / CHUNK);
    if comptime!(config.group_size == 1) {
        let fragment = unsafe { Matrix::<F>::uninitialized(MatrixIdent::B, m, n, k, MatrixLayout::ColMajor) };
        let first = comptime!((key_block * config.shape.n * config.key_stride() + step * config.shape.k) / CHUNK);
        cmma::load(&fragment, &fused_keys.slice(first, end), comptime!(config.key_stride() as u32));
        fragment
    } else {
        let fragment = unsafe { Matrix::<F>::uninitialized(MatrixIdent::B, m, n, k, MatrixLayout::RowMajor) };
        let first = comptime!((step * config.shape.k * config.transposed_key_stride() + key_block * config.shape.n) / CHUNK);
        cmma::load(&fragment, &fused_keys.slice(first, end), comptime!(config.transposed_key_stride() as u32));
        fragment
    }
}

/// One `n` block of the plane's output accumulators times each row's correction, through the
/// plane's score rows (free once the probabilities are written). Every plane of the cube calls
/// it: its barriers are the cube's (a plane's barrier orders no shared memory on SPIR-V).
#[cube]
fn rescale_block(
    accumulator: &Matrix<f32>,
    scores: &mut SharedMemory<f32>,
    row_factors: &SharedMemory<f32>,
    plane_first_row: usize,
    plane_scores: usize,
    lane: usize,
    #[comptime] config: CooperativeConfig,
) {
    let n = config.shape.n;
    let score_stride = comptime!(config.score_stride());
    cmma::store(
        &mut scores.slice_mut(plane_scores, comptime!(config.block_rows * config.score_stride())),
        accumulator,
        comptime!(config.score_stride() as u32),
        MatrixLayout::RowMajor,
    );
    sync_cube();
    let mut element = lane;
    while element < comptime!(config.shape.m * config.shape.n) {
        let row = element / n;
        scores[plane_scores + row * score_stride + element % n] *= row_factors[plane_first_row + row];
        element += config.plane_size;
    }
    sync_cube();
    cmma::load_with_layout(
        accumulator,
        &scores.slice(plane_scores, comptime!(config.block_rows * config.score_stride())),
        comptime!(config.score_stride() as u32),
        MatrixLayout::RowMajor,
    );
    sync_cube();
}

/// The maximum over the lanes that share this lane's row (lanes `m` apart).
#[cube]
fn row_reduce_max(value: f32, #[comptime] config: CooperativeConfig) -> f32 {
    let mut reduced = value;
    #[unroll]
    for level in 0..comptime!(config.lanes_per_row().trailing_zeros() as usize) {
        reduced = max(reduced, plane_shuffle_xor(reduced, comptime!((config.shape.m << level) as u32)));
    }
    reduced
}

/// The sum over the lanes that share this lane's row (lanes `m` apart).
#[cube]
fn row_reduce_sum(value: f32, #[comptime] config: CooperativeConfig) -> f32 {
    let mut reduced = value;
    #[unroll]
    for level in 0..comptime!(config.lanes_per_row().trailing_zeros() as usize) {
        reduced += plane_shuffle_xor(reduced, comptime!((config.shape.m << level) as u32));
    }
    reduced
}

//! Softmax attention on `f32` slices for the CPU, parallel over blocks of query rows.
//!
//! Burn 0.21's fused CPU attention (`burn::tensor::module::attention` on Flex) walks the
//! `(batch, head)` pairs one after another on the calling thread, with scalar exponentials:
//! in a profile of SmolLM2-135M's 1024-token prefill on two cores it took half of the calling
//! thread's samples in the layers, all of them on that thread. Here each task is one block of [`ROW_BLOCK`] query rows of one head:
//! its scores against every key it may read (causal: up to its last row's position) are one
//! `gemm`, the softmax runs over those rows with an exponential the compiler vectorises, and
//! `P V` is a second `gemm`. Tasks run on rayon's pool, so both cores work and causal blocks,
//! whose cost grows with their position, balance themselves. The score block is `ROW_BLOCK`
//! rows by the keys read: 256 KiB at 1024 keys, kept per worker and reused.

use rayon::prelude::*;

use crate::vector_exp::exp_non_positive;
use crate::AttentionProblem;

/// Query rows per task: 64 rows of 64-dim heads fill gemm's micro-tiles, and 1016 rows of 9 heads
/// still make 144 tasks for the pool to balance.
const ROW_BLOCK: usize = 64;

/// A `[batch, heads, rows, dim]` `f32` tensor read where it lies: its storage and the element
/// strides of the first three axes, the last axis contiguous. The heads a model passes are views
/// (queries split from `[batch, seq, heads, dim]` rows, keys and values narrowed from its KV
/// cache); read in place they cost no copy, where a contiguous copy of them was 2-3% of
/// SmolLM2-135M's 1024-token prefill.
#[derive(Debug, Clone, Copy)]
pub(super) struct HeadsView<'a> {
    storage: &'a [f32],
    offset: usize,
    shape: [usize; 4],
    strides: [usize; 3],
}

impl<'a> HeadsView<'a> {
    /// `None` where a stride is negative, the last axis is not contiguous or an element lies
    /// outside `storage`.
    pub fn new(storage: &'a [f32], offset: usize, shape: [usize; 4], strides: [isize; 4]) -> Option<Self> {
        if shape[3] > 1 && strides[3] != 1 {
            return None;
        }
        let strides = [0, 1, 2].map(|axis| usize::try_from(strides[axis]).ok());
        let [Some(batch), Some(head), Some(row)] = strides else {
            return None;
        };
        let strides = [batch, head, row];
        let view = Self { storage, offset, shape, strides };
        let fits = shape.contains(&0) || view.head_start(shape[0] - 1, shape[1] - 1) + view.head_span() <= storage.len();
        fits.then_some(view)
    }

    /// A contiguous `[batch, heads, rows, dim]` slice.
    #[cfg(test)]
    pub fn contiguous(values: &'a [f32], shape: [usize; 4]) -> Self {
        let strides = [shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1].map(|stride| stride as isize);
        Self::new(values, 0, shape, strides).expect("a contiguous slice of the shape's length")
    }

    fn head_start(&self, batch: usize, head: usize) -> usize {
        self.offset + batch * self.strides[0] + head * self.strides[1]
    }

    /// Elements from a head's first row's start to its last row's end.
    fn head_span(&self) -> usize {
        match self.shape[2] {
            0 => 0,
            rows => (rows - 1) * self.strides[2] + self.shape[3],
        }
    }

    /// One head's rows: a slice from its first row's start and the row stride.
    fn head(&self, batch: usize, head: usize) -> HeadRows<'a> {
        let start = self.head_start(batch, head);
        HeadRows { values: &self.storage[start..start + self.head_span()], stride: self.strides[2] }
    }

    /// Whether every element is finite (one pass; `x * 0` is zero for finite `x` and NaN else).
    pub fn is_finite(&self) -> bool {
        let [batch, heads, rows, dim] = self.shape;
        (0..batch * heads).all(|pair| {
            let head = self.head(pair / heads, pair % heads);
            (0..rows).all(|row| head.values[row * head.stride..][..dim].iter().fold(0.0f32, |sum, &x| sum + x * 0.0) == 0.0)
        })
    }
}

/// The rows of one head of a [`HeadsView`].
#[derive(Clone, Copy)]
struct HeadRows<'a> {
    values: &'a [f32],
    stride: usize,
}

/// Where the output's rows go: `[batch, seq_q, heads, value_dim]`, written by tasks that own
/// disjoint rows of it.
#[derive(Clone, Copy)]
struct OutputRows(*mut f32);

// SAFETY: tasks write disjoint `(batch, head, row)` ranges of the buffer behind the pointer, which
// outlives them (`BlockAttention::run` joins them before it returns the buffer).
unsafe impl Send for OutputRows {}
unsafe impl Sync for OutputRows {}

impl OutputRows {
    /// The rows from element `offset` on.
    fn from(self, offset: usize) -> Self {
        Self(self.0.wrapping_add(offset))
    }
}

/// Exact attention of `problem`'s shapes, causal mask and softmax on `[batch, heads, rows, dim]`
/// views (grouped-query heads: query head `h` reads key head `h / (heads / kv_heads)`); inputs
/// are finite.
pub(super) struct BlockAttention<'a> {
    problem: &'a AttentionProblem,
}

impl<'a> BlockAttention<'a> {
    pub fn new(problem: &'a AttentionProblem) -> Self {
        Self { problem }
    }

    /// `softmax(scale Q K^T) V` as `[batch, seq_q, heads, value_dim]`: the layout in which a
    /// model merges the heads, so that its merge is a view of it.
    pub fn run(&self, query: HeadsView, key: HeadsView, value: HeadsView) -> Vec<f32> {
        let AttentionProblem { batch, heads, kv_heads, seq_q, seq_k, head_dim, value_dim, .. } = *self.problem;
        debug_assert_eq!(query.shape, [batch, heads, seq_q, head_dim]);
        debug_assert_eq!(key.shape, [batch, kv_heads, seq_k, head_dim]);
        debug_assert_eq!(value.shape, [batch, kv_heads, seq_k, value_dim]);
        let mut output = vec![0.0; batch * seq_q * heads * value_dim];
        if output.is_empty() {
            return output;
        }
        let destination = OutputRows(output.as_mut_ptr());
        let repeats = heads / kv_heads;
        let blocks = seq_q.div_ceil(ROW_BLOCK);
        (0..batch * heads * blocks).into_par_iter().for_each_init(Vec::new, |scores, task| {
            let (pair, block) = (task / blocks, task % blocks);
            let (batch, head) = (pair / heads, pair % heads);
            let first = block * ROW_BLOCK;
            let rows = ROW_BLOCK.min(seq_q - first);
            let kv = head / repeats;
            let output = destination.from(((batch * seq_q + first) * heads + head) * value_dim);
            // SAFETY: this task alone writes rows `first..first + rows` of this head, inside the
            // buffer.
            unsafe {
                self.row_block(first, rows, query.head(batch, head), key.head(batch, kv), value.head(batch, kv), output, scores);
            }
        });
        output
    }

    /// Rows `first..first + rows` of one head, written from `output` on with a row stride of
    /// `heads * value_dim`.
    ///
    /// # Safety
    /// `output` must point at this block's first output row of a buffer laid out as
    /// [`Self::run`] returns it, and no other task may write these rows meanwhile.
    #[allow(clippy::too_many_arguments)]
    unsafe fn row_block(
        &self,
        first: usize,
        rows: usize,
        query: HeadRows,
        key: HeadRows,
        value: HeadRows,
        output: OutputRows,
        scores: &mut Vec<f32>,
    ) {
        let AttentionProblem { seq_q, seq_k, heads, head_dim, value_dim, quiet_softmax, scale, .. } = *self.problem;
        let output_stride = heads * value_dim;
        // Keys row `row` of the block reads (causal: `seq_q <= seq_k`); the last row reads the
        // most, and the others a prefix of them.
        let causal = self.problem.config.causal;
        let visible = |row: usize| if causal { seq_k - seq_q + first + row + 1 } else { seq_k };
        let keys = visible(rows - 1);
        scores.clear();
        scores.resize(rows * keys, 0.0);
        let query_rows = &query.values[first * query.stride..];
        // SAFETY: every operand lies inside its slice: `query_rows` rows x head_dim, `key`
        // keys x head_dim read transposed, `scores` rows x keys, each row-major with its row
        // stride.
        unsafe {
            gemm::gemm(
                rows,
                keys,
                head_dim,
                scores.as_mut_ptr(),
                1,
                keys as isize,
                false,
                query_rows.as_ptr(),
                1,
                query.stride as isize,
                key.values.as_ptr(),
                key.stride as isize,
                1,
                0.0,
                scale as f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        let mut inverse_sums = [0.0f32; ROW_BLOCK];
        for (row, inverse_sum) in inverse_sums[..rows].iter_mut().enumerate() {
            let (read, hidden) = scores[row * keys..][..keys].split_at_mut(visible(row));
            hidden.fill(0.0);
            *inverse_sum = softmax_numerators(read, quiet_softmax).recip();
        }
        // SAFETY: `scores` is rows x keys, `value` keys x value_dim with its row stride, and the
        // caller gives `output` rows x value_dim with stride `output_stride`.
        unsafe {
            gemm::gemm(
                rows,
                value_dim,
                keys,
                output.0,
                1,
                output_stride as isize,
                false,
                scores.as_ptr(),
                1,
                keys as isize,
                value.values.as_ptr(),
                1,
                value.stride as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        for (row, inverse_sum) in inverse_sums[..rows].iter().enumerate() {
            // SAFETY: row `row` of this block's output, which the caller gives this task.
            let row = unsafe { std::slice::from_raw_parts_mut(output.0.add(row * output_stride), value_dim) };
            row.iter_mut().for_each(|x| *x *= inverse_sum);
        }
    }
}

/// Replaces each score `s` of a row by `exp(s - m)` for the row's maximum `m` and returns their
/// sum (with quiet softmax `m` is at least zero and the zero logit's `exp(-m)` is added).
fn softmax_numerators(row: &mut [f32], quiet: bool) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked above.
        return unsafe { softmax_numerators_avx2(row, quiet) };
    }
    softmax_numerators_portable(row, quiet)
}

/// [`softmax_numerators_portable`] compiled for AVX2: eight lanes instead of SSE2's four.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn softmax_numerators_avx2(row: &mut [f32], quiet: bool) -> f32 {
    softmax_numerators_portable(row, quiet)
}

/// Lanes of the maximum and sum: independent accumulators the compiler turns into one vector.
const LANES: usize = 8;

#[inline(always)]
fn softmax_numerators_portable(row: &mut [f32], quiet: bool) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = if x > *lane { x } else { *lane };
        }
    }
    let tail_max = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    let mut max = lanes.iter().fold(tail_max, |m, &x| if x > m { x } else { m });
    if quiet {
        max = max.max(0.0);
    }
    let mut sums = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (sum, x) in sums.iter_mut().zip(chunk) {
            *x = exp_non_positive(*x - max);
            *sum += *x;
        }
    }
    let mut sum: f32 = chunks.into_remainder().iter_mut().map(|x| {
        *x = exp_non_positive(*x - max);
        *x
    }).sum();
    sum += sums.iter().sum::<f32>();
    if quiet {
        sum += exp_non_positive(-max);
    }
    sum
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{Tensor, TensorData};

    use super::*;
    use crate::DistrAttentionConfig;

    /// Every score row, exact softmax in f64 against the block kernel: causal with fewer query
    /// rows than keys, grouped-query heads, rows not a multiple of the block, quiet softmax; the
    /// inputs read contiguous and as views (queries split from `[batch, seq, heads, dim]` rows,
    /// keys and values narrowed from a longer cache).
    #[test]
    fn matches_a_direct_softmax() {
        let mut state = 0x2545_f491_u32;
        let mut random = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as f32 / u32::MAX as f32 * 4.0 - 2.0
                })
                .collect()
        };
        for (causal, quiet, seq_q, seq_k) in [(true, false, 150, 150), (true, false, 70, 200), (false, false, 65, 131), (true, true, 3, 40), (false, true, 130, 7)] {
            let query = random(2 * 4 * seq_q * 24);
            let key = random(2 * 2 * seq_k * 24);
            let value = random(2 * 2 * seq_k * 20);
            let tensor = |values: &[f32], shape: [usize; 4]| Tensor::<Flex, 4>::from_data(TensorData::new(values.to_vec(), shape), &Default::default());
            let config = DistrAttentionConfig::new().with_group_size(1).with_causal(causal).with_scale(Some(0.3));
            let problem = AttentionProblem::check(
                &tensor(&query, [2, 4, seq_q, 24]),
                &tensor(&key, [2, 2, seq_k, 24]),
                &tensor(&value, [2, 2, seq_k, 20]),
                None,
                &config,
            )
            .unwrap()
            .with_quiet_softmax(quiet);
            let contiguous = BlockAttention::new(&problem).run(
                HeadsView::contiguous(&query, [2, 4, seq_q, 24]),
                HeadsView::contiguous(&key, [2, 2, seq_k, 24]),
                HeadsView::contiguous(&value, [2, 2, seq_k, 20]),
            );
            // The same values as views: query rows `[batch, seq, heads, dim]`, keys and values
            // the first `seq_k` of 9 more cached positions, after 5 elements of something else.
            let query_rows: Vec<f32> = (0..2 * seq_q * 4)
                .flat_map(|index| {
                    let (batch, row, head) = (index / (seq_q * 4), index / 4 % seq_q, index % 4);
                    query[((batch * 4 + head) * seq_q + row) * 24..][..24].to_vec()
                })
                .collect();
            let cached = |values: &[f32], dim: usize| -> Vec<f32> {
                let mut cache = vec![f32::NAN; 5 + 2 * 2 * (seq_k + 9) * dim];
                for (pair, head) in values.chunks(seq_k * dim).enumerate() {
                    cache[5 + pair * (seq_k + 9) * dim..][..seq_k * dim].copy_from_slice(head);
                }
                cache
            };
            let (key_cache, value_cache) = (cached(&key, 24), cached(&value, 20));
            fn cache_view(cache: &[f32], seq_k: usize, dim: usize) -> HeadsView<'_> {
                let strides = [2 * (seq_k + 9) * dim, (seq_k + 9) * dim, dim, 1].map(|stride| stride as isize);
                HeadsView::new(cache, 5, [2, 2, seq_k, dim], strides).unwrap()
            }
            let query_strides = [seq_q * 4 * 24, 24, 4 * 24, 1].map(|stride| stride as isize);
            let views = BlockAttention::new(&problem).run(
                HeadsView::new(&query_rows, 0, [2, 4, seq_q, 24], query_strides).unwrap(),
                cache_view(&key_cache, seq_k, 24),
                cache_view(&value_cache, seq_k, 20),
            );
            for (pair, row) in (0..2 * 4).flat_map(|pair| (0..seq_q).map(move |row| (pair, row))) {
                let kv = pair / 4 * 2 + pair % 4 / 2;
                let q = &query[(pair * seq_q + row) * 24..][..24];
                let read = if causal { row + seq_k - seq_q + 1 } else { seq_k };
                let scores: Vec<f64> = (0..read)
                    .map(|j| 0.3 * q.iter().zip(&key[(kv * seq_k + j) * 24..][..24]).map(|(a, b)| (a * b) as f64).sum::<f64>())
                    .collect();
                let max = scores.iter().cloned().fold(if quiet { 0.0 } else { f64::NEG_INFINITY }, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total = weights.iter().sum::<f64>() + if quiet { (-max).exp() } else { 0.0 };
                let output_row = ((pair / 4 * seq_q + row) * 4 + pair % 4) * 20;
                for c in 0..20 {
                    let expected: f64 =
                        weights.iter().enumerate().map(|(j, w)| w * value[(kv * seq_k + j) * 20 + c] as f64).sum::<f64>() / total;
                    for (layout, output) in [("contiguous", &contiguous), ("views", &views)] {
                        let got = output[output_row + c] as f64;
                        assert!((got - expected).abs() < 1e-5, "{layout} causal={causal} quiet={quiet} pair {pair} row {row} col {c}: {got} vs {expected}");
                    }
                }
            }
        }
    }

    /// Views whose strides or extent the kernel cannot read are refused (their callers copy
    /// them), and a NaN or infinity anywhere in a view is found.
    #[test]
    fn views_refuse_what_they_cannot_read_and_find_non_finite_values() {
        let values = vec![1.0f32; 2 * 3 * 4 * 5];
        let shape = [2, 3, 4, 5];
        assert!(HeadsView::new(&values, 0, shape, [60, 20, 5, 1]).is_some());
        assert!(HeadsView::new(&values, 1, shape, [60, 20, 5, 1]).is_none(), "one element past the end");
        assert!(HeadsView::new(&values, 0, shape, [60, 20, 1, 4]).is_none(), "last axis not contiguous");
        assert!(HeadsView::new(&values, 100, shape, [-60, 20, 5, 1]).is_none(), "negative stride");
        assert!(HeadsView::contiguous(&values, shape).is_finite());
        for (index, bad) in [(0, f32::NAN), (77, f32::INFINITY), (119, f32::NEG_INFINITY)] {
            let mut values = values.clone();
            values[index] = bad;
            assert!(!HeadsView::contiguous(&values, shape).is_finite(), "{bad} at {index}");
        }
    }
}

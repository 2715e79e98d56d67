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

/// Exact attention of `problem`'s shapes, causal mask and softmax on contiguous `[batch, heads,
/// rows, dim]` slices (grouped-query heads: query head `h` reads key head
/// `h / (heads / kv_heads)`); inputs are finite.
pub(super) struct BlockAttention<'a> {
    problem: &'a AttentionProblem,
}

impl<'a> BlockAttention<'a> {
    pub fn new(problem: &'a AttentionProblem) -> Self {
        Self { problem }
    }

    /// `softmax(scale Q K^T) V`, `[batch, heads, seq_q, value_dim]`.
    pub fn run(&self, query: &[f32], key: &[f32], value: &[f32]) -> Vec<f32> {
        let AttentionProblem { batch, heads, kv_heads, seq_q, seq_k, head_dim, value_dim, .. } = *self.problem;
        let [q_head, k_head, v_head, o_head] = [seq_q * head_dim, seq_k * head_dim, seq_k * value_dim, seq_q * value_dim];
        debug_assert_eq!(query.len(), batch * heads * q_head);
        debug_assert_eq!(key.len(), batch * kv_heads * k_head);
        debug_assert_eq!(value.len(), batch * kv_heads * v_head);
        let mut output = vec![0.0; batch * heads * o_head];
        if output.is_empty() {
            return output;
        }
        let repeats = heads / kv_heads;
        output.par_chunks_mut(o_head).enumerate().for_each(|(pair, head_output)| {
            let kv = pair / heads * kv_heads + pair % heads / repeats;
            let head_query = &query[pair * q_head..][..q_head];
            let head_key = &key[kv * k_head..][..k_head];
            let head_value = &value[kv * v_head..][..v_head];
            head_output
                .par_chunks_mut(ROW_BLOCK * value_dim)
                .enumerate()
                .for_each_init(Vec::new, |scores, (block, block_output)| {
                    self.row_block(block * ROW_BLOCK, head_query, head_key, head_value, block_output, scores);
                });
        });
        output
    }

    /// Rows `first..first + output.len() / value_dim` of one head.
    fn row_block(&self, first: usize, query: &[f32], key: &[f32], value: &[f32], output: &mut [f32], scores: &mut Vec<f32>) {
        let AttentionProblem { seq_q, seq_k, head_dim, value_dim, quiet_softmax, scale, .. } = *self.problem;
        let rows = output.len() / value_dim;
        // Keys row `row` of the block reads (causal: `seq_q <= seq_k`); the last row reads the
        // most, and the others a prefix of them.
        let causal = self.problem.config.causal;
        let visible = |row: usize| if causal { seq_k - seq_q + first + row + 1 } else { seq_k };
        let keys = visible(rows - 1);
        scores.clear();
        scores.resize(rows * keys, 0.0);
        let query = &query[first * head_dim..][..rows * head_dim];
        // SAFETY: every operand lies inside its slice: `query` rows x head_dim, `key` keys x
        // head_dim read transposed, `scores` rows x keys, all row-major with the strides given.
        unsafe {
            gemm::gemm(
                rows,
                keys,
                head_dim,
                scores.as_mut_ptr(),
                1,
                keys as isize,
                false,
                query.as_ptr(),
                1,
                head_dim as isize,
                key.as_ptr(),
                head_dim as isize,
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
        // SAFETY: `scores` is rows x keys, `value` keys x value_dim, `output` rows x value_dim,
        // row-major.
        unsafe {
            gemm::gemm(
                rows,
                value_dim,
                keys,
                output.as_mut_ptr(),
                1,
                value_dim as isize,
                false,
                scores.as_ptr(),
                1,
                keys as isize,
                value.as_ptr(),
                1,
                value_dim as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        for (row, inverse_sum) in output.chunks_exact_mut(value_dim).zip(inverse_sums) {
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
    /// rows than keys, grouped-query heads, rows not a multiple of the block, quiet softmax.
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
            let output = BlockAttention::new(&problem).run(&query, &key, &value);
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
                for c in 0..20 {
                    let expected: f64 =
                        weights.iter().enumerate().map(|(j, w)| w * value[(kv * seq_k + j) * 20 + c] as f64).sum::<f64>() / total;
                    let got = output[(pair * seq_q + row) * 20 + c] as f64;
                    assert!((got - expected).abs() < 1e-5, "causal={causal} quiet={quiet} pair {pair} row {row} col {c}: {got} vs {expected}");
                }
            }
        }
    }
}

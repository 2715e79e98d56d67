//! The op's behaviour, run on every backend: NdArray and Flex always, Wgpu (lavapipe in CI)
//! with the `wgpu` feature. Each case is a generic function; `backend_suite!` instantiates them.

use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor, TensorData};
use crate::common::*;
use distr_attn::reference::{block_permutations, split_blocks};
use distr_attn::{
    distr_attention, AttentionProblem, DistrAttentionBackend, DistrAttentionConfig,
    DistrAttentionError, Grouping, Representative, MAX_BLOCK_ROWS, MAX_GROUP_SIZE, MAX_HEAD_DIM,
};

/// Shapes of one exactness case: `[batch, heads, kv_heads, seq_q, seq_k, head_dim, value_dim]`.
struct Case {
    dims: [usize; 7],
    causal: bool,
    masked: bool,
}

fn group_size_one_is_exact_attention<B: DistrAttentionBackend>(device: &B::Device) {
    let cases = [
        Case {
            dims: [1, 2, 2, 16, 16, 16, 16],
            causal: false,
            masked: false,
        },
        Case {
            dims: [2, 4, 2, 37, 37, 32, 8],
            causal: false,
            masked: true,
        },
        Case {
            dims: [1, 6, 3, 23, 23, 16, 16],
            causal: true,
            masked: false,
        },
        Case {
            dims: [2, 2, 1, 5, 29, 8, 12],
            causal: true,
            masked: true,
        },
        Case {
            dims: [1, 3, 1, 1, 19, 16, 16],
            causal: true,
            masked: false,
        },
    ];
    for (index, case) in cases.iter().enumerate() {
        let [batch, heads, kv_heads, seq_q, seq_k, head_dim, value_dim] = case.dims;
        let seed = 100 + index as u64 * 3;
        let q = seeded_values(seed, batch * heads * seq_q * head_dim);
        let k = seeded_values(seed + 1, batch * kv_heads * seq_k * head_dim);
        let v = seeded_values(seed + 2, batch * kv_heads * seq_k * value_dim);
        let mask: Option<Vec<bool>> = case.masked.then(|| {
            (0..batch * heads * seq_q * seq_k)
                .map(|i| (i * 7919) % 5 == 0)
                .collect()
        });
        let expected = plain_attention(
            &q,
            &k,
            &v,
            mask.as_deref(),
            [batch, heads, seq_q, head_dim],
            kv_heads,
            seq_k,
            value_dim,
            case.causal,
        );
        let config = DistrAttentionConfig::exact()
            .with_causal(case.causal)
            .with_block_rows(16);
        let output = distr_attention(
            tensor::<B>(q, [batch, heads, seq_q, head_dim], device),
            tensor::<B>(k, [batch, kv_heads, seq_k, head_dim], device),
            tensor::<B>(v, [batch, kv_heads, seq_k, value_dim], device),
            mask.map(|m| bool_tensor::<B>(m, [batch, heads, seq_q, seq_k], device)),
            &config,
        )
        .unwrap();
        assert_eq!(output.dims(), [batch, heads, seq_q, value_dim]);
        let error = relative_error(&to_vec(output), &expected);
        assert!(error < 1e-5, "case {index}: relative error {error}");
    }
}

fn mask_broadcasts_and_fully_masked_rows_are_zero<B: DistrAttentionBackend>(device: &B::Device) {
    let [batch, heads, seq, dim] = [2, 2, 9, 8];
    // Padding mask over keys [batch, 1, 1, seq]; batch 1 masks every key.
    let pad: Vec<bool> = (0..batch * seq).map(|i| i >= seq || i % 4 == 3).collect();
    let config = DistrAttentionConfig::new()
        .with_group_size(2)
        .with_block_rows(4);
    let output = distr_attention(
        random::<B>(1, [batch, heads, seq, dim], device),
        random::<B>(2, [batch, heads, seq, dim], device),
        random::<B>(3, [batch, heads, seq, dim], device),
        Some(bool_tensor::<B>(pad, [batch, 1, 1, seq], device)),
        &config,
    )
    .unwrap();
    let values = to_vec(output);
    let (first, second) = values.split_at(values.len() / 2);
    assert!(first.iter().all(|x| x.is_finite() && *x != 0.0));
    assert!(
        second.iter().all(|&x| x == 0.0),
        "fully masked rows must be zero"
    );
}

fn same_seed_same_result_other_seed_other_permutation<B: DistrAttentionBackend>(
    device: &B::Device,
) {
    let shape = [1, 2, 40, 32];
    let run = |seed: u64| {
        let config = DistrAttentionConfig::new()
            .with_block_rows(16)
            .with_seed(seed);
        to_vec(
            distr_attention(
                random::<B>(7, shape, device),
                random::<B>(8, shape, device),
                random::<B>(9, shape, device),
                None,
                &config,
            )
            .unwrap(),
        )
    };
    assert_eq!(run(5), run(5));

    let query = random::<B>(7, shape, device);
    let permutation = |seed: u64| {
        let config = DistrAttentionConfig::new()
            .with_block_rows(16)
            .with_seed(seed);
        let problem = problem_for(&query, &config);
        let blocks = split_blocks(query.clone(), config.block_rows);
        block_permutations(blocks, query.clone(), &problem)
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .unwrap()
    };
    let first = permutation(5);
    assert_eq!(first, permutation(5));
    assert_ne!(
        first,
        permutation(6),
        "a different seed must give different hyperplanes"
    );
    // Every block's permutation is a permutation of 0..head_dim.
    for block in first.chunks(shape[3]) {
        let mut sorted = block.to_vec();
        sorted.sort();
        assert_eq!(sorted, (0..shape[3] as i64).collect::<Vec<_>>());
    }
}

fn problem_for<B: Backend>(
    query: &Tensor<B, 4>,
    config: &DistrAttentionConfig,
) -> AttentionProblem {
    AttentionProblem::check(query, query, query, None, config).unwrap()
}

/// A `[1, 2, 48, 32]` query whose 32 columns are 16 pairs, shuffled: the second column of pair
/// `p` is the first times `scales[p]`. Keys and values are plain random.
fn paired_columns(scales: [f32; 16]) -> ([usize; 4], [Vec<f32>; 3]) {
    let shape = [1, 2, 48, 32];
    let query = paired_values(21, scales, shape);
    let key = seeded_values(23, shape.iter().product());
    let value = seeded_values(24, shape.iter().product());
    (shape, [query, key, value])
}

/// Values of `shape` whose columns are 16 pairs drawn from `seed`, shuffled the same way for
/// every seed: the second column of pair `p` is the first times `scales[p]`.
fn paired_values(seed: u64, scales: [f32; 16], shape: [usize; 4]) -> Vec<f32> {
    let [batch, heads, seq, head_dim] = shape;
    let distinct = head_dim / 2;
    let base = seeded_values(seed, batch * heads * seq * distinct);
    // Column c of the query is (a multiple of) base column `shuffle[c] / 2`.
    let shuffle: Vec<usize> = {
        let mut order: Vec<usize> = (0..head_dim).collect();
        let keys = seeded_values(22, head_dim);
        order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]));
        order
    };
    let mut query = vec![0.0f32; batch * heads * seq * head_dim];
    for row in 0..batch * heads * seq {
        for (column, &source) in shuffle.iter().enumerate() {
            let pair = source / 2;
            let scale = if source % 2 == 1 { scales[pair] } else { 1.0 };
            query[row * head_dim + column] = scale * base[row * distinct + pair];
        }
    }
    query
}

/// Relative error of G=2 DistrAttention (`block_rows` 16, seed 3) against plain attention.
fn pair_grouping_error<B: DistrAttentionBackend>(
    shape: [usize; 4],
    [query, key, value]: &[Vec<f32>; 3],
    config: DistrAttentionConfig,
    device: &B::Device,
) -> f64 {
    let [_, heads, seq, head_dim] = shape;
    let exact = plain_attention(query, key, value, None, shape, heads, seq, head_dim, false);
    let config = config.with_block_rows(16).with_seed(3);
    let output = distr_attention(
        tensor::<B>(query.clone(), shape, device),
        tensor::<B>(key.clone(), shape, device),
        tensor::<B>(value.clone(), shape, device),
        None,
        &config,
    )
    .unwrap();
    relative_error(&to_vec(output), &exact)
}

/// The core claim: when query columns come in identical pairs, LSH puts each pair in one
/// group and G=2 is exact, and so do the Gram groupings (and LSH's strided layout, which
/// pairs sorted positions half a head apart, does not); grouping at random or in index order
/// is not exact.
fn duplicate_columns_make_lsh_grouping_exact<B: DistrAttentionBackend>(device: &B::Device) {
    let (shape, inputs) = paired_columns([1.0; 16]);
    let error = |grouping: Grouping| {
        let config = DistrAttentionConfig::new().with_grouping(grouping);
        pair_grouping_error::<B>(shape, &inputs, config, device)
    };
    let lsh = error(Grouping::Lsh);
    let random = error(Grouping::Random);
    let index_order = error(Grouping::IndexOrder);
    assert!(lsh < 1e-5, "LSH grouping error {lsh}");
    for grouping in [Grouping::Gram, Grouping::GramKeyWeighted, Grouping::GramKeyDistance] {
        let gram = error(grouping);
        assert!(gram < 1e-5, "{grouping:?} grouping error {gram}");
    }
    let strided = error(Grouping::LshStrided);
    assert!(strided > 1e-2, "strided LSH grouping error {strided}");
    assert!(random > 1e-2, "random grouping error {random}");
    assert!(
        index_order > 1e-2,
        "index-order grouping error {index_order}"
    );
}

/// Pairs that point the same way but differ in length land in one group too; only the
/// `Projected` representative, which weighs each key column by its query column's length
/// along the representative, is then exact.
fn projected_representative_is_exact_on_scaled_pairs<B: DistrAttentionBackend>(device: &B::Device) {
    let scales = std::array::from_fn(|pair| 0.25 + 0.2 * pair as f32);
    let (shape, inputs) = paired_columns(scales);
    let error = |representative: Representative| {
        let config = DistrAttentionConfig::new().with_representative(representative);
        pair_grouping_error::<B>(shape, &inputs, config, device)
    };
    let projected = error(Representative::Projected);
    let mean = error(Representative::Mean);
    let sample = error(Representative::Sample);
    // The Gram grouping pairs by angle for `Projected`: the scaled pairs again.
    let gram = pair_grouping_error::<B>(
        shape,
        &inputs,
        DistrAttentionConfig::new().with_representative(Representative::Projected).with_grouping(Grouping::Gram),
        device,
    );
    assert!(gram < 1e-5, "projected representative with Gram grouping: error {gram}");
    assert!(
        projected < 1e-5,
        "projected representative error {projected}"
    );
    assert!(mean > 1e-2, "mean representative error {mean}");
    assert!(sample > 1e-2, "sample representative error {sample}");
}

/// The paper code's variant sums a group's query columns and keeps one key column: it is exact
/// wherever the group's key columns are equal, however the query columns differ in length. So
/// is `Mean` (its sum of the equal key columns is `G` times the one kept), but not `Sample`,
/// which keeps one of the unequal query columns; on random keys `SampledKeys` is not exact.
fn sampled_keys_are_exact_on_paired_key_columns<B: DistrAttentionBackend>(device: &B::Device) {
    let scales = std::array::from_fn(|pair| 0.25 + 0.2 * pair as f32);
    let (shape, [query, random_key, value]) = paired_columns(scales);
    let paired_key = paired_values(25, [1.0; 16], shape);
    let error = |key: &Vec<f32>, representative: Representative| {
        let config = DistrAttentionConfig::new().with_representative(representative);
        pair_grouping_error::<B>(shape, &[query.clone(), key.clone(), value.clone()], config, device)
    };
    for representative in [Representative::SampledKeys, Representative::Mean] {
        let exact = error(&paired_key, representative);
        assert!(exact < 1e-5, "{representative:?} on paired keys: error {exact}");
    }
    let sample = error(&paired_key, Representative::Sample);
    assert!(sample > 1e-2, "Sample on paired keys: error {sample}");
    let unpaired = error(&random_key, Representative::SampledKeys);
    assert!(unpaired > 1e-2, "sampled keys on random keys: error {unpaired}");
}

/// Error grows with the group size on data whose columns are not duplicates.
fn error_grows_with_group_size<B: DistrAttentionBackend>(device: &B::Device) {
    let shape = [1, 2, 64, 32];
    let query = seeded_values(31, shape.iter().product());
    let key = seeded_values(32, shape.iter().product());
    let value = seeded_values(33, shape.iter().product());
    let exact = plain_attention(&query, &key, &value, None, shape, 2, 64, 32, false);
    let errors: Vec<f64> = [2, 4, 8]
        .iter()
        .map(|&group_size| {
            let config = DistrAttentionConfig::new()
                .with_group_size(group_size)
                .with_block_rows(32)
                .with_representative(Representative::Mean);
            let output = distr_attention(
                tensor::<B>(query.clone(), shape, device),
                tensor::<B>(key.clone(), shape, device),
                tensor::<B>(value.clone(), shape, device),
                None,
                &config,
            )
            .unwrap();
            relative_error(&to_vec(output), &exact)
        })
        .collect();
    assert!(
        errors[0] > 0.0 && errors[0] < errors[1] && errors[1] < errors[2],
        "{errors:?}"
    );
}

/// The configurations the non-finite cases run with: exact and every representative.
fn non_finite_configs() -> Vec<DistrAttentionConfig> {
    let grouped = DistrAttentionConfig::new().with_block_rows(8);
    vec![
        DistrAttentionConfig::exact(),
        grouped.clone(),
        grouped.clone().with_representative(Representative::Mean),
        grouped.clone().with_representative(Representative::SampledKeys),
        grouped.with_representative(Representative::Projected),
    ]
}

fn assert_rows_close(actual: &[f32], expected: &[f32], what: &str) {
    for (a, e) in actual.iter().zip(expected) {
        assert!((a - e).abs() <= 1e-5, "{what}: {actual:?} vs {expected:?}");
    }
}

/// A NaN or Inf in query row `i` makes output row `i` NaN and nothing else, except that the
/// `Sample` representative drops a column that is not its group's representative (then row
/// `i` stays finite). `Projected`'s block-wide weights leave non-finite rows out.
fn non_finite_query_reaches_only_its_row<B: DistrAttentionBackend>(device: &B::Device) {
    let [seq, dim, block_rows] = [20, 16, 8];
    let shape = [1, 1, seq, dim];
    let mut clean = seeded_values(41, seq * dim);
    // Column 2 is zero in block 1: code 0, like NaN column 7 below, with a smaller index, so
    // it sorts first and column 7 is not a representative there.
    for row in 8..16 {
        clean[row * dim + 2] = 0.0;
    }
    let mut query = clean.clone();
    // (row, column): NaN in blocks 0 and 1, Inf in the zero-padded block 2.
    let entries = [(5, 0, f32::NAN), (13, 7, f32::NAN), (18, 4, f32::INFINITY)];
    for (row, column, value) in entries {
        query[row * dim + column] = value;
    }
    let run = |query: &[f32], config: &DistrAttentionConfig| {
        to_vec(
            distr_attention(
                tensor::<B>(query.to_vec(), shape, device),
                random::<B>(42, shape, device),
                random::<B>(43, shape, device),
                None,
                config,
            )
            .unwrap(),
        )
    };
    for config in non_finite_configs() {
        // Whether a row reads a column: always, except with `Sample` when the column is not
        // at a group's first position of the block's permutation.
        let reads: Box<dyn Fn(usize, usize) -> bool> =
            if config.is_exact() || config.representative != Representative::Sample {
                Box::new(|_, _| true)
            } else {
                let query_tensor = tensor::<B>(query.clone(), shape, device);
                let problem = problem_for(&query_tensor, &config);
                let permutation: Vec<i64> =
                    block_permutations(split_blocks(query_tensor.clone(), block_rows), query_tensor, &problem)
                        .into_data()
                        .convert::<i64>()
                        .to_vec()
                        .unwrap();
                let group_size = config.group_size;
                Box::new(move |row, column| {
                    let order = &permutation[row / block_rows * dim..][..dim];
                    let position = order.iter().position(|&c| c == column as i64).unwrap();
                    position % group_size == 0
                })
            };
        if !config.is_exact() && config.representative == Representative::Sample {
            assert!(
                reads(5, 0),
                "NaN column 0 (code 0, smallest index) leads its group"
            );
            assert!(!reads(13, 7), "NaN column 7 follows zero column 2");
        }
        let output = run(&query, &config);
        let reference = run(&clean, &config);
        for (row, values) in output.chunks(dim).enumerate() {
            let affected = entries
                .iter()
                .any(|&(r, column, _)| r == row && reads(row, column));
            if affected {
                assert!(
                    values.iter().all(|x| x.is_nan()),
                    "{config:?}: row {row} reads the entry"
                );
            } else {
                assert!(
                    values.iter().all(|x| x.is_finite()),
                    "{config:?}: row {row} must stay finite"
                );
            }
            if config.is_exact() && !affected {
                let expected = &reference[row * dim..][..dim];
                assert_rows_close(values, expected, &format!("exact, row {row}"));
            }
        }
    }
}

/// A NaN or Inf in key row `j`: rows that mask key `j` are unaffected; a NaN makes every row
/// that attends to it NaN; an Inf makes a row NaN where its score is +Inf and gives key `j`
/// zero weight where it is -Inf.
fn non_finite_key_reaches_the_rows_that_attend_it<B: DistrAttentionBackend>(device: &B::Device) {
    let [seq_q, seq_k, dim] = [12, 10, 16];
    // Even query rows positive, odd rows negative: so is every representative of the row, and
    // the score for an infinite key column is +Inf on even rows and -Inf on odd ones.
    let query: Vec<f32> = seeded_values(44, seq_q * dim)
        .iter()
        .enumerate()
        .map(|(i, x)| {
            if (i / dim) % 2 == 0 {
                x.abs() + 0.1
            } else {
                -x.abs() - 0.1
            }
        })
        .collect();
    let clean_key = seeded_values(45, seq_k * dim);
    let value = seeded_values(46, seq_k * dim);
    // Rows 0 and 1 mask keys 2 and 6.
    let mask = |hidden: &dyn Fn(usize, usize) -> bool| -> Vec<bool> {
        (0..seq_q * seq_k)
            .map(|i| hidden(i / seq_k, i % seq_k))
            .collect()
    };
    let first_rows_mask = mask(&|row, key| row < 2 && (key == 2 || key == 6));
    let run = |key: &[f32], mask: &[bool], config: &DistrAttentionConfig| {
        to_vec(
            distr_attention(
                tensor::<B>(query.clone(), [1, 1, seq_q, dim], device),
                tensor::<B>(key.to_vec(), [1, 1, seq_k, dim], device),
                tensor::<B>(value.clone(), [1, 1, seq_k, dim], device),
                Some(bool_tensor::<B>(
                    mask.to_vec(),
                    [1, 1, seq_q, seq_k],
                    device,
                )),
                config,
            )
            .unwrap(),
        )
    };
    // `SampledKeys` reads one key column per group, so whether it sees the non-finite entries
    // depends on the grouping, as `Sample`'s reading of query columns does (above).
    let configs = non_finite_configs()
        .into_iter()
        .filter(|config| config.representative != Representative::SampledKeys);
    for config in configs {
        let clean = run(&clean_key, &first_rows_mask, &config);
        let mut key = clean_key.clone();
        key[2 * dim + 5] = f32::NAN;
        let with_nan = run(&key, &first_rows_mask, &config);
        let mut key = clean_key.clone();
        key[6 * dim + 4] = f32::INFINITY;
        let with_inf = run(&key, &first_rows_mask, &config);
        let key_6_hidden = run(
            &clean_key,
            &mask(&|row, key| key == 6 || (row < 2 && key == 2)),
            &config,
        );
        for row in 0..seq_q {
            let at = |output: &Vec<f32>| output[row * dim..][..dim].to_vec();
            if row < 2 {
                assert_rows_close(
                    &at(&with_nan),
                    &at(&clean),
                    &format!("{config:?} NaN, row {row}"),
                );
                assert_rows_close(
                    &at(&with_inf),
                    &at(&clean),
                    &format!("{config:?} Inf, row {row}"),
                );
                continue;
            }
            assert!(
                at(&with_nan).iter().all(|x| x.is_nan()),
                "{config:?}: row {row} attends the NaN key"
            );
            if row % 2 == 0 {
                assert!(
                    at(&with_inf).iter().all(|x| x.is_nan()),
                    "{config:?}: row {row} scores +Inf"
                );
            } else {
                assert_rows_close(
                    &at(&with_inf),
                    &at(&key_6_hidden),
                    &format!("{config:?} -Inf, row {row}"),
                );
            }
        }
    }
}

/// A NaN or Inf in value row `j`, column `d`: column `d` of the rows that attend to key `j` is
/// non-finite, and so (0 * Inf) is column `d` of rows that mask it, unless every row masks it
/// (padding): such values are not read at all.
fn non_finite_value_reaches_its_column<B: DistrAttentionBackend>(device: &B::Device) {
    let [seq_q, seq_k, dim] = [8, 10, 16];
    // Key 9 is padding (masked for every row); rows 0-3 also mask key 3.
    let mask: Vec<bool> = (0..seq_q * seq_k)
        .map(|i| {
            let (row, key) = (i / seq_k, i % seq_k);
            key == 9 || (key == 3 && row < 4)
        })
        .collect();
    let clean_value = seeded_values(49, seq_k * dim);
    let mut value = clean_value.clone();
    value[9 * dim + 2] = f32::NAN;
    value[3 * dim + 5] = f32::INFINITY;
    let run = |value: &[f32], config: &DistrAttentionConfig| {
        to_vec(
            distr_attention(
                random::<B>(47, [1, 1, seq_q, dim], device),
                random::<B>(48, [1, 1, seq_k, dim], device),
                tensor::<B>(value.to_vec(), [1, 1, seq_k, dim], device),
                Some(bool_tensor::<B>(mask.clone(), [1, 1, seq_q, seq_k], device)),
                config,
            )
            .unwrap(),
        )
    };
    for config in non_finite_configs() {
        let clean = run(&clean_value, &config);
        let output = run(&value, &config);
        for (index, (&actual, &expected)) in output.iter().zip(&clean).enumerate() {
            let (row, column) = (index / dim, index % dim);
            match column {
                5 if row >= 4 => {
                    assert_eq!(actual, f32::INFINITY, "{config:?}: row {row} attends key 3")
                }
                5 => assert!(
                    actual.is_nan(),
                    "{config:?}: row {row} masks key 3: 0 * Inf"
                ),
                _ => assert!(
                    (actual - expected).abs() <= 1e-5,
                    "{config:?}: row {row}, column {column}: {actual} vs {expected}"
                ),
            }
        }
    }
}

/// Quiet softmax is standard softmax with one more key whose score is 0 and value is 0 (a zero
/// key, never masked). For exact attention that is checked against the plain implementation.
fn quiet_softmax_is_an_extra_zero_logit<B: DistrAttentionBackend>(device: &B::Device) {
    let [heads, seq_q, seq_k, dim] = [2, 9, 7, 16];
    let query = seeded_values(51, heads * seq_q * dim);
    let key = seeded_values(52, heads * seq_k * dim);
    let value = seeded_values(53, heads * seq_k * dim);
    // Row 2 masks every key, some other entries are masked.
    let hidden = |row: usize, key: usize| row == 2 || (row + key) % 5 == 0;
    let mask: Vec<bool> = (0..seq_q * seq_k)
        .map(|i| hidden(i / seq_k, i % seq_k))
        .collect();
    // One more key row per head: zeros, never masked.
    let extend = |values: &[f32]| -> Vec<f32> {
        values
            .chunks(seq_k * dim)
            .flat_map(|head| head.iter().copied().chain(std::iter::repeat_n(0.0, dim)))
            .collect()
    };
    let (key_ext, value_ext) = (extend(&key), extend(&value));
    let mask_ext: Vec<bool> = (0..seq_q * (seq_k + 1))
        .map(|i| i % (seq_k + 1) < seq_k && hidden(i / (seq_k + 1), i % (seq_k + 1)))
        .collect();
    let q_shape = [1, heads, seq_q, dim];
    let kv_shape = |seq: usize| [1, heads, seq, dim];
    let masks = |masked: bool| {
        (
            masked.then(|| bool_tensor::<B>(mask.clone(), [1, 1, seq_q, seq_k], device)),
            masked.then(|| bool_tensor::<B>(mask_ext.clone(), [1, 1, seq_q, seq_k + 1], device)),
        )
    };
    for config in [
        DistrAttentionConfig::exact(),
        DistrAttentionConfig::new().with_block_rows(8),
        DistrAttentionConfig::new()
            .with_block_rows(4)
            .with_representative(Representative::Projected),
    ] {
        for masked in [true, false] {
            let (mask, mask_ext) = masks(masked);
            let [q, k, v] = [
                tensor::<B>(query.clone(), q_shape, device),
                tensor::<B>(key.clone(), kv_shape(seq_k), device),
                tensor::<B>(value.clone(), kv_shape(seq_k), device),
            ];
            let problem = AttentionProblem::check(&q, &k, &v, mask.as_ref(), &config)
                .unwrap()
                .with_quiet_softmax(true);
            let quiet = to_vec(B::distr_attention_checked(
                q.clone(),
                k.clone(),
                v.clone(),
                mask.clone(),
                &problem,
            ));
            let standard = to_vec(distr_attention(q.clone(), k, v, mask, &config).unwrap());
            let extended = to_vec(
                distr_attention(
                    q,
                    tensor::<B>(key_ext.clone(), kv_shape(seq_k + 1), device),
                    tensor::<B>(value_ext.clone(), kv_shape(seq_k + 1), device),
                    mask_ext,
                    &config,
                )
                .unwrap(),
            );
            let error = relative_error(&quiet, &extended);
            assert!(
                error < 1e-5,
                "{config:?} masked={masked}: relative error {error}"
            );
            let ignored = relative_error(&quiet, &standard);
            assert!(
                ignored > 1e-2,
                "{config:?}: quiet equals standard softmax ({ignored})"
            );
            if config.is_exact() && !masked {
                let plain = plain_attention(
                    &query,
                    &key_ext,
                    &value_ext,
                    None,
                    q_shape,
                    heads,
                    seq_k + 1,
                    dim,
                    false,
                );
                let error = relative_error(&quiet, &plain);
                assert!(error < 1e-5, "exact quiet vs plain: relative error {error}");
            }
        }
    }
}

/// `scale` replaces `1/sqrt(head_dim)`: exact against the plain implementation; grouped
/// against the default scale on a query scaled to match (a positive factor changes no sign
/// code, and Q' is linear in the query).
fn user_scale_replaces_the_default<B: DistrAttentionBackend>(device: &B::Device) {
    let [heads, kv_heads, seq_q, seq_k, dim] = [4, 2, 11, 13, 16];
    let query = seeded_values(55, heads * seq_q * dim);
    let key = seeded_values(56, kv_heads * seq_k * dim);
    let value = seeded_values(57, kv_heads * seq_k * dim);
    let run = |query: Vec<f32>, config: &DistrAttentionConfig| {
        to_vec(
            distr_attention(
                tensor::<B>(query, [1, heads, seq_q, dim], device),
                tensor::<B>(key.clone(), [1, kv_heads, seq_k, dim], device),
                tensor::<B>(value.clone(), [1, kv_heads, seq_k, dim], device),
                None,
                config,
            )
            .unwrap(),
        )
    };
    let scale = 0.3;
    let exact = run(
        query.clone(),
        &DistrAttentionConfig::exact()
            .with_causal(true)
            .with_scale(Some(scale)),
    );
    let plain = plain_attention_scaled(
        &query,
        &key,
        &value,
        None,
        [1, heads, seq_q, dim],
        kv_heads,
        seq_k,
        dim,
        true,
        scale,
    );
    let error = relative_error(&exact, &plain);
    assert!(
        error < 1e-5,
        "exact with scale {scale}: relative error {error}"
    );
    let default_plain = plain_attention(
        &query,
        &key,
        &value,
        None,
        [1, heads, seq_q, dim],
        kv_heads,
        seq_k,
        dim,
        true,
    );
    assert!(
        relative_error(&exact, &default_plain) > 1e-2,
        "the scale was ignored"
    );

    for representative in [
        Representative::Sample,
        Representative::Mean,
        Representative::Projected,
        Representative::SampledKeys,
    ] {
        let config = DistrAttentionConfig::new()
            .with_block_rows(8)
            .with_representative(representative);
        let scaled = run(query.clone(), &config.clone().with_scale(Some(scale)));
        let factor = (scale * (dim as f64).sqrt()) as f32;
        let expected = run(query.iter().map(|x| x * factor).collect(), &config);
        let error = relative_error(&scaled, &expected);
        assert!(
            error < 1e-5,
            "{representative:?} with scale {scale}: relative error {error}"
        );
    }
}

fn bad_input_is_an_error<B: DistrAttentionBackend>(device: &B::Device) {
    let q = || random::<B>(1, [1, 4, 8, 16], device);
    let kv = |heads: usize, dim: usize| random::<B>(2, [1, heads, 8, dim], device);
    let config = DistrAttentionConfig::new();
    let call = |query, key, value, mask, config: &DistrAttentionConfig| {
        distr_attention::<B>(query, key, value, mask, config).unwrap_err()
    };
    assert!(matches!(
        call(q(), kv(4, 8), kv(4, 16), None, &config),
        DistrAttentionError::Shape { tensor: "key", .. }
    ));
    assert!(matches!(
        call(q(), kv(3, 16), kv(3, 16), None, &config),
        DistrAttentionError::KvHeads {
            heads: 4,
            kv_heads: 3
        }
    ));
    assert!(matches!(
        call(
            q(),
            kv(4, 16),
            kv(4, 16),
            None,
            &config.clone().with_group_size(3)
        ),
        DistrAttentionError::GroupSize {
            head_dim: 16,
            group_size: 3
        }
    ));
    for bad in [
        config.clone().with_group_size(0),
        config.clone().with_block_rows(0),
        config.clone().with_num_projections(40),
    ] {
        assert!(matches!(
            call(q(), kv(4, 16), kv(4, 16), None, &bad),
            DistrAttentionError::InvalidParameter { .. }
        ));
    }
    let mask = bool_tensor::<B>(vec![false; 3 * 8], [1, 1, 3, 8], device);
    assert!(matches!(
        call(q(), kv(4, 16), kv(4, 16), Some(mask), &config),
        DistrAttentionError::Shape { tensor: "mask", .. }
    ));
    let empty =
        Tensor::<B, 4>::from_data(TensorData::new(Vec::<f32>::new(), [1, 4, 0, 16]), device);
    assert!(matches!(
        call(empty, kv(4, 16), kv(4, 16), None, &config),
        DistrAttentionError::Empty {
            tensor: "query",
            ..
        }
    ));
    let long_query = random::<B>(1, [1, 4, 9, 16], device);
    assert!(matches!(
        call(
            long_query,
            kv(4, 16),
            kv(4, 16),
            None,
            &config.clone().with_causal(true)
        ),
        DistrAttentionError::Shape {
            tensor: "query",
            ..
        }
    ));
    let message = call(q(), kv(3, 16), kv(3, 16), None, &config).to_string();
    assert!(
        message.contains("heads 4") && message.contains("kv_heads 3"),
        "{message}"
    );

    // Shape errors name both shapes.
    let error = call(q(), kv(4, 8), kv(4, 16), None, &config);
    let message = error.to_string();
    assert!(
        message.contains("[1, 4, 8, 8]") && message.contains("[1, 4, 8, 16]"),
        "{message}"
    );
    let short_value = random::<B>(2, [1, 4, 7, 16], device);
    let error = call(q(), kv(4, 16), short_value, None, &config);
    let message = error.to_string();
    assert!(
        matches!(
            error,
            DistrAttentionError::Shape {
                tensor: "value",
                ..
            }
        ) && message.contains("[1, 4, 7, 16]")
            && message.contains("[1, 4, 8, 16]"),
        "{message}"
    );
    let mask = bool_tensor::<B>(vec![false; 3 * 8], [1, 1, 3, 8], device);
    let message = call(q(), kv(4, 16), kv(4, 16), Some(mask), &config).to_string();
    assert!(
        message.contains("[1, 1, 3, 8]") && message.contains("[1, 4, 8, 16]"),
        "{message}"
    );
    let message = call(
        random::<B>(1, [1, 4, 9, 16], device),
        kv(4, 16),
        kv(4, 16),
        None,
        &config.clone().with_causal(true),
    )
    .to_string();
    assert!(
        message.contains("[1, 4, 9, 16]") && message.contains("[1, 4, 8, 16]"),
        "{message}"
    );

    // Parameters above their supported maximum.
    for (bad, name) in [
        (
            config.clone().with_group_size(MAX_GROUP_SIZE + 1),
            "group_size",
        ),
        (
            config.clone().with_block_rows(MAX_BLOCK_ROWS + 1),
            "block_rows",
        ),
        (config.clone().with_scale(Some(f64::NAN)), "scale"),
        (config.clone().with_scale(Some(f64::INFINITY)), "scale"),
    ] {
        let error = call(q(), kv(4, 16), kv(4, 16), None, &bad);
        assert!(
            matches!(error, DistrAttentionError::InvalidParameter { name: n, .. } if n == name),
            "{name}: {error}"
        );
    }
    let wide = |seed| random::<B>(seed, [1, 1, 2, MAX_HEAD_DIM + 2], device);
    let error = call(wide(1), wide(2), wide(3), None, &config);
    assert!(
        matches!(
            error,
            DistrAttentionError::Shape {
                tensor: "query",
                ..
            }
        ) && error.to_string().contains(&MAX_HEAD_DIM.to_string()),
        "{error}"
    );

    // No keys.
    let no_keys =
        || Tensor::<B, 4>::from_data(TensorData::new(Vec::<f32>::new(), [1, 4, 0, 16]), device);
    assert!(matches!(
        call(q(), no_keys(), no_keys(), None, &config),
        DistrAttentionError::Empty { tensor: "key", .. }
    ));

    // Query, key and value of different dtypes (f16 where the backend has it, else f64).
    let other = if B::supports_dtype(device, DType::F16) {
        FloatDType::F16
    } else {
        FloatDType::F64
    };
    for (key, value) in [
        (kv(4, 16).cast(other), kv(4, 16)),
        (kv(4, 16), kv(4, 16).cast(other)),
    ] {
        let error = call(q(), key, value, None, &config);
        assert!(
            matches!(error, DistrAttentionError::DType { .. }),
            "{error}"
        );
    }
}

/// f16 storage with f32 accumulation stays within f16 rounding of the f32 result.
fn half_precision_matches_single<B: DistrAttentionBackend>(device: &B::Device) {
    let shape = [1, 2, 40, 32];
    let config = DistrAttentionConfig::new()
        .with_block_rows(16)
        .with_causal(true);
    // The same f16-representable values in both runs, so that both hash identically.
    let inputs = [61, 62, 63].map(|seed| random::<B>(seed, shape, device).cast(FloatDType::F16));
    let [query, key, value] = inputs.clone().map(|t| t.cast(FloatDType::F32));
    let single = distr_attention(query, key, value, None, &config).unwrap();
    let [query, key, value] = inputs;
    let half = distr_attention(query, key, value, None, &config).unwrap();
    assert_eq!(half.dtype(), DType::F16);
    let error = relative_error(&to_vec(half.cast(FloatDType::F32)), &to_vec(single));
    assert!(error < 5e-3, "f16 relative error {error}");
}

/// f16 on the tensor-op reference path (a mask tensor sends Wgpu calls there, away from the
/// fused kernel), against the plain implementation on the same f16-rounded inputs: exact
/// attention, and G=2 on duplicate column pairs, where it is exact. The f16 rounding of the
/// output is the only difference.
fn half_precision_on_the_reference_path<B: DistrAttentionBackend>(device: &B::Device) {
    let rounded = |values: Vec<f32>, shape: [usize; 4]| {
        let tensor = tensor::<B>(values, shape, device).cast(FloatDType::F16);
        let values = to_vec(tensor.clone());
        (tensor, values)
    };
    let check = |output: Tensor<B, 4>, expected: &[f32], what: &str| {
        assert_eq!(output.dtype(), DType::F16, "{what}");
        let error = relative_error(&to_vec(output), expected);
        assert!(error < 2e-3, "{what}: f16 relative error {error}");
    };

    let [heads, kv_heads, seq_q, seq_k, dim] = [2, 1, 13, 17, 16];
    let (query, q) = rounded(
        seeded_values(71, heads * seq_q * dim),
        [1, heads, seq_q, dim],
    );
    let (key, k) = rounded(
        seeded_values(72, kv_heads * seq_k * dim),
        [1, kv_heads, seq_k, dim],
    );
    let (value, v) = rounded(
        seeded_values(73, kv_heads * seq_k * dim),
        [1, kv_heads, seq_k, dim],
    );
    let mask: Vec<bool> = (0..heads * seq_q * seq_k).map(|i| i % 9 == 4).collect();
    let mask_shape = [1, heads, seq_q, seq_k];
    let output = distr_attention(
        query,
        key,
        value,
        Some(bool_tensor::<B>(mask.clone(), mask_shape, device)),
        &DistrAttentionConfig::exact().with_causal(true),
    )
    .unwrap();
    let expected = plain_attention(
        &q,
        &k,
        &v,
        Some(&mask),
        [1, heads, seq_q, dim],
        kv_heads,
        seq_k,
        dim,
        true,
    );
    check(output, &expected, "exact");

    let (shape, [query, key, value]) = paired_columns([1.0; 16]);
    let [_, heads, seq, dim] = shape;
    let (query, q) = rounded(query, shape);
    let (key, k) = rounded(key, shape);
    let (value, v) = rounded(value, shape);
    let mask: Vec<bool> = (0..heads * seq * seq).map(|i| i % 11 == 6).collect();
    let output = distr_attention(
        query,
        key,
        value,
        Some(bool_tensor::<B>(mask.clone(), [1, heads, seq, seq], device)),
        &DistrAttentionConfig::new().with_block_rows(16).with_seed(3),
    )
    .unwrap();
    let expected = plain_attention(&q, &k, &v, Some(&mask), shape, heads, seq, dim, false);
    check(output, &expected, "G=2 on duplicate column pairs");
}

macro_rules! backend_suite {
    ($module:ident, $backend:ty) => {
        mod $module {
            type B = $backend;

            fn device() -> burn::tensor::Device<B> {
                Default::default()
            }

            #[test]
            fn group_size_one_is_exact_attention() {
                super::group_size_one_is_exact_attention::<B>(&device());
            }
            #[test]
            fn mask_broadcasts_and_fully_masked_rows_are_zero() {
                super::mask_broadcasts_and_fully_masked_rows_are_zero::<B>(&device());
            }
            #[test]
            fn same_seed_same_result_other_seed_other_permutation() {
                super::same_seed_same_result_other_seed_other_permutation::<B>(&device());
            }
            #[test]
            fn duplicate_columns_make_lsh_grouping_exact() {
                super::duplicate_columns_make_lsh_grouping_exact::<B>(&device());
            }

            #[test]
            fn projected_representative_is_exact_on_scaled_pairs() {
                super::projected_representative_is_exact_on_scaled_pairs::<B>(&device());
            }

            #[test]
            fn sampled_keys_are_exact_on_paired_key_columns() {
                super::sampled_keys_are_exact_on_paired_key_columns::<B>(&device());
            }
            #[test]
            fn error_grows_with_group_size() {
                super::error_grows_with_group_size::<B>(&device());
            }
            #[test]
            fn non_finite_query_reaches_only_its_row() {
                super::non_finite_query_reaches_only_its_row::<B>(&device());
            }
            #[test]
            fn non_finite_key_reaches_the_rows_that_attend_it() {
                super::non_finite_key_reaches_the_rows_that_attend_it::<B>(&device());
            }
            #[test]
            fn non_finite_value_reaches_its_column() {
                super::non_finite_value_reaches_its_column::<B>(&device());
            }
            #[test]
            fn quiet_softmax_is_an_extra_zero_logit() {
                super::quiet_softmax_is_an_extra_zero_logit::<B>(&device());
            }
            #[test]
            fn user_scale_replaces_the_default() {
                super::user_scale_replaces_the_default::<B>(&device());
            }
            #[test]
            fn bad_input_is_an_error() {
                super::bad_input_is_an_error::<B>(&device());
            }
        }
    };
}

backend_suite!(ndarray, distr_attn::backends::NdArrayBackend);
backend_suite!(flex, distr_attn::backends::FlexBackend);
#[cfg(feature = "wgpu")]
backend_suite!(wgpu, distr_attn::backends::WgpuBackend);

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_half_precision_matches_single() {
    half_precision_matches_single::<distr_attn::backends::WgpuBackend>(&Default::default());
}

#[test]
fn flex_half_precision_matches_single() {
    half_precision_matches_single::<distr_attn::backends::FlexBackend>(&Default::default());
}

/// A mask tensor sends Flex calls to the reference, in f16 as in f32.
#[test]
fn flex_half_precision_on_the_reference_path() {
    half_precision_on_the_reference_path::<distr_attn::backends::FlexBackend>(&Default::default());
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_half_precision_on_the_reference_path() {
    half_precision_on_the_reference_path::<distr_attn::backends::WgpuBackend>(&Default::default());
}

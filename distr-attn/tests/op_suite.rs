//! The op's behaviour, run on every backend: NdArray always, Wgpu (lavapipe in CI) with the
//! `wgpu` feature. Each case is a generic function; `backend_suite!` instantiates them.

mod common;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use common::*;
use distr_attn::reference::{block_permutations, split_blocks};
use distr_attn::{
    distr_attention, AttentionProblem, DistrAttentionBackend, DistrAttentionConfig,
    DistrAttentionError, Grouping, Representative,
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
        block_permutations(blocks, &problem)
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
    let [batch, heads, seq, distinct] = [1, 2, 48, 16];
    let head_dim = 2 * distinct;
    let base = seeded_values(21, batch * heads * seq * distinct);
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
    let shape = [batch, heads, seq, head_dim];
    let key = seeded_values(23, shape.iter().product());
    let value = seeded_values(24, shape.iter().product());
    (shape, [query, key, value])
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
/// group and G=2 is exact; grouping at random or in index order is not.
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
    assert!(random > 1e-2, "random grouping error {random}");
    assert!(
        index_order > 1e-2,
        "index-order grouping error {index_order}"
    );
}

/// Pairs that point the same way but differ in length land in one group too; only the
/// `Projected` representative, which weighs each key column by its query column's length
/// along the representative, is then exact.
fn projected_representative_is_exact_on_scaled_pairs<B: DistrAttentionBackend>(
    device: &B::Device,
) {
    let scales = std::array::from_fn(|pair| 0.25 + 0.2 * pair as f32);
    let (shape, inputs) = paired_columns(scales);
    let error = |representative: Representative| {
        let config = DistrAttentionConfig::new().with_representative(representative);
        pair_grouping_error::<B>(shape, &inputs, config, device)
    };
    let projected = error(Representative::Projected);
    let mean = error(Representative::Mean);
    let sample = error(Representative::Sample);
    assert!(projected < 1e-5, "projected representative error {projected}");
    assert!(mean > 1e-2, "mean representative error {mean}");
    assert!(sample > 1e-2, "sample representative error {sample}");
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

fn nan_stays_in_its_row<B: DistrAttentionBackend>(device: &B::Device) {
    let shape = [1, 1, 20, 16];
    let mut query = seeded_values(41, 20 * 16);
    query[5 * 16 + 3] = f32::NAN;
    let config = DistrAttentionConfig::new().with_block_rows(8);
    let output = distr_attention(
        tensor::<B>(query, shape, device),
        random::<B>(42, shape, device),
        random::<B>(43, shape, device),
        None,
        &config,
    )
    .unwrap();
    for (row, values) in to_vec(output).chunks(16).enumerate() {
        if row == 5 {
            assert!(values.iter().all(|x| x.is_nan()), "row 5 holds the NaN");
        } else {
            assert!(
                values.iter().all(|x| x.is_finite()),
                "row {row} must stay finite"
            );
        }
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
}

/// f16 storage with f32 accumulation stays within f16 rounding of the f32 result.
#[cfg(feature = "wgpu")]
fn half_precision_matches_single<B: DistrAttentionBackend>(device: &B::Device) {
    use burn::tensor::{DType, FloatDType};
    let shape = [1, 2, 40, 32];
    let config = DistrAttentionConfig::new().with_block_rows(16).with_causal(true);
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
            fn error_grows_with_group_size() {
                super::error_grows_with_group_size::<B>(&device());
            }
            #[test]
            fn nan_stays_in_its_row() {
                super::nan_stays_in_its_row::<B>(&device());
            }
            #[test]
            fn bad_input_is_an_error() {
                super::bad_input_is_an_error::<B>(&device());
            }
        }
    };
}

backend_suite!(ndarray, distr_attn::backends::NdArrayBackend);
#[cfg(feature = "wgpu")]
backend_suite!(wgpu, distr_attn::backends::WgpuBackend);

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_half_precision_matches_single() {
    half_precision_matches_single::<distr_attn::backends::WgpuBackend>(&Default::default());
}

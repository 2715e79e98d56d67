//! `DistrMultiHeadAttention`: a drop-in for Burn's `MultiHeadAttention` whose score product
//! runs through [`distr_attention`](crate::distr_attention).

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Bool, Tensor};

use crate::heads::attend_heads;
use crate::reference::attention_probabilities;
use crate::{
    AttentionKind, AttentionProblem, DistrAttentionBackend, DistrAttentionConfig,
    DistrAttentionError,
};

/// Configuration of [`DistrMultiHeadAttention`]: the fields and defaults of Burn's
/// `MultiHeadAttentionConfig`, plus `n_kv_heads` and `attention`.
#[derive(Config, Debug)]
pub struct DistrMultiHeadAttentionConfig {
    /// The size of each linear layer.
    pub d_model: usize,
    /// The number of query heads.
    pub n_heads: usize,
    /// The number of key/value heads (grouped-query attention); must divide `n_heads`.
    /// Default: `None`, meaning `n_heads`.
    pub n_kv_heads: Option<usize>,
    /// The dropout rate, applied to the attention output (the fused op never materialises the
    /// attention weights). Default: 0.1
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Kept for compatibility with `MultiHeadAttentionConfig`: masked positions here get
    /// exactly zero weight, and fully masked rows give zeros. Default: -1.0e4
    #[config(default = -1.0e4)]
    pub min_float: f64,
    /// Use "quiet softmax" (an implicit extra zero logit), with exact attention and
    /// DistrAttention alike. It runs on the tensor-op reference: the fused kernel does not
    /// implement it. Default: false
    #[config(default = false)]
    pub quiet_softmax: bool,
    /// The initializer of the linear layers. Default: as `MultiHeadAttentionConfig`.
    #[config(
        default = "Initializer::KaimingUniform{gain:1.0/num_traits::Float::sqrt(3.0), fan_out_only:false}"
    )]
    pub initializer: Initializer,
    /// Exact attention or DistrAttention with its parameters. Default: DistrAttention with
    /// the default [`DistrAttentionConfig`] (group size 2).
    #[config(default = "AttentionKind::Distr(DistrAttentionConfig::new())")]
    pub attention: AttentionKind,
}

/// Multi-head attention with DistrAttention scores.
///
/// The parameters carry the names of Burn's `MultiHeadAttention` (`query`, `key`, `value`,
/// `output`), so a record saved from it loads unchanged (with `n_kv_heads == n_heads`).
#[derive(Module, Debug)]
pub struct DistrMultiHeadAttention<B: DistrAttentionBackend> {
    /// `d_model -> d_model` query projection.
    pub query: Linear<B>,
    /// `d_model -> n_kv_heads * d_k` key projection.
    pub key: Linear<B>,
    /// `d_model -> n_kv_heads * d_k` value projection.
    pub value: Linear<B>,
    /// `d_model -> d_model` output projection.
    pub output: Linear<B>,
    /// Dropout on the attention output.
    pub dropout: Dropout,
    /// The size of each linear layer.
    pub d_model: usize,
    /// The number of query heads.
    pub n_heads: usize,
    /// The number of key/value heads.
    pub n_kv_heads: usize,
    /// Size of each head.
    pub d_k: usize,
    /// Quiet softmax (an implicit extra zero logit).
    pub quiet_softmax: bool,
    /// The attention the scores are computed with.
    pub attention: AttentionKind,
}

impl DistrMultiHeadAttentionConfig {
    /// Builds the module, checking that the heads divide the model width and that the
    /// attention's parameters fit the head dimension, so that a bad group size fails here
    /// rather than at the first `forward`.
    pub fn init<B: DistrAttentionBackend>(
        &self,
        device: &B::Device,
    ) -> Result<DistrMultiHeadAttention<B>, DistrAttentionError> {
        let n_kv_heads = self.n_kv_heads.unwrap_or(self.n_heads);
        if self.n_heads == 0 || self.d_model % self.n_heads != 0 {
            return Err(DistrAttentionError::InvalidParameter {
                name: "n_heads",
                value: self.n_heads.to_string(),
                expected: format!("a non-zero divisor of d_model = {}", self.d_model),
            });
        }
        if n_kv_heads == 0 || self.n_heads % n_kv_heads != 0 {
            return Err(DistrAttentionError::KvHeads {
                heads: self.n_heads,
                kv_heads: n_kv_heads,
            });
        }
        let d_k = self.d_model / self.n_heads;
        self.attention.check(self.n_heads, d_k)?;
        let linear = |d_output: usize| {
            LinearConfig::new(self.d_model, d_output)
                .with_initializer(self.initializer.clone())
                .init(device)
        };
        Ok(DistrMultiHeadAttention {
            query: linear(self.d_model),
            key: linear(n_kv_heads * d_k),
            value: linear(n_kv_heads * d_k),
            output: linear(self.d_model),
            dropout: DropoutConfig::new(self.dropout).init(),
            d_model: self.d_model,
            n_heads: self.n_heads,
            n_kv_heads,
            d_k,
            quiet_softmax: self.quiet_softmax,
            attention: self.attention.clone(),
        })
    }
}

/// Input of [`DistrMultiHeadAttention::forward`], built like Burn's `MhaInput`.
#[derive(Debug, Clone)]
pub struct DistrMhaInput<B: DistrAttentionBackend> {
    /// `[batch_size, seq_length_1, d_model]`
    query: Tensor<B, 3>,
    /// `[batch_size, seq_length_2, d_model]`
    key: Tensor<B, 3>,
    /// `[batch_size, seq_length_2, d_model]`
    value: Tensor<B, 3>,
    /// `[batch_size, seq_length_2]`, `true` = padding
    mask_pad: Option<Tensor<B, 2, Bool>>,
    /// `[batch_size, seq_length_1, seq_length_2]`, `true` = masked
    mask_attn: Option<Tensor<B, 3, Bool>>,
}

impl<B: DistrAttentionBackend> DistrMhaInput<B> {
    /// Self-attention: query, key and value are `tensor` `[batch_size, seq_length, d_model]`.
    pub fn self_attn(tensor: Tensor<B, 3>) -> Self {
        Self::new(tensor.clone(), tensor.clone(), tensor)
    }

    /// Attention of `query` over `key` and `value`.
    pub fn new(query: Tensor<B, 3>, key: Tensor<B, 3>, value: Tensor<B, 3>) -> Self {
        Self {
            query,
            key,
            value,
            mask_pad: None,
            mask_attn: None,
        }
    }

    /// Padding mask `[batch_size, seq_length_2]`, `true` = padding.
    pub fn mask_pad(mut self, mask_pad: Tensor<B, 2, Bool>) -> Self {
        self.mask_pad = Some(mask_pad);
        self
    }

    /// Attention mask `[batch_size, seq_length_1, seq_length_2]`, `true` = masked.
    pub fn mask_attn(mut self, mask_attn: Tensor<B, 3, Bool>) -> Self {
        self.mask_attn = Some(mask_attn);
        self
    }
}

/// Output of [`DistrMultiHeadAttention::forward`].
#[derive(Debug, Clone)]
pub struct DistrMhaOutput<B: DistrAttentionBackend> {
    /// The context `[batch_size, seq_length_1, d_model]`.
    pub context: Tensor<B, 3>,
}

/// Query, key, value heads and the combined mask of one forward call.
struct Heads<B: DistrAttentionBackend> {
    query: Tensor<B, 4>,
    key: Tensor<B, 4>,
    value: Tensor<B, 4>,
    mask: Option<Tensor<B, 4, Bool>>,
}

impl<B: DistrAttentionBackend> DistrMultiHeadAttention<B> {
    /// The forward pass: projections, DistrAttention, output projection.
    ///
    /// The attention weights are not returned: the fused op never materialises them. Use
    /// [`Self::attention_weights`] to inspect them (it computes the full matrix).
    ///
    /// # Shapes
    ///
    /// - query: `[batch_size, seq_length_1, d_model]`
    /// - key, value: `[batch_size, seq_length_2, d_model]`
    /// - context: `[batch_size, seq_length_1, d_model]`
    pub fn forward(
        &self,
        input: DistrMhaInput<B>,
    ) -> Result<DistrMhaOutput<B>, DistrAttentionError> {
        let [batch_size, seq_length_1, _] = input.query.dims();
        let heads = self.heads(input)?;
        let context = self.attend(heads, |query, key, value, mask, problem| {
            B::distr_attention_checked(query, key, value, mask, problem)
        })?;
        let context = context
            .swap_dims(1, 2)
            .reshape([batch_size, seq_length_1, self.d_model]);
        let context = self.dropout.forward(context);
        Ok(DistrMhaOutput {
            context: self.output.forward(context),
        })
    }

    /// The attention weights `[batch_size, n_heads, seq_length_1, seq_length_2]` that
    /// `forward` uses, computed with the tensor-op reference (materialises the full matrix).
    pub fn attention_weights(
        &self,
        input: DistrMhaInput<B>,
    ) -> Result<Tensor<B, 4>, DistrAttentionError> {
        let heads = self.heads(input)?;
        self.attend(heads, |query, key, _, mask, problem| {
            attention_probabilities(query, key, mask, problem)
        })
    }

    /// Self-attention's per-head queries, keys and values `[batch_size, heads, seq_length,
    /// d_k]` (keys and values with `n_kv_heads`) for `x` `[batch_size, seq_length, d_model]`:
    /// what `forward` hands the op, for measuring the op on a model's own activations.
    pub fn project_heads(&self, x: Tensor<B, 3>) -> Result<[Tensor<B, 4>; 3], DistrAttentionError> {
        let heads = self.heads(DistrMhaInput::self_attn(x))?;
        Ok([heads.query, heads.key, heads.value])
    }

    /// `attend` on `heads`, once per run of heads with one configuration (every head at once
    /// unless the attention is per head), with this module's softmax.
    fn attend(
        &self,
        heads: Heads<B>,
        attend: impl FnMut(Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>, Option<Tensor<B, 4, Bool>>, &AttentionProblem) -> Tensor<B, 4>,
    ) -> Result<Tensor<B, 4>, DistrAttentionError> {
        let configs = self.attention.head_configs(self.n_heads);
        attend_heads(heads.query, heads.key, heads.value, heads.mask, &configs, self.quiet_softmax, attend)
    }

    fn heads(&self, input: DistrMhaInput<B>) -> Result<Heads<B>, DistrAttentionError> {
        let query_dims = input.query.dims();
        let key_dims = input.key.dims();
        let value_dims = input.value.dims();
        let [batch_size, _, d_query] = query_dims;
        let [key_batch, _, d_key] = key_dims;
        let d_model = self.d_model;
        if d_query != d_model {
            return Err(DistrAttentionError::Shape {
                tensor: "query",
                actual: query_dims.to_vec(),
                expected: format!("[batch_size, seq_length_1, {d_model}] (d_model = {d_model})"),
            });
        }
        if key_batch != batch_size || d_key != d_model {
            return Err(DistrAttentionError::Shape {
                tensor: "key",
                actual: key_dims.to_vec(),
                expected: format!(
                    "[{batch_size}, seq_length_2, {d_model}] (query is {query_dims:?})"
                ),
            });
        }
        if value_dims != key_dims {
            return Err(DistrAttentionError::Shape {
                tensor: "value",
                actual: value_dims.to_vec(),
                expected: format!("the key's shape {key_dims:?}"),
            });
        }
        let mask = combine_masks(input.mask_pad, input.mask_attn, query_dims, key_dims)?;
        Ok(Heads {
            query: split_heads(self.query.forward(input.query), self.n_heads, self.d_k),
            key: split_heads(self.key.forward(input.key), self.n_kv_heads, self.d_k),
            value: split_heads(self.value.forward(input.value), self.n_kv_heads, self.d_k),
            mask,
        })
    }
}

/// `[batch, seq, heads * d_k]` -> `[batch, heads, seq, d_k]`.
fn split_heads<B: DistrAttentionBackend>(
    x: Tensor<B, 3>,
    heads: usize,
    d_k: usize,
) -> Tensor<B, 4> {
    let [batch_size, seq_length, _] = x.dims();
    x.reshape([batch_size, seq_length, heads, d_k])
        .swap_dims(1, 2)
}

/// The padding and attention masks as one `[batch, 1, seq_1, seq_2]` mask.
fn combine_masks<B: DistrAttentionBackend>(
    mask_pad: Option<Tensor<B, 2, Bool>>,
    mask_attn: Option<Tensor<B, 3, Bool>>,
    query_dims: [usize; 3],
    key_dims: [usize; 3],
) -> Result<Option<Tensor<B, 4, Bool>>, DistrAttentionError> {
    let [batch_size, seq_length_1, _] = query_dims;
    let seq_length_2 = key_dims[1];
    let mismatch = |tensor, actual: Vec<usize>, expected: Vec<usize>| DistrAttentionError::Shape {
        tensor,
        actual,
        expected: format!("{expected:?} (query is {query_dims:?}, key is {key_dims:?})"),
    };
    let pad = match mask_pad {
        Some(mask) if mask.dims() != [batch_size, seq_length_2] => {
            return Err(mismatch(
                "mask_pad",
                mask.dims().to_vec(),
                vec![batch_size, seq_length_2],
            ))
        }
        Some(mask) => Some(mask.reshape([batch_size, 1, 1, seq_length_2]).expand([
            batch_size,
            1,
            seq_length_1,
            seq_length_2,
        ])),
        None => None,
    };
    let attn = match mask_attn {
        Some(mask) if mask.dims() != [batch_size, seq_length_1, seq_length_2] => {
            return Err(mismatch(
                "mask_attn",
                mask.dims().to_vec(),
                vec![batch_size, seq_length_1, seq_length_2],
            ))
        }
        Some(mask) => Some(mask.reshape([batch_size, 1, seq_length_1, seq_length_2])),
        None => None,
    };
    Ok(match (pad, attn) {
        (Some(pad), Some(attn)) => Some(pad.bool_or(attn)),
        (pad, attn) => pad.or(attn),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::TestBackend;
    use burn::nn::attention::{MhaInput, MultiHeadAttentionConfig};
    use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
    use burn::tensor::{Distribution, Tolerance};

    type B = TestBackend;

    fn input(shape: [usize; 3]) -> Tensor<B, 3> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    #[test]
    fn record_of_burn_mha_loads_and_exact_matches_it() {
        let device = Default::default();
        let burn_mha = MultiHeadAttentionConfig::new(32, 4)
            .with_dropout(0.0)
            .init::<B>(&device);
        let x = input([2, 11, 32]);
        let mut padding = [[false; 11]; 2];
        padding[1][8..].fill(true);
        let pad = Tensor::<B, 2, Bool>::from_data(padding, &device);
        let expected = burn_mha.forward(MhaInput::self_attn(x.clone()).mask_pad(pad.clone()));

        let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();
        let bytes = recorder.record(burn_mha.into_record(), ()).unwrap();
        let distr = DistrMultiHeadAttentionConfig::new(32, 4)
            .with_dropout(0.0)
            .with_attention(AttentionKind::Exact)
            .init::<B>(&device)
            .unwrap()
            .load_record(recorder.load(bytes, &device).unwrap());

        let actual = distr
            .forward(DistrMhaInput::self_attn(x.clone()).mask_pad(pad.clone()))
            .unwrap();
        actual
            .context
            .into_data()
            .assert_approx_eq::<f32>(&expected.context.into_data(), Tolerance::absolute(1e-5));
        let weights = distr
            .attention_weights(DistrMhaInput::self_attn(x).mask_pad(pad))
            .unwrap();
        weights
            .into_data()
            .assert_approx_eq::<f32>(&expected.weights.into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn quiet_softmax_matches_burn_mha_from_the_same_record() {
        let device = Default::default();
        let burn_mha = MultiHeadAttentionConfig::new(32, 4)
            .with_dropout(0.0)
            .with_quiet_softmax(true)
            .init::<B>(&device);
        let x = input([2, 9, 32]);
        let mut padding = [[false; 9]; 2];
        padding[1][5..].fill(true);
        let pad = Tensor::<B, 2, Bool>::from_data(padding, &device);
        let expected = burn_mha.forward(MhaInput::self_attn(x.clone()).mask_pad(pad.clone()));

        let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();
        let bytes = recorder.record(burn_mha.into_record(), ()).unwrap();
        let distr = DistrMultiHeadAttentionConfig::new(32, 4)
            .with_dropout(0.0)
            .with_quiet_softmax(true)
            .with_attention(AttentionKind::Exact)
            .init::<B>(&device)
            .unwrap()
            .load_record(recorder.load(bytes, &device).unwrap());
        let input = || DistrMhaInput::self_attn(x.clone()).mask_pad(pad.clone());
        let context = distr.forward(input()).unwrap().context;
        context
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&expected.context.into_data(), Tolerance::absolute(1e-5));
        let weights = distr.attention_weights(input()).unwrap();
        // Quiet: the weights of a row sum to less than one.
        let row_sums = weights
            .clone()
            .sum_dim(3)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert!(row_sums.iter().all(|&sum| sum < 1.0 - 1e-4), "{row_sums:?}");
        weights
            .into_data()
            .assert_approx_eq::<f32>(&expected.weights.into_data(), Tolerance::absolute(1e-5));

        // DistrAttention runs it too (on the reference).
        let mut grouped = distr;
        grouped.attention = AttentionKind::Distr(DistrAttentionConfig::new().with_block_rows(8));
        let quiet = grouped.forward(input()).unwrap().context;
        grouped.quiet_softmax = false;
        let standard = grouped.forward(input()).unwrap().context;
        let difference = (quiet - standard).abs().max().into_scalar();
        assert!(difference > 1e-3, "quiet softmax ignored: {difference}");
    }

    /// The module's weights, applied by hand: projections, heads, attention, output.
    struct Projected {
        query: Tensor<B, 4>,
        key: Tensor<B, 4>,
        value: Tensor<B, 4>,
    }

    fn project(
        mha: &DistrMultiHeadAttention<B>,
        [query, key, value]: [&Tensor<B, 3>; 3],
    ) -> Projected {
        let heads = |x: &Tensor<B, 3>, linear: &Linear<B>, count: usize| {
            let [batch, seq, _] = x.dims();
            let weight = linear.weight.val().unsqueeze_dim::<3>(0);
            let bias = linear
                .bias
                .as_ref()
                .unwrap()
                .val()
                .reshape([1, 1, count * mha.d_k]);
            (x.clone().matmul(weight) + bias)
                .reshape([batch, seq, count, mha.d_k])
                .swap_dims(1, 2)
        };
        Projected {
            query: heads(query, &mha.query, mha.n_heads),
            key: heads(key, &mha.key, mha.n_kv_heads),
            value: heads(value, &mha.value, mha.n_kv_heads),
        }
    }

    fn output_projection(mha: &DistrMultiHeadAttention<B>, heads: Tensor<B, 4>) -> Tensor<B, 3> {
        let [batch, _, seq, _] = heads.dims();
        let context = heads.swap_dims(1, 2).reshape([batch, seq, mha.d_model]);
        let weight = mha.output.weight.val().unsqueeze_dim::<3>(0);
        let bias = mha
            .output
            .bias
            .as_ref()
            .unwrap()
            .val()
            .reshape([1, 1, mha.d_model]);
        context.matmul(weight) + bias
    }

    /// Query head `h` reads key/value head `h / (n_heads / n_kv_heads)`: repeated kv heads.
    fn repeat_heads(tensor: Tensor<B, 4>, repeats: usize) -> Tensor<B, 4> {
        let [batch, heads, seq, dim] = tensor.dims();
        let copies: Vec<Tensor<B, 4>> = (0..heads * repeats)
            .map(|head| tensor.clone().narrow(1, head / repeats, 1))
            .collect();
        Tensor::cat(copies, 1).reshape([batch, heads * repeats, seq, dim])
    }

    fn padding_mask(batch: usize, seq: usize) -> Tensor<B, 2, Bool> {
        let values: Vec<bool> = (0..batch * seq)
            .map(|i| i / seq == 1 && i % seq >= seq - 6)
            .collect();
        Tensor::from_data(
            burn::tensor::TensorData::new(values, [batch, seq]),
            &Default::default(),
        )
    }

    #[test]
    fn grouped_query_exact_attention_matches_a_plain_computation() {
        let device = Default::default();
        let mha = DistrMultiHeadAttentionConfig::new(32, 4)
            .with_n_kv_heads(Some(2))
            .with_dropout(0.0)
            .with_attention(AttentionKind::Exact)
            .init::<B>(&device)
            .unwrap();
        let [query, key] = [input([2, 5, 32]), input([2, 9, 32])];
        let pad = padding_mask(2, 9);
        let actual = mha
            .forward(
                DistrMhaInput::new(query.clone(), key.clone(), key.clone()).mask_pad(pad.clone()),
            )
            .unwrap()
            .context;

        let heads = project(&mha, [&query, &key, &key]);
        let scores = heads
            .query
            .matmul(repeat_heads(heads.key, 2).swap_dims(2, 3))
            .div_scalar((mha.d_k as f64).sqrt())
            .mask_fill(pad.reshape([2, 1, 1, 9]).expand([2, 4, 5, 9]), -1.0e9);
        let attended =
            burn::tensor::activation::softmax(scores, 3).matmul(repeat_heads(heads.value, 2));
        let expected = output_projection(&mha, attended);
        actual
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn grouped_query_distr_attention_equals_repeated_key_value_heads() {
        let device = Default::default();
        let config = DistrAttentionConfig::new().with_block_rows(8);
        let mha = DistrMultiHeadAttentionConfig::new(64, 4)
            .with_n_kv_heads(Some(2))
            .with_dropout(0.0)
            .with_attention(AttentionKind::Distr(config.clone()))
            .init::<B>(&device)
            .unwrap();
        assert_eq!(mha.key.weight.dims(), [64, 32]);
        let [query, key, value] = [input([3, 13, 64]), input([3, 20, 64]), input([3, 20, 64])];
        let pad = padding_mask(3, 20);
        let actual = mha
            .forward(
                DistrMhaInput::new(query.clone(), key.clone(), value.clone()).mask_pad(pad.clone()),
            )
            .unwrap()
            .context;
        assert_eq!(actual.dims(), [3, 13, 64]);

        // The op with as many key/value heads as query heads: no grouped-query mapping left.
        let heads = project(&mha, [&query, &key, &value]);
        let attended = crate::distr_attention(
            heads.query,
            repeat_heads(heads.key, 2),
            repeat_heads(heads.value, 2),
            Some(pad.reshape([3, 1, 1, 20])),
            &config,
        )
        .unwrap();
        let expected = output_projection(&mha, attended);
        actual
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn bad_configuration_and_input_are_errors() {
        let device = Default::default();
        let init = |config: DistrMultiHeadAttentionConfig| config.init::<B>(&device);
        assert!(init(DistrMultiHeadAttentionConfig::new(30, 4)).is_err());
        assert!(init(DistrMultiHeadAttentionConfig::new(32, 4).with_n_kv_heads(Some(3))).is_err());
        // A group size that does not divide d_k = 8 fails at init, not at the first forward.
        let indivisible = AttentionKind::Distr(DistrAttentionConfig::new().with_group_size(3));
        let error = init(DistrMultiHeadAttentionConfig::new(32, 4).with_attention(indivisible)).unwrap_err();
        assert!(matches!(error, DistrAttentionError::GroupSize { head_dim: 8, group_size: 3 }), "{error}");
        let mha = init(DistrMultiHeadAttentionConfig::new(32, 4)).unwrap();
        let error = mha
            .forward(DistrMhaInput::self_attn(input([1, 5, 16])))
            .unwrap_err();
        assert!(
            matches!(
                error,
                DistrAttentionError::Shape {
                    tensor: "query",
                    ..
                }
            ),
            "{error}"
        );
        let pad = Tensor::<B, 2, Bool>::from_data([[false; 4]], &device);
        let error = mha
            .forward(DistrMhaInput::self_attn(input([1, 5, 32])).mask_pad(pad))
            .unwrap_err();
        assert!(
            matches!(
                error,
                DistrAttentionError::Shape {
                    tensor: "mask_pad",
                    ..
                }
            ),
            "{error}"
        );
        let message = error.to_string();
        assert!(
            message.contains("[1, 4]")
                && message.contains("[1, 5]")
                && message.contains("[1, 5, 32]"),
            "{message}"
        );
        let error = mha
            .forward(DistrMhaInput::new(
                input([2, 5, 32]),
                input([1, 6, 32]),
                input([1, 6, 32]),
            ))
            .unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, DistrAttentionError::Shape { tensor: "key", .. })
                && message.contains("[1, 6, 32]")
                && message.contains("[2, 5, 32]"),
            "{message}"
        );
        let error = mha
            .forward(DistrMhaInput::new(
                input([1, 5, 32]),
                input([1, 6, 32]),
                input([1, 7, 32]),
            ))
            .unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(
                error,
                DistrAttentionError::Shape {
                    tensor: "value",
                    ..
                }
            ) && message.contains("[1, 7, 32]")
                && message.contains("[1, 6, 32]"),
            "{message}"
        );
        // A module whose attention was changed after init still refuses at forward.
        let mut grouped = init(DistrMultiHeadAttentionConfig::new(32, 4)).unwrap();
        grouped.attention = AttentionKind::Distr(DistrAttentionConfig::new().with_group_size(16));
        let error = grouped
            .forward(DistrMhaInput::self_attn(input([1, 5, 32])))
            .unwrap_err();
        assert!(
            matches!(error, DistrAttentionError::GroupSize { .. }),
            "{error}"
        );
    }
}

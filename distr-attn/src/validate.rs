//! Validation of an attention call: every shape and parameter is checked once, here, before
//! any backend sees the tensors.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, DType, Tensor};

use crate::config::MAX_HEAD_DIM;
use crate::{DistrAttentionConfig, DistrAttentionError};

/// A validated attention call: its dimensions and configuration.
///
/// Only [`AttentionProblem::check`] builds one, so a backend holding it can rely on every
/// invariant listed on the fields.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionProblem {
    /// Batch size.
    pub batch: usize,
    /// Query heads, a multiple of `kv_heads`.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Query rows.
    pub seq_q: usize,
    /// Key rows; `seq_q <= seq_k` when causal.
    pub seq_k: usize,
    /// Query/key head dimension, a multiple of `config.group_size`.
    pub head_dim: usize,
    /// Value head dimension.
    pub value_dim: usize,
    /// Score scale (`config.scale` or `1/sqrt(head_dim)`).
    pub scale: f64,
    /// The configuration, with every parameter it uses in its supported range.
    pub config: DistrAttentionConfig,
    /// Quiet softmax (an implicit extra zero logit, as Burn's `quiet_softmax`). `check` sets
    /// it to false; [`AttentionProblem::with_quiet_softmax`] turns it on.
    pub quiet_softmax: bool,
}

impl AttentionProblem {
    /// Checks the tensors' shapes and dtypes and the configuration.
    pub fn check<B: Backend>(
        query: &Tensor<B, 4>,
        key: &Tensor<B, 4>,
        value: &Tensor<B, 4>,
        mask: Option<&Tensor<B, 4, Bool>>,
        config: &DistrAttentionConfig,
    ) -> Result<Self, DistrAttentionError> {
        config.validate()?;
        for (name, tensor) in [("query", query), ("key", key), ("value", value)] {
            check_dtype(name, tensor.dtype())?;
            let dims = tensor.dims();
            if dims.contains(&0) {
                return Err(DistrAttentionError::Empty {
                    tensor: name,
                    shape: dims.to_vec(),
                });
            }
        }
        let [batch, heads, seq_q, head_dim] = query.dims();
        let [key_batch, kv_heads, seq_k, key_dim] = key.dims();
        let [value_batch, value_heads, value_seq, value_dim] = value.dims();
        if key.dtype() != query.dtype() || value.dtype() != query.dtype() {
            return Err(DistrAttentionError::DType {
                tensor: "key/value",
                dtype: format!(
                    "{:?}/{:?} with query {:?} (all three must match)",
                    key.dtype(),
                    value.dtype(),
                    query.dtype()
                ),
            });
        }
        if key_batch != batch || key_dim != head_dim {
            return Err(DistrAttentionError::Shape {
                tensor: "key",
                actual: key.dims().to_vec(),
                expected: format!(
                    "[{batch}, kv_heads, seq_k, {head_dim}] (query is {:?})",
                    query.dims()
                ),
            });
        }
        if value_batch != batch || value_heads != kv_heads || value_seq != seq_k {
            return Err(DistrAttentionError::Shape {
                tensor: "value",
                actual: value.dims().to_vec(),
                expected: format!(
                    "[{batch}, {kv_heads}, {seq_k}, value_dim] (key is {:?})",
                    key.dims()
                ),
            });
        }
        if heads % kv_heads != 0 {
            return Err(DistrAttentionError::KvHeads { heads, kv_heads });
        }
        if head_dim > MAX_HEAD_DIM {
            return Err(DistrAttentionError::Shape {
                tensor: "query",
                actual: query.dims().to_vec(),
                expected: format!("head_dim at most {MAX_HEAD_DIM}"),
            });
        }
        if head_dim % config.group_size != 0 {
            return Err(DistrAttentionError::GroupSize {
                head_dim,
                group_size: config.group_size,
            });
        }
        if config.causal && seq_q > seq_k {
            return Err(DistrAttentionError::Shape {
                tensor: "query",
                actual: query.dims().to_vec(),
                expected: format!(
                    "seq_q <= seq_k = {seq_k} for causal attention (queries are the last \
                     positions; key is {:?})",
                    key.dims()
                ),
            });
        }
        if let Some(mask) = mask {
            let target = [batch, heads, seq_q, seq_k];
            let dims = mask.dims();
            if dims.iter().zip(target).any(|(&m, t)| m != t && m != 1) {
                return Err(DistrAttentionError::Shape {
                    tensor: "mask",
                    actual: dims.to_vec(),
                    expected: format!(
                        "a shape broadcastable to {target:?} (query is {:?}, key is {:?})",
                        query.dims(),
                        key.dims()
                    ),
                });
            }
        }
        let scale = config.scale_for(head_dim);
        Ok(Self {
            batch,
            heads,
            kv_heads,
            seq_q,
            seq_k,
            head_dim,
            value_dim,
            scale,
            config: config.clone(),
            quiet_softmax: false,
        })
    }

    /// The same call with quiet softmax on or off: the weights of a query row are
    /// `exp(s_j) / (1 + sum_k exp(s_k))`, so a row may give (almost) no weight to any key.
    /// The fused kernel refuses it; backends then run the tensor-op reference.
    pub fn with_quiet_softmax(mut self, quiet_softmax: bool) -> Self {
        self.quiet_softmax = quiet_softmax;
        self
    }

    /// Exact attention of the same shapes, scale and causal mask: the problem of the expanded
    /// query ([`crate::reference::expanded_query`]), on which exact attention computes this
    /// call's DistrAttention.
    pub fn expanded(&self) -> Self {
        let mut problem = self.clone();
        problem.config.group_size = 1;
        problem
    }

    /// Number of query blocks (the last one zero-padded).
    pub fn num_blocks(&self) -> usize {
        self.seq_q.div_ceil(self.config.block_rows)
    }

    /// Inner dimension of the reduced score product, `head_dim / group_size`.
    pub fn reduced_dim(&self) -> usize {
        self.head_dim / self.config.group_size
    }
}

fn check_dtype(tensor: &'static str, dtype: DType) -> Result<(), DistrAttentionError> {
    match dtype {
        DType::F64 | DType::F32 | DType::F16 | DType::BF16 => Ok(()),
        other => Err(DistrAttentionError::DType {
            tensor,
            dtype: format!("{other:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MAX_NUM_PROJECTIONS;
    use crate::tests::TestBackend;

    fn check(config: &DistrAttentionConfig) -> Result<AttentionProblem, DistrAttentionError> {
        let tensor = Tensor::<TestBackend, 4>::zeros([1, 1, 4, 8], &Default::default());
        AttentionProblem::check(&tensor, &tensor, &tensor, None, config)
    }

    #[test]
    fn exact_attention_ignores_the_hashing_parameters() {
        for num_projections in [0, MAX_NUM_PROJECTIONS + 1] {
            let exact = DistrAttentionConfig::exact().with_num_projections(num_projections);
            assert!(
                check(&exact).is_ok(),
                "{num_projections} projections, exact"
            );
            let grouped = exact.with_group_size(2);
            assert!(
                matches!(
                    check(&grouped),
                    Err(DistrAttentionError::InvalidParameter {
                        name: "num_projections",
                        ..
                    })
                ),
                "{num_projections} projections, group size 2"
            );
        }
    }

    /// `LshNorms` spends two bits of the sort key on the length band.
    #[test]
    fn lsh_norms_leaves_room_for_the_length_band() {
        let norms = DistrAttentionConfig::new().with_group_size(2).with_grouping(crate::Grouping::LshNorms);
        assert!(check(&norms.clone().with_num_projections(MAX_NUM_PROJECTIONS - 2)).is_ok());
        let error = check(&norms.with_num_projections(MAX_NUM_PROJECTIONS)).unwrap_err();
        assert!(matches!(error, DistrAttentionError::InvalidParameter { name: "num_projections", .. }), "{error}");
    }
}

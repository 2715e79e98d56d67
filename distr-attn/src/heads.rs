//! Attention whose query heads run different configurations: what per-head plans need.
//!
//! Heads do not interact in attention, so a layer whose heads differ is the op run on slices
//! of its heads, joined again. Each maximal run of consecutive heads with one configuration
//! is one call. Under grouped-query attention a call must hold whole groups of the query heads
//! that share a key/value head, or part of one group, so a run is cut at the groups' edges
//! where it starts or ends inside one.

use std::ops::Range;

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};

use crate::{AttentionKind, AttentionProblem, DistrAttentionBackend, DistrAttentionConfig, DistrAttentionError};

/// [`distr_attention`](crate::distr_attention) with one configuration per query head:
/// `configs[h]` for head `h` (`group_size` 1: exact). Shapes as for `distr_attention`; a
/// configuration that does not fit is an error naming its head, found before any work. With
/// every entry equal this is exactly one `distr_attention` call.
pub fn distr_attention_per_head<B: DistrAttentionBackend>(
    query: Tensor<B, 4>,
    key: Tensor<B, 4>,
    value: Tensor<B, 4>,
    mask: Option<Tensor<B, 4, Bool>>,
    configs: &[DistrAttentionConfig],
) -> Result<Tensor<B, 4>, DistrAttentionError> {
    attend_heads(query, key, value, mask, configs, false, |query, key, value, mask, problem| {
        B::distr_attention_checked(query, key, value, mask, problem)
    })
}

impl AttentionKind {
    /// The op with this kind's configuration for each of the query's heads: one
    /// [`distr_attention`](crate::distr_attention) call unless it is `PerHead`.
    pub fn attend<B: DistrAttentionBackend>(
        &self,
        query: Tensor<B, 4>,
        key: Tensor<B, 4>,
        value: Tensor<B, 4>,
        mask: Option<Tensor<B, 4, Bool>>,
    ) -> Result<Tensor<B, 4>, DistrAttentionError> {
        let configs = self.head_configs(query.dims()[1]);
        distr_attention_per_head(query, key, value, mask, &configs)
    }
}

/// One validated call on a slice of the heads.
struct HeadCall<B: Backend> {
    query: Tensor<B, 4>,
    key: Tensor<B, 4>,
    value: Tensor<B, 4>,
    mask: Option<Tensor<B, 4, Bool>>,
    problem: AttentionProblem,
}

/// Validates every run's call, then hands each to `attend` and joins the heads again (along
/// axis 1). `attend` gets the run's query heads, their key/value heads, the mask's slice (a
/// mask broadcast over heads is passed whole) and the run's checked problem.
pub(crate) fn attend_heads<B: Backend>(
    query: Tensor<B, 4>,
    key: Tensor<B, 4>,
    value: Tensor<B, 4>,
    mask: Option<Tensor<B, 4, Bool>>,
    configs: &[DistrAttentionConfig],
    quiet_softmax: bool,
    mut attend: impl FnMut(Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>, Option<Tensor<B, 4, Bool>>, &AttentionProblem) -> Tensor<B, 4>,
) -> Result<Tensor<B, 4>, DistrAttentionError> {
    let [_, heads, _, head_dim] = query.dims();
    if configs.len() != heads {
        return Err(DistrAttentionError::InvalidParameter {
            name: "configs",
            value: format!("{} entries", configs.len()),
            expected: format!("one per query head (query is {:?})", query.dims()),
        });
    }
    // Where heads differ, a configuration that does not fit is named by its head.
    if !configs.iter().all(|config| same_attention(config, &configs[0])) {
        for (head, config) in configs.iter().enumerate() {
            config
                .check_head_dim(head_dim)
                .map_err(|source| DistrAttentionError::Head { head, source: Box::new(source) })?;
        }
    }
    let whole = AttentionProblem::check(&query, &key, &value, mask.as_ref(), &configs[0])?.with_quiet_softmax(quiet_softmax);
    let heads_per_kv = whole.heads / whole.kv_heads;
    let runs = head_runs(configs, heads_per_kv);
    if runs.len() == 1 {
        return Ok(attend(query, key, value, mask, &whole));
    }
    let calls = runs
        .into_iter()
        .map(|run| {
            let kv = run.start / heads_per_kv..(run.end - 1) / heads_per_kv + 1;
            let query = query.clone().narrow(1, run.start, run.len());
            let key = key.clone().narrow(1, kv.start, kv.len());
            let value = value.clone().narrow(1, kv.start, kv.len());
            let mask = mask.as_ref().map(|mask| match mask.dims()[1] {
                1 => mask.clone(),
                _ => mask.clone().narrow(1, run.start, run.len()),
            });
            let problem = AttentionProblem::check(&query, &key, &value, mask.as_ref(), &configs[run.start])
                .map_err(|source| DistrAttentionError::Head { head: run.start, source: Box::new(source) })?
                .with_quiet_softmax(quiet_softmax);
            Ok(HeadCall { query, key, value, mask, problem })
        })
        .collect::<Result<Vec<_>, DistrAttentionError>>()?;
    let outputs = calls
        .into_iter()
        .map(|call| attend(call.query, call.key, call.value, call.mask, &call.problem))
        .collect();
    Ok(Tensor::cat(outputs, 1))
}

/// Whether two heads give the same attention with either configuration: exact heads ignore the
/// grouping's parameters.
fn same_attention(a: &DistrAttentionConfig, b: &DistrAttentionConfig) -> bool {
    if a.is_exact() && b.is_exact() {
        a.scale == b.scale && a.causal == b.causal
    } else {
        a == b
    }
}

/// The calls a per-head list needs: maximal runs of heads with the same attention, each cut
/// so that it holds whole groups of `heads_per_kv` query heads or lies inside one group.
fn head_runs(configs: &[DistrAttentionConfig], heads_per_kv: usize) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    for head in 1..=configs.len() {
        if head == configs.len() || !same_attention(&configs[head], &configs[start]) {
            runs.extend(cut_at_groups(start..head, heads_per_kv));
            start = head;
        }
    }
    runs
}

/// `run` as pieces that a call can serve: a partial group before the first whole group, the
/// whole groups together, a partial group after them.
fn cut_at_groups(run: Range<usize>, heads_per_kv: usize) -> Vec<Range<usize>> {
    let first_whole = run.start.next_multiple_of(heads_per_kv).min(run.end);
    let last_whole = (run.end / heads_per_kv * heads_per_kv).max(first_whole);
    [run.start..first_whole, first_whole..last_whole, last_whole..run.end]
        .into_iter()
        .filter(|piece| !piece.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tensor, Tolerance};

    use super::*;
    use crate::tests::TestBackend;
    use crate::{distr_attention, Grouping};

    fn runs(group_sizes: &[usize], heads_per_kv: usize) -> Vec<Range<usize>> {
        let configs: Vec<_> = group_sizes.iter().map(|&g| DistrAttentionConfig::new().with_group_size(g)).collect();
        head_runs(&configs, heads_per_kv)
    }

    #[test]
    fn runs_join_equal_heads_and_respect_key_groups() {
        assert_eq!(runs(&[2, 2, 2, 2], 1), vec![0..4]);
        assert_eq!(runs(&[2, 2, 1, 1], 1), vec![0..2, 2..4]);
        // Three query heads per key head: a run across a group's edge is cut there.
        assert_eq!(runs(&[1, 2, 2, 2, 2, 2, 2, 1, 1], 3), vec![0..1, 1..3, 3..6, 6..7, 7..9]);
        assert_eq!(runs(&[2, 2, 2, 2, 2, 2, 1, 1, 1], 3), vec![0..6, 6..9]);
        assert_eq!(runs(&[1, 2, 1], 3), vec![0..1, 1..2, 2..3]);
        assert_eq!(runs(&[1, 2, 2, 2, 2, 1], 3), vec![0..1, 1..3, 3..5, 5..6]);
    }

    #[test]
    fn exact_heads_join_whatever_their_grouping_parameters() {
        let exact = DistrAttentionConfig::exact();
        let configs = [exact.clone(), exact.clone().with_seed(9).with_grouping(Grouping::Random), exact.with_scale(Some(0.5))];
        assert_eq!(head_runs(&configs, 1), vec![0..2, 2..3]);
    }

    /// Each head of a per-head call equals that head of a whole-layer call with its config.
    #[test]
    fn each_head_matches_a_whole_layer_call_with_its_config() {
        let device = Default::default();
        let (heads, kv_heads, seq, dim) = (6, 2, 37, 16);
        let query = Tensor::<TestBackend, 4>::random([2, heads, seq, dim], Distribution::Normal(0.0, 1.0), &device);
        let key = Tensor::<TestBackend, 4>::random([2, kv_heads, seq, dim], Distribution::Normal(0.0, 1.0), &device);
        let value = Tensor::<TestBackend, 4>::random([2, kv_heads, seq, dim], Distribution::Normal(0.0, 1.0), &device);
        let g2 = DistrAttentionConfig::new().with_block_rows(16).with_causal(true);
        let g4 = g2.clone().with_group_size(4).with_grouping(Grouping::Gram);
        let exact = DistrAttentionConfig::exact().with_causal(true);
        let configs = vec![exact.clone(), g2.clone(), g2.clone(), g2.clone(), g4.clone(), exact.clone()];
        let mixed = distr_attention_per_head(query.clone(), key.clone(), value.clone(), None, &configs).unwrap();
        for (head, config) in configs.iter().enumerate() {
            let whole = distr_attention(query.clone(), key.clone(), value.clone(), None, config).unwrap();
            mixed
                .clone()
                .narrow(1, head, 1)
                .into_data()
                .assert_approx_eq::<f32>(&whole.narrow(1, head, 1).into_data(), Tolerance::absolute(1e-6));
        }
    }

    #[test]
    fn a_head_that_does_not_fit_is_named() {
        let device = Default::default();
        let tensor = Tensor::<TestBackend, 4>::zeros([1, 3, 8, 8], &device);
        let mut configs = vec![DistrAttentionConfig::new(); 3];
        configs[2] = DistrAttentionConfig::new().with_group_size(3);
        let error = distr_attention_per_head(tensor.clone(), tensor.clone(), tensor.clone(), None, &configs).unwrap_err();
        assert!(error.to_string().starts_with("attention of head 2:") && error.to_string().contains("group_size 3"), "{error}");
        let error = distr_attention_per_head(tensor.clone(), tensor.clone(), tensor, None, &configs[..2]).unwrap_err();
        assert!(error.to_string().contains("2 entries") && error.to_string().contains("one per query head"), "{error}");
    }
}

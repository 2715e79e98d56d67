use std::time::Instant;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Tensor};
use distr_attn::{reference, AttentionProblem, DistrAttentionConfig};
type B = Autodiff<Flex>;
fn main() {
    let device = Default::default();
    for n in [512usize, 1024] {
        let q = Tensor::<B, 4>::random([1, 9, n, 64], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let k = Tensor::<B, 4>::random([1, 3, n, 64], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let v = Tensor::<B, 4>::random([1, 3, n, 64], Distribution::Normal(0.0, 1.0), &device).require_grad();
        for g in [1usize, 2] {
            let config = DistrAttentionConfig::new().with_group_size(g).with_causal(true);
            let problem = AttentionProblem::check(&q, &k, &v, None, &config).unwrap();
            let mut best = [f64::INFINITY; 2];
            for _ in 0..3 {
                let t = Instant::now();
                let out = reference::distr_attention_reference(q.clone(), k.clone(), v.clone(), None, &problem);
                let grads = out.sum().backward();
                let _ = q.grad(&grads).unwrap().into_data();
                best[0] = best[0].min(t.elapsed().as_secs_f64());
                let t = Instant::now();
                let expanded = reference::expanded_query(q.clone(), k.clone(), &problem);
                let out = reference::distr_attention_reference(expanded, k.clone(), v.clone(), None, &problem.expanded());
                let grads = out.sum().backward();
                let _ = q.grad(&grads).unwrap().into_data();
                best[1] = best[1].min(t.elapsed().as_secs_f64());
            }
            println!("n {n} g {g}: reference fwd+bwd {:.1} ms, expanded {:.1} ms", best[0]*1e3, best[1]*1e3);
        }
    }
}

use std::time::Instant;
use burn::backend::Flex;
use burn::tensor::{Distribution, Tensor};
use distr_attn::{reference, AttentionProblem, DistrAttentionConfig};
type B = Flex;
fn main() {
    let device = Default::default();
    for (heads, kv, n) in [(6usize, 6usize, 257usize), (6, 6, 1370), (9, 3, 1024)] {
        let q = Tensor::<B, 4>::random([1, heads, n, 64], Distribution::Normal(0.0, 1.0), &device);
        let k = Tensor::<B, 4>::random([1, kv, n, 64], Distribution::Normal(0.0, 1.0), &device);
        let v = Tensor::<B, 4>::random([1, kv, n, 64], Distribution::Normal(0.0, 1.0), &device);
        let config = DistrAttentionConfig::new().with_group_size(2);
        let problem = AttentionProblem::check(&q, &k, &v, None, &config).unwrap();
        let mut best = [f64::INFINITY; 2];
        for _ in 0..4 {
            let t = Instant::now();
            let _ = reference::distr_attention_reference(q.clone(), k.clone(), v.clone(), None, &problem).into_data();
            best[0] = best[0].min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let e = reference::expanded_query(q.clone(), k.clone(), &problem);
            let _ = reference::distr_attention_reference(e, k.clone(), v.clone(), None, &problem.expanded()).into_data();
            best[1] = best[1].min(t.elapsed().as_secs_f64());
        }
        println!("heads {heads}/{kv} n {n} G=2 non-causal: reference {:.1} ms, expanded {:.1} ms", best[0]*1e3, best[1]*1e3);
    }
}

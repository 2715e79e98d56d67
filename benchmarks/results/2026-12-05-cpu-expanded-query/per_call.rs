use std::time::Instant;
use burn::backend::Flex;
use burn::tensor::{Distribution, Tensor};
use distr_attn::{distr_attention, reference, AttentionProblem, DistrAttentionConfig};
type B = Flex;
fn main() {
    let device = Default::default();
    for (heads, kv, n, causal) in [(6usize, 6usize, 257usize, false), (6, 6, 1370, false), (9, 3, 1024, true), (6, 6, 1370, true), (9, 3, 1024, false)] {
        let q = Tensor::<B, 4>::random([1, heads, n, 64], Distribution::Normal(0.0, 1.0), &device);
        let k = Tensor::<B, 4>::random([1, kv, n, 64], Distribution::Normal(0.0, 1.0), &device);
        let v = Tensor::<B, 4>::random([1, kv, n, 64], Distribution::Normal(0.0, 1.0), &device);
        for g in [1usize, 2] {
            let config = DistrAttentionConfig::new().with_group_size(g).with_causal(causal);
            let problem = AttentionProblem::check(&q, &k, &v, None, &config).unwrap();
            let mut best = [f64::INFINITY; 2];
            for _ in 0..4 {
                let t = Instant::now();
                let _ = distr_attention(q.clone(), k.clone(), v.clone(), None, &config).unwrap().into_data();
                best[0] = best[0].min(t.elapsed().as_secs_f64());
                let t = Instant::now();
                let _ = reference::distr_attention_reference(q.clone(), k.clone(), v.clone(), None, &problem).into_data();
                best[1] = best[1].min(t.elapsed().as_secs_f64());
            }
            println!("heads {heads}/{kv} n {n} causal {causal} g {g}: flex path {:.1} ms, reference {:.1} ms", best[0]*1e3, best[1]*1e3);
        }
    }
}

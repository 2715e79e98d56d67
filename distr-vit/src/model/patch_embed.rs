//! Patch embedding: a strided convolution that turns each patch into one token.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Splits an image into non-overlapping `patch_size` squares and projects each to
/// `hidden_size` (`Conv2d` with kernel = stride = `patch_size`, as the originals do).
#[derive(Module, Debug)]
pub struct PatchEmbed<B: Backend> {
    /// `[hidden_size, num_channels, patch_size, patch_size]` projection, with bias.
    pub projection: Conv2d<B>,
}

impl<B: Backend> PatchEmbed<B> {
    /// Builds the projection with random weights.
    pub fn new(num_channels: usize, hidden_size: usize, patch_size: usize, device: &B::Device) -> Self {
        let projection = Conv2dConfig::new([num_channels, hidden_size], [patch_size, patch_size])
            .with_stride([patch_size, patch_size])
            .init(device);
        Self { projection }
    }

    /// `[batch, channels, height, width]` -> patch features `[batch, hidden_size, grid_h, grid_w]`
    /// (`grid = floor(side / patch_size)`: incomplete border patches are dropped).
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        self.projection.forward(images)
    }
}

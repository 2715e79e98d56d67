//! The decoder's upsampling step, `ConvTranspose2d` with kernel 4, stride 2 and padding 1
//! (each stage doubles the grid), written as one matrix product and an overlap-add.
//!
//! Why not `ConvTranspose2d::forward`: burn-ndarray computes a transposed convolution one
//! element at a time through dynamically indexed arrays, about two minutes per 224×224 image
//! for this decoder on a CPU core, and its backward pass is no faster. The matrix-product form
//! takes well under a second there, is the same arithmetic on every backend, and
//! differentiates through plain tensor ops.
//!
//! Kernel tap `k` (0..4) of output row `o = 2 i + k - 1` splits as `k = 2 a + r`: input row `i`
//! reaches output row `2 (i + a) + r - 1`. So each of the four `(a_h, a_w)` quadrants of the
//! kernel is a `[in, out, 2, 2]` block product placed one grid step apart, and the `r` taps
//! interleave into the doubled grid.

use burn::nn::conv::ConvTranspose2d;
use burn::tensor::backend::Backend;
use burn::tensor::ops::PadMode;
use burn::tensor::Tensor;

/// Kernel side, stride and padding this form computes.
pub const KERNEL: usize = 4;
/// Stride: the factor the grid grows by.
pub const STRIDE: usize = 2;
/// Padding trimmed from each side of the full output.
pub const PADDING: usize = 1;

/// `conv.forward(x)` for a transposed convolution with kernel 4, stride 2, padding 1,
/// no dilation, no groups and no output padding (how the decoder builds all three).
///
/// - x: `[batch, in_channels, height, width]`
/// - output: `[batch, out_channels, 2 * height, 2 * width]`
pub fn upsample_2x<B: Backend>(conv: &ConvTranspose2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [batch, in_channels, height, width] = x.dims();
    let [_, out_channels, _, _] = conv.weight.dims();
    let half = KERNEL / STRIDE;
    // [in, out, a_h, r_h, a_w, r_w] -> [in, (a_h, a_w), (out, r_h, r_w)]
    let weight = conv
        .weight
        .val()
        .reshape([in_channels, out_channels, half, STRIDE, half, STRIDE])
        .permute([0, 2, 4, 1, 3, 5])
        .reshape([in_channels, half * half * out_channels * STRIDE * STRIDE]);
    let pixels = x.permute([0, 2, 3, 1]).reshape([batch * height * width, in_channels]);
    let taps = out_channels * STRIDE * STRIDE;
    let products = pixels.matmul(weight).reshape([batch, height, width, half * half, taps]);

    // Overlap-add: quadrant (a_h, a_w) lands a_h rows and a_w columns further on.
    let mut full = Tensor::<B, 4>::zeros([batch, height + half - 1, width + half - 1, taps], &products.device());
    for a_h in 0..half {
        for a_w in 0..half {
            let quadrant = products
                .clone()
                .narrow(3, a_h * half + a_w, 1)
                .reshape([batch, height, width, taps]);
            let placed = quadrant.pad(
                [(a_h, half - 1 - a_h), (a_w, half - 1 - a_w), (0, 0)],
                PadMode::Constant(0.0),
            );
            full = full + placed;
        }
    }

    // [batch, rows, columns, out, r_h, r_w] -> [batch, out, rows * 2, columns * 2], trimmed.
    let [rows, columns] = [height + half - 1, width + half - 1];
    let output = full
        .reshape([batch, rows, columns, out_channels, STRIDE, STRIDE])
        .permute([0, 3, 1, 4, 2, 5])
        .reshape([batch, out_channels, rows * STRIDE, columns * STRIDE])
        .narrow(2, PADDING, height * STRIDE)
        .narrow(3, PADDING, width * STRIDE);
    match &conv.bias {
        Some(bias) => output + bias.val().reshape([1, out_channels, 1, 1]),
        None => output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::nn::conv::ConvTranspose2dConfig;
    use burn::tensor::Distribution;

    type B = NdArray<f32>;

    #[test]
    fn matches_burns_transposed_convolution() {
        let device = Default::default();
        let conv = ConvTranspose2dConfig::new([5, 3], [KERNEL, KERNEL])
            .with_stride([STRIDE, STRIDE])
            .with_padding([PADDING, PADDING])
            .init::<B>(&device);
        let x = Tensor::<B, 4>::random([2, 5, 3, 4], Distribution::Normal(0.0, 1.0), &device);
        let expected = conv.forward(x.clone());
        let actual = upsample_2x(&conv, x);
        assert_eq!(actual.dims(), [2, 3, 6, 8]);
        actual
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), burn::tensor::Tolerance::absolute(1e-5));
    }
}

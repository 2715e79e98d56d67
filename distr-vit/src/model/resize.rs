//! Image resizing as ONNX `Resize` (and PyTorch `interpolate`, `align_corners=False`) does it,
//! written as two small matrix products so that every backend computes the same thing.
//!
//! Coordinates use the `half_pixel` transform: output index `i` samples input position
//! `(i + 0.5) * in / out - 0.5`. Neighbours outside the input are clamped to the border
//! (ONNX `exclude_outside = 0`; PyTorch does the same). No antialiasing, as in both originals.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// The interpolation kernel of a resize.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Interpolation {
    /// Two-tap linear (ONNX `linear`, PyTorch `bilinear`).
    Linear,
    /// Four-tap cubic convolution with coefficient `a` (ONNX `cubic`; -0.75 in ONNX exports
    /// of PyTorch `bicubic`).
    Cubic { a: f64 },
}

/// Resizes `[batch, channels, height, width]` to `[batch, channels, size[0], size[1]]`.
pub fn resize<B: Backend>(input: Tensor<B, 4>, size: [usize; 2], mode: Interpolation) -> Tensor<B, 4> {
    let [batch, channels, height, width] = input.dims();
    if [height, width] == size {
        return input;
    }
    let device = input.device();
    let rows = weight_matrix::<B>(height, size[0], mode, &device); // [out_h, in_h]
    let columns = weight_matrix::<B>(width, size[1], mode, &device); // [out_w, in_w]
    let input = input.reshape([batch * channels, height, width]);
    let along_width = input.matmul(columns.transpose().unsqueeze::<3>().expand([batch * channels, width, size[1]]));
    let both = rows.unsqueeze::<3>().expand([batch * channels, size[0], height]).matmul(along_width);
    both.reshape([batch, channels, size[0], size[1]])
}

/// The `[output, input]` matrix whose row `i` holds the weights of output sample `i`.
fn weight_matrix<B: Backend>(input: usize, output: usize, mode: Interpolation, device: &B::Device) -> Tensor<B, 2> {
    let mut weights = vec![0f32; output * input];
    let scale = input as f64 / output as f64;
    let last = input as i64 - 1;
    for i in 0..output {
        let position = (i as f64 + 0.5) * scale - 0.5;
        let floor = position.floor();
        let fraction = position - floor;
        let taps: Vec<(i64, f64)> = match mode {
            Interpolation::Linear => vec![(0, 1.0 - fraction), (1, fraction)],
            Interpolation::Cubic { a } => (-1..=2)
                .map(|offset| (offset, cubic((fraction - offset as f64).abs(), a)))
                .collect(),
        };
        for (offset, weight) in taps {
            let source = (floor as i64 + offset).clamp(0, last) as usize;
            weights[i * input + source] += weight as f32;
        }
    }
    Tensor::from_data(TensorData::new(weights, [output, input]), device)
}

/// Keys' cubic convolution kernel at distance `x >= 0`.
fn cubic(x: f64, a: f64) -> f64 {
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    #[test]
    fn linear_upsampling_matches_half_pixel_reference() {
        // torch.nn.functional.interpolate([[0, 1, 3]], size=5, mode="linear", align_corners=False)
        let input = Tensor::<B, 4>::from_data([[[[0.0f32, 1.0, 3.0]]]], &Default::default());
        let output = resize(input, [1, 5], Interpolation::Linear);
        let expected = [0.0f32, 0.4, 1.0, 2.2, 3.0];
        let actual = output.into_data().to_vec::<f32>().unwrap();
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() < 1e-6, "{actual:?} vs {expected:?}");
        }
    }

    #[test]
    fn cubic_rows_sum_to_one_and_identity_at_same_size() {
        let weights = weight_matrix::<B>(37, 16, Interpolation::Cubic { a: -0.75 }, &Default::default());
        let sums = weights.sum_dim(1).into_data().to_vec::<f32>().unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
        let identity = weight_matrix::<B>(5, 5, Interpolation::Cubic { a: -0.75 }, &Default::default());
        let expected = Tensor::<B, 2>::eye(5, &Default::default());
        identity.into_data().assert_approx_eq::<f32>(&expected.into_data(), burn::tensor::Tolerance::absolute(1e-6));
    }
}

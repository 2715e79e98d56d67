//! The SwiGLU feed-forward block: `down(silu(gate(x)) * up(x))`.

use std::any::Any;

use burn::backend::Flex;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};
use distr_attn::vector_exp::exp_non_positive;
use rayon::prelude::*;

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// `[d_model, d_ff]`
    pub gate: Linear<B>,
    /// `[d_model, d_ff]`
    pub up: Linear<B>,
    /// `[d_ff, d_model]`
    pub down: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    /// `[batch, seq, d_model]` -> `[batch, seq, d_model]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.down.forward(swiglu(self.gate.forward(x.clone()), self.up.forward(x)))
    }
}

/// `silu(gate) * up`. On Flex (the CPU default, not under `Autodiff`) in f32 this is one pass
/// on rayon's pool ([`flex_swiglu`]): Flex's `sigmoid` calls `expf` per element on the calling
/// thread alone, and in a profile of SmolLM2-135M's 1024-token prefill on two cores it took
/// about a quarter of that thread's samples in the layers. Elsewhere, Burn's ops.
fn swiglu<B: Backend>(gate: Tensor<B, 3>, up: Tensor<B, 3>) -> Tensor<B, 3> {
    let pair: Box<dyn Any> = Box::new((gate, up));
    match pair.downcast::<(Tensor<Flex, 3>, Tensor<Flex, 3>)>() {
        Ok(pair) => {
            let output: Box<dyn Any> = Box::new(flex_swiglu(pair.0, pair.1));
            *output.downcast::<Tensor<B, 3>>().expect("B is Flex: the pair downcast to it")
        }
        Err(pair) => {
            let (gate, up) = *pair.downcast::<(Tensor<B, 3>, Tensor<B, 3>)>().expect("the pair boxed above");
            silu(gate) * up
        }
    }
}

/// Elements per task: 64 KiB of each operand, enough to amortise a task, and a 1024-token
/// prefill of SmolLM2 (1024 x 1536 elements) still makes 96 tasks.
const CHUNK: usize = 16 * 1024;

/// [`swiglu`] on Flex: in place on `gate`'s values, parallel over chunks, with an exponential
/// that vectorises. Operands that are not both f32 of one shape take Burn's ops.
fn flex_swiglu(gate: Tensor<Flex, 3>, up: Tensor<Flex, 3>) -> Tensor<Flex, 3> {
    if gate.dtype() != DType::F32 || up.dtype() != DType::F32 || gate.shape() != up.shape() {
        return silu(gate) * up;
    }
    let device = gate.device();
    let mut gate = gate.into_data();
    let up = up.into_data();
    let values = gate.as_mut_slice::<f32>().expect("checked f32 above");
    let up = up.as_slice::<f32>().expect("checked f32 above");
    values.par_chunks_mut(CHUNK).zip(up.par_chunks(CHUNK)).for_each(|(gate, up)| swiglu_chunk(gate, up));
    Tensor::from_data(gate, &device)
}

/// `gate <- silu(gate) * up` element by element, compiled for AVX2 where the CPU has it.
fn swiglu_chunk(gate: &mut [f32], up: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked above.
        return unsafe { swiglu_chunk_avx2(gate, up) };
    }
    swiglu_chunk_portable(gate, up)
}

/// [`swiglu_chunk_portable`] compiled for AVX2: eight lanes instead of SSE2's four.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn swiglu_chunk_avx2(gate: &mut [f32], up: &[f32]) {
    swiglu_chunk_portable(gate, up)
}

/// `sigmoid(x)` as `1 / (1 + e^-|x|)`, times `e^-|x|` for negative `x`, so that the exponential
/// never overflows; branch-free so that the loop vectorises. A NaN gate stays NaN through the
/// product with `x`.
#[inline(always)]
fn swiglu_chunk_portable(gate: &mut [f32], up: &[f32]) {
    for (x, &u) in gate.iter_mut().zip(up) {
        let e = exp_non_positive(-x.abs());
        let positive = 1.0 / (1.0 + e);
        let sigmoid = if *x >= 0.0 { positive } else { e * positive };
        *x = *x * sigmoid * u;
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::NdArray;
    use burn::tensor::TensorData;

    use super::*;

    /// Flex's fused pass against Burn's `silu(gate) * up` on NdArray, over gates from -100 to
    /// 100 (both signs of the sigmoid's two forms, its tails) in a shape that is not a
    /// multiple of the chunk, and the f16 fallback.
    #[test]
    fn flex_swiglu_matches_burn_ops() {
        let shape = [2, 3, CHUNK / 4 + 7];
        let count = shape.iter().product::<usize>();
        let gate: Vec<f32> = (0..count).map(|i| (i as f32 * 0.618).sin() * 100.0 * (i % 7) as f32 / 6.0).collect();
        let up: Vec<f32> = (0..count).map(|i| (i as f32 * 0.377).cos() * 3.0).collect();
        let expected = {
            let device = Default::default();
            let tensor = |values: &Vec<f32>| Tensor::<NdArray, 3>::from_data(TensorData::new(values.clone(), shape), &device);
            swiglu(tensor(&gate), tensor(&up)).into_data().into_vec::<f32>().unwrap()
        };
        let device = Default::default();
        let tensor = |values: &Vec<f32>| Tensor::<Flex, 3>::from_data(TensorData::new(values.clone(), shape), &device);
        let ours = swiglu(tensor(&gate), tensor(&up)).into_data().into_vec::<f32>().unwrap();
        for (i, (&ours, &expected)) in ours.iter().zip(&expected).enumerate() {
            let error = (ours - expected).abs() / expected.abs().max(1e-3);
            assert!(error < 1e-5, "element {i}: gate {} up {}: ours {ours}, Burn {expected}", gate[i], up[i]);
        }
        let half = swiglu(tensor(&gate).cast(DType::F16), tensor(&up).cast(DType::F16));
        assert_eq!(half.dtype(), DType::F16);
    }

    #[test]
    fn a_nan_gate_gives_nan() {
        let device = Default::default();
        let gate = Tensor::<Flex, 3>::from_data(TensorData::new(vec![f32::NAN, 1.0], [1, 1, 2]), &device);
        let up = Tensor::<Flex, 3>::from_data(TensorData::new(vec![1.0f32, 1.0], [1, 1, 2]), &device);
        let output = swiglu(gate, up).into_data().into_vec::<f32>().unwrap();
        assert!(output[0].is_nan() && (output[1] - 0.731_058_6).abs() < 1e-6, "{output:?}");
    }
}

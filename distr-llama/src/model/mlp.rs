//! The SwiGLU feed-forward block: `down(silu(gate(x)) * up(x))`.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

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
        self.down.forward(silu(self.gate.forward(x.clone())) * self.up.forward(x))
    }
}

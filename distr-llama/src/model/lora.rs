//! LoRA adapters on the attention projections: `W x + scale * up(down(x))` with a rank-`r`
//! `down` and `up`, `scale = alpha / r`. Training only these leaves the pretrained weights
//! intact; [`Llama::merge_adapters`](crate::model::Llama::merge_adapters) folds them into
//! the projections so that a checkpoint is a plain model again.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

/// Shape of the adapters.
#[derive(Config, Debug, PartialEq)]
pub struct LoraConfig {
    /// Rank of each adapter.
    pub rank: usize,
    /// Numerator of the scale `alpha / rank`. Default: 16.
    #[config(default = 16.0)]
    pub alpha: f64,
}

/// One low-rank update of a `[d_input, d_output]` projection.
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// `[d_input, rank]`, random at initialisation.
    pub down: Param<Tensor<B, 2>>,
    /// `[rank, d_output]`, zero at initialisation so that training starts from the
    /// pretrained model.
    pub up: Param<Tensor<B, 2>>,
    pub scale: f64,
}

impl LoraConfig {
    /// An adapter for a projection from `d_input` to `d_output` features.
    pub fn init<B: Backend>(&self, d_input: usize, d_output: usize, device: &B::Device) -> LoraAdapter<B> {
        let std = 1.0 / (d_input as f64).sqrt();
        LoraAdapter {
            down: Param::from_tensor(Tensor::random([d_input, self.rank], Distribution::Normal(0.0, std), device)),
            up: Param::from_tensor(Tensor::zeros([self.rank, d_output], device)),
            scale: self.alpha / self.rank as f64,
        }
    }
}

impl<B: Backend> LoraAdapter<B> {
    /// The update of `[batch, seq, d_input]` inputs: `[batch, seq, d_output]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        x.matmul(self.down.val().unsqueeze()).matmul(self.up.val().unsqueeze()) * self.scale
    }

    /// `linear` with this update folded into its weight.
    pub fn merge_into(&self, linear: Linear<B>) -> Linear<B> {
        let delta = self.down.val().matmul(self.up.val()) * self.scale;
        let weight = linear.weight.map(|weight| weight + delta);
        Linear { weight, bias: linear.bias }
    }
}

/// One adapter per attention projection.
#[derive(Module, Debug)]
pub struct AttentionAdapters<B: Backend> {
    pub query: LoraAdapter<B>,
    pub key: LoraAdapter<B>,
    pub value: LoraAdapter<B>,
    pub output: LoraAdapter<B>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tolerance;
    use distr_attn::backends::NdArrayBackend as B;

    #[test]
    fn merged_weight_equals_the_adapter_path() {
        let device = Default::default();
        let mut adapter = LoraConfig::new(2).init::<B>(6, 5, &device);
        // A non-zero `up`, as after some training.
        adapter.up = Param::from_tensor(Tensor::random([2, 5], Distribution::Normal(0.0, 1.0), &device));
        let linear = burn::nn::LinearConfig::new(6, 5).with_bias(false).init::<B>(&device);
        let x = Tensor::<B, 3>::random([1, 3, 6], Distribution::Normal(0.0, 1.0), &device);
        let expected = linear.forward(x.clone()) + adapter.forward(x.clone());
        let merged = adapter.merge_into(linear).forward(x);
        merged.into_data().assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-5));
    }
}

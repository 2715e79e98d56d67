//! Layer norm whose statistics are taken in f32 whatever the activations' float type.
//!
//! DINOv2's residual stream has channels in the hundreds, whose squares overflow f16
//! (largest finite value 65504) in the variance; PyTorch's half-precision layer norm
//! accumulates in f32 for the same reason. In f32 this is Burn's `LayerNorm` unchanged.

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::LayerNorm;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor};

/// `norm(x)`, computed in f32 and returned in `x`'s float type.
pub fn layer_norm<B: Backend, const D: usize>(norm: &LayerNorm<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    let dtype = x.dtype();
    if dtype == DType::F32 {
        return norm.forward(x);
    }
    norm.clone().map(&mut CastTo(FloatDType::F32)).forward(x.cast(FloatDType::F32)).cast(dtype)
}

/// Casts every float parameter of a module (here a norm's scale and bias, a few hundred values).
struct CastTo(FloatDType);

impl<B: Backend> ModuleMapper<B> for CastTo {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.cast(self.0), mapper)
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::LayerNormConfig;
    use burn::tensor::{Distribution, Tolerance};

    use super::*;

    type B = burn::backend::NdArray<f32>;

    #[test]
    fn in_f32_it_is_burns_layer_norm() {
        let device = Default::default();
        let norm = LayerNormConfig::new(8).init::<B>(&device);
        let x = Tensor::<B, 3>::random([2, 3, 8], Distribution::Normal(0.0, 300.0), &device);
        layer_norm(&norm, x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&norm.forward(x).into_data(), Tolerance::absolute(1e-6));
    }
}

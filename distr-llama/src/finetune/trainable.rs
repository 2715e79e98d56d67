//! Which parameters fine-tuning updates: all of them, only the attention projections (the
//! weights that produce what DistrAttention approximates), or LoRA adapters on those
//! projections (a few hundred thousand parameters; the pretrained weights stay as they are).

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::Linear;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::model::{Llama, LoraConfig};

/// The parameters that fine-tuning updates.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trainable {
    /// Every parameter.
    All,
    /// The query, key, value and output projections of every layer; the rest is frozen.
    Attention,
    /// LoRA adapters on the four attention projections; the whole model is frozen.
    Lora,
}

/// `model` with gradients required exactly for the parameters `trainable` names (adapters
/// of `lora` are added for [`Trainable::Lora`]).
pub fn prepare<B: AutodiffBackend>(model: Llama<B>, trainable: Trainable, lora: &LoraConfig, device: &B::Device) -> Llama<B> {
    match trainable {
        Trainable::All => model,
        Trainable::Lora => model.no_grad().with_adapters(lora, device),
        Trainable::Attention => {
            let mut model = model.no_grad();
            for layer in &mut model.layers {
                let attention = &mut layer.attention;
                for projection in [&mut attention.query, &mut attention.key, &mut attention.value, &mut attention.output] {
                    *projection = trainable_linear(projection.clone());
                }
            }
            model
        }
    }
}

fn trainable_linear<B: AutodiffBackend>(linear: Linear<B>) -> Linear<B> {
    Linear { weight: linear.weight.set_require_grad(true), bias: linear.bias }
}

/// How many scalar parameters of `model` require gradients.
pub fn count_trainable<B: Backend>(model: &Llama<B>) -> usize {
    let mut counter = TrainableCounter(0);
    model.visit(&mut counter);
    counter.0
}

struct TrainableCounter(usize);

impl<B: Backend> ModuleVisitor<B> for TrainableCounter {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let tensor = param.val();
        if tensor.is_require_grad() {
            self.0 += tensor.shape().num_elements();
        }
    }
}

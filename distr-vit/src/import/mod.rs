//! Weight import: a checkpoint is read into PyTorch names and layouts ([`Checkpoint`]),
//! renamed to the model's parameter paths by a remap table ([`names`]), checked against
//! the model tensor by tensor, then applied.
//!
//! - [`load_onnx`]: `vit_s_focus.onnx` into a [`SaliencyModel`](crate::model::SaliencyModel).
//! - [`load_safetensors`]: a Hugging Face `Dinov2Model` or timm ViT into a
//!   [`Vit`](crate::model::Vit).

mod apply;
mod error;
pub mod names;
mod onnx;
mod safetensors;

use std::collections::BTreeMap;

use burn::tensor::TensorData;

pub use apply::{apply_checkpoint, LoadReport};
pub use error::ImportError;
pub use onnx::{load_onnx, read_onnx};
pub use safetensors::{load_safetensors, read_safetensors};

/// Tensors under their PyTorch names, in PyTorch layouts (Linear weights `[out, in]`), f32.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    pub tensors: BTreeMap<String, TensorData>,
}

/// The naming scheme of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// Hugging Face `Dinov2Model` (`embeddings.cls_token`, `encoder.layer.N...`).
    HfDinov2,
    /// timm `VisionTransformer` (`cls_token`, `blocks.N.attn.qkv...`, `head`).
    Timm,
}

impl Checkpoint {
    /// Which naming scheme the tensor names follow, if any this crate knows.
    pub fn naming(&self) -> Option<Naming> {
        if self.tensors.contains_key("embeddings.cls_token") {
            Some(Naming::HfDinov2)
        } else if self.tensors.contains_key("cls_token") && self.tensors.contains_key("pos_embed") {
            Some(Naming::Timm)
        } else {
            None
        }
    }
}

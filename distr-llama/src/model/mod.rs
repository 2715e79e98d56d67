//! The Llama architecture, one file per part: [`config`], [`rope`], [`attention`], [`mlp`],
//! [`transformer`] (one block) and [`llama`] (the whole decoder).

pub mod attention;
pub mod config;
pub mod llama;
pub mod mlp;
pub mod rope;
pub mod transformer;

pub use attention::Attention;
pub use config::{HfLlamaConfig, HfRopeParameters, LlamaConfig, RopeScaling};
pub use llama::Llama;
pub use mlp::Mlp;
pub use rope::RotaryEmbedding;
pub use transformer::TransformerBlock;

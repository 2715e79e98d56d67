//! A pretrained Llama in Burn whose attention is DistrAttention (or exact) per layer.
//!
//! - [`model`]: the architecture, generic over `B: DistrAttentionBackend`; each layer's
//!   attention comes from the [`distr_attn::ModelAttentionConfig`] the model holds
//!   ([`Llama::set_attention`]).
//! - [`cache`]: the key/value cache, outside the module.
//! - [`gguf`] and [`pretrained`]: weights from a llama.cpp GGUF file (dequantised) or a
//!   Hugging Face checkpoint directory, and a loaded model written out as such a directory.
//! - [`tokenizer`]: byte-level BPE and the chat template.
//! - [`sampling`] and [`generation`]: greedy / temperature / top-p decoding; [`evaluation`]:
//!   perplexity pieces.
//! - [`finetune`]: training with DistrAttention in place (AdamW, warm-up + cosine, clipping,
//!   language-model or distillation loss, all / attention-only / LoRA parameters);
//!   [`calibrate`]: the per-layer choice of exact or DistrAttention under a perplexity budget
//!   (perplexity is this model's score for the search of `distr_attn::experiment`).
//! - [`cli`]: the `distr-llama` command line, on the options, checkpoints and progress of
//!   `distr_attn::experiment`.

pub mod cache;
pub mod calibrate;
pub mod cli;
pub mod error;
pub mod evaluation;
pub mod finetune;
pub mod generation;
pub mod gguf;
pub mod model;
pub mod pretrained;
pub mod sampling;
pub mod tokenizer;

pub use cache::KvCache;
pub use error::{LlamaError, Result};
pub use model::{Llama, LlamaConfig};
pub use pretrained::{export_hf, load_pretrained, ExportDtype, Pretrained};
pub use tokenizer::{BpeTokenizer, ChatMessage, ChatTemplate, Tokenizer};

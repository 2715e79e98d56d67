//! Text to token ids and back.
//!
//! [`Tokenizer`] is what generation and evaluation need; [`BpeTokenizer`] implements it with
//! the `tokenizers` crate, built from GGUF metadata or read from a `tokenizer.json`.
//! [`ChatTemplate`] formats conversations for instruct models.

mod bpe;
mod chat;

pub use bpe::BpeTokenizer;
pub use chat::{ChatMessage, ChatTemplate};

use crate::error::Result;

pub trait Tokenizer {
    /// Token ids of `text`; special tokens written in the text (`<|im_start|>`) are recognised.
    /// A beginning-of-sequence token is prepended when the model expects one.
    fn encode(&self, text: &str) -> Result<Vec<u32>>;
    /// The text of `ids`, special tokens included.
    fn decode(&self, ids: &[u32]) -> Result<String>;
    /// Ids that end generation.
    fn stop_ids(&self) -> &[u32];
}

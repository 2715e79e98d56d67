//! Byte-level BPE (GPT-2 style), as SmolLM2 and Llama 3 use.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::AddedToken;

use crate::error::{LlamaError, Result};
use crate::gguf::GgufFile;
use crate::tokenizer::{ChatTemplate, Tokenizer};

/// GGUF token types that are special (never split, never merged): control and user-defined.
const CONTROL_TOKEN: u64 = 3;
const USER_DEFINED_TOKEN: u64 = 4;

pub struct BpeTokenizer {
    inner: tokenizers::Tokenizer,
    bos_id: Option<u32>,
    stop_ids: Vec<u32>,
    chat_template: Option<ChatTemplate>,
}

impl BpeTokenizer {
    /// Reads a Hugging Face `tokenizer.json`; stop tokens are `<|im_end|>`, `<|endoftext|>`,
    /// `<|eot_id|>` and `<|end_of_text|>` where the vocabulary has them.
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| LlamaError::Tokenizer(format!("cannot read `{}`: {e}", path.display())))?;
        let stop_ids = ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>"]
            .iter()
            .filter_map(|token| inner.token_to_id(token))
            .collect();
        let chat_template = inner.token_to_id("<|im_start|>").map(|_| ChatTemplate::chatml(None));
        // A `tokenizer.json`'s post-processor adds BOS itself when the model wants one.
        Ok(Self { inner, bos_id: None, stop_ids, chat_template })
    }

    /// Builds the tokenizer llama.cpp describes in the GGUF metadata (`tokenizer.ggml.*`).
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let model = file.require_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(LlamaError::Tokenizer(format!(
                "tokenizer model `{model}` is not supported: expected gpt2 (byte-level BPE)"
            )));
        }
        let tokens = file.require_strings("tokenizer.ggml.tokens")?;
        let vocab: Vocab = tokens.iter().enumerate().map(|(id, t)| (t.to_string(), id as u32)).collect();
        let merges = file
            .require_strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|merge| {
                merge
                    .split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| LlamaError::Tokenizer(format!("merge `{merge}` is not two tokens")))
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| LlamaError::Tokenizer(format!("cannot build BPE: {e}")))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);

        let pre = file.get("tokenizer.ggml.pre").and_then(|v| v.as_str()).unwrap_or("default");
        // The byte-level split regex is GPT-2's; `smollm` first isolates every digit
        // (llama.cpp's `\p{N}` rule), as SmolLM2's own tokenizer.json does.
        let byte_level = PreTokenizerWrapper::from(ByteLevel::new(false, true, true));
        let pre_tokenizer = match pre {
            "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level]),
            "gpt2" | "default" => Sequence::new(vec![byte_level]),
            other => {
                return Err(LlamaError::Tokenizer(format!(
                    "pre-tokenizer `{other}` is not supported: expected smollm, gpt2 or default"
                )))
            }
        };
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        let types = file
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.as_array())
            .ok_or_else(|| LlamaError::Metadata { key: "tokenizer.ggml.token_type".into(), expected: "an array of integers" })?;
        let special: Vec<AddedToken> = tokens
            .iter()
            .zip(types)
            .filter(|(_, kind)| matches!(kind.as_u64(), Some(CONTROL_TOKEN | USER_DEFINED_TOKEN)))
            .map(|(token, _)| AddedToken::from(token.to_string(), true))
            .collect();
        inner.add_special_tokens(&special);

        let id = |key: &str| file.get(key).and_then(|v| v.as_u64()).map(|v| v as u32);
        let add_bos = file.get("tokenizer.ggml.add_bos_token").and_then(|v| v.as_bool()).unwrap_or(false);
        let mut stop_ids: Vec<u32> = id("tokenizer.ggml.eos_token_id").into_iter().collect();
        stop_ids.extend(["<|im_end|>", "<|endoftext|>", "<|eot_id|>"].iter().filter_map(|t| inner.token_to_id(t)));
        stop_ids.dedup();
        let chat_template = file
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .and_then(ChatTemplate::from_jinja);
        Ok(Self {
            inner,
            bos_id: if add_bos { id("tokenizer.ggml.bos_token_id") } else { None },
            stop_ids,
            chat_template,
        })
    }

    /// Writes the tokenizer as a Hugging Face `tokenizer.json` (for example to turn a GGUF
    /// model into a checkpoint directory).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner
            .save(path, false)
            .map_err(|e| LlamaError::Tokenizer(format!("cannot write `{}`: {e}", path.display())))
    }

    /// The model's chat format, when it has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// Incremental decoding for streaming: feed ids one by one, get text when it is whole
    /// (a multi-byte character can span tokens).
    pub fn decode_stream(&self) -> impl FnMut(u32) -> Result<Option<String>> + '_ {
        let mut stream = self.inner.decode_stream(false);
        move |id| stream.step(id).map_err(|e| LlamaError::Tokenizer(format!("cannot decode id {id}: {e}")))
    }
}

impl Tokenizer for BpeTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| LlamaError::Tokenizer(format!("cannot encode: {e}")))?;
        Ok(self.bos_id.into_iter().chain(encoding.get_ids().iter().copied()).collect())
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| LlamaError::Tokenizer(format!("cannot decode: {e}")))
    }

    fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }
}

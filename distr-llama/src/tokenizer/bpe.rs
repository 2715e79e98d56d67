//! Byte-level BPE (GPT-2 style), as SmolLM2 and Llama 3 use.

use std::path::Path;
use std::str::FromStr;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::AddedToken;

use crate::error::{LlamaError, Result};
use crate::gguf::GgufFile;
use crate::tokenizer::{ChatTemplate, Tokenizer};

/// GGUF token types that are special (never split, never merged): control and user-defined.
const CONTROL_TOKEN: u64 = 3;
const USER_DEFINED_TOKEN: u64 = 4;

/// Tokens that end generation wherever the vocabulary has them.
const STOP_TOKENS: [&str; 4] = ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>"];

pub struct BpeTokenizer {
    inner: tokenizers::Tokenizer,
    stop_ids: Vec<u32>,
    chat_template: Option<ChatTemplate>,
    /// Beginning- and end-of-sequence tokens, as `tokenizer_config.json` names them.
    bos_token: Option<String>,
    eos_token: Option<String>,
}

impl BpeTokenizer {
    /// Reads a Hugging Face `tokenizer.json` and, when it lies beside it, the
    /// `tokenizer_config.json` (end-of-sequence token; `chat_template`, else a
    /// `chat_template.jinja` file). Stop tokens are the end-of-sequence token and those of
    /// `<|im_end|>`, `<|endoftext|>`, `<|eot_id|>`, `<|end_of_text|>` in the vocabulary. With no
    /// template given, a vocabulary with `<|im_start|>` gets plain ChatML.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(LlamaError::io(path))?;
        // `tokenizers` 0.22 panics on some malformed files (its decoder and normalizer sections
        // `expect`): the JSON is checked here first (numbers in range and escapes included), so
        // that the error says where it breaks, and a panic left in a valid file is contained.
        serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|source| LlamaError::Json { path: path.to_path_buf(), source })?;
        let read_error = |message: String| LlamaError::Tokenizer(format!("cannot read `{}`: {message}", path.display()));
        let inner = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_str(&text))
            .map_err(|_| read_error("the tokenizers crate panicked on it".into()))?
            .map_err(|e| read_error(e.to_string()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let config = TokenizerConfig::read(dir)?;
        let mut stop_ids: Vec<u32> = config.eos_token.iter().filter_map(|token| inner.token_to_id(token)).collect();
        stop_ids.extend(STOP_TOKENS.iter().filter_map(|token| inner.token_to_id(token)));
        stop_ids.dedup();
        let chat_template = match &config.chat_template {
            Some(jinja) => ChatTemplate::from_jinja(jinja),
            None => inner.token_to_id("<|im_start|>").map(|_| ChatTemplate::chatml(None)),
        };
        // A `tokenizer.json`'s post-processor adds BOS itself when the model wants one.
        Ok(Self { inner, stop_ids, chat_template, bos_token: config.bos_token, eos_token: config.eos_token })
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

        let token = |key: &str| {
            let id = u32::try_from(file.get(key).and_then(|v| v.as_u64())?).ok()?;
            Some((id, inner.id_to_token(id)?))
        };
        let (bos, eos) = (token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id"));
        let add_bos = file.get("tokenizer.ggml.add_bos_token").and_then(|v| v.as_bool()).unwrap_or(false);
        if let (true, Some((id, bos))) = (add_bos, &bos) {
            // A post-processor, as a `tokenizer.json` has it, so that the file written by
            // `save` adds BOS too.
            let template_error = |e: String| LlamaError::Tokenizer(format!("BOS template: {e}"));
            let processor = TemplateProcessing::builder()
                .try_single(format!("{bos}:0 $A:0"))
                .map_err(template_error)?
                .try_pair(format!("{bos}:0 $A:0 {bos}:1 $B:1"))
                .map_err(template_error)?
                .special_tokens(vec![(bos.clone(), *id)])
                .build()
                .map_err(|e| template_error(e.to_string()))?;
            inner.with_post_processor(Some(processor));
        }
        let (bos_token, eos_token) = (bos.map(|(_, token)| token), eos.map(|(_, token)| token));
        let mut stop_ids: Vec<u32> = eos_token.iter().filter_map(|token| inner.token_to_id(token)).collect();
        stop_ids.extend(STOP_TOKENS.iter().filter_map(|token| inner.token_to_id(token)));
        stop_ids.dedup();
        let chat_template = file
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .and_then(ChatTemplate::from_jinja);
        Ok(Self { inner, stop_ids, chat_template, bos_token, eos_token })
    }

    /// Writes the tokenizer as a Hugging Face `tokenizer.json` (for example to turn a GGUF
    /// model into a checkpoint directory).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner
            .save(path, false)
            .map_err(|e| LlamaError::Tokenizer(format!("cannot write `{}`: {e}", path.display())))
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` (BOS and EOS tokens, the chat
    /// template, `model_max_length`) into `dir`, as `transformers` reads them.
    pub fn save_dir(&self, dir: &Path, model_max_length: usize) -> Result<()> {
        self.save(&dir.join("tokenizer.json"))?;
        let config = serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "clean_up_tokenization_spaces": false,
            "model_max_length": model_max_length,
            "chat_template": self.chat_template.as_ref().map(ChatTemplate::jinja),
        });
        let path = dir.join("tokenizer_config.json");
        let text = serde_json::to_string_pretty(&config).expect("JSON values serialise");
        std::fs::write(&path, text + "\n").map_err(LlamaError::io(&path))
    }

    /// The id of the end-of-sequence token, when the model names one.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_token.as_deref().and_then(|token| self.inner.token_to_id(token))
    }

    /// The id of the beginning-of-sequence token, when the model names one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_token.as_deref().and_then(|token| self.inner.token_to_id(token))
    }

    /// The model's chat format, when it has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// Incremental decoding for streaming: feed ids one by one, get text when it is whole
    /// (a multi-byte character can span tokens). Special tokens (`<|im_end|>`) give no text.
    pub fn decode_stream(&self) -> impl FnMut(u32) -> Result<Option<String>> + '_ {
        let mut stream = self.inner.decode_stream(true);
        move |id| stream.step(id).map_err(|e| LlamaError::Tokenizer(format!("cannot decode id {id}: {e}")))
    }
}

impl Tokenizer for BpeTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| LlamaError::Tokenizer(format!("cannot encode: {e}")))?;
        Ok(encoding.get_ids().to_vec())
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

/// What this crate reads from a `tokenizer_config.json` (and a `chat_template.jinja`).
#[derive(Debug, Default)]
struct TokenizerConfig {
    bos_token: Option<String>,
    eos_token: Option<String>,
    chat_template: Option<String>,
}

impl TokenizerConfig {
    /// The configuration in `dir`; empty when the directory has neither file.
    fn read(dir: &Path) -> Result<Self> {
        let mut config = Self::default();
        let path = dir.join("tokenizer_config.json");
        if path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(LlamaError::io(&path))?;
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|source| LlamaError::Json { path: path.clone(), source })?;
            // A special token is a string or an `AddedToken` object with a `content`.
            let token = |key: &str| match &value[key] {
                serde_json::Value::String(token) => Some(token.clone()),
                other => other["content"].as_str().map(str::to_string),
            };
            config.bos_token = token("bos_token");
            config.eos_token = token("eos_token");
            config.chat_template = match &value["chat_template"] {
                serde_json::Value::Null => None,
                serde_json::Value::String(template) => Some(template.clone()),
                // Several named templates: the `default` one is for plain chat.
                serde_json::Value::Array(templates) => templates
                    .iter()
                    .find(|t| t["name"] == "default")
                    .and_then(|t| t["template"].as_str())
                    .map(str::to_string),
                other => {
                    return Err(LlamaError::Tokenizer(format!(
                        "`{}`: chat_template is {other}, expected a string or a list of named templates",
                        path.display()
                    )))
                }
            };
        }
        let jinja = dir.join("chat_template.jinja");
        if config.chat_template.is_none() && jinja.is_file() {
            config.chat_template = Some(std::fs::read_to_string(&jinja).map_err(LlamaError::io(&jinja))?);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF image holding only tokenizer metadata: `<s>`, `a`, `b`, `ab`, one merge.
    fn tokenizer_gguf(add_bos: bool) -> Vec<u8> {
        fn string(bytes: &mut Vec<u8>, s: &str) {
            bytes.extend((s.len() as u64).to_le_bytes());
            bytes.extend(s.as_bytes());
        }
        let mut bytes = b"GGUF".to_vec();
        bytes.extend(3u32.to_le_bytes());
        bytes.extend(0u64.to_le_bytes());
        bytes.extend(7u64.to_le_bytes());
        for (key, value) in [("tokenizer.ggml.model", "gpt2"), ("tokenizer.ggml.pre", "gpt2")] {
            string(&mut bytes, key);
            bytes.extend(8u32.to_le_bytes());
            string(&mut bytes, value);
        }
        for (key, values) in [("tokenizer.ggml.tokens", &["<s>", "a", "b", "ab"][..]), ("tokenizer.ggml.merges", &["a b"][..])] {
            string(&mut bytes, key);
            bytes.extend(9u32.to_le_bytes());
            bytes.extend(8u32.to_le_bytes());
            bytes.extend((values.len() as u64).to_le_bytes());
            for value in values {
                string(&mut bytes, value);
            }
        }
        string(&mut bytes, "tokenizer.ggml.token_type");
        bytes.extend(9u32.to_le_bytes());
        bytes.extend(5u32.to_le_bytes());
        bytes.extend(4u64.to_le_bytes());
        for kind in [CONTROL_TOKEN as i32, 1, 1, 1] {
            bytes.extend(kind.to_le_bytes());
        }
        string(&mut bytes, "tokenizer.ggml.bos_token_id");
        bytes.extend(4u32.to_le_bytes());
        bytes.extend(0u32.to_le_bytes());
        string(&mut bytes, "tokenizer.ggml.add_bos_token");
        bytes.extend(7u32.to_le_bytes());
        bytes.push(add_bos.into());
        bytes
    }

    #[test]
    fn bos_from_gguf_survives_tokenizer_json() {
        let dir = std::env::temp_dir().join(format!("distr-llama-bos-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (add_bos, expected) in [(true, vec![0, 3]), (false, vec![3])] {
            let file = GgufFile::parse("tokenizer.gguf".into(), tokenizer_gguf(add_bos)).unwrap();
            let tokenizer = BpeTokenizer::from_gguf(&file).unwrap();
            assert_eq!(tokenizer.encode("ab").unwrap(), expected, "add_bos {add_bos}");
            assert_eq!(tokenizer.bos_id(), Some(0));
            tokenizer.save_dir(&dir, 16).unwrap();
            let from_file = BpeTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
            assert_eq!(from_file.encode("ab").unwrap(), expected, "add_bos {add_bos}, from tokenizer.json");
            assert_eq!(from_file.bos_id(), Some(0));
            // The stream skips the special token.
            let mut decode = from_file.decode_stream();
            let text: Vec<Option<String>> = [0, 3, 0].into_iter().map(|id| decode(id).unwrap()).collect();
            assert_eq!(text, vec![None, Some("ab".to_string()), None]);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! Parity with Hugging Face `transformers` (fixtures from `fixtures/make_fixtures.py`), on
//! NdArray: the real SmolLM2-135M-Instruct GGUF (logits, tokenizer, chat template) and a tiny
//! random Llama saved as a sharded bfloat16 safetensors checkpoint (separate head, Llama 3
//! RoPE scaling). Also: the KV-cache path against one full forward pass, and bad files.

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use distr_attn::backends::NdArrayBackend as B;
use distr_attn::{DistrAttentionConfig, ModelAttentionConfig};
use distr_llama::gguf::GgufFile;
use distr_llama::pretrained::{build_llama, GgufWeights, HfCheckpoint};
use distr_llama::{BpeTokenizer, ChatMessage, Llama, LlamaError, Tokenizer};
use serde::Deserialize;

const GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const MAX_RELATIVE_ERROR: f32 = 1e-3;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The real model, from `DISTR_MODELS_DIR` or `<workspace>/.cache/models`.
fn gguf_path() -> PathBuf {
    let dir = std::env::var_os("DISTR_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/models"));
    let path = dir.join(GGUF);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-models.sh (or set DISTR_MODELS_DIR)",
        path.display()
    );
    path
}

#[derive(Deserialize)]
struct SmolReference {
    tokenizer: Vec<TokenizedText>,
    chat: Chat,
    prompts: Vec<PromptLogits>,
}

#[derive(Deserialize)]
struct TokenizedText {
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Chat {
    messages: Vec<ChatMessage>,
    rendered: String,
}

#[derive(Deserialize)]
struct PromptLogits {
    text: String,
    ids: Vec<u32>,
    argmax: Vec<u32>,
    vocab: Vec<usize>,
    logits: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct TinyReference {
    ids: Vec<u32>,
    logits: Vec<Vec<f32>>,
}

fn read_json<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let path = fixtures().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// `[seq, vocab]` logits of one sequence on the host.
fn logits_rows(logits: Tensor<B, 3>) -> Vec<Vec<f32>> {
    let [_, seq, vocab] = logits.dims();
    let values = logits.into_data().convert::<f32>().into_vec::<f32>().unwrap();
    assert_eq!(values.len(), seq * vocab);
    values.chunks(vocab).map(<[f32]>::to_vec).collect()
}

/// max |a - b| / max |b| over all compared entries.
fn relative_error(actual: &[Vec<f32>], expected: &[Vec<f32>]) -> f32 {
    let scale = expected.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    let diff = actual
        .iter()
        .flatten()
        .zip(expected.iter().flatten())
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

fn argmax(row: &[f32]) -> u32 {
    distr_llama::sampling::argmax(row)
}

fn full_logits(model: &Llama<B>, ids: &[u32], plan: &ModelAttentionConfig) -> Vec<Vec<f32>> {
    let device = Default::default();
    let logits = model.forward(model.tokens(ids, &device).unwrap(), &mut model.new_cache(), plan).unwrap();
    logits_rows(logits)
}

#[test]
fn smollm2_tokenizer_and_chat_template_match_transformers() {
    let reference: SmolReference = read_json("smollm2_reference.json");
    let file = GgufFile::open(gguf_path()).unwrap();
    let tokenizer = BpeTokenizer::from_gguf(&file).unwrap();
    for text in &reference.tokenizer {
        assert_eq!(tokenizer.encode(&text.text).unwrap(), text.ids, "{:?}", text.text);
        assert_eq!(tokenizer.decode(&text.ids).unwrap(), text.text);
    }
    let template = tokenizer.chat_template().expect("SmolLM2 has a ChatML template");
    assert_eq!(template.render(&reference.chat.messages), reference.chat.rendered);

    // The same tokenizer written as tokenizer.json (what a Hugging Face directory holds).
    let path = std::env::temp_dir().join(format!("distr-llama-tokenizer-{}.json", std::process::id()));
    tokenizer.save(&path).unwrap();
    let from_file = BpeTokenizer::from_file(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    for text in &reference.tokenizer {
        assert_eq!(from_file.encode(&text.text).unwrap(), text.ids, "{:?}", text.text);
    }
    assert!(from_file.stop_ids().contains(&2), "<|im_end|> stops generation");
}

#[test]
fn smollm2_gguf_logits_match_transformers_and_kv_cache() {
    let reference: SmolReference = read_json("smollm2_reference.json");
    let device = Default::default();
    let weights = GgufWeights::open(&gguf_path()).unwrap();
    // GGUF stores epsilon as f32 (9.9999997e-6).
    assert_eq!(weights.config.clone().with_rms_norm_eps(1e-5), distr_llama::LlamaConfig::smollm2_135m());
    let model: Llama<B> = build_llama(&weights.config, &weights, &device).unwrap();
    let tokenizer = BpeTokenizer::from_gguf(&weights.file).unwrap();
    let exact = ModelAttentionConfig::exact();

    for prompt in &reference.prompts {
        assert_eq!(tokenizer.encode(&prompt.text).unwrap(), prompt.ids);
        let logits = full_logits(&model, &prompt.ids, &exact);
        let predicted: Vec<u32> = logits.iter().map(|row| argmax(row)).collect();
        assert_eq!(predicted, prompt.argmax, "argmax of {:?}", prompt.text);
        let sliced: Vec<Vec<f32>> = logits.iter().map(|row| prompt.vocab.iter().map(|&i| row[i]).collect()).collect();
        let error = relative_error(&sliced, &prompt.logits);
        assert!(error <= MAX_RELATIVE_ERROR, "relative error {error} for {:?}", prompt.text);

        // Prefill all but the last token, then one decode step through the cache.
        let (head, last) = prompt.ids.split_at(prompt.ids.len() - 1);
        let mut cache = model.new_cache();
        model.forward(model.tokens(head, &device).unwrap(), &mut cache, &exact).unwrap();
        let step = logits_rows(model.forward(model.tokens(last, &device).unwrap(), &mut cache, &exact).unwrap());
        let error = relative_error(&step, &logits[logits.len() - 1..]);
        assert!(error <= 1e-4, "decode step vs full forward: relative error {error}");
    }
}

fn tiny_model() -> (Llama<B>, TinyReference) {
    let checkpoint = HfCheckpoint::open(&fixtures().join("tiny-llama")).unwrap();
    let config = &checkpoint.config;
    assert!(!config.tie_embeddings && config.rope_scaling.is_some());
    assert_eq!((config.num_heads, config.num_kv_heads, config.head_dim), (4, 2, 16));
    let model = build_llama(config, &checkpoint, &Default::default()).unwrap();
    (model, read_json("tiny_reference.json"))
}

#[test]
fn hf_checkpoint_matches_transformers() {
    let (model, reference) = tiny_model();
    let logits = full_logits(&model, &reference.ids, &ModelAttentionConfig::exact());
    let error = relative_error(&logits, &reference.logits);
    assert!(error <= MAX_RELATIVE_ERROR, "relative error {error}");
    let predicted: Vec<u32> = logits.iter().map(|row| argmax(row)).collect();
    let expected: Vec<u32> = reference.logits.iter().map(|row| argmax(row)).collect();
    assert_eq!(predicted, expected);
}

#[test]
fn kv_cache_chunks_and_steps_match_full_forward() {
    let (model, reference) = tiny_model();
    let device = Default::default();
    let exact = ModelAttentionConfig::exact();
    let full = full_logits(&model, &reference.ids, &exact);

    let mut cache = model.new_cache();
    let mut rows = logits_rows(model.forward(model.tokens(&reference.ids[..7], &device).unwrap(), &mut cache, &exact).unwrap());
    rows.extend(logits_rows(model.forward(model.tokens(&reference.ids[7..12], &device).unwrap(), &mut cache, &exact).unwrap()));
    for &id in &reference.ids[12..] {
        rows.extend(logits_rows(model.forward(model.tokens(&[id], &device).unwrap(), &mut cache, &exact).unwrap()));
    }
    assert_eq!(cache.len(), reference.ids.len());
    let error = relative_error(&rows, &full);
    assert!(error <= 1e-5, "relative error {error}");
}

#[test]
fn distr_attention_layers_follow_the_plan() {
    let (model, reference) = tiny_model();
    let exact = full_logits(&model, &reference.ids, &ModelAttentionConfig::exact());
    let distr = ModelAttentionConfig::distr(DistrAttentionConfig::new().with_group_size(2).with_block_rows(8));
    let approximate = full_logits(&model, &reference.ids, &distr);
    assert!(approximate.iter().flatten().all(|v| v.is_finite()));
    let error = relative_error(&approximate, &exact);
    assert!(error > 0.0 && error < 0.5, "DistrAttention G=2 relative error {error}");
    // Exact in every layer is exact.
    let all_exact = full_logits(&model, &reference.ids, &distr.clone().with_exact_first_layers(2));
    assert_eq!(all_exact, exact);
}

#[test]
fn bad_files_are_errors_not_panics() {
    let bytes = std::fs::read(gguf_path()).unwrap();
    let truncated = GgufFile::parse("cut.gguf".into(), bytes[..bytes.len() / 2].to_vec());
    assert!(matches!(truncated, Err(LlamaError::Truncated { .. })), "{truncated:?}");
    let header_cut = GgufFile::parse("cut.gguf".into(), bytes[..100_000].to_vec());
    assert!(header_cut.is_err());

    let checkpoint = HfCheckpoint::open(&fixtures().join("tiny-llama")).unwrap();
    let mut config = checkpoint.config.clone();
    config.num_layers = 3;
    let missing = build_llama::<B>(&config, &checkpoint, &Default::default());
    assert!(matches!(missing, Err(LlamaError::MissingTensor(ref name)) if name.contains("layers.2")));
    let mut config = checkpoint.config.clone();
    config.d_ff += 1;
    let shape = build_llama::<B>(&config, &checkpoint, &Default::default());
    assert!(matches!(shape, Err(LlamaError::BadShape { .. })));
    assert!(matches!(HfCheckpoint::open(&fixtures()), Err(LlamaError::Io { .. })));
}

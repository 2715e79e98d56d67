//! Parity with Hugging Face `transformers` (fixtures from `fixtures/make_fixtures.py`), on
//! NdArray: the real SmolLM2-135M-Instruct GGUF (logits, tokenizer, chat template) and a tiny
//! random Llama saved as a sharded bfloat16 safetensors checkpoint (separate head, Llama 3
//! RoPE scaling). Also: the KV-cache path against one full forward pass, bad files, and
//! Hugging Face directories written by `export_hf` (from the GGUF and from the tiny one).

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use distr_attn::backends::NdArrayBackend as B;
use distr_attn::{DistrAttentionConfig, ModelAttentionConfig};
use distr_llama::gguf::GgufFile;
use distr_llama::pretrained::{build_llama, load_pretrained, GgufWeights, HfCheckpoint};
use distr_llama::{BpeTokenizer, ChatMessage, ChatTemplate, ExportDtype, Llama, LlamaError, Pretrained, Tokenizer};
use serde::Deserialize;

const GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const MAX_RELATIVE_ERROR: f32 = 1e-3;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The real model, from `DISTR_MODELS_DIR` or `<workspace>/.cache/models`.
pub(crate) fn gguf_path() -> PathBuf {
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
    let model = model.clone().with_attention(plan).unwrap();
    let logits = model.forward(model.tokens(ids, &device).unwrap(), &mut model.new_cache()).unwrap();
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
        model.forward(model.tokens(head, &device).unwrap(), &mut cache).unwrap();
        let step = logits_rows(model.forward(model.tokens(last, &device).unwrap(), &mut cache).unwrap());
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
    let mut rows = logits_rows(model.forward(model.tokens(&reference.ids[..7], &device).unwrap(), &mut cache).unwrap());
    rows.extend(logits_rows(model.forward(model.tokens(&reference.ids[7..12], &device).unwrap(), &mut cache).unwrap()));
    for &id in &reference.ids[12..] {
        rows.extend(logits_rows(model.forward(model.tokens(&[id], &device).unwrap(), &mut cache).unwrap()));
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

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("distr-llama-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Tensor names and shapes of every `*.safetensors` file in `dir`.
fn safetensors_shapes(dir: &Path) -> Vec<(String, Vec<usize>)> {
    let mut shapes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "safetensors") {
            let bytes = std::fs::read(&path).unwrap();
            let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            shapes.extend(tensors.tensors().into_iter().map(|(name, view)| (name, view.shape().to_vec())));
        }
    }
    shapes.sort();
    shapes
}

fn read_value(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn tiny_directory_reads_its_chat_template_and_exports_as_transformers_writes_it() {
    let device = Default::default();
    let tiny = fixtures().join("tiny-llama");
    let original: Pretrained<B> = load_pretrained(&tiny, &device).unwrap();
    // tokenizer_config.json's template, with its default system message.
    let template = original.tokenizer.chat_template().expect("tokenizer_config.json has a chat template");
    assert_eq!(template, &ChatTemplate::chatml(Some("You are a tiny test model.".into())));
    assert_eq!(
        template.render(&[ChatMessage::user("Hi")]),
        "<|im_start|>system\nYou are a tiny test model.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let (_, reference) = tiny_model();
    let expected = full_logits(&original.model, &reference.ids, &ModelAttentionConfig::exact());

    // The fixture's weights are bfloat16, so both f32 and bf16 round trips are lossless.
    for dtype in [ExportDtype::F32, ExportDtype::Bf16] {
        let dir = temp_dir(&format!("tiny-export-{dtype:?}"));
        original.export(&dir, dtype).unwrap();
        // Tensor names and shapes, and config.json, as transformers wrote them for the fixture.
        assert_eq!(safetensors_shapes(&dir), safetensors_shapes(&tiny));
        let written = read_value(&dir.join("config.json"));
        let mut by_transformers = read_value(&tiny.join("config.json"));
        let by_transformers = by_transformers.as_object_mut().unwrap();
        for key in ["transformers_version", "pad_token_id"] {
            by_transformers.remove(key);
        }
        by_transformers.insert("dtype".into(), dtype.torch_name().into());
        assert_eq!(written.as_object().unwrap(), by_transformers);

        let exported: Pretrained<B> = load_pretrained(&dir, &device).unwrap();
        assert_eq!(exported.config, original.config);
        assert_eq!(exported.tokenizer.chat_template(), original.tokenizer.chat_template());
        assert_eq!(exported.tokenizer.stop_ids(), original.tokenizer.stop_ids());
        let text = "To be, or not to be: 12 ghosts.";
        assert_eq!(exported.tokenizer.encode(text).unwrap(), original.tokenizer.encode(text).unwrap());
        let logits = full_logits(&exported.model, &reference.ids, &ModelAttentionConfig::exact());
        assert_eq!(logits, expected, "{dtype:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// f16 keeps 11 significant bits: weights move by up to 2^-12 relative, and the logits of
/// 30 layers by about 1e-3 of their largest magnitude (1.1e-3 measured on NdArray).
const F16_MAX_RELATIVE_ERROR: f32 = 5e-3;

#[test]
fn smollm2_exported_as_hf_directory_loads_and_matches_the_gguf() {
    let reference: SmolReference = read_json("smollm2_reference.json");
    let device = Default::default();
    let gguf: Pretrained<B> = load_pretrained(&gguf_path(), &device).unwrap();
    let dir = temp_dir("smollm2-export");
    gguf.export(&dir, ExportDtype::F16).unwrap();
    let hf: Pretrained<B> = load_pretrained(&dir, &device).unwrap();
    assert_eq!(hf.config, gguf.config);

    for text in &reference.tokenizer {
        assert_eq!(hf.tokenizer.encode(&text.text).unwrap(), text.ids, "{:?}", text.text);
    }
    assert_eq!(hf.tokenizer.stop_ids(), gguf.tokenizer.stop_ids());
    // --chat renders the same prompt from both, SmolLM2's default system message included.
    let from_gguf = gguf.tokenizer.chat_template().unwrap().render(&reference.chat.messages);
    let from_dir = hf.tokenizer.chat_template().expect("tokenizer_config.json has the chat template");
    assert_eq!(from_dir.render(&reference.chat.messages), from_gguf);
    assert_eq!(from_gguf, reference.chat.rendered);

    let exact = ModelAttentionConfig::exact();
    let prompt = &reference.prompts[0];
    let expected = full_logits(&gguf.model, &prompt.ids, &exact);
    let logits = full_logits(&hf.model, &prompt.ids, &exact);
    let error = relative_error(&logits, &expected);
    eprintln!("f16 export: relative logit error {error:.2e}");
    assert!(error > 0.0 && error <= F16_MAX_RELATIVE_ERROR, "relative error {error}");
    let predicted: Vec<u32> = logits.iter().map(|row| argmax(row)).collect();
    assert_eq!(predicted, prompt.argmax, "argmax of {:?}", prompt.text);
    std::fs::remove_dir_all(dir).unwrap();
}

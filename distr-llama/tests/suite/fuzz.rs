//! Mutants of every file `distr-llama` reads (`parser_fuzz`): the files of a Hugging Face
//! checkpoint directory through `load_pretrained`, a complete small GGUF model and the head of
//! the real SmolLM2 GGUF, and text through the tokenizer. Each must give an error or a model,
//! never a panic or an allocation the file cannot justify.

use std::path::{Path, PathBuf};

use distr_attn::backends::NdArrayBackend as B;
use distr_llama::gguf::{GgufFile, MetadataValue};
use distr_llama::{load_pretrained, BpeTokenizer, Tokenizer};
use half::{bf16, f16};
use parser_fuzz::{fuzz, Scratch, Target};

use crate::parity::gguf_path;

/// A mutant's load may hold this much: the tiny checkpoint's weights as f32 several times over,
/// its tokenizer's tables and the rotary tables, with room to spare, and nothing a corrupt
/// dimension or count could blow up.
const MODEL_BUDGET: usize = 8 << 20;

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tiny-llama")
}

/// A fresh copy of the tiny checkpoint directory, for one fuzz target.
fn copy_of_tiny(name: &str) -> Scratch {
    let scratch = Scratch::new("distr-llama-fuzz", name);
    let dir = scratch.path();
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(tiny()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    scratch
}

/// Each file `load_pretrained` reads from a checkpoint directory, mutated in a copy of it.
#[test]
fn checkpoint_directory_files() {
    let files = [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    for file in files {
        let dir = copy_of_tiny(&file.replace('.', "-"));
        let original = std::fs::read(tiny().join(file)).unwrap();
        load_pretrained::<B>(&dir.path(), &Default::default()).expect("the unmutated checkpoint loads");
        fuzz(&Target::new(format!("tiny-llama/{file}"), MODEL_BUDGET), &original, |bytes| {
            std::fs::write(dir.path().join(file), bytes).unwrap();
            load_pretrained::<B>(&dir.path(), &Default::default()).map(drop)
        });
    }
}

/// The head of the real SmolLM2 GGUF (header, hyper-parameters, the start of the vocabulary):
/// every mutant is a truncated file, and must be found to be one without trusting its counts.
#[test]
fn gguf_head_of_smollm2() {
    use std::io::Read;
    let mut head = vec![0; 256 << 10];
    std::fs::File::open(gguf_path()).unwrap().read_exact(&mut head).unwrap();
    fuzz(&Target::new("SmolLM2 GGUF head", 16 * head.len() + (1 << 20)), &head, |bytes| {
        GgufFile::parse("head.gguf".into(), bytes.to_vec()).map(drop)
    });
}

/// A complete one-layer Llama in GGUF with SmolLM2's tokenizer (its first tokens) and every
/// tensor type the reader dequantises, loaded through `load_pretrained`.
#[test]
fn gguf_small_model() {
    let original = small_gguf_model();
    let scratch = Scratch::new("distr-llama-fuzz", "small.gguf");
    load_pretrained::<B>(scratch.write(&original), &Default::default()).expect("the unmutated small model loads");
    fuzz(&Target::new("small GGUF model", MODEL_BUDGET), &original, |bytes| {
        load_pretrained::<B>(scratch.write(bytes), &Default::default()).map(drop)
    });
}

/// Text as `perplexity`, `bench` and `finetune` read it: UTF-8, then the tokenizer. Any prefix
/// of a text is a text.
#[test]
fn text_through_the_tokenizer() {
    let tokenizer = BpeTokenizer::from_file(&tiny().join("tokenizer.json")).unwrap();
    let text = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/hamlet-act1-scene1.md")).unwrap();
    let target = Target::new("hamlet text", 64 * text.len() + (1 << 20)).truncation_may_parse();
    fuzz(&target, &text, |bytes| {
        let text = std::str::from_utf8(bytes).map_err(|error| error.to_string())?;
        tokenizer.encode(text).map(drop).map_err(|error| error.to_string())
    });
}

const D_MODEL: u64 = 32;
const KV_DIM: u64 = 16;
const D_FF: u64 = 64;
const VOCAB: usize = 2048;

/// GGML type codes (`gguf::GgmlType`).
const F32: u32 = 0;
const F16: u32 = 1;
const Q4_0: u32 = 2;
const Q4_1: u32 = 3;
const Q8_0: u32 = 8;
const BF16: u32 = 30;

fn small_gguf_model() -> Vec<u8> {
    let real = GgufFile::open(gguf_path()).unwrap();
    let strings = |key: &str| real.require_strings(key).unwrap();
    let tokens: Vec<&str> = strings("tokenizer.ggml.tokens")[..VOCAB].to_vec();
    let merges: Vec<&str> = strings("tokenizer.ggml.merges")
        .into_iter()
        .filter(|merge| {
            let (a, b) = merge.split_once(' ').unwrap();
            [a.to_string(), b.to_string(), format!("{a}{b}")].iter().all(|token| tokens.contains(&token.as_str()))
        })
        .collect();
    let types = real.get("tokenizer.ggml.token_type").unwrap().as_array().unwrap()[..VOCAB].to_vec();
    let string = |s: &str| MetadataValue::String(s.to_string());
    let text_array = |values: &[&str]| MetadataValue::Array(values.iter().map(|s| string(s)).collect());
    let metadata = vec![
        ("general.architecture", string("llama")),
        ("llama.embedding_length", MetadataValue::U32(D_MODEL as u32)),
        ("llama.block_count", MetadataValue::U32(1)),
        ("llama.attention.head_count", MetadataValue::U32(2)),
        ("llama.attention.head_count_kv", MetadataValue::U32(1)),
        ("llama.feed_forward_length", MetadataValue::U32(D_FF as u32)),
        ("llama.context_length", MetadataValue::U32(64)),
        ("llama.rope.freq_base", MetadataValue::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", MetadataValue::F32(1e-5)),
        ("tokenizer.ggml.model", string("gpt2")),
        ("tokenizer.ggml.pre", string("smollm")),
        ("tokenizer.ggml.tokens", text_array(&tokens)),
        ("tokenizer.ggml.token_type", MetadataValue::Array(types)),
        ("tokenizer.ggml.merges", text_array(&merges)),
        ("tokenizer.ggml.bos_token_id", MetadataValue::U32(1)),
        ("tokenizer.ggml.eos_token_id", MetadataValue::U32(2)),
        ("tokenizer.ggml.add_bos_token", MetadataValue::Bool(false)),
        ("tokenizer.chat_template", real.get("tokenizer.chat_template").unwrap().clone()),
    ];
    let tensors = [
        ("token_embd.weight", vec![D_MODEL, VOCAB as u64], Q4_1),
        ("output_norm.weight", vec![D_MODEL], F32),
        ("blk.0.attn_norm.weight", vec![D_MODEL], F32),
        ("blk.0.attn_q.weight", vec![D_MODEL, D_MODEL], F16),
        ("blk.0.attn_k.weight", vec![D_MODEL, KV_DIM], Q8_0),
        ("blk.0.attn_v.weight", vec![D_MODEL, KV_DIM], BF16),
        ("blk.0.attn_output.weight", vec![D_MODEL, D_MODEL], F32),
        ("blk.0.ffn_norm.weight", vec![D_MODEL], F32),
        ("blk.0.ffn_gate.weight", vec![D_MODEL, D_FF], Q4_0),
        ("blk.0.ffn_up.weight", vec![D_MODEL, D_FF], F16),
        ("blk.0.ffn_down.weight", vec![D_FF, D_MODEL], Q8_0),
    ];
    write_gguf(&metadata, &tensors)
}

/// A version 3 GGUF image: metadata, tensor infos, then each tensor's data (small values of
/// a fixed pattern) at the default alignment of 32.
fn write_gguf(metadata: &[(&str, MetadataValue)], tensors: &[(&str, Vec<u64>, u32)]) -> Vec<u8> {
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend((tensors.len() as u64).to_le_bytes());
    bytes.extend((metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        write_string(&mut bytes, key);
        bytes.extend(type_code(value).to_le_bytes());
        write_value(&mut bytes, value);
    }
    let data: Vec<Vec<u8>> = tensors.iter().map(|(_, dims, kind)| tensor_data(*kind, dims.iter().product::<u64>() as usize)).collect();
    let mut offset = 0u64;
    for ((name, dims, kind), data) in tensors.iter().zip(&data) {
        write_string(&mut bytes, name);
        bytes.extend((dims.len() as u32).to_le_bytes());
        dims.iter().for_each(|dim| bytes.extend(dim.to_le_bytes()));
        bytes.extend(kind.to_le_bytes());
        bytes.extend(offset.to_le_bytes());
        offset += (data.len() as u64).next_multiple_of(32);
    }
    for data in data {
        bytes.resize(bytes.len().next_multiple_of(32), 0);
        bytes.extend(data);
    }
    bytes
}

fn write_string(bytes: &mut Vec<u8>, text: &str) {
    bytes.extend((text.len() as u64).to_le_bytes());
    bytes.extend(text.as_bytes());
}

fn type_code(value: &MetadataValue) -> u32 {
    use MetadataValue as V;
    match value {
        V::U8(_) => 0,
        V::I8(_) => 1,
        V::U16(_) => 2,
        V::I16(_) => 3,
        V::U32(_) => 4,
        V::I32(_) => 5,
        V::F32(_) => 6,
        V::Bool(_) => 7,
        V::String(_) => 8,
        V::Array(_) => 9,
        V::U64(_) => 10,
        V::I64(_) => 11,
        V::F64(_) => 12,
    }
}

fn write_value(bytes: &mut Vec<u8>, value: &MetadataValue) {
    use MetadataValue as V;
    match value {
        V::U8(v) => bytes.push(*v),
        V::I8(v) => bytes.push(*v as u8),
        V::U16(v) => bytes.extend(v.to_le_bytes()),
        V::I16(v) => bytes.extend(v.to_le_bytes()),
        V::U32(v) => bytes.extend(v.to_le_bytes()),
        V::I32(v) => bytes.extend(v.to_le_bytes()),
        V::F32(v) => bytes.extend(v.to_le_bytes()),
        V::Bool(v) => bytes.push(*v as u8),
        V::String(v) => write_string(bytes, v),
        V::Array(values) => {
            bytes.extend(values.first().map_or(8, type_code).to_le_bytes());
            bytes.extend((values.len() as u64).to_le_bytes());
            values.iter().for_each(|value| write_value(bytes, value));
        }
        V::U64(v) => bytes.extend(v.to_le_bytes()),
        V::I64(v) => bytes.extend(v.to_le_bytes()),
        V::F64(v) => bytes.extend(v.to_le_bytes()),
    }
}

/// `elements` values of GGML type `kind`: small weights in `[-0.05, 0.05)`, quantised blocks
/// with a scale of 0.01.
fn tensor_data(kind: u32, elements: usize) -> Vec<u8> {
    let value = |i: usize| ((i * 37) % 100) as f32 / 1000.0 - 0.05;
    let scale = f16::from_f32(0.01).to_le_bytes();
    let quants = |block: usize| (0..16).map(move |j| ((block * 7 + j * 3) % 256) as u8);
    match kind {
        F32 => (0..elements).flat_map(|i| value(i).to_le_bytes()).collect(),
        F16 => (0..elements).flat_map(|i| f16::from_f32(value(i)).to_le_bytes()).collect(),
        BF16 => (0..elements).flat_map(|i| bf16::from_f32(value(i)).to_le_bytes()).collect(),
        Q4_0 => (0..elements / 32).flat_map(|block| scale.into_iter().chain(quants(block))).collect(),
        Q4_1 => (0..elements / 32).flat_map(|block| scale.into_iter().chain(scale).chain(quants(block))).collect(),
        Q8_0 => (0..elements / 32).flat_map(|block| scale.into_iter().chain(quants(block)).chain(quants(block + 1))).collect(),
        other => panic!("no test data for GGML type {other}"),
    }
}

//! Mutants of the JSON configurations the op and the models read (`parser_fuzz`): an attention
//! configuration and per-layer and per-head plans as `calibrate` writes them. Each must load or be an error
//! naming the file, never a panic.

use std::path::{Path, PathBuf};

use distr_attn::{DistrAttentionConfig, ModelAttentionConfig};
use parser_fuzz::{fuzz, Scratch, Target};

fn workspace_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

/// Mutants of `relative` (a file of the workspace), each written to a scratch file and loaded.
fn fuzz_config<T, E: std::fmt::Display>(relative: &str, load: impl Fn(&Path) -> Result<T, E>) {
    let original = std::fs::read(workspace_file(relative)).unwrap();
    let scratch = Scratch::new("distr-attn-fuzz", relative);
    load(&workspace_file(relative)).unwrap_or_else(|error| panic!("{relative} does not load: {error}"));
    fuzz(&Target::new(relative, 64 * original.len() + (1 << 20)), &original, |bytes| {
        load(scratch.write(bytes)).map(drop)
    });
}

#[test]
fn attention_config() {
    fuzz_config("configs/attention/g2.json", |path| DistrAttentionConfig::load(path));
}

#[test]
fn model_plans() {
    fuzz_config("distr-llama/configs/smollm2-calibrated-1pct.json", |path| ModelAttentionConfig::load(path));
    fuzz_config("distr-vit/configs/calibrated-0.99.json", |path| ModelAttentionConfig::load(path));
    fuzz_config("distr-vit/configs/calibrated-heads-0.99.json", |path| ModelAttentionConfig::load(path));
}

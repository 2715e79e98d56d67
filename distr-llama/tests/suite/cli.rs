//! The `distr-llama` commands end to end on the tiny checkpoint directory
//! (`fixtures/tiny-llama`: 2 layers, vocabulary 320, its own tokenizer), NdArray: every
//! command runs, and bad numeric flags are errors that name the flag, not panics or NaN.

use std::path::{Path, PathBuf};

use distr_llama::cli::{run, Cli};

/// What `--backend ndarray --dtype bf16` says: NdArray is a cargo feature of the command line.
const NDARRAY_BF16: &str = if cfg!(feature = "ndarray") {
    "--dtype bf16: backend `ndarray` does not support it"
} else {
    "backend `ndarray` is not compiled in: rebuild with `--features ndarray`"
};

fn tiny() -> String {
    fixture("fixtures/tiny-llama")
}

fn fixture(relative: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative).display().to_string()
}

fn text() -> String {
    fixture("data/hamlet-act1-scene1.md")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("distr-llama-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Parses and runs one command line; the error's message on failure.
fn distr_llama(args: &[&str]) -> Result<(), String> {
    let cli = Cli::try_parse_args(std::iter::once("distr-llama").chain(args.iter().copied())).map_err(|e| e.to_string())?;
    run(cli).map_err(|e| e.to_string())
}

#[test]
fn every_command_runs_on_the_tiny_checkpoint_directory() {
    let dir = temp_dir("commands");
    let path = |name: &str| dir.join(name).display().to_string();
    let (model, text) = (tiny(), text());
    let ok = |args: &[&str]| distr_llama(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));

    ok(&["generate", "--model", &model, "--prompt", "Who is there?", "--max-tokens", "4"]);
    ok(&["generate", "--model", &model, "--chat", "Hi", "--max-tokens", "4", "--attention", "distr", "--block-rows", "8"]);
    ok(&["generate", "--model", &model, "--prompt", "Nay", "--temperature", "0.8", "--top-p", "1", "--max-tokens", "3"]);
    ok(&["logits", "--model", &model, "--prompt", "Long live the king", "--out", &path("logits.npy")]);
    let tokenizer = distr_llama::BpeTokenizer::from_file(&Path::new(&model).join("tokenizer.json")).unwrap();
    let seq = distr_llama::Tokenizer::encode(&tokenizer, "Long live the king").unwrap().len();
    let npy = std::fs::metadata(path("logits.npy")).unwrap().len() as usize;
    assert_eq!(npy - seq * 320 * 4, 128, "a 128-byte .npy header before [{seq}, 320] float32");
    ok(&["perplexity", "--model", &model, "--text", &text, "--max-tokens", "64", "--context", "32", "--compare-exact", "--attention", "distr", "--seeds", "2", "--json"]);
    ok(&["bench", "--model", &model, "--text", &text, "--context", "16", "--decode-tokens", "2", "--repeats", "1", "--block-rows", "8"]);
    ok(&["calibrate", "--model", &model, "--text", &text, "--max-tokens", "48", "--context", "24", "--group-sizes", "4,2", "--block-rows", "8", "--out", &path("plan.json")]);
    ok(&["perplexity", "--model", &model, "--text", &text, "--max-tokens", "48", "--context", "24", "--config", &path("plan.json")]);
    ok(&[
        "finetune", "--model", &model, "--train-text", &text, "--max-train-tokens", "96", "--steps", "2", "--batch-size", "2",
        "--seq-len", "16", "--warmup-steps", "1", "--eval-text", &text, "--eval-tokens", "32", "--eval-context", "16",
    ]);
    ok(&["export", "--model", &model, "--out", &path("exported"), "--dtype", "bf16"]);
    ok(&["perplexity", "--model", &path("exported"), "--text", &text, "--max-tokens", "32", "--context", "16"]);
    std::fs::remove_dir_all(dir).unwrap();
}

/// `finetune --eval-every` scores every held-out file on its own along the run: the report's
/// curve starts before the first step, ends with the after-training figure, and names each file.
#[test]
fn finetune_reports_a_held_out_curve_per_file() {
    let dir = temp_dir("curve");
    let (model, text) = (tiny(), text());
    let second = dir.join("second.md");
    let hamlet = std::fs::read_to_string(&text).unwrap();
    std::fs::write(&second, hamlet.lines().rev().collect::<Vec<_>>().join("\n")).unwrap();
    let out = dir.join("run").display().to_string();
    distr_llama(&[
        "finetune", "--model", &model, "--train-text", &text, "--max-train-tokens", "96", "--steps", "3", "--batch-size", "2",
        "--seq-len", "16", "--warmup-steps", "1", "--eval-text", &text, "--eval-text", &second.display().to_string(),
        "--eval-tokens", "32", "--eval-context", "16", "--eval-every", "2", "--out", &out,
    ])
    .unwrap();
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    let curve = report["curve"].as_array().unwrap();
    let steps: Vec<u64> = curve.iter().map(|point| point["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [0, 2, 3], "before, every 2 steps, after: {report}");
    assert_eq!(curve[1]["train_tokens"], 2 * 2 * 16);
    assert_eq!(curve[0]["perplexity"], report["perplexity_before"]);
    assert_eq!(curve[2]["perplexity"], report["perplexity_after"]);
    for point in curve {
        let by_text = point["perplexity_by_text"].as_object().unwrap();
        assert_eq!(by_text.len(), 2, "{point}");
        assert!(by_text.values().all(|p| p.as_f64().is_some_and(|p| p.is_finite() && p > 1.0)), "{point}");
        assert_ne!(by_text.values().next(), by_text.values().nth(1), "two texts, two figures: {point}");
    }
    assert_eq!(report["eval_tokens"], 64, "the first 32 tokens of each file");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `--kernel-cache DIR` (its own process: CubeCL reads its configuration once) keeps what the
/// run compiled and tuned in one subdirectory for this build of the binary.
#[cfg(feature = "wgpu")]
#[test]
fn the_kernel_cache_is_one_directory_per_build() {
    let dir = temp_dir("kernel-cache");
    let run = |out: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_distr-llama"))
            .args(["--kernel-cache", &dir.display().to_string(), "logits", "--model", &tiny(), "--prompt", "Who is there?"])
            .args(["--out", &dir.join(out).display().to_string(), "--backend", "wgpu"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        stderr
    };
    let (first, second) = (run("first.npy"), run("second.npy"));
    let builds: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    assert_eq!(builds.len(), 1, "{builds:?}");
    let build = builds[0].display().to_string();
    assert!(first.contains(&format!("kernel cache {build}")) && second.contains(&build), "{first}\n{second}");
    let files = walk(&builds[0]);
    assert!(!files.is_empty(), "the run's autotune decisions are kept in {build}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[cfg(feature = "wgpu")]
fn walk(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flat_map(|entry| {
            let path = entry.unwrap().path();
            if path.is_dir() { walk(&path) } else { vec![path] }
        })
        .collect()
}

#[test]
fn perplexity_of_fewer_than_two_tokens_is_an_error_not_nan() {
    let dir = temp_dir("short");
    let one_token = dir.join("one.txt");
    std::fs::write(&one_token, "a").unwrap();
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let model = tiny();
    for text in [&one_token, &empty] {
        let error = distr_llama(&["perplexity", "--model", &model, "--text", text.to_str().unwrap()]).unwrap_err();
        assert!(error.contains("at least 2 are needed") && error.contains(text.to_str().unwrap()), "{error}");
    }
    for max in ["0", "1"] {
        let error = distr_llama(&["perplexity", "--model", &model, "--text", &text(), "--max-tokens", max]).unwrap_err();
        assert!(error.contains(&format!("invalid --max-tokens {max}")), "{error}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_numeric_flags_are_errors_naming_the_flag() {
    let dir = temp_dir("flags");
    let (model, text) = (tiny(), text());
    let out = dir.join("out").display().to_string();
    let cases: &[(&[&str], &str)] = &[
        (&["perplexity", "--text", &text, "--context", "0"], "invalid --context 0"),
        (&["perplexity", "--text", &text, "--context", "1"], "invalid --context 1"),
        (&["perplexity", "--text", &text, "--context", "8", "--stride", "0"], "invalid --stride 0"),
        (&["perplexity", "--text", &text, "--context", "8", "--stride", "8"], "invalid --stride 8"),
        (&["perplexity", "--text", &text, "--context", "8", "--stride", "9"], "invalid --stride 9"),
        (&["perplexity", "--text", &text, "--context", "257"], "invalid --context 257: expected at most the model's 256"),
        (&["perplexity", "--text", &text, "--attention", "distr", "--seeds", "0"], "invalid --seeds 0"),
        (&["perplexity", "--text", &text, "--attention", "distr", "--group-size", "0"], "invalid --group-size 0"),
        (&["perplexity", "--text", &text, "--attention", "distr", "--group-size", "3"], "layer 0: head_dim 16 is not divisible by group_size 3"),
        (&["perplexity", "--text", &text, "--attention", "distr", "--exact-first-layers", "99"], "`exact_first_layers` = 99: at most the model's 2 layers"),
        (&["perplexity", "--text", &text, "--group-size", "4"], "invalid --group-size with exact attention"),
        (&["perplexity", "--text", &text, "--attention", "exact", "--lsh-seed", "4"], "invalid --lsh-seed with exact attention"),
        (&["perplexity", "--text", &text, "--attention", "distr", "--block-rows", "0"], "invalid --block-rows 0"),
        (&["perplexity", "--text", &text, "--attention", "distr", "--num-projections", "0"], "invalid --num-projections 0"),
        (&["perplexity", "--text", &text, "--attention", "distr", "--num-projections", "21"], "invalid --num-projections 21"),
        (&["generate", "--prompt", "a", "--max-tokens", "0"], "invalid --max-tokens 0"),
        (&["generate", "--prompt", "a", "--backend", "ndarray", "--dtype", "bf16"], NDARRAY_BF16),
        (&["logits", "--prompt", "a", "--out", &out, "--dtype", "half16"], "unknown dtype `half16`"),
        (&["generate", "--prompt", "a", "--temperature=-1"], "invalid --temperature -1"),
        (&["generate", "--prompt", "a", "--temperature", "-1"], "invalid --temperature -1"),
        (&["generate", "--prompt", "a", "--temperature", "NaN"], "invalid --temperature NaN"),
        (&["generate", "--prompt", "a", "--top-p", "0"], "invalid --top-p 0"),
        (&["generate", "--prompt", "a", "--top-p", "1.5"], "invalid --top-p 1.5"),
        (&["logits", "--prompt", "a", "--out", &out, "--attention", "distr", "--group-size", "65"], "invalid --group-size 65"),
        (&["bench", "--text", &text, "--context", "16", "--decode-tokens", "2", "--attention", "exact"], "`bench` compares exact attention with DistrAttention"),
        (&["bench", "--text", &text, "--context", "16", "--decode-tokens", "0"], "invalid --decode-tokens 0"),
        (&["bench", "--text", &text, "--context", "16", "--repeats", "0"], "invalid --repeats 0"),
        (&["bench", "--text", &text, "--context", "16", "--decode-tokens", "16"], "invalid --context 16"),
        (&["bench", "--text", &text, "--context", "512"], "invalid --context 512: expected at most the model's 256"),
        (&["calibrate", "--text", &text, "--out", &out, "--context", "1"], "invalid --context 1"),
        (&["calibrate", "--text", &text, "--out", &out, "--max-tokens", "1"], "invalid --max-tokens 1"),
        (&["calibrate", "--text", &text, "--out", &out, "--group-sizes", "1"], "invalid --group-sizes 1"),
        (&["calibrate", "--text", &text, "--out", &out, "--max-perplexity-increase=-0.5"], "invalid --max-perplexity-increase -0.5"),
        (&["calibrate", "--text", &text, "--out", &out, "--context", "300"], "invalid --context 300"),
        (&["finetune", "--train-text", &text, "--steps", "0"], "steps must be positive"),
        (&["finetune", "--train-text", &text, "--eval-every", "2"], "invalid --eval-every 2: needs --eval-text"),
        (&["finetune", "--train-text", &text, "--batch-size", "0"], "batch_size must be positive"),
        (&["finetune", "--train-text", &text, "--seq-len", "1"], "sequence length 1"),
        (&["finetune", "--train-text", &text, "--seq-len", "512"], "invalid --seq-len 512"),
        (&["finetune", "--train-text", &text, "--lr", "0"], "learning rate 0"),
        (&["finetune", "--train-text", &text, "--learning-rate", "-1"], "learning rate -1"),
        (&["finetune", "--train-text", &text, "--grad-clip=-1"], "invalid --grad-clip -1"),
        (&["finetune", "--train-text", &text, "--weight-decay=-1"], "weight decay -1"),
        (&["finetune", "--train-text", &text, "--train", "lora", "--lora-rank", "0"], "lora_rank must be positive"),
        (&["finetune", "--train-text", &text, "--eval-text", &text, "--eval-context", "1"], "invalid --eval-context 1"),
        (&["finetune", "--train-text", &text, "--eval-text", &text, "--eval-tokens", "1"], "invalid --eval-tokens 1"),
        (&["finetune", "--train-text", &text, "--seq-len", "16", "--max-train-tokens", "8"], "invalid --max-train-tokens 8"),
    ];
    for (args, expected) in cases {
        let mut line = vec![args[0], "--model", &model];
        line.extend(&args[1..]);
        let error = distr_llama(&line).expect_err(&format!("{line:?} should fail"));
        assert!(error.contains(expected), "{line:?}: `{error}` does not say `{expected}`");
    }
    // export refuses a directory that is not empty.
    std::fs::write(dir.join("file"), "x").unwrap();
    let error = distr_llama(&["export", "--model", &model, "--out", dir.to_str().unwrap()]).unwrap_err();
    assert!(error.contains("is not empty"), "{error}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn attention_configs_and_outputs_fail_before_the_work_with_what_is_wrong() {
    let dir = temp_dir("configs");
    let model = tiny();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let out = dir.join("logits.npy").display().to_string();
    let dir_name = dir.display().to_string();
    let zero = write("zero.json", r#"{"default": {"Distr": {"group_size": 0}}}"#);
    let unknown = write("unknown.json", r#"{"default": "Exact", "exact_first_layer": 1}"#);
    let too_many = write("many.json", r#"{"default": {"Distr": {}}, "exact_first_layers": 99}"#);
    let unwritable = dir.join("no/such/folder/logits.npy").display().to_string();
    let cases: &[(&[&str], &str)] = &[
        // Was a division by zero in the plan check (exit 101).
        (&["--config", &zero, "--out", &out], "`group_size` = 0"),
        (&["--config", &unknown, "--out", &out], "unknown field `exact_first_layer`"),
        (&["--config", &dir_name, "--out", &out], "cannot read it"),
        (&["--config", &too_many, "--out", &out], "`exact_first_layers` = 99"),
        (&["--config", &zero, "--group-size", "2", "--out", &out], "cannot be used with"),
        (&["--out", &unwritable], "no/such/folder/logits.npy"),
        (&["--out", &dir_name], "is a directory"),
    ];
    for (args, expected) in cases {
        let mut line = vec!["logits", "--model", &model, "--prompt", "Who is there?"];
        line.extend(*args);
        let error = distr_llama(&line).expect_err(&format!("{line:?} should fail"));
        assert!(error.contains(expected), "{line:?}: `{error}` does not say `{expected}`");
        assert!(!error.contains("invalid model configuration"), "{error}");
    }
    // A config that leaves out defaults is fine.
    let short = write("short.json", r#"{"default": {"Distr": {"block_rows": 8}}, "exact_first_layers": 1}"#);
    distr_llama(&["logits", "--model", &model, "--prompt", "Who is there?", "--config", &short, "--out", &out]).unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn renamed_options_keep_their_old_spellings() {
    let parse = |args: &[&str]| Cli::try_parse_args(std::iter::once("distr-llama").chain(args.iter().copied())).map(|_| ());
    let model = tiny();
    for args in [
        &["generate", "--model", &model, "--prompt", "a", "--seed", "3"][..],
        &["generate", "--model", &model, "--prompt", "a", "--sampler-seed", "3"],
        &["finetune", "--model", &model, "--train-text", "t", "--lr", "1e-3", "--seed", "2"],
        &["finetune", "--model", &model, "--train-text", "t", "--learning-rate", "1e-3", "--shuffle-seed", "2"],
        &["perplexity", "--model", &model, "--text", "t", "--attention", "distr", "--lsh-seed", "5", "--grouping", "random"],
    ] {
        parse(args).unwrap_or_else(|error| panic!("{args:?}: {error}"));
    }
}

#[test]
fn json_output_is_only_json_on_stdout() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_distr-llama"))
        .args(["perplexity", "--model", &tiny(), "--text", &text(), "--max-tokens", "40", "--context", "16", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert!(report["perplexity"].as_f64().is_some_and(f64::is_finite), "{report}");
}

/// `--dtype f16 --backend wgpu` through the binary (its own process: a device's float type is
/// set once per process): the tiny checkpoint's logits, its bfloat16 weights read into an f16
/// model with norms and the loss in f32, follow the f32 NdArray run.
#[cfg(feature = "wgpu")]
#[test]
fn half_precision_logits_on_wgpu_follow_f32() {
    let dir = temp_dir("half");
    let (model, prompt) = (tiny(), "Who's there? Nay, answer me: stand, and unfold yourself.");
    let [single, half] = ["f32.npy", "f16.npy"].map(|name| dir.join(name).display().to_string());
    distr_llama(&["logits", "--model", &model, "--prompt", prompt, "--out", &single]).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_distr-llama"))
        .args(["logits", "--model", &model, "--prompt", prompt, "--out", &half, "--backend", "wgpu", "--dtype", "f16"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("on wgpu (f16)"), "says what runs: {stderr}");
    let read = |path: &str| distr_attn::experiment::npy::read_f32(Path::new(path)).unwrap();
    let ((expected, shape), (actual, half_shape)) = (read(&single), read(&half));
    assert_eq!(shape, half_shape);
    let squared = |values: &mut dyn Iterator<Item = f32>| values.map(|v| f64::from(v).powi(2)).sum::<f64>();
    let error = (squared(&mut actual.iter().zip(&expected).map(|(a, e)| a - e)) / squared(&mut expected.iter().copied())).sqrt();
    // Half precision's relative rounding is 4.9e-4 per operation; two layers and a 320-way
    // head keep the logits within 1e-2 (relative L2) of f32.
    assert!(error < 1e-2, "relative L2 {error:.2e}");
    std::fs::remove_dir_all(dir).unwrap();
}

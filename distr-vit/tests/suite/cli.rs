//! The `distr-vit` binary end to end on NdArray: the commands run on the real model with
//! their defaults, bad options are errors naming the option (before any forward pass), and
//! renamed options keep their old spellings.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{fixture, vit_s_focus_onnx};

/// What `--backend ndarray --dtype f16` says: NdArray is a cargo feature of the command line.
const NDARRAY_F16: &str = if cfg!(feature = "ndarray") {
    "--dtype f16: backend `ndarray` does not support it"
} else {
    "backend `ndarray` is not compiled in: rebuild with `--features ndarray`"
};

fn distr_vit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_distr-vit")).args(args).output().expect("the binary runs")
}

/// The error of a failing command line: exit status 1 or 2 (clap), never a panic (101).
fn error_of(args: &[&str]) -> String {
    let output = distr_vit(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(matches!(output.status.code(), Some(1 | 2)), "{args:?}: {:?}\n{stderr}", output.status);
    stderr
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("distr-vit-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn saliency_is_exact_by_default_and_writes_its_outputs() {
    let dir = temp_dir("saliency");
    let (model, image) = (text(&vit_s_focus_onnx()), text(&fixture("images/astronaut.jpg")));
    let out = text(&dir.join("map.npy"));
    let png = text(&dir.join("map.png"));
    // --onnx is the old spelling of --model.
    let output = distr_vit(&["saliency", "--onnx", &model, "--image", &image, "--out", &out, "--png", &png]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("saliency forward pass on flex"), "says what runs: {stderr}");
    let (values, shape) = distr_attn::experiment::npy::read_f32(Path::new(&out)).unwrap();
    assert_eq!(shape, vec![1, 1, 224, 224]);
    // Exact attention by default: the map is onnxruntime's for this photo (up to the JPEG
    // decoders' differences in the input; G=2 in every layer would give about 0.7).
    let expected = distr_attn::experiment::npy::read_f32(&fixture("vit_s_focus/astronaut_saliency.npy")).unwrap().0;
    let correlation = distr_vit::metrics::pearson(&values, &expected);
    assert!(correlation > 0.99, "Pearson {correlation} with onnxruntime's map");
    assert!(Path::new(&png).is_file());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_options_fail_before_any_work_and_name_the_problem() {
    let dir = temp_dir("errors");
    let (model, image) = (text(&vit_s_focus_onnx()), text(&fixture("images/astronaut.jpg")));
    let images = text(&fixture("images"));
    let out = text(&dir.join("map.npy"));
    let unwritable = text(&dir.join("missing/folder/map.npy"));
    let config = dir.join("plan.json");
    std::fs::write(&config, r#"{"default": {"Distr": {"group_sise": 4}}}"#).unwrap();
    let config = text(&config);
    let saliency = |extra: &[&str]| {
        let mut line = vec!["saliency", "--model", model.as_str(), "--image", image.as_str()];
        line.extend(extra);
        line.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (saliency(&["--out", &unwritable]), "missing/folder/map.npy"),
        (saliency(&["--out", &out, "--png", &unwritable]), "missing/folder/map.npy"),
        (saliency(&["--out", &out, "--group-size", "4"]), "invalid --group-size with exact attention"),
        (saliency(&["--out", &out, "--attention", "distr", "--exact-first-layers", "99"]), "`exact_first_layers` = 99"),
        (saliency(&["--out", &out, "--attention", "distr", "--group-size", "5"]), "not divisible by group_size 5"),
        (saliency(&["--out", &out, "--config", &config]), "unknown field `group_sise`"),
        (saliency(&["--out", &out, "--config", &images]), "cannot read it"),
        (saliency(&["--out", &out, "--attention", "distr", "--distr-decode"]), "no decode steps"),
        (saliency(&["--out", &out, "--attention", "distr", "--block-rows", "-1"]), "--block-rows"),
        (saliency(&["--out", &out, "--backend", "ndarray", "--dtype", "f16"]), NDARRAY_F16),
        (saliency(&["--out", &out, "--dtype", "f8"]), "unknown dtype `f8`: expected f32, f16 or bf16"),
        (vec!["bench".into(), "--sizes".into(), "100".into()], "invalid --sizes 100"),
        (vec!["bench".into(), "--attention".into(), "exact".into()], "`bench` compares exact attention"),
        (vec!["bench".into(), "--batch".into(), "0".into()], "invalid --batch 0"),
        (
            ["eval", "--model", &model, "--images", &images, "--attention", "exact"].map(String::from).to_vec(),
            "`eval` compares exact attention",
        ),
        (
            ["eval", "--model", &model, "--images", &images, "--attention", "distr", "--seeds", "0"].map(String::from).to_vec(),
            "--seeds 0",
        ),
        (
            ["calibrate", "--model", &model, "--images", &images, "--out", &out, "--group-sizes", "1"].map(String::from).to_vec(),
            "invalid --group-sizes 1",
        ),
        (
            ["calibrate", "--model", &model, "--images", &images, "--out", &out, "--min-correlation", "-2"].map(String::from).to_vec(),
            "invalid --min-correlation -2",
        ),
    ];
    for (args, expected) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let error = error_of(&args);
        assert!(error.contains(expected), "{args:?}: `{error}` does not say `{expected}`");
    }
    assert!(!Path::new(&out).exists(), "no output written by a refused command");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `eval --seeds 2`: one exact run per image and two hyperplane draws, each reported, the
/// image's figures their mean.
#[test]
fn eval_averages_over_hyperplane_draws() {
    let dir = temp_dir("seeds");
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::copy(fixture("images/chelsea.jpg"), images.join("chelsea.jpg")).unwrap();
    let model = text(&vit_s_focus_onnx());
    let args = ["eval", "--model", &model, "--images", &text(&images), "--attention", "distr", "--seeds", "2", "--json"];
    let output = distr_vit(&args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let image = &report["images"][0];
    let draws: Vec<f64> = (0..2).map(|draw| image["per_seed"][draw]["saliency_pearson"].as_f64().unwrap()).collect();
    assert_ne!(draws[0], draws[1], "the two draws use different hyperplanes");
    let mean = image["saliency_pearson"].as_f64().unwrap();
    assert!((mean - (draws[0] + draws[1]) / 2.0).abs() < 1e-12, "{mean} is not the mean of {draws:?}");
    let range = [&report["seed_min"], &report["seed_max"]].map(|r| r["saliency_pearson"].as_f64().unwrap());
    assert_eq!(range, [draws[0].min(draws[1]), draws[0].max(draws[1])]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn old_spellings_still_parse() {
    // The old spellings are accepted: the commands fail only at the missing files.
    let dir = temp_dir("aliases");
    let missing = text(&dir.join("missing.onnx"));
    let out = text(&dir.join("out.npy"));
    let checkpoint = text(&dir.join("student"));
    for args in [
        vec!["saliency", "--onnx", &missing, "--image", "x.jpg", "--out", &out, "--attention", "distr", "--seed", "3", "--grouping", "index"],
        vec!["finetune", "--onnx", &missing, "--images", "i", "--held-out", "h", "--out", &checkpoint, "--lr", "1e-4", "--clip-norm", "0.5"],
    ] {
        let error = error_of(&args);
        assert!(!error.contains("unexpected argument"), "{args:?}: {error}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

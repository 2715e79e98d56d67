//! Fixture and model locations shared by the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData};
use distr_attn::experiment::npy;

pub type B = burn::backend::NdArray<f32>;

/// `distr-vit/fixtures/<relative>` (written by `fixtures/make_fixtures.py`).
pub fn fixture(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(relative)
}

/// `vit_s_focus.onnx`, from `$DISTR_MODELS_DIR` or `<workspace>/.cache/models`; panics with
/// what to do when it is missing.
pub fn vit_s_focus_onnx() -> PathBuf {
    let folder = std::env::var_os("DISTR_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/models"));
    let path = folder.join("vit_s_focus.onnx");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-models.sh (or set DISTR_MODELS_DIR to a folder holding vit_s_focus.onnx)",
        path.display()
    );
    path
}

/// A float32 `.npy` fixture as a tensor.
pub fn load_npy<const D: usize>(relative: &str) -> Tensor<B, D> {
    let (values, shape) = npy::read_f32(&fixture(relative)).expect("fixture readable");
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

/// `||actual - expected|| / ||expected||`.
pub fn relative_l2<const D: usize>(actual: Tensor<B, D>, expected: Tensor<B, D>) -> f64 {
    let actual = actual.into_data().to_vec::<f32>().unwrap();
    let expected = expected.into_data().to_vec::<f32>().unwrap();
    assert_eq!(actual.len(), expected.len());
    distr_vit::metrics::relative_l2(&actual, &expected)
}

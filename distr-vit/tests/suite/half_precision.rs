//! Half precision end to end on wgpu (lavapipe in CI): the tiny DINOv2 fixture loaded into a
//! model whose weights and activations are f16 (`--dtype f16`'s path, `BackendKind::run_in`)
//! stays within half precision's rounding of transformers' f32 output. This is the only test
//! of this binary that uses wgpu: a device's float type is set once per process.

#![cfg(feature = "wgpu")]

use burn::tensor::{DType, Tensor, TensorData};
use distr_attn::backends::{BackendKind, BackendRunner, Precision};
use distr_attn::experiment::npy;
use distr_attn::DistrAttentionBackend;
use distr_vit::import::load_safetensors;
use distr_vit::model::VitConfig;

use crate::common::fixture;

/// Runs the fixture model and returns the output's dtype and its relative L2 error.
struct TinyDinov2;

impl BackendRunner for TinyDinov2 {
    type Output = (DType, f64);

    fn run<B: DistrAttentionBackend>(self, device: B::Device) -> (DType, f64) {
        let config = VitConfig::new(32, 4, 64, 2, 4, 128);
        let (model, _) = load_safetensors::<B>(&fixture("hf_dinov2/model.safetensors"), &config, &device).unwrap();
        let (input, shape) = npy::read_f32(&fixture("hf_dinov2/input.npy")).unwrap();
        let tokens = model.forward(Tensor::<B, 4>::from_data(TensorData::new(input, shape), &device)).unwrap().tokens;
        let dtype = tokens.dtype();
        let actual = tokens.into_data().convert::<f32>().to_vec::<f32>().unwrap();
        let expected = npy::read_f32(&fixture("hf_dinov2/last_hidden_state.npy")).unwrap().0;
        (dtype, distr_vit::metrics::relative_l2(&actual, &expected))
    }
}

#[test]
fn an_f16_model_on_wgpu_matches_transformers_within_half_precision() {
    let (dtype, error) = BackendKind::Wgpu.run_in(Precision::F16, TinyDinov2).unwrap();
    assert_eq!(dtype, DType::F16, "weights and activations in f16");
    // f16 keeps 11 significant bits (relative rounding 4.9e-4 per operation); two blocks of
    // norms, 64-wide products and residual sums compound it to a few 1e-3, against 1e-5 in f32.
    assert!(error < 1e-2, "relative L2 {error:.2e}");
}

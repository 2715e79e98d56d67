//! Hugging Face `Dinov2Model` and timm ViT checkpoints with random weights (fixtures from
//! `fixtures/make_fixtures.py`) load and reproduce the PyTorch outputs; bad checkpoints are
//! clear errors.

use crate::common::{fixture, load_npy, relative_l2, B};
use distr_vit::import::{load_safetensors, ImportError};
use distr_vit::model::VitConfig;

/// The fixture's `Dinov2Config(hidden_size=64, layers=2, heads=4, mlp_ratio=2, patch=4, image=32)`.
fn tiny_dinov2() -> VitConfig {
    VitConfig::new(32, 4, 64, 2, 4, 128)
}

/// The fixture's timm ViT (img 32, patch 8, dim 64, depth 2, heads 4, mlp 2×, 10 classes).
fn tiny_timm() -> VitConfig {
    VitConfig::new(32, 8, 64, 2, 4, 128)
        .with_layer_scale(false)
        .with_num_classes(Some(10))
}

#[test]
fn hf_dinov2_matches_transformers_on_a_resized_grid() {
    let (model, report) = load_safetensors::<B>(&fixture("hf_dinov2/model.safetensors"), &tiny_dinov2(), &Default::default()).unwrap();
    assert_eq!(report.unused, vec!["embeddings.mask_token".to_string()]);
    // 24×28 input: a 6×7 grid, so the 8×8 position table is resized bicubically.
    let output = model.forward(load_npy::<4>("hf_dinov2/input.npy")).unwrap();
    let error = relative_l2(output.tokens, load_npy::<3>("hf_dinov2/last_hidden_state.npy"));
    assert!(error <= 1e-5, "relative L2 {error:.2e}");
}

#[test]
fn timm_vit_matches_timm_logits() {
    let (model, report) = load_safetensors::<B>(&fixture("timm_vit/model.safetensors"), &tiny_timm(), &Default::default()).unwrap();
    assert!(report.unused.is_empty(), "{:?}", report.unused);
    let logits = model.classify(load_npy::<4>("timm_vit/input.npy")).unwrap();
    let error = relative_l2(logits, load_npy::<2>("timm_vit/logits.npy"));
    assert!(error <= 1e-5, "relative L2 {error:.2e}");
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let path = fixture("hf_dinov2/model.safetensors");
    let error = load_safetensors::<B>(&path, &VitConfig { num_layers: 3, ..tiny_dinov2() }, &Default::default()).unwrap_err();
    // The message names the checkpoint tensor that would have filled the parameter.
    assert!(
        matches!(&error, ImportError::Missing { tensor, source_name } if tensor.starts_with("blocks.2.") && source_name.starts_with("`encoder.layer.2.")),
        "{error}"
    );
    let error = load_safetensors::<B>(&fixture("timm_vit/model.safetensors"), &VitConfig { num_layers: 3, ..tiny_timm() }, &Default::default()).unwrap_err();
    assert!(
        matches!(&error, ImportError::Missing { tensor, source_name } if tensor.starts_with("blocks.2.") && source_name.starts_with("`blocks.2.")),
        "{error}"
    );
    let error = load_safetensors::<B>(&path, &VitConfig { intermediate_size: 96, ..tiny_dinov2() }, &Default::default()).unwrap_err();
    assert!(matches!(&error, ImportError::Shape { tensor, .. } if tensor.contains("mlp.fc1")), "{error}");
    let error = load_safetensors::<B>(&fixture("no-such.safetensors"), &tiny_dinov2(), &Default::default()).unwrap_err();
    assert!(matches!(error, ImportError::Io { .. }), "{error}");
}

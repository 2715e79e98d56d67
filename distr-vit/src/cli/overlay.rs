//! A saliency map blended over the model's input image.

use image::{Rgb, RgbImage};

/// Blends red over `image` in proportion to `saliency` (`[height, width]`, row-major,
/// values in 0..1, same size as the image).
pub fn overlay(image: &RgbImage, saliency: &[f32]) -> RgbImage {
    let width = image.width() as usize;
    RgbImage::from_fn(image.width(), image.height(), |x, y| {
        let weight = 0.7 * saliency[y as usize * width + x as usize].clamp(0.0, 1.0);
        let pixel = image.get_pixel(x, y);
        let red = [255.0, 0.0, 0.0];
        Rgb([0, 1, 2].map(|channel| ((1.0 - weight) * pixel[channel] as f32 + weight * red[channel]) as u8))
    })
}

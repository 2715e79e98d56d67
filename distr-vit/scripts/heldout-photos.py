"""Writes the held-out evaluation set of the seed-averaged fidelity study as RGB PNGs: twelve
images from the package index's data sets, none of them among the training photos of
skimage-photos.py (the calibration and distillation set).

- scikit-image 0.26 `skimage.data`: astronaut, chelsea, coffee, rocket (the four photographs of
  distr-vit/fixtures/images), colorwheel, clock, text, logo (alpha dropped onto white), horse
  (binary silhouette);
- scikit-learn 1.x `load_sample_images`: china, flower;
- scikit-image `microaneurysms` (a retinal crop, upsampled by the model's resize like every image).

Usage: python3 distr-vit/scripts/heldout-photos.py OUT_DIR   (needs scikit-image, scikit-learn, pillow)
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data
from sklearn.datasets import load_sample_images

TRAIN = {
    "camera", "coins", "moon", "hubble_deep_field", "immunohistochemistry", "motorcycle_left",
    "retina", "page", "brick", "grass", "gravel", "cell",
}


def rgb(image):
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.shape[-1] == 4:
        alpha = image[..., 3:4].astype(np.float64) / 255
        image = (image[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return image


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    photos = {name: getattr(data, name)() for name in [
        "astronaut", "chelsea", "coffee", "rocket", "colorwheel", "clock", "text", "logo", "horse",
        "microaneurysms",
    ]}
    for name, image in zip(["china", "flower"], load_sample_images().images):
        photos[name] = image
    assert not TRAIN & photos.keys()
    for name, image in photos.items():
        Image.fromarray(rgb(image)).save(out / f"{name}.png")
    print(f"{len(photos)} images in {out}")


if __name__ == "__main__":
    main()

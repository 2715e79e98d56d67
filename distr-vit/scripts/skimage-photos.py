"""Writes the scikit-image sample photographs used to distil and calibrate the ViT as RGB PNGs.

Training images (never evaluated): grey and colour photographs shipped with scikit-image.
The held-out images are the four in distr-vit/fixtures/images (astronaut, coffee, chelsea,
rocket), which `eval` and the fidelity tables use; none of them is written here.

Usage: python3 distr-vit/scripts/skimage-photos.py OUT_DIR   (needs scikit-image, pillow)
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

TRAIN = [
    "camera", "coins", "moon", "hubble_deep_field", "immunohistochemistry", "motorcycle_left",
    "retina", "page", "brick", "grass", "gravel", "cell",
]

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
for name in TRAIN:
    image = np.asarray(getattr(data, name)() if name != "motorcycle_left" else data.stereo_motorcycle()[0])
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3]
    if image.dtype != np.uint8:
        image = (255 * (image - image.min()) / max(float(np.ptp(image)), 1e-12)).astype(np.uint8)
    Image.fromarray(image).save(out / f"{name}.png")
    print(out / f"{name}.png", image.shape)

"""Preprocessing equals open_clip's transforms on real JPEG and PNG files of many modes and sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from open_clip import image_transform as openclip_transform
from PIL import Image

from cliplab.transforms import image_transform

from .conftest import natural_image


@pytest.mark.parametrize("size", [224, 336, 64])
def test_eval_transform_matches_openclip(image_files, size):
    ours, ref = image_transform(size), openclip_transform(size, is_train=False)
    modes = set()
    for path in image_files:
        with Image.open(path) as image:
            modes.add(image.mode)
            a, b = ours(image), ref(image)
        assert a.shape == (3, size, size) and a.dtype == torch.float32
        assert (a - b).abs().max() <= 1e-6, path.name
    assert {"RGB", "L", "LA", "RGBA", "P", "CMYK", "1"} <= modes


def test_train_transform_matches_openclip_for_the_same_seed(image_files):
    ours, ref = image_transform(96, train=True), openclip_transform(96, is_train=True)
    for seed, path in enumerate(image_files):
        with Image.open(path) as image:
            torch.manual_seed(seed)
            a = ours(image)
            torch.manual_seed(seed)
            b = ref(image)
        assert a.shape == (3, 96, 96) and (a - b).abs().max() <= 1e-6
    with Image.open(next(p for p in image_files if p.name == "large.jpg")) as image:
        crops = [ours(image) for _ in range(4)]
    assert any(not torch.equal(crops[0], c) for c in crops[1:])  # the crop really is random


def test_16bit_images_keep_their_content(tmp_path):
    """PIL clips 16-bit pixels at 255 (the reference transforms give pure white); cliplab scales them."""
    gray8 = natural_image(120, 160, seed=5)[..., 0]
    path = tmp_path / "gray16.png"
    Image.fromarray(gray8.astype(np.uint16) * 257).save(path)  # the same picture, 16 bits deep
    ours = image_transform(64)
    with Image.open(path) as image16:
        assert image16.mode.startswith("I")
        out16 = ours(image16)
        ref16 = openclip_transform(64, is_train=False)(image16)
    out8 = ours(Image.fromarray(gray8))
    assert (out16 - out8).abs().max() <= 1e-6
    assert out16.std() > 0.1 and ref16.std(dim=(1, 2)).max() < 1e-6  # ours has the picture, the reference is blank


def test_float_images_are_scaled(tmp_path):
    values = natural_image(50, 50, seed=6)[..., 0]
    as_float = Image.fromarray(values.astype(np.float32) / 255.0, mode="F")
    assert (image_transform(32)(as_float) - image_transform(32)(Image.fromarray(values))).abs().max() <= 1e-6

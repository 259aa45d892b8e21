"""Image preprocessing: OpenAI's evaluation transform and the paper's training crop.

The evaluation transform is the one OpenAI's `clip.load` and OpenCLIP return, in the same order
(resize and crop in the image's own mode, then RGB), so pixels match theirs exactly. One
deliberate difference: 16-bit and float images are first scaled to 8 bits. PIL's own conversion
clips them at 255, which turns a 16-bit photo pure white in the reference transforms.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import (
    CenterCrop,
    Compose,
    InterpolationMode,
    Normalize,
    RandomResizedCrop,
    Resize,
    ToTensor,
)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what most ImageNet classifiers (timm, torchvision) were trained with
IMAGENET_STD = (0.229, 0.224, 0.225)
# The paper's only augmentation is a random square crop; OpenCLIP's default keeps 90-100% of the area.
TRAIN_CROP_SCALE = (0.9, 1.0)

Transform = Callable[[Image.Image], torch.Tensor]


def to_8bit(image: Image.Image) -> Image.Image:
    """16-bit ("I;16*", "I") and float ("F") images scaled into 8-bit "L"; others unchanged."""
    if image.mode.startswith("I;16") or image.mode == "I":
        pixels = np.asarray(image, dtype=np.int64)
        top = 65535 if image.mode.startswith("I;16") or pixels.max() > 255 else 255
        return Image.fromarray((np.clip(pixels, 0, top) * 255 / top).round().astype(np.uint8), mode="L")
    if image.mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        top = 255.0 if pixels.max() > 1.0 else 1.0  # float images come as 0-1 or 0-255
        return Image.fromarray((np.clip(pixels, 0, top) * 255 / top).round().astype(np.uint8), mode="L")
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def image_transform(
    image_size: int,
    train: bool = False,
    mean: tuple[float, float, float] = OPENAI_MEAN,
    std: tuple[float, float, float] = OPENAI_STD,
    crop_scale: tuple[float, float] = TRAIN_CROP_SCALE,
    resize: str = "shortest",
) -> Transform:
    """A PIL image of any mode and size -> a normalised float tensor (3, image_size, image_size).

    Evaluation: bicubic resize of the shorter side to `image_size` and a centre crop (`resize="shortest"`,
    OpenAI's), or of both sides (`"squash"`, as OpenCLIP's resize_mode of that name), RGB, normalise.
    Training: a random resized crop (bicubic, `crop_scale` of the area), RGB, normalise.
    """
    bicubic = InterpolationMode.BICUBIC
    if train:
        geometry = [RandomResizedCrop(image_size, scale=crop_scale, interpolation=bicubic)]
    elif resize == "squash":
        geometry = [Resize((image_size, image_size), interpolation=bicubic)]
    elif resize == "shortest":
        geometry = [Resize(image_size, interpolation=bicubic), CenterCrop(image_size)]
    else:
        raise ValueError(f"unknown resize {resize!r}: 'shortest' or 'squash'")
    return Compose([to_8bit, *geometry, to_rgb, ToTensor(), Normalize(mean, std)])


def model_transform(model, train: bool = False, crop_scale: tuple[float, float] = TRAIN_CROP_SCALE) -> Transform:
    """The preprocessing a model expects: its image size, normalisation and resizing (OpenAI's for
    nearly every CLIP model); training's random crops take `crop_scale` of the image's area."""
    mean = getattr(model, "image_mean", OPENAI_MEAN)
    std = getattr(model, "image_std", OPENAI_STD)
    resize = getattr(model, "image_resize", "shortest")
    return image_transform(model.image_size, train=train, mean=mean, std=std, resize=resize, crop_scale=crop_scale)

"""Distribution shifts made from a labelled set: the same images, seen differently.

The paper measured how much accuracy a model keeps when the images change style but not content
(ImageNet-Sketch, -R, -A, ...). These shifts make such sets from any data: greyscale, blur, low
resolution, an edge-map "sketch", and heavy JPEG artefacts. A folder or table of other images with
the same classes (a real shifted set) is evaluated the same way.
"""

from __future__ import annotations

import io

from PIL import Image, ImageFilter, ImageOps

from .datasets import LabelledImages


def grayscale(image: Image.Image) -> Image.Image:
    return ImageOps.grayscale(image).convert("RGB")


def blur(image: Image.Image) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius=max(1.0, min(image.size) / 50)))


def low_resolution(image: Image.Image) -> Image.Image:
    """Down to an eighth of the side (at least 8 pixels), then back up: detail gone, layout kept."""
    small = (max(8, image.width // 8), max(8, image.height // 8))
    return image.resize(small, Image.Resampling.BILINEAR).resize(image.size, Image.Resampling.NEAREST)


def sketch(image: Image.Image) -> Image.Image:
    """Dark edges on white, like a pencil drawing of the photo."""
    edges = ImageOps.grayscale(image).filter(ImageFilter.FIND_EDGES)
    return ImageOps.invert(ImageOps.autocontrast(edges)).convert("RGB")


def jpeg(image: Image.Image, quality: int = 8) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


SHIFTS = {"grayscale": grayscale, "blur": blur, "low_resolution": low_resolution, "sketch": sketch, "jpeg": jpeg}


class _Shifted:
    def __init__(self, load, shift):
        self.load, self.shift = load, shift

    def __call__(self, i: int) -> Image.Image:
        return self.shift(self.load(i))


def shifted(data: LabelledImages, name: str) -> LabelledImages:
    """`data` with every image passed through the shift `name` (one of SHIFTS)."""
    if name not in SHIFTS:
        raise ValueError(f"unknown shift {name!r}; choose from {', '.join(SHIFTS)}")
    return LabelledImages(
        f"{data.name}-{name}",
        data.classes,
        data.labels,
        _Shifted(data.load, SHIFTS[name]),
        f"{data.fingerprint}-{name}",
        data.ids,
    )

"""Distribution shifts made from a labelled set: the same images, seen differently.

The paper measured how much accuracy a model keeps when the images change style but not content
(ImageNet-Sketch, -R, -A, ...). These shifts make such sets from any data: greyscale, blur, low
resolution, an edge-map "sketch", and heavy JPEG artefacts. A folder or table of other images with
the same classes (a real shifted set) is evaluated the same way.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageFilter, ImageOps

from ..data import MAX_PIXELS, Item, Source
from ..errors import ConfigError


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


@dataclass(frozen=True, kw_only=True, eq=False)
class ShiftedItem(Item):
    """Another item's image, seen through a shift."""

    inner: Item
    shift: Callable[[Image.Image], Image.Image]

    def open_image(self, max_pixels: int = MAX_PIXELS) -> Image.Image:
        with self.inner.open_image(max_pixels) as image:
            return self.shift(image)


def shifted(source: Source, name: str) -> Source:
    """`source` with every image passed through the shift `name` (one of SHIFTS)."""
    if name not in SHIFTS:
        raise ConfigError(f"unknown shift {name!r}; choose from {', '.join(SHIFTS)}")
    items = [ShiftedItem(i.key, i.captions, i.label, inner=i, shift=SHIFTS[name]) for i in source.items]
    return source.derived(f"{source.name}-{name}", f"{source.fingerprint}-{name}", items)

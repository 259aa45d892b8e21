"""Similarity maps, segmentation and regions: where in an image each label is.

The image is resized whole to the model's input size (no crop, so every pixel gets a score), its local
embeddings are compared with each label's zero-shot classifier weights (prompt ensembling over the
templates, as for classification), and the maps are upsampled to the image's own size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import ConfigError
from ..models import CLIP, model_device
from ..transforms import OPENAI_MEAN, OPENAI_STD, image_transform
from ..zeroshot import DEFAULT_TEMPLATES, PromptCache, build_classifier, check_labels
from .local import DEFAULT_METHOD, METHODS, local_embeddings

BACKGROUND = "background"
REGION_SIDE = 64  # regions of a large image are found on its maps shrunk to at most this many cells a side
BACKGROUND_PROMPTS = ("background", "ground", "sky", "wall", "floor", "grass", "tree", "building", "water", "road")


@dataclass
class DenseMaps:
    labels: list[str]
    scores: np.ndarray  # (labels, H, W) cosine similarity of each pixel's local embedding with each label
    grid: tuple[int, int]  # the cells the maps were computed on, before upsampling
    method: str

    def peak(self, label: int) -> tuple[float, tuple[int, int]]:
        """(the label's highest score, its (x, y) pixel)."""
        flat = int(self.scores[label].argmax())
        y, x = divmod(flat, self.scores.shape[2])
        return float(self.scores[label].reshape(-1)[flat]), (x, y)


def dense_pixels(model: CLIP, image: Image.Image) -> torch.Tensor:
    """(1, 3, S, S): the whole image squashed to the model's size, normalised as the model expects."""
    mean = getattr(model, "image_mean", OPENAI_MEAN)
    std = getattr(model, "image_std", OPENAI_STD)
    return image_transform(model.image_size, mean=mean, std=std, resize="squash")(image)[None]


@torch.no_grad()
def similarity_maps(
    model: CLIP,
    image: Image.Image,
    labels: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    method: str = DEFAULT_METHOD,
    background: Sequence[str] = (),
    cache: PromptCache | None = None,
) -> DenseMaps:
    """One map per label (and per `background` prompt set member, pooled into one "background" map by
    its maximum) at the image's resolution. `cache` keeps the prompts' embeddings for the next image."""
    if method not in METHODS:
        raise ConfigError(f"unknown dense method {method!r}; choose one of {', '.join(METHODS)}")
    labels = check_labels(list(labels), model, alone=True)  # cosine maps: one label is a heatmap
    names = labels + list(background)
    weights = build_classifier(model, names, list(templates), cache=cache).float().cpu()  # E x labels
    pixels = dense_pixels(model, image).to(model_device(model))
    local = local_embeddings(model, pixels, method)[0].cpu()  # h w E
    grid = tuple(local.shape[:2])
    scores = (local @ weights).permute(2, 0, 1)  # labels h w
    if background:
        scores = torch.cat([scores[: len(labels)], scores[len(labels) :].amax(dim=0, keepdim=True)])
        labels = labels + [BACKGROUND]
    size = (image.height, image.width)
    scores = F.interpolate(scores[None], size=size, mode="bilinear", align_corners=False)[0]
    return DenseMaps(labels, scores.numpy(), grid, method)


def segment(maps: DenseMaps, threshold: float | None = None) -> np.ndarray:
    """(H, W) label index of each pixel: the best label's; with `threshold`, pixels whose best score is
    below it are background (index len(labels), or the "background" label when the maps have one)."""
    best = maps.scores.argmax(axis=0)
    if threshold is not None:
        best = np.where(maps.scores.max(axis=0) >= threshold, best, background_index(maps))
    return best


def background_index(maps: DenseMaps) -> int:
    """The label index `segment` gives background pixels: the "background" label's, or one past the labels."""
    return maps.labels.index(BACKGROUND) if BACKGROUND in maps.labels else len(maps.labels)


def shrink_step(height: int, width: int) -> int:
    """The stride that shrinks an image's maps to at most `REGION_SIDE` cells a side, to find regions on."""
    return max(1, int(np.ceil(max(height, width) / REGION_SIDE)))


def coarse_regions(mask: np.ndarray) -> tuple[np.ndarray, int, list[tuple[int, int, int, int]]]:
    """The regions of a mask, found on it shrunk by `shrink_step`: (their numbering at the shrunk size, the
    step, their boxes in the mask's own pixels)."""
    height, width = mask.shape
    step = shrink_step(height, width)
    numbers, count = components(mask[::step, ::step])
    boxes = [
        (x0 * step, y0 * step, min(width, x1 * step), min(height, y1 * step))
        for x0, y0, x1, y1 in region_boxes(numbers, count)
    ]
    return numbers, step, boxes


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """(labels, count): each pixel of a boolean mask numbered by its 4-connected region, 1..count in the
    order a region's first pixel is met row by row; 0 outside the mask."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ConfigError("a mask is a 2-d array")
    height, width = mask.shape
    numbers = np.zeros(mask.shape, np.int32)
    count = 0
    for start in zip(*np.nonzero(mask)):
        if numbers[start]:
            continue
        count += 1
        numbers[start] = count
        stack = [start]
        while stack:
            y, x = stack.pop()
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not numbers[ny, nx]:
                    numbers[ny, nx] = count
                    stack.append((ny, nx))
    return numbers, count


def regions(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (x0, y0, x1, y1), exclusive ends, of the 4-connected regions of a boolean mask, in
    the order their first pixel is met row by row."""
    return region_boxes(*components(mask))


def region_boxes(numbers: np.ndarray, count: int) -> list[tuple[int, int, int, int]]:
    """Bounding boxes of regions 1..count of a `components` numbering."""
    ys, xs = np.nonzero(numbers)
    which = numbers[ys, xs] - 1
    x0, y0 = np.full(count, numbers.shape[1]), np.full(count, numbers.shape[0])
    x1, y1 = np.zeros(count, int), np.zeros(count, int)
    np.minimum.at(x0, which, xs)
    np.minimum.at(y0, which, ys)
    np.maximum.at(x1, which, xs + 1)
    np.maximum.at(y1, which, ys + 1)
    return [(int(a), int(b), int(c), int(d)) for a, b, c, d in zip(x0, y0, x1, y1)]

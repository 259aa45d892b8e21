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
        background = maps.labels.index(BACKGROUND) if BACKGROUND in maps.labels else len(maps.labels)
        best = np.where(maps.scores.max(axis=0) >= threshold, best, background)
    return best


def regions(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (x0, y0, x1, y1), exclusive ends, of the 4-connected regions of a boolean mask, in
    the order their first pixel is met row by row."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ConfigError("a mask is a 2-d array")
    height, width = mask.shape
    seen = np.zeros_like(mask)
    boxes = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        stack, (y0, x0), (y1, x1) = [start], start, start
        while stack:
            y, x = stack.pop()
            y0, y1, x0, x1 = min(y0, y), max(y1, y), min(x0, x), max(x1, x)
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        boxes.append((int(x0), int(y0), int(x1) + 1, int(y1) + 1))
    return boxes

"""Open-vocabulary boxes from any CLIP: candidates from the similarity maps, re-scored by their crops.

1. Candidates: for each label, the connected regions of its map above several shares of the way from
   its lowest to its highest score, plus a few sliding windows (the whole image, halves' grid).
2. Each candidate is cropped from the image and encoded as a whole image (ViLD's image branch): the
   crop's zero-shot probabilities over the labels give its label and score. (Weighting the score by the
   share of the box the segmentation gives to a thing rather than background was tried and lowered AP
   on the synthetic scenes: 0.17 -> 0.13; maps at 8 x 8 cells are too coarse a judge of a box's edges.)
3. Per label, non-maximum suppression at IoU 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..models import Model, model_device
from ..transforms import model_transform
from ..zeroshot import DEFAULT_TEMPLATES, PromptCache, build_classifier, probabilities
from .local import DEFAULT_METHOD
from .maps import regions, similarity_maps

LEVELS = (0.5, 0.7, 0.85)  # shares of each map's range its regions are cut at
REGION_SIDE = 64  # regions are found on the map shrunk to at most this many cells a side
MIN_SIDE = 4  # pixels: smaller candidates are dropped


@dataclass
class Box:
    label: str
    score: float  # the crop's zero-shot probability of the label
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the image's pixels, exclusive ends

    def coco(self) -> list[float]:
        """[x, y, width, height], as COCO writes boxes."""
        x0, y0, x1, y1 = self.box
        return [x0, y0, x1 - x0, y1 - y0]


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def map_candidates(scores: np.ndarray, levels: Sequence[float] = LEVELS) -> set[tuple[int, int, int, int]]:
    """Boxes of the connected regions of each (H, W) map above `levels` of its range, in its pixels."""
    height, width = scores.shape[1:]
    step = max(1, int(np.ceil(max(height, width) / REGION_SIDE)))
    found = set()
    for score in scores:
        small = score[::step, ::step]
        span = max(float(small.max() - small.min()), 1e-9)
        for level in levels:
            for x0, y0, x1, y1 in regions((small - small.min()) / span >= level):
                found.add((x0 * step, y0 * step, min(width, x1 * step), min(height, y1 * step)))
    return found


def window_candidates(width: int, height: int) -> set[tuple[int, int, int, int]]:
    """The whole image, and windows of half its sides at a stride of a quarter."""
    found = {(0, 0, width, height)}
    w, h = width // 2, height // 2
    for y in range(0, height - h + 1, max(1, h // 2)):
        for x in range(0, width - w + 1, max(1, w // 2)):
            found.add((x, y, x + w, y + h))
    return found


def nms(boxes: list[Box], threshold: float = 0.5) -> list[Box]:
    """Per label, the best box first and any box overlapping a kept one by more than `threshold` dropped."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: -b.score):
        if all(k.label != box.label or iou(k.box, box.box) <= threshold for k in kept):
            kept.append(box)
    return kept


@torch.no_grad()
def detect(
    model: Model,
    image: Image.Image,
    labels: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    method: str = DEFAULT_METHOD,
    min_score: float = 0.1,
    max_boxes: int = 20,
    nms_threshold: float = 0.5,
    cache: PromptCache | None = None,
    batch_size: int = 64,
) -> list[Box]:
    """Boxes with a label and a score, best first (see the module's documentation)."""
    cache = cache if cache is not None else PromptCache()
    labels = list(labels)
    maps = similarity_maps(model, image, labels, templates, method, cache=cache)
    candidates = map_candidates(maps.scores) | window_candidates(image.width, image.height)
    candidates = sorted(c for c in candidates if c[2] - c[0] >= MIN_SIDE and c[3] - c[1] >= MIN_SIDE)
    classifier = build_classifier(model, labels, list(templates), cache=cache).float()
    transform = model_transform(model)
    found = []
    for start in range(0, len(candidates), batch_size):
        part = candidates[start : start + batch_size]
        pixels = torch.stack([transform(image.crop(box)) for box in part]).to(model_device(model))
        features = model.encode_image(pixels, normalize=True).float()
        best, which = probabilities(model, features, classifier).max(dim=1)
        found += [Box(labels[c], p, box) for box, p, c in zip(part, best.tolist(), which.tolist())]
    return [box for box in nms(found, nms_threshold) if box.score >= min_score][:max_boxes]

"""Open-vocabulary boxes from any CLIP: candidates from the similarity maps, re-scored by their crops.

1. Candidates: for each label, the connected regions of its map above several shares of the way from
   its lowest to its highest score, plus a few sliding windows (the whole image, halves' grid); with
   `background` prompts, also the connected regions of the segmentation's foreground (every pixel whose
   best label is not the background).
2. Each candidate is judged on a crop of the square 1.5 times its longer side around it (`CONTEXT`,
   chosen as `cliplab.dense.crops` says), encoded as a whole image (ViLD's image branch): the crop's
   zero-shot probabilities over the labels give its label.
3. Its score is that probability; with `background`, times how well the box fits the foreground: the
   share of the box that is foreground times the share of the foreground in its context square that the
   box holds. The probability alone cannot tell a box around a thing from a box around half of it.
   (On 150 synthetic held-out scenes with one thing, crops at 2x: AP@0.5 0.18 by probability, 0.39 with the fit.)
4. Per label, non-maximum suppression at IoU 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..models import Model
from ..zeroshot import DEFAULT_TEMPLATES, PromptCache, build_classifier
from .crops import classify_crops, context_square
from .local import DEFAULT_METHOD
from .maps import background_index, coarse_regions, segment, similarity_maps

LEVELS = (0.5, 0.7, 0.85)  # shares of each map's range its regions are cut at
MIN_SIDE = 4  # pixels: smaller candidates are dropped
CONTEXT = 1.5  # a box is judged on the square 1.5 times its longer side (see `crops`: wider shows neighbours)


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


def mask_candidates(mask: np.ndarray) -> set[tuple[int, int, int, int]]:
    """Boxes of the connected regions of an (H, W) boolean mask, found on it shrunk to `REGION_SIDE`."""
    return set(coarse_regions(mask)[2])


def map_candidates(scores: np.ndarray, levels: Sequence[float] = LEVELS) -> set[tuple[int, int, int, int]]:
    """Boxes of the connected regions of each (H, W) map above `levels` of its range, in its pixels."""
    found = set()
    for score in scores:
        span = max(float(score.max() - score.min()), 1e-9)
        for level in levels:
            found |= mask_candidates((score - score.min()) / span >= level)
    return found


def window_candidates(width: int, height: int) -> set[tuple[int, int, int, int]]:
    """The whole image, and windows of half its sides at a stride of a quarter."""
    found = {(0, 0, width, height)}
    w, h = width // 2, height // 2
    for y in range(0, height - h + 1, max(1, h // 2)):
        for x in range(0, width - w + 1, max(1, w // 2)):
            found.add((x, y, x + w, y + h))
    return found


def box_fit(foreground: np.ndarray, box: tuple[int, int, int, int], context: float = CONTEXT) -> float:
    """How well a box frames the foreground around it: the share of the box that is foreground times the
    share of the foreground in the box's context square that lies inside the box (1 for a box that is
    exactly a thing with nothing else around it)."""
    x0, y0, x1, y1 = box
    inside = float(foreground[y0:y1, x0:x1].sum())
    cx0, cy0, cx1, cy1 = context_square(box, foreground.shape[1], foreground.shape[0], context)
    around = float(foreground[cy0:cy1, cx0:cx1].sum())
    return inside / max((x1 - x0) * (y1 - y0), 1) * inside / max(around, inside, 1.0)


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
    context: float = CONTEXT,
    background: Sequence[str] = (),
) -> list[Box]:
    """Boxes with a label and a score, best first (see the module's documentation). `background`: prompts
    naming what is not a thing (pooled as in `similarity_maps`); they add the foreground's regions to the
    candidates and weigh each score by how well its box fits the foreground."""
    cache = cache if cache is not None else PromptCache()
    labels = list(labels)
    maps = similarity_maps(model, image, labels, templates, method, background, cache=cache)
    candidates = map_candidates(maps.scores[: len(labels)]) | window_candidates(image.width, image.height)
    foreground = None
    if background:
        foreground = segment(maps) != background_index(maps)
        candidates |= mask_candidates(foreground)
    candidates = sorted(c for c in candidates if c[2] - c[0] >= MIN_SIDE and c[3] - c[1] >= MIN_SIDE)
    classifier = build_classifier(model, labels, list(templates), cache=cache)
    best, which = classify_crops(model, image, candidates, classifier, context, batch_size).max(dim=1)
    found = []
    for box, p, c in zip(candidates, best.tolist(), which.tolist()):
        if foreground is not None:
            p *= box_fit(foreground, box, context)
        found.append(Box(labels[c], p, box))
    return [box for box in nms(found, nms_threshold) if box.score >= min_score][:max_boxes]

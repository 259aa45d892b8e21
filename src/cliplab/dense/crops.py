"""Judging a region by its crop: the crop encoded as a whole image and classified zero-shot (ViLD's image
branch). The local embeddings say well where a thing is but are weaker than the whole tower at saying what
it is (synthetic held-out scenes: a region's best label by its pixels' mean score is right less often than
by each pixel's own, and both far less often than the crop's), so `detect` judges every candidate box
this way and `label_regions` gives each connected region of a segmentation its crop's label.

A crop is the square `context` times the region's longer side around it: a tight crop shows a thing larger
than any training image did and is misread more often, a wide one shows its neighbours. Chosen on
synthetic held-out scenes drawn with another seed than the evaluation's (`seed=1`, 150-200 scenes, SCLIP
maps, the 2,400-step model): segmentation regions 2.0 (mean IoU 0.336; 0.302 at 1.5), boxes 1.5 in
`detect` (AP@0.5 with one / two things: 0.333 / 0.266 at 1.25, 0.452 / 0.296 at 1.5, 0.456 / 0.252 at
1.75, 0.425 / 0.197 at 2.0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ..models import Model, model_device
from ..transforms import model_transform
from ..zeroshot import probabilities
from .maps import coarse_regions

CONTEXT = 2.0  # a region is judged on the square around it this many times its longer side
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, exclusive ends


def context_square(box: Box, width: int, height: int, context: float = CONTEXT) -> Box:
    """The square `context` times the box's longer side around its centre, moved inside the image (and
    shrunk to it when larger): what the crop of a region shows the model."""
    x0, y0, x1, y1 = box
    side = min(max(x1 - x0, y1 - y0) * context, width, height)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = min(max(cx - side / 2, 0), width - side)
    top = min(max(cy - side / 2, 0), height - side)
    return (round(left), round(top), round(left + side), round(top + side))


@torch.no_grad()
def classify_crops(
    model: Model,
    image: Image.Image,
    boxes: Sequence[Box],
    classifier: torch.Tensor,
    context: float = CONTEXT,
    batch_size: int = 64,
) -> torch.Tensor:
    """(boxes, labels) zero-shot probabilities of each box's context crop; `classifier` from
    `build_classifier` (E x labels)."""
    transform = model_transform(model)
    classifier = classifier.float().to(model_device(model))
    out = []
    for start in range(0, len(boxes), batch_size):
        part = boxes[start : start + batch_size]
        crops = [image.crop(context_square(box, image.width, image.height, context)) for box in part]
        pixels = torch.stack([transform(crop) for crop in crops]).to(model_device(model))
        features = model.encode_image(pixels, normalize=True).float()
        out.append(probabilities(model, features, classifier).cpu())
    return torch.cat(out) if out else torch.zeros(0, classifier.shape[1])


def label_regions(
    model: Model,
    image: Image.Image,
    segmentation: np.ndarray,
    background: int,
    classifier: torch.Tensor,
    context: float = CONTEXT,
) -> np.ndarray:
    """The segmentation with each connected region of its foreground (pixels not `background`) relabelled
    by its crop's best label. Regions are found on the segmentation shrunk to at most `REGION_SIDE`
    cells a side (pixels of a region too small to survive the shrinking keep their own label)."""
    numbers, step, boxes = coarse_regions(segmentation != background)
    if not boxes:
        return segmentation
    labels = classify_crops(model, image, boxes, classifier, context).argmax(dim=1).numpy()
    full = numbers.repeat(step, axis=0).repeat(step, axis=1)[
        : segmentation.shape[0], : segmentation.shape[1]
    ]  # each pixel's region, 0 for none
    relabelled = np.where(full > 0, labels[np.maximum(full - 1, 0)], segmentation)
    return np.where(segmentation == background, segmentation, relabelled)

"""Where in the picture, measured: dense zero-shot maps against the synthetic world's masks.

Every generated scene knows which pixels each thing covers (`SyntheticWorld.masks`), so maps can be
scored as segmentations are:

- pointing game: the share of things whose label's map peaks inside the thing;
- mean IoU over the classes present (the scenes' colour-shape classes and background), every pixel of
  every scene counted once per class (intersections and unions summed over the scenes, as VOC does);
- the baseline every map must beat: each image painted whole with its top zero-shot label.

The labels are the split's classes (for `synthetic:heldout`, colour-shape pairs no training caption
named); the background is a prompt set naming the world's backgrounds ("{colour} background"), pooled
into one label by its maximum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from ..data import Source
from ..data.synthetic import BACKGROUNDS, SPLITS, SceneItem
from ..dense import BACKGROUND, DEFAULT_METHOD, segment, similarity_maps
from ..dense.maps import dense_pixels
from ..errors import SourceError
from ..models import Model, model_device
from ..zeroshot import DEFAULT_TEMPLATES, PromptCache, build_classifier
from ..zeroshot import probabilities as zero_shot_probabilities
from .results import TaskResult


def background_prompts() -> list[str]:
    """The synthetic world's backgrounds, by name: what the background label is made of."""
    return [f"{name} background" for name in BACKGROUNDS]


@dataclass
class Segmentation(TaskResult):
    task = "segmentation"
    dataset: str
    method: str
    scenes: int
    pointing: float  # things whose label's map peaks inside them, a fraction
    miou: float  # mean IoU over the classes present, background included
    baseline_miou: float  # the same, each image painted whole with its top zero-shot label
    class_iou: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        return {"pointing_game": self.pointing, "mean_iou": self.miou, "baseline_mean_iou": self.baseline_miou}

    def details(self) -> dict:
        return {"method": self.method, "scenes": self.scenes, "class_iou": self.class_iou}

    def variant(self) -> str:  # one file per last-block rule
        return f"{self.task}-{self.method}"


def scene_items(source: Source) -> list[SceneItem]:
    items = list(source.items)
    if not items or not all(isinstance(item, SceneItem) for item in items):
        raise SourceError(
            f"{source.location}: dense evaluation needs scenes that know their masks: synthetic:heldout or synthetic:seen"
        )
    return items


@torch.no_grad()
def dense_segmentation(
    model: Model,
    source: Source,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    method: str = DEFAULT_METHOD,
    progress: bool = False,
) -> Segmentation:
    """Pointing game and mean IoU of `method`'s maps over a labelled synthetic source, and the baseline."""
    items = scene_items(source)
    classes = list(source.classes)
    background = background_prompts()
    cache = PromptCache()
    classifier = build_classifier(model, classes, list(templates), cache=cache).cpu()
    names = classes + [BACKGROUND]
    inter, union = np.zeros(len(names)), np.zeros(len(names))
    base_inter, base_union = np.zeros(len(names)), np.zeros(len(names))
    present = np.zeros(len(names), bool)
    hits = things = 0
    for item in tqdm(items, desc=f"dense {method}", unit="scene", disable=not progress):
        image = item.open_image()
        masks = item.world.masks(item.scene, item.size)
        labels = [classes.index(f"{t.colour} {t.shape}") for t in item.scene.things]
        truth = np.full(masks.shape[1:], len(classes))
        for mask, label in zip(masks, labels):
            truth[mask] = label
        maps = similarity_maps(model, image, classes, templates, method, background, cache=cache)
        predicted = segment(maps)
        for mask, label in zip(masks, labels):
            _, (x, y) = maps.peak(label)
            hits += bool(mask[y, x])
            things += 1
        features = model.encode_image(dense_pixels(model, image).to(model_device(model)), normalize=True).float().cpu()
        whole = int(zero_shot_probabilities(model, features, classifier)[0].argmax())
        for c in range(len(names)):
            t, p, b = truth == c, predicted == c, np.full(truth.shape, whole == c)
            present[c] |= t.any()
            inter[c] += (t & p).sum()
            union[c] += (t | p).sum()
            base_inter[c] += (t & b).sum()
            base_union[c] += (t | b).sum()
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    base_iou = np.where(base_union > 0, base_inter / np.maximum(base_union, 1), 0.0)
    return Segmentation(
        source.name,
        method,
        len(items),
        hits / max(things, 1),
        float(iou[present].mean()),
        float(base_iou[present].mean()),
        {names[c]: round(float(iou[c]), 4) for c in range(len(names)) if present[c]},
    )


@dataclass
class Detection(TaskResult):
    task = "detection"
    dataset: str
    method: str
    scenes: int
    objects: int  # things a scene
    ap50: float  # mean over the classes present of VOC's all-point average precision at IoU 0.5
    class_ap: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        return {"ap50": self.ap50}

    def details(self) -> dict:
        return {"method": self.method, "scenes": self.scenes, "objects": self.objects, "class_ap": self.class_ap}

    def variant(self) -> str:  # one file per number of things and last-block rule
        return f"{self.task}-{self.objects}-{self.method}"


def average_precision(detections: list[tuple[float, bool]], positives: int) -> float:
    """VOC's all-point AP: the area under the precision envelope of (score, true positive) detections."""
    if positives == 0:
        return 0.0
    ordered = sorted(detections, key=lambda d: -d[0])
    hits = np.cumsum([tp for _, tp in ordered]) if ordered else np.zeros(0)
    recall = np.concatenate([[0.0], hits / positives, [1.0]])
    precision = (
        np.concatenate([[1.0], hits / np.arange(1, len(ordered) + 1), [0.0]]) if ordered else np.array([1.0, 0.0])
    )
    if not ordered:
        recall = np.array([0.0, 1.0])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


@torch.no_grad()
def dense_detection(
    model: Model,
    source: Source,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    method: str = DEFAULT_METHOD,
    objects: int = 1,
    progress: bool = False,
) -> Detection:
    """Box AP@0.5 of `detect` over the source's scenes, redrawn with `objects` things each (same seed)."""
    from ..dense.detect import detect, iou

    items = scene_items(source)
    classes = list(source.classes)
    cache = PromptCache()
    per_class: dict[int, list[tuple[float, bool]]] = {c: [] for c in range(len(classes))}
    positives = np.zeros(len(classes), int)
    for n, item in enumerate(tqdm(items, desc=f"detect {method}", unit="scene", disable=not progress)):
        scene = item.scene
        if objects != len(scene.things):  # the same scene index, drawn with more things
            split = source.name.removeprefix("synthetic-")
            scene = item.world.scene(n, SPLITS[split][1], split, objects)
        image = item.world.render(scene, item.size)
        truth = [
            (classes.index(f"{t.colour} {t.shape}"), box)
            for t, box in zip(scene.things, item.world.boxes(scene, item.size))
        ]
        for label, _ in truth:
            positives[label] += 1
        matched = set()
        for box in detect(model, image, classes, templates, method, 0.0, cache=cache):
            label = classes.index(box.label)
            best = max(
                ((iou(box.box, b), i) for i, (c, b) in enumerate(truth) if c == label and i not in matched),
                default=(0.0, -1),
            )
            hit = best[0] >= 0.5
            if hit:
                matched.add(best[1])
            per_class[label].append((box.score, hit))
    present = [c for c in range(len(classes)) if positives[c]]
    aps = {classes[c]: average_precision(per_class[c], int(positives[c])) for c in present}
    return Detection(source.name, method, len(items), objects, float(np.mean(list(aps.values()))), aps)

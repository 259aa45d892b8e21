"""Where in the picture, measured: dense zero-shot maps against the synthetic world's masks.

Every generated scene knows which pixels each thing covers (`SyntheticWorld.masks`), so maps can be
scored as segmentations are:

- pointing game: the share of things whose label's map peaks inside the thing;
- mean IoU over the classes present (the scenes' colour-shape classes and background), every pixel of
  every scene counted once per class (intersections and unions summed over the scenes, as VOC does):
  once with each pixel given its best label (the maps alone), once with each connected region of the
  foreground given the label of its crop (`cliplab.dense.label_regions`);
- the baseline every map must beat: each image painted whole with its top zero-shot label.

The labels are the split's classes (for `synthetic:heldout`, colour-shape pairs no training caption
named); the background is a prompt set naming the world's backgrounds as its captions do ("grey
background", "striped grey background", ...), pooled into one label by its maximum. (The colours alone,
"{colour} background", gave the background an IoU of 0.78 rather than 0.86: a striped or dotted
background matched no prompt well and was taken for a thing.) Detection is given the same background.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from ..data import Source
from ..data.synthetic import BACKGROUNDS, PATTERNS, SPLITS, SceneItem
from ..dense import BACKGROUND, DEFAULT_METHOD, label_regions, segment, similarity_maps
from ..dense.maps import dense_pixels
from ..errors import SourceError
from ..models import Model, model_device
from ..zeroshot import DEFAULT_TEMPLATES, PromptCache, build_classifier
from ..zeroshot import probabilities as zero_shot_probabilities
from .results import TaskResult


def background_prompts() -> list[str]:
    """The synthetic world's backgrounds, named as its captions name them: what the background label is made of."""
    return [f"{name} background" for name in BACKGROUNDS] + [
        f"{pattern} {name} background" for name in BACKGROUNDS for pattern in PATTERNS
    ]


@dataclass
class Segmentation(TaskResult):
    task = "segmentation"
    dataset: str
    method: str
    scenes: int
    pointing: float  # things whose label's map peaks inside them, a fraction
    miou: float  # mean IoU over the classes present, background included: each pixel its best label
    miou_crops: float  # the same, each connected foreground region labelled by its crop (`label_regions`)
    baseline_miou: float  # the same, each image painted whole with its top zero-shot label
    class_iou: dict[str, float] = field(default_factory=dict)
    class_iou_crops: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        return {
            "pointing_game": self.pointing,
            "mean_iou": self.miou,
            "mean_iou_crops": self.miou_crops,
            "baseline_mean_iou": self.baseline_miou,
        }

    def details(self) -> dict:
        return {
            "method": self.method,
            "scenes": self.scenes,
            "class_iou": self.class_iou,
            "class_iou_crops": self.class_iou_crops,
        }

    def variant(self) -> str:  # one file per last-block rule
        return f"{self.task}-{self.method}"


class _IoU:
    """Intersections and unions of each class summed over the scenes (as VOC counts them)."""

    def __init__(self, classes: int):
        self.inter, self.union, self.present = np.zeros(classes), np.zeros(classes), np.zeros(classes, bool)

    def add(self, truth: np.ndarray, predicted: np.ndarray) -> None:
        for c in range(len(self.inter)):
            t, p = truth == c, predicted == c
            self.present[c] |= t.any()
            self.inter[c] += (t & p).sum()
            self.union[c] += (t | p).sum()

    def per_class(self) -> np.ndarray:
        return np.where(self.union > 0, self.inter / np.maximum(self.union, 1), 0.0)

    def mean(self) -> float:
        return float(self.per_class()[self.present].mean())

    def named(self, names: list[str]) -> dict[str, float]:
        iou = self.per_class()
        return {names[c]: round(float(iou[c]), 4) for c in range(len(names)) if self.present[c]}


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
    """Pointing game and mean IoU of `method`'s maps over a labelled synthetic source (each pixel its best
    label, and each foreground region its crop's), and the baseline."""
    items = scene_items(source)
    classes = list(source.classes)
    background = background_prompts()
    cache = PromptCache()
    classifier = build_classifier(model, classes, list(templates), cache=cache).cpu()
    names = classes + [BACKGROUND]
    pixels, crops, baseline = _IoU(len(names)), _IoU(len(names)), _IoU(len(names))
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
        pixels.add(truth, predicted)
        crops.add(truth, label_regions(model, image, predicted, len(classes), classifier))
        baseline.add(truth, np.full(truth.shape, whole))
    return Segmentation(
        source.name,
        method,
        len(items),
        hits / max(things, 1),
        pixels.mean(),
        crops.mean(),
        baseline.mean(),
        pixels.named(names),
        crops.named(names),
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
    background = background_prompts()
    cache = PromptCache()
    per_class: dict[int, list[tuple[float, bool]]] = {c: [] for c in range(len(classes))}
    positives = np.zeros(len(classes), int)
    for n, item in enumerate(tqdm(items, desc=f"detect {method}", unit="scene", disable=not progress)):
        scene = item.scene
        if objects != len(scene.things):  # the same scene index and seed, drawn with more things
            split = source.name.removeprefix("synthetic-")
            scene = item.world.scene(n, getattr(source.items, "seed", SPLITS[split][1]), split, objects)
        image = item.world.render(scene, item.size)
        truth = [
            (classes.index(f"{t.colour} {t.shape}"), box)
            for t, box in zip(scene.things, item.world.boxes(scene, item.size))
        ]
        for label, _ in truth:
            positives[label] += 1
        matched = set()
        for box in detect(model, image, classes, templates, method, 0.0, cache=cache, background=background):
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

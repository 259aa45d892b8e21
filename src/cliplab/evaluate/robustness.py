"""Robustness to distribution shift: how much accuracy zero-shot and a linear probe keep.

The paper's finding: a zero-shot CLIP classifier loses less accuracy under shift than a linear probe
fitted on the original distribution with the same features, whose gains partly come from fitting
that distribution. Here both are scored on the clean test images and on each shifted version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..models import CLIP
from ..models.clip import MAX_LOGIT_SCALE
from ..zeroshot import build_classifier
from .classification import classification_report
from .datasets import LabelledImages
from .features import image_features
from .linear_probe import ProbeResult


@dataclass
class ShiftResult:
    name: str
    images: int
    zero_shot_top1: float  # percent
    probe_top1: float  # percent


@dataclass
class RobustnessResult:
    clean: ShiftResult
    shifts: list[ShiftResult]

    def to_dict(self) -> dict:
        def row(r: ShiftResult) -> dict:
            return {
                "images": r.images,
                "zero_shot_acc1": r.zero_shot_top1 / 100,
                "linear_probe_acc1": r.probe_top1 / 100,
                "zero_shot_drop": (self.clean.zero_shot_top1 - r.zero_shot_top1) / 100,
                "linear_probe_drop": (self.clean.probe_top1 - r.probe_top1) / 100,
            }

        return {"clean": row(self.clean), **{r.name: row(r) for r in self.shifts}}


@torch.no_grad()
def robustness(
    model: CLIP,
    clean: LabelledImages,
    shifted_sets: dict[str, LabelledImages],
    templates: Sequence[str],
    probe: ProbeResult,
    **feature_options,
) -> RobustnessResult:
    """Zero-shot (`templates`) and the fitted `probe` on `clean` and on every set in `shifted_sets`."""
    weights = build_classifier(model, clean.classes, templates).float().cpu()
    scale = model.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE).float().cpu()

    def score(name: str, data: LabelledImages) -> ShiftResult:
        if data.classes != clean.classes:
            raise ValueError(f"shift {name!r} has classes {data.classes[:5]}..., the clean set {clean.classes[:5]}...")
        features = image_features(model, data, **feature_options)
        zero_shot = classification_report(scale * features.features @ weights, features.labels, clean.classes)
        probed = classification_report(probe.scores(features.features), features.labels, clean.classes)
        return ShiftResult(name, zero_shot.count, zero_shot.top1, probed.top1)

    return RobustnessResult(score("clean", clean), [score(name, data) for name, data in shifted_sets.items()])

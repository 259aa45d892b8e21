"""Robustness to distribution shift: how much accuracy zero-shot and a linear probe keep.

The paper's finding: a zero-shot CLIP classifier loses less accuracy under shift than a linear probe
fitted on the original distribution with the same features, whose gains partly come from fitting
that distribution. Here both are scored on the clean test images and on each shifted version: made
shifts of the test images (`shifts.py`) or other labelled sources with the same classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..data import Source
from ..errors import SourceError
from ..models import Model
from ..zeroshot import build_classifier, probabilities
from .classification import classification_report
from .features import FeatureOptions, image_features
from .linear_probe import LinearProbe, ProbeFit, linear_probe
from .results import TaskResult
from .shifts import SHIFTS, shifted
from .zeroshot_classification import DEFAULT_TEMPLATES


@dataclass
class ShiftResult:
    name: str
    images: int
    zero_shot_top1: float
    probe_top1: float


@dataclass
class Robustness(TaskResult):
    task = "robustness"
    dataset: str
    clean: ShiftResult
    shifts: list[ShiftResult]
    probe: LinearProbe | None  # the fitted probe (None when one was handed in)
    templates: list[str]

    def table(self) -> dict:
        """Per set: images, both accuracies, and how much each lost against the clean images."""

        def row(r: ShiftResult) -> dict:
            return {
                "images": r.images,
                "zero_shot_acc1": r.zero_shot_top1,
                "linear_probe_acc1": r.probe_top1,
                "zero_shot_drop": self.clean.zero_shot_top1 - r.zero_shot_top1,
                "linear_probe_drop": self.clean.probe_top1 - r.probe_top1,
            }

        return {"clean": row(self.clean), **{r.name: row(r) for r in self.shifts}}

    def metrics(self) -> dict[str, float]:
        return {f"{name}_{key}": v for name, row in self.table().items() for key, v in row.items() if key != "images"}

    def details(self) -> dict:
        details = {"shifts": self.table(), "templates": self.templates}
        if self.probe is not None:
            details |= {"c": self.probe.fit.c, "train": self.probe.how}
        return details


@torch.no_grad()
def score_shifts(
    model: Model,
    clean: Source,
    shifted_sets: Mapping[str, Source],
    templates: Sequence[str],
    probe: ProbeFit,
    options: FeatureOptions = FeatureOptions(),
) -> tuple[ShiftResult, list[ShiftResult]]:
    """Zero-shot (`templates`) and the fitted `probe` on `clean` and on every shifted set (by name)."""
    weights = build_classifier(model, clean.classes, list(templates)).float().cpu()

    def score(name: str, data: Source) -> ShiftResult:
        data = data.labelled()
        if data.classes != clean.classes:
            raise SourceError(f"shift {name!r} has classes {data.classes[:5]}..., the clean set {clean.classes[:5]}...")
        features = image_features(model, data, options)
        zero_shot = classification_report(
            probabilities(model, features.features, weights), features.labels, clean.classes
        )
        probed = classification_report(probe.scores(features.features), features.labels, clean.classes)
        return ShiftResult(name, zero_shot.count, zero_shot.top1, probed.top1)

    return score("clean", clean), [score(name, data) for name, data in shifted_sets.items()]


def robustness(
    model: Model,
    test: Source,
    shifts: Sequence[str | Source] = tuple(SHIFTS),
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    train: Source | None = None,
    options: FeatureOptions = FeatureOptions(),
) -> Robustness:
    """A linear probe fitted as `linear_probe(model, test, train)` does, then it and zero-shot scored on the
    test images and on each of `shifts`: a made shift's name (SHIFTS) or a labelled source of the same classes."""
    probe = linear_probe(model, test, train, options=options)
    clean = probe.test_source
    sets = {}
    for shift in shifts:  # a source of its own, or a made shift of the clean images
        name, data = (shift.name, shift) if isinstance(shift, Source) else (shift, shifted(clean, shift))
        sets[name] = data
    clean_result, results = score_shifts(model, clean, sets, templates, probe.fit, options)
    return Robustness(probe.dataset, clean_result, results, probe, list(templates))

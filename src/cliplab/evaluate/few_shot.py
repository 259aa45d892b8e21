"""Few-shot linear probes: k training images per class (k = 1, 2, 4, 8, 16), several random draws each,
the paper's comparison of zero-shot transfer with learning from a handful of labelled examples.

With one example per class there is nothing to validate on, so C is fixed for every k: `few_shot`
uses the value the full linear probe chose on its validation split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data import Source
from ..models import Model
from .classification import classification_report
from .features import FeatureOptions
from .linear_probe import LinearProbe, fit_and_score, linear_probe, scores_over_all_classes
from .results import TaskResult
from .zeroshot_classification import DEFAULT_TEMPLATES, ZeroShotClassification, zero_shot_classification


@dataclass
class FewShotDraws:
    top1: dict[int, list[float]]  # k -> top-1 of each draw

    def mean(self, k: int) -> float:
        return sum(self.top1[k]) / len(self.top1[k])

    def to_dict(self) -> dict:
        return {str(k): {"mean_top1": self.mean(k), "top1_per_draw": values} for k, values in sorted(self.top1.items())}


def sample_shots(labels: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """k indices per class (all of a class's examples where it has fewer), drawn with `seed`."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in labels.unique().tolist():
        members = (labels == label).nonzero().flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:k]])
    return torch.cat(chosen).sort().values


def fit_few_shot(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    classes: Sequence[str],
    c: float,
    shots: Sequence[int] = (1, 2, 4, 8, 16),
    seeds: Sequence[int] = (0, 1, 2),
    max_iter: int = 1000,
) -> FewShotDraws:
    """Probes fitted on k examples per class (`seeds` draws each) with a fixed C, scored on the test features."""
    x, y, test_x = train_features.double().numpy(), train_labels.numpy(), test_features.double().numpy()
    top1: dict[int, list[float]] = {}
    for k in shots:
        for seed in seeds:
            picked = sample_shots(train_labels, k, seed).numpy()
            model, probabilities = fit_and_score(x[picked], y[picked], test_x, c, max_iter, seed)
            scores = scores_over_all_classes(model, probabilities, len(classes))
            top1.setdefault(k, []).append(classification_report(scores, test_labels, classes).top1)
    return FewShotDraws(top1)


@dataclass
class FewShot(TaskResult):
    task = "few_shot"
    dataset: str
    draws: FewShotDraws
    probe: LinearProbe  # the all-data probe, whose C the draws use
    zero_shot: ZeroShotClassification  # on the same test images

    def metrics(self) -> dict[str, float]:
        means = {f"acc1_{k}shot": self.draws.mean(k) for k in sorted(self.draws.top1)}
        return means | {"zeroshot_acc1": self.zero_shot.report.top1, "linear_probe_acc1": self.probe.report.top1}

    def details(self) -> dict:
        return {
            "shots": self.draws.to_dict(),
            "c": self.probe.fit.c,
            "train": self.probe.how,
            "images": self.probe.report.count,
        }


def few_shot(
    model: Model,
    test: Source,
    train: Source | None = None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    shots: Sequence[int] = (1, 2, 4, 8, 16),
    seeds: Sequence[int] = (0, 1, 2),
    options: FeatureOptions = FeatureOptions(),
) -> FewShot:
    """The paper's comparison: linear probes on k labelled images per class against zero-shot, on `test`
    (with `train` as `linear_probe` takes it)."""
    probe = linear_probe(model, test, train, options=options)
    zero_shot = zero_shot_classification(model, probe.test_source, templates, features=probe.test, options=options)
    train_features, test_features = probe.train, probe.test
    draws = fit_few_shot(
        train_features.features,
        train_features.labels,
        test_features.features,
        test_features.labels,
        probe.test_source.classes,
        c=probe.fit.c,
        shots=shots,
        seeds=seeds,
    )
    return FewShot(probe.dataset, draws, probe, zero_shot)

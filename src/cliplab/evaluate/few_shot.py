"""Few-shot linear probes: k training images per class (k = 1, 2, 4, 8, 16), several random draws each,
the paper's comparison of zero-shot transfer with learning from a handful of labelled examples.

With one example per class there is nothing to validate on, so C is fixed for every k (the CLI uses
the value the full linear probe chose on its validation split).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .classification import classification_report
from .linear_probe import fit_and_score, scores_over_all_classes


@dataclass
class FewShotResult:
    top1: dict[int, list[float]]  # k -> top-1 (percent) of each draw

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


def few_shot(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    classes: Sequence[str],
    c: float,
    shots: Sequence[int] = (1, 2, 4, 8, 16),
    seeds: Sequence[int] = (0, 1, 2),
    max_iter: int = 1000,
) -> FewShotResult:
    x, y, test_x = train_features.double().numpy(), train_labels.numpy(), test_features.double().numpy()
    top1: dict[int, list[float]] = {}
    for k in shots:
        for seed in seeds:
            picked = sample_shots(train_labels, k, seed).numpy()
            model, probabilities = fit_and_score(x[picked], y[picked], test_x, c, max_iter, seed)
            scores = scores_over_all_classes(model, probabilities, len(classes))
            top1.setdefault(k, []).append(classification_report(scores, test_labels, classes).top1)
    return FewShotResult(top1)


def plot_few_shot(result: FewShotResult, zero_shot_top1: float | None, out: Path, title: str) -> Path | None:
    """Top-1 against k (log scale), each draw as a dot, with the zero-shot accuracy as a line."""
    from .plots import pyplot, save_figure

    plt = pyplot()
    if plt is None:
        return None
    figure, axis = plt.subplots(figsize=(6, 4))
    ks = sorted(result.top1)
    axis.plot(ks, [result.mean(k) for k in ks], marker="o", label="linear probe, k per class (mean)")
    for k in ks:
        axis.scatter([k] * len(result.top1[k]), result.top1[k], color="grey", s=8)
    if zero_shot_top1 is not None:
        axis.axhline(zero_shot_top1, color="red", linestyle="--", label="zero-shot")
    axis.set_xscale("log", base=2)
    axis.set_xticks(ks, [str(k) for k in ks])
    axis.set_xlabel("training examples per class")
    axis.set_ylabel("top-1 (%)")
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(plt, figure, out)

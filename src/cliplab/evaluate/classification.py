"""Classification metrics from class scores: top-k accuracy, mean per-class recall, the confusion matrix.

The paper reports top-1 for most datasets and mean per-class recall for the imbalanced ones (Pets,
Caltech101, Flowers, ...); both come from the same scores, so one report carries all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class ClassificationReport:
    """Accuracies as fractions (0.634), as every file cliplab writes them; percent only on screen."""

    classes: list[str]
    top1: float
    top5: float  # 1 with five classes or fewer
    mean_per_class_recall: float  # over the classes that have examples
    confusion: torch.Tensor  # (classes, classes) counts: row = true class, column = predicted class
    count: int

    @property
    def chance(self) -> float:
        """Top-1 of guessing uniformly at random."""
        return 1.0 / len(self.classes)

    def per_class_recall(self) -> dict[str, float]:
        totals = self.confusion.sum(dim=1)
        return {
            name: self.confusion[i, i].item() / totals[i].item() for i, name in enumerate(self.classes) if totals[i] > 0
        }

    def to_dict(self) -> dict:
        return {
            "classes": self.classes,
            "count": self.count,
            "top1": self.top1,
            "top5": self.top5,
            "mean_per_class_recall": self.mean_per_class_recall,
            "chance": self.chance,
            "per_class_recall": self.per_class_recall(),
            "confusion": self.confusion.tolist(),
        }


def classification_report(scores: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]) -> ClassificationReport:
    """Metrics of (N, classes) scores (logits or probabilities; only their order matters) against N labels."""
    if scores.ndim != 2 or scores.shape[1] != len(classes):
        raise ValueError(f"scores must be (N, {len(classes)}) for {len(classes)} classes, got {tuple(scores.shape)}")
    labels = labels.to(scores.device).long()
    if labels.shape != scores.shape[:1]:
        raise ValueError(f"{scores.shape[0]} rows of scores but {labels.shape[0]} labels")
    if len(labels) == 0:
        raise ValueError("no examples to evaluate")
    if labels.min() < 0 or labels.max() >= len(classes):
        raise ValueError(f"labels must lie in [0, {len(classes)})")
    top = scores.topk(min(5, len(classes)), dim=1).indices  # N k
    hits = top == labels.unsqueeze(1)
    confusion = torch.zeros(len(classes), len(classes), dtype=torch.long)
    confusion.index_put_((labels.cpu(), top[:, 0].cpu()), torch.ones(len(labels), dtype=torch.long), accumulate=True)
    totals = confusion.sum(dim=1)
    present = totals > 0
    recall = confusion.diagonal()[present].double() / totals[present].double()
    return ClassificationReport(
        classes=list(classes),
        top1=hits[:, 0].double().mean().item(),
        top5=hits.any(dim=1).double().mean().item(),
        mean_per_class_recall=recall.mean().item(),
        confusion=confusion,
        count=len(labels),
    )

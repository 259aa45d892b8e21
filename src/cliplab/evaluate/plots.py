"""Plots of evaluation results: the confusion matrix of a classification report.

matplotlib comes with the `train` extra; without it a warning is given and no picture written.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .classification import ClassificationReport


def pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn("plots need matplotlib: pip install 'cliplab[train]'", stacklevel=3)
        return None
    return plt


def plot_confusion(report: ClassificationReport, out: Path, title: str) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None
    counts = report.confusion.numpy()
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # each true class's row sums to 1
    n = len(report.classes)
    labelled = n <= 40  # past that, names and counts would overlap: the picture shows the pattern only
    side = 0.45 * n if labelled else 12
    figure, axis = plt.subplots(figsize=(2 + side, 1.5 + side))
    axis.imshow(share, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    if labelled:
        axis.set_xticks(range(n), report.classes, rotation=60, ha="right", fontsize=8)
        axis.set_yticks(range(n), report.classes, fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for i in range(n if labelled else 0):
        for j in range(n):
            if counts[i, j]:
                axis.text(
                    j,
                    i,
                    counts[i, j],
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if share[i, j] > 0.5 else "black",
                )
    axis.set_title(f"{title}\ntop-1 {report.top1:.1f}% ({n} classes, chance {report.chance:.1f}%)", fontsize=10)
    figure.tight_layout()
    return save_figure(plt, figure, out)


def save_figure(plt, figure, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out

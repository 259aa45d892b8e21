"""The demo's pictures: the held-out confusion matrix and a grid of test images with their top classes.

matplotlib comes with the `train` extra; without it the demo warns and writes no pictures.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ..evaluate import ClassificationReport


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn("plots need matplotlib: pip install 'cliplab[train]'", stacklevel=3)
        return None
    return plt


def plot_confusion(report: ClassificationReport, out: Path, title: str) -> Path | None:
    plt = _pyplot()
    if plt is None:
        return None
    counts = report.confusion.numpy()
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # each true class's row sums to 1
    n = len(report.classes)
    figure, axis = plt.subplots(figsize=(2 + 0.45 * n, 1.5 + 0.45 * n))
    axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(n), report.classes, rotation=60, ha="right", fontsize=8)
    axis.set_yticks(range(n), report.classes, fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for i in range(n):
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
    return _save(plt, figure, out)


def plot_examples(
    examples: list[tuple[Image.Image, str, list[tuple[str, float]]]], out: Path, columns: int = 4
) -> Path | None:
    """Each image with its top predictions; green where the first is right, red where it is wrong."""
    plt = _pyplot()
    if plt is None:
        return None
    rows = -(-len(examples) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.7 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (image, truth, top) in zip(axes.flat, examples):
        axis.imshow(image.resize((128, 128), Image.Resampling.NEAREST))
        lines = [f"{name} {100 * p:.0f}%" for name, p in top]
        axis.set_title(
            f"true: {truth}\n" + "\n".join(lines), fontsize=8, color="green" if top[0][0] == truth else "red"
        )
    figure.tight_layout()
    return _save(plt, figure, out)


def _save(plt, figure, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out

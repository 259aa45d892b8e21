"""Plots of evaluation results: a confusion matrix, retrieval examples, few-shot accuracy against k.
Accuracies are drawn in percent.

matplotlib comes with the `train` and `eval` extras; without it a warning is given and no picture written.
"""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ..extras import install_command
from .classification import ClassificationReport


def pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn(f"plots need matplotlib: {install_command('eval')}", stacklevel=3)
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
    axis.set_title(f"{title}\ntop-1 {report.top1:.1%} ({n} classes, chance {report.chance:.1%})", fontsize=10)
    figure.tight_layout()
    return save_figure(plt, figure, out)


def save_figure(plt, figure, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out


def plot_image_grid(
    tiles: list[tuple[Image.Image, str, bool]],
    out: Path,
    columns: int = 4,
    cell: tuple[float, float] = (4, 5.2),
    **title,
) -> Path | None:
    """Images in a grid, each titled; a title in green where its tile is right, in red where it is wrong."""
    plt = pyplot()
    if plt is None:
        return None
    rows = -(-len(tiles) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(cell[0] * columns, cell[1] * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (image, text, right) in zip(axes.flat, tiles):
        axis.imshow(image)
        axis.set_title(text, color="green" if right else "red", **title)
    figure.tight_layout()
    return save_figure(plt, figure, out)


def plot_retrieval_examples(examples: list, out: Path, columns: int = 4) -> Path | None:
    """Images with their top retrieved captions (image -> text); a caption of the image is marked with *."""
    tiles = []
    for image, top in examples:
        lines = [textwrap.fill(f"{'*' if right else ' '} {score:.2f} {caption}", 48) for caption, score, right in top]
        tiles.append((image, "\n".join(lines), top[0][2]))
    return plot_image_grid(tiles, out, columns, fontsize=7, loc="left")


def plot_few_shot(draws, zero_shot_top1: float | None, out: Path, title: str) -> Path | None:
    """Top-1 against k (log scale), each draw as a dot, with the zero-shot accuracy as a line
    (`draws`: a `FewShotDraws`)."""
    plt = pyplot()
    if plt is None:
        return None
    figure, axis = plt.subplots(figsize=(6, 4))
    ks = sorted(draws.top1)
    axis.plot(ks, [100 * draws.mean(k) for k in ks], marker="o", label="linear probe, k per class (mean)")
    for k in ks:
        axis.scatter([k] * len(draws.top1[k]), [100 * v for v in draws.top1[k]], color="grey", s=8)
    if zero_shot_top1 is not None:
        axis.axhline(100 * zero_shot_top1, color="red", linestyle="--", label="zero-shot")
    axis.set_xscale("log", base=2)
    axis.set_xticks(ks, [str(k) for k in ks])
    axis.set_xlabel("training examples per class")
    axis.set_ylabel("top-1 (%)")
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(plt, figure, out)

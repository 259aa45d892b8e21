"""The demo's grid of test images with their top predicted classes (its confusion matrix is
`cliplab.evaluate.plots.plot_confusion`). Without matplotlib a warning is given and no picture written.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..evaluate.plots import pyplot, save_figure


def plot_examples(
    examples: list[tuple[Image.Image, str, list[tuple[str, float]]]], out: Path, columns: int = 4
) -> Path | None:
    """Each image with its top predictions; green where the first is right, red where it is wrong."""
    plt = pyplot()
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
    return save_figure(plt, figure, out)

"""The demo's grid of test images with their top predicted classes (its confusion matrix is
`cliplab.evaluate.plots.plot_confusion`). Without matplotlib a warning is given and no picture written.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..evaluate.plots import plot_image_grid


def plot_examples(
    examples: list[tuple[Image.Image, str, list[tuple[str, float]]]], out: Path, columns: int = 4
) -> Path | None:
    """Each image with its top predictions; green where the first is right, red where it is wrong."""
    tiles = []
    for image, truth, top in examples:
        text = f"true: {truth}\n" + "\n".join(f"{name} {100 * p:.0f}%" for name, p in top)
        tiles.append((image.resize((128, 128), Image.Resampling.NEAREST), text, top[0][0] == truth))
    return plot_image_grid(tiles, out, columns, cell=(3, 3.7), fontsize=8)

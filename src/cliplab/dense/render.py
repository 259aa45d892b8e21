"""Pictures of maps: each label's map over the image (with the label and its peak score), and the
segmentation as a palette PNG. PIL only."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .maps import DenseMaps

PANEL_WIDTH = 320  # each label's panel is scaled to this width
# distinct colours for segmentation labels (the last label, often "background", gets grey when asked)
PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
]
GREY = (128, 128, 128)


def heat(values: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8, blue through green and yellow to red."""
    v = np.clip(values, 0, 1)[..., None]
    anchors = np.array([[0, 0, 128], [0, 80, 255], [0, 220, 120], [255, 230, 0], [220, 20, 20]], float)
    position = v * (len(anchors) - 1)
    low = np.floor(position).astype(int).clip(0, len(anchors) - 2)
    t = position - low
    return (anchors[low[..., 0]] * (1 - t) + anchors[low[..., 0] + 1] * t).astype(np.uint8)


def _caption(image: Image.Image, text: str) -> None:
    draw = ImageDraw.Draw(image)
    box = draw.textbbox((4, 4), text)
    draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=(0, 0, 0))
    draw.text((4, 4), text, fill=(255, 255, 255))


def map_panels(image: Image.Image, maps: DenseMaps) -> Image.Image:
    """One panel per label, side by side: the map (scaled between its own lowest and highest score) over
    the image, the label and peak score written on it, the peak marked."""
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    panels = []
    for i, label in enumerate(maps.labels):
        scores = maps.scores[i]
        span = max(float(scores.max() - scores.min()), 1e-6)
        blended = 0.45 * base + 0.55 * heat((scores - scores.min()) / span)
        panel = Image.fromarray(blended.astype(np.uint8))
        peak, (x, y) = maps.peak(i)
        ImageDraw.Draw(panel).ellipse((x - 4, y - 4, x + 4, y + 4), outline=(255, 255, 255), width=2)
        height = max(1, round(panel.height * PANEL_WIDTH / panel.width))
        panel = panel.resize((PANEL_WIDTH, height), Image.Resampling.BILINEAR)
        _caption(panel, f"{label}: peak {peak:.3f}")
        panels.append(panel)
    sheet = Image.new("RGB", (PANEL_WIDTH * len(panels), panels[0].height), (0, 0, 0))
    for i, panel in enumerate(panels):
        sheet.paste(panel, (i * PANEL_WIDTH, 0))
    return sheet


def segmentation_image(labels: np.ndarray, names: list[str]) -> Image.Image:
    """A palette PNG whose pixel values are label indices (so it reads back as the segmentation), coloured
    from PALETTE ("background" grey)."""
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    colours = [GREY if name == "background" else PALETTE[i % len(PALETTE)] for i, name in enumerate(names)]
    colours += [GREY] * (256 - len(colours))  # an index past the names: background by threshold
    image.putpalette([channel for colour in colours for channel in colour])
    return image


def legend(names: list[str]) -> list[dict]:
    return [
        {"index": i, "label": name, "colour": GREY if name == "background" else PALETTE[i % len(PALETTE)]}
        for i, name in enumerate(names)
    ]

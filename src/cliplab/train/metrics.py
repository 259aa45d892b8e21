"""What a run reports: JSON lines (`metrics.jsonl`), TensorBoard event files, and PNG plots at the end."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from ..evaluate.plots import pyplot, save_figure
from ..extras import install_command


class MetricsLog:
    """Appends `{"step": ..., name: value, ...}` records; only the first process writes anything."""

    def __init__(self, out: Path, enabled: bool = True, tensorboard: bool = True, resume_step: int | None = None):
        self.path = out / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            drop_records_after(self.path, resume_step)  # what a killed run wrote after its last checkpoint
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=resume_step)
            except ImportError:
                warnings.warn(
                    f"TensorBoard logging needs the tensorboard package: {install_command('train')}", stacklevel=2
                )

    def log(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self.writer is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def drop_records_after(path: Path, step: int) -> None:
    """Keep only the JSON-lines records of `path` whose "step" is at most `step`."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


# (panel title, ((metric, its label in the legend), ...), scale on the axis)
PANELS = (
    ("contrastive loss", (("train/loss", "training"), ("val/loss", "validation")), 1),
    ("learning rate", (("train/lr", "learning rate"),), 1),
    ("temperature exp(t)", (("train/logit_scale", "exp(t)"),), 1),
    (
        "validation recall@K (%)",
        tuple(
            (f"val/{d}_R@{k}", f"{d.replace('_to_', '->').replace('image', 'img')} R@{k}")
            for d in ("image_to_text", "text_to_image")
            for k in (1, 5, 10)
        ),
        100,
    ),
)


def plot_metrics(metrics_path: Path, out: Path) -> Path | None:
    """A PNG of loss, learning rate, temperature and validation recall against the step: the panels that
    have something to show (no validation, no recall panel), a legend where a panel has several lines."""
    plt = pyplot()
    if plt is None:
        return None
    records = read_metrics(metrics_path) if metrics_path.is_file() else []
    panels = []
    for title, names, scale in PANELS:
        lines = [(label, [(r["step"], scale * r[name]) for r in records if name in r]) for name, label in names]
        lines = [(label, points) for label, points in lines if points]
        if lines:
            panels.append((title, lines))
    figure, axes = plt.subplots(1, max(1, len(panels)), figsize=(5 * max(1, len(panels)), 4), squeeze=False)
    for axis, (title, lines) in zip(axes.flat, panels):
        for label, points in lines:
            steps, values = zip(*points)
            axis.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3, label=label)
        axis.set_title(title)
        axis.set_xlabel("step")
        if len(lines) > 1:
            axis.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(plt, figure, out)

"""Evaluation results as JSON files in CLIP_benchmark's shape, one per (model, dataset, task).

    {"dataset": ..., "model": ..., "pretrained": ..., "task": ..., "metrics": {...}, "language": "en", ...}

Metric names and scales follow CLIP_benchmark so its tools read these files: accuracies and recalls
as fractions (0.634, not 63.4), `acc1`, `acc5`, `mean_per_class_recall`,
`image_retrieval_recall@K` (text -> image) and `text_retrieval_recall@K` (image -> text).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..checkpoints.files import atomic_write
from .classification import ClassificationReport


def classification_metrics(report: ClassificationReport) -> dict[str, float]:
    return {
        "acc1": report.top1 / 100,
        "acc5": report.top5 / 100,
        "mean_per_class_recall": report.mean_per_class_recall / 100,
    }


def retrieval_metrics_in_benchmark_names(metrics: dict[str, float]) -> dict[str, float]:
    """cliplab's `text_to_image_R@5` (percent) as CLIP_benchmark's `image_retrieval_recall@5` (fraction)."""
    renamed = {}
    for key, value in metrics.items():
        if match := re.fullmatch(r"(text_to_image|image_to_text)_R@(\d+)", key):
            kind = "image" if match.group(1) == "text_to_image" else "text"
            renamed[f"{kind}_retrieval_recall@{match.group(2)}"] = value / 100
        else:
            renamed[key] = value
    return renamed


def write_result(out: str | Path, dataset: str, model: str, task: str, metrics: dict[str, Any], **extra: Any) -> Path:
    """Write `{out}/{dataset}__{model}__{task}.json` atomically and return its path."""
    record = {"dataset": dataset, "model": model, "pretrained": model, "task": task, "metrics": metrics}
    record.update(language="en", **extra)
    name = "__".join(re.sub(r"[^A-Za-z0-9._-]+", "-", part) for part in (dataset, model, task))
    path = Path(out) / f"{name}.json"
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))
    return path

"""Evaluation results as JSON files in CLIP_benchmark's shape, one per (model, dataset, task).

    {"dataset": ..., "model": ..., "pretrained": ..., "task": ..., "metrics": {...}, "language": "en", ...}

Metric names and scales follow CLIP_benchmark so its tools read these files: accuracies and recalls
as fractions (0.634, not 63.4), `acc1`, `acc5`, `mean_per_class_recall`,
`image_retrieval_recall@K` (text -> image) and `text_retrieval_recall@K` (image -> text).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from ..files import write_json
from .classification import ClassificationReport


class TaskResult:
    """What every evaluation task returns: its metrics, the details beside them, and `write`."""

    task: ClassVar[str]
    dataset: str

    def metrics(self) -> dict[str, float | int | None]:
        """The CLIP_benchmark metrics (fractions)."""
        raise NotImplementedError

    def details(self) -> dict[str, Any]:
        """Everything else the JSON file records (classes, skipped images, ...)."""
        return {}

    def variant(self) -> str:
        """The task as results name it: `task`, or more where one task writes several files per model."""
        return self.task

    def write(self, out: str | Path, model: str, pretrained: str | None = None) -> Path:
        """`{out}/{dataset}__{model}-{pretrained}__{variant}.json`, written atomically; returns its path.
        As in CLIP_benchmark, `model` names the architecture and `pretrained` the weights."""
        return write_result(out, self.dataset, model, self.variant(), self.metrics(), pretrained, **self.details())


def skipped_list(features, problems: list[tuple[str, str]] = ()) -> list[dict[str, str]]:
    """Every image left out, with why: those that could not be read, then what the source itself left out."""
    return [{"image": key, "reason": reason} for key, reason in [*features.skipped, *problems]]


def classification_metrics(report: ClassificationReport) -> dict[str, float]:
    return {"acc1": report.top1, "acc5": report.top5, "mean_per_class_recall": report.mean_per_class_recall}


def benchmark_names(metrics: dict[str, float]) -> dict[str, float]:
    """cliplab's `text_to_image_R@5` as CLIP_benchmark's `image_retrieval_recall@5` (both fractions)."""
    renamed = {}
    for key, value in metrics.items():
        if match := re.fullmatch(r"(text_to_image|image_to_text)_R@(\d+)", key):
            kind = "image" if match.group(1) == "text_to_image" else "text"
            renamed[f"{kind}_retrieval_recall@{match.group(2)}"] = value
        else:
            renamed[key] = value
    return renamed


def write_result(
    out: str | Path,
    dataset: str,
    model: str,
    task: str,
    metrics: dict[str, Any],
    pretrained: str | None = None,
    **extra: Any,
) -> Path:
    """Write `{out}/{dataset}__{model}-{pretrained}__{task}.json` atomically and return its path."""
    pretrained = pretrained or model
    record = {"dataset": dataset, "model": model, "pretrained": pretrained, "task": task, "metrics": metrics}
    record.update(language="en", **extra)
    path = Path(out) / f"{result_name(dataset, model, pretrained, task)}.json"
    write_json(path, record)
    return path


def file_part(text: str) -> str:
    """`text` as part of a file name: letters, digits, `.`, `_` and `-` only, never starting with `-` or `.`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "unnamed"


def result_name(dataset: str, model: str, pretrained: str, task: str) -> str:
    """`{dataset}__{model}-{pretrained}__{task}`; the weights' name is left out where it is the architecture's."""
    same = file_part(pretrained).lower() == file_part(model).lower()
    weights = file_part(model) if same else f"{file_part(model)}-{file_part(pretrained)}"
    return "__".join((file_part(dataset), weights, file_part(task)))

"""Zero-shot classification of a labelled source: the paper's protocol.

Class names become prompts through the templates, the prompts are ensembled in embedding space
(`cliplab.zeroshot.build_classifier`), and each image takes the class whose text embedding is most
similar. Reported: top-1, top-5, mean per-class recall and the confusion matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data import Source
from ..errors import SourceError
from ..models import Model
from ..zeroshot import DEFAULT_TEMPLATES, build_classifier, check_templates, probabilities
from .classification import ClassificationReport, classification_report
from .features import FeatureOptions, ImageFeatures, image_features
from .results import TaskResult, classification_metrics, skipped_list


@dataclass
class ZeroShotClassification(TaskResult):
    task = "zeroshot_classification"
    dataset: str
    report: ClassificationReport
    templates: list[str]
    features: ImageFeatures  # the image features it used, for other tasks on the same images
    scores: torch.Tensor  # (images, classes) probabilities
    problems: list[tuple[str, str]]  # what the source left out (unlabelled images, cut-off shards)

    def metrics(self) -> dict[str, float]:
        return classification_metrics(self.report)

    def details(self) -> dict:
        report = self.report
        return {
            "classes": report.classes,
            "images": report.count,
            "chance": report.chance,
            "templates": self.templates,
            "per_class_recall": report.per_class_recall(),
            "confusion_matrix": report.confusion.tolist(),
            "skipped": skipped_list(self.features, self.problems),
        }


@torch.no_grad()
def zero_shot_classification(
    model: Model,
    source: Source,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    classnames: Sequence[str] | None = None,
    features: ImageFeatures | None = None,
    options: FeatureOptions = FeatureOptions(),
) -> ZeroShotClassification:
    """Each labelled image of `source` classified among the class names (default: the source's classes)."""
    source = source.labelled()
    classnames = list(classnames) if classnames is not None else source.classes
    if len(classnames) != len(source.classes):
        raise SourceError(f"{len(classnames)} class names for the {len(source.classes)} classes of {source.name}")
    templates = check_templates(list(templates), "templates")
    features = features if features is not None else image_features(model, source, options)
    weights = build_classifier(model, classnames, templates, progress=options.progress).float().cpu()
    scores = probabilities(model, features.features, weights)
    report = classification_report(scores, features.labels, classnames)
    return ZeroShotClassification(source.name, report, templates, features, scores, source.problems)

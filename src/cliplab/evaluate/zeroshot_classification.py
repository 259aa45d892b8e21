"""Zero-shot classification of a labelled image set: the paper's protocol.

Class names become prompts through the templates, the prompts are ensembled in embedding space
(`cliplab.zeroshot.build_classifier`), and each image takes the class whose text embedding is most
similar. Reported: top-1, top-5, mean per-class recall and the confusion matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..models import CLIP
from ..models.clip import MAX_LOGIT_SCALE
from ..zeroshot import build_classifier
from .classification import ClassificationReport, classification_report
from .datasets import LabelledImages
from .features import ImageFeatures, image_features


@torch.no_grad()
def zero_shot_classification(
    model: CLIP,
    data: LabelledImages,
    templates: Sequence[str],
    classnames: Sequence[str] | None = None,
    features: ImageFeatures | None = None,
    **feature_options,
) -> tuple[ClassificationReport, ImageFeatures]:
    """(report, the image features it used); `feature_options` go to `image_features` (cache, workers, ...)."""
    classnames = list(classnames) if classnames is not None else data.classes
    if len(classnames) != len(data.classes):
        raise ValueError(f"{len(classnames)} class names for the {len(data.classes)} classes of {data.name}")
    features = features if features is not None else image_features(model, data, **feature_options)
    progress = feature_options.get("progress", False)
    weights = build_classifier(model, classnames, templates, progress=progress).float().cpu()
    scale = model.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE).float().cpu()
    probabilities = (scale * features.features @ weights).softmax(dim=-1)
    return classification_report(probabilities, features.labels, classnames), features

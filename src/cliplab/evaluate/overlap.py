"""Train/test overlap, as the paper checked its pre-training data against each evaluation set.

An evaluation image overlaps when its content hash equals a training image's (an exact copy) or when
its image embedding is close to one (a near-duplicate: resized, re-encoded, cropped a little): cosine
similarity at least `threshold` after the training set's mean embedding is subtracted from both.
Embeddings share a large common component (in a weakly trained encoder unrelated photos sit at
0.97 and more); without it, unrelated images spread out while copies stay near 1. On Flickr8k with
the 20-minute tiny model, resized and re-encoded copies scored 0.996 and up, unrelated photos at
most 0.991 (raw cosine: 0.999 and 0.991). The paper used a dedicated duplicate detector; this is a
heuristic whose pairs and scores the results list for checking. The question the paper asked: is accuracy on the overlapping images
higher than on the clean ones, and how much of the reported accuracy could the overlap explain?
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data import Source
from ..models import Model
from .features import FeatureOptions, image_features
from .results import TaskResult
from .zeroshot_classification import DEFAULT_TEMPLATES, zero_shot_classification


def content_hashes(source: Source, indices: list[int] | None = None) -> list[str]:
    """sha256 of each image's encoded bytes where it has them (files, shards), otherwise of its decoded pixels."""
    hashes = []
    for i in indices if indices is not None else range(len(source.items)):
        item = source.items[i]
        content = item.content()
        if content is None:
            with item.open_image() as image:
                content = f"{image.mode}{image.size}".encode() + image.tobytes()
        hashes.append(hashlib.sha256(content).hexdigest())
    return hashes


@dataclass
class Overlap:
    exact: torch.Tensor  # (N,) bool: an exact copy of a training image
    near: torch.Tensor  # (N,) bool: a near-duplicate by embedding (exact copies included)
    nearest: torch.Tensor  # (N,) index of the most similar training image
    similarity: torch.Tensor  # (N,) its cosine similarity

    @property
    def overlapping(self) -> torch.Tensor:
        return self.exact | self.near


def find_overlap(
    eval_features: torch.Tensor,
    train_features: torch.Tensor,
    eval_hashes: list[str],
    train_hashes: list[str],
    threshold: float = 0.99,
    chunk: int = 4096,
) -> Overlap:
    """Exact and near duplicates of evaluation features among training features (centred cosine)."""
    if not len(train_features):
        raise ValueError("no training images to compare with")
    mean = train_features.float().mean(dim=0)
    train = F.normalize(train_features.float() - mean, dim=-1)
    best = torch.empty(len(eval_features))
    nearest = torch.empty(len(eval_features), dtype=torch.long)
    for start in range(0, len(eval_features), chunk):
        queries = F.normalize(eval_features[start : start + chunk].float() - mean, dim=-1)
        best[start : start + len(queries)], nearest[start : start + len(queries)] = (queries @ train.t()).max(dim=1)
    known = set(train_hashes)
    exact = torch.tensor([h in known for h in eval_hashes], dtype=torch.bool)
    return Overlap(exact, best >= threshold, nearest, best)


def accuracy_split(correct: torch.Tensor, overlap: Overlap) -> dict[str, float | int | None]:
    """Top-1 on all, on the overlapping and on the clean images, and the overlap rate (fractions)."""
    mask = overlap.overlapping

    def share(values: torch.Tensor) -> float | None:
        return values.double().mean().item() if len(values) else None

    return {
        "images": len(correct),
        "exact_duplicates": int(overlap.exact.sum()),
        "near_duplicates": int((overlap.near & ~overlap.exact).sum()),
        "overlap_rate": share(mask),
        "acc1_all": share(correct),
        "acc1_overlapping": share(correct[mask]),
        "acc1_clean": share(correct[~mask]),
    }


@dataclass
class OverlapResult(TaskResult):
    task = "overlap"
    dataset: str
    train: str  # the training set's name
    train_images: int
    threshold: float
    summary: dict[str, float | int | None]  # accuracy_split's figures
    overlapping: list[dict]  # each overlapping image, its nearest training image, their similarity

    def metrics(self) -> dict[str, float | int | None]:
        return self.summary

    def details(self) -> dict:
        return {
            "train": self.train,
            "train_images": self.train_images,
            "threshold": self.threshold,
            "overlapping": self.overlapping,
        }


def overlap(
    model: Model,
    test: Source,
    train: Source,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    threshold: float = 0.99,
    options: FeatureOptions = FeatureOptions(),
) -> OverlapResult:
    """Which of `test`'s images are in `train` (any source of images), and zero-shot accuracy on those and the rest."""
    zero_shot = zero_shot_classification(model, test, templates, options=options)
    test_source = test.labelled()
    tested, trained = zero_shot.features, image_features(model, train, options)
    found = find_overlap(
        tested.features,
        trained.features,
        content_hashes(test_source, tested.kept.tolist()),
        content_hashes(train, trained.kept.tolist()),
        threshold,
    )
    correct = zero_shot.scores.argmax(dim=1) == tested.labels  # zero-shot, image by image
    pairs = [
        {
            "image": test_source.items[int(tested.kept[i])].key,
            "train_image": train.items[int(trained.kept[found.nearest[i]])].key,
            "similarity": float(found.similarity[i]),
            "exact": bool(found.exact[i]),
        }
        for i in found.overlapping.nonzero().flatten().tolist()
    ]
    summary = accuracy_split(correct, found)
    return OverlapResult(test_source.name, train.name, len(trained.kept), threshold, summary, pairs)

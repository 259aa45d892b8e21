"""Zero-shot image<->text retrieval: images with several captions each (a caption table, shards).

Images that cannot be read are skipped with their captions (and listed); every other image must be
found from each of its captions, and each image counts as found when any of its captions ranks high.
"""

from __future__ import annotations

import torch

from ..models import CLIP
from .datasets import LabelledImages
from .features import ImageFeatures, image_features
from .retrieval import retrieval_metrics


@torch.no_grad()
def zero_shot_retrieval(
    model: CLIP, images: LabelledImages, captions: list[list[str]], text_batch_size: int = 256, **feature_options
) -> tuple[dict[str, float], ImageFeatures, tuple]:
    """(recall@1/5/10 and median rank both ways, the image features, (caption features, captions, the row of
    each caption's image)); options go to `image_features`."""
    features = image_features(model, images, **feature_options)
    texts, owner = [], []
    for row, index in enumerate(features.kept.tolist()):
        texts += captions[index]
        owner += [row] * len(captions[index])
    device = next(model.parameters()).device
    if not texts:
        raise ValueError(f"{images.name}: no captions for the images that could be read")
    text = torch.cat(
        [
            model.encode_text(model.tokenizer(texts[s : s + text_batch_size]).to(device), normalize=True).float().cpu()
            for s in range(0, len(texts), text_batch_size)
        ]
    )  # fmt: skip
    metrics = retrieval_metrics(features.features, text, torch.tensor(owner))
    return {"images": len(features.kept), "captions": len(texts), **metrics}, features, (text, texts, owner)


def top_captions(
    images: ImageFeatures, texts: tuple, rows: list[int], k: int = 3
) -> list[list[tuple[str, float, bool]]]:
    """For each of `rows` (positions among the kept images): its k best captions, their scores, whether its own."""
    text, captions, owner = texts
    scores = images.features[rows] @ text.t()  # n T
    top = scores.topk(min(k, len(captions)), dim=1)
    return [
        [(captions[j], float(v), owner[j] == row) for v, j in zip(values.tolist(), indices.tolist())]
        for row, values, indices in zip(rows, top.values, top.indices)
    ]

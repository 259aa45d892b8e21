"""Zero-shot image<->text retrieval on a captioned source (a caption table, shards with captions).

Images that cannot be read are skipped with their captions (and listed), as are captions that are
empty or not text; every other image must be found from each of its captions, and each image counts
as found when any of its captions ranks high.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data import BadSample, Source, check_caption
from ..encode import embed_texts
from ..errors import SourceError
from ..models import Model
from .features import FeatureOptions, ImageFeatures, image_features
from .results import TaskResult, benchmark_names, skipped_list
from .retrieval import retrieval_metrics


@dataclass
class ZeroShotRetrieval(TaskResult):
    task = "zeroshot_retrieval"
    dataset: str
    recall: dict[str, float]  # image_to_text_R@1, ..., text_to_image_median_rank (fractions, ranks)
    features: ImageFeatures  # of the images that could be read
    text_features: torch.Tensor  # (captions, D)
    captions: list[str]
    owner: list[int]  # for each caption, the row of its image among `features`
    problems: list[tuple[str, str]]  # what was left out beside unreadable images: bad captions, cut shards

    def metrics(self) -> dict[str, float]:
        return {"images": len(self.features.kept), "captions": len(self.captions), **benchmark_names(self.recall)}

    def details(self) -> dict:
        return {"skipped": skipped_list(self.features, self.problems)}

    def top_captions(self, rows: list[int], k: int = 3) -> list[list[tuple[str, float, bool]]]:
        """For each of `rows` (positions among the read images): its k best captions, their scores, whether its own."""
        scores = self.features.features[rows] @ self.text_features.t()  # n T
        top = scores.topk(min(k, len(self.captions)), dim=1)
        return [
            [(self.captions[j], float(v), self.owner[j] == row) for v, j in zip(values.tolist(), indices.tolist())]
            for row, values, indices in zip(rows, top.values, top.indices)
        ]


@torch.no_grad()
def zero_shot_retrieval(
    model: Model, source: Source, text_batch_size: int = 256, options: FeatureOptions = FeatureOptions()
) -> ZeroShotRetrieval:
    """Recall@1/5/10 and median rank both ways between the images of `source` and their captions."""
    if not source.has_captions:
        raise SourceError(f"{source.location}: no captions to retrieve (a caption column, or .txt/.json in shards)")
    features = image_features(model, source, options)
    captions, owner, problems = [], [], list(source.problems)
    for row, index in enumerate(features.kept.tolist()):
        item = source.items[index]
        for caption in item.captions:
            try:
                captions.append(check_caption(caption))
                owner.append(row)
            except BadSample as bad:
                problems.append((item.key, bad.reason))
    with_captions = set(owner)
    problems += [
        (source.items[i].key, "no usable caption")
        for r, i in enumerate(features.kept.tolist())
        if r not in with_captions
    ]
    if not captions:
        raise SourceError(f"{source.name}: no captions for the images that could be read")
    if len(with_captions) < len(features.kept):  # images without a usable caption cannot be retrieved
        rows = torch.tensor(sorted(with_captions))
        renumber = {old: new for new, old in enumerate(rows.tolist())}
        features, owner = features.rows(rows), [renumber[r] for r in owner]
    text = embed_texts(model, captions, text_batch_size)
    recall = retrieval_metrics(features.features, text, torch.tensor(owner))
    return ZeroShotRetrieval(source.name, recall, features, text, captions, owner, problems)

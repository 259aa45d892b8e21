"""Image<->text retrieval with several captions per image: ranks, recall@K and median rank.

image->text: an image is found at rank r when the best-ranked of its captions is r-th among all
captions. text->image: each caption must find its own image. Ranks start at 1; ties count against
the query (a caption scoring the same as the right one is ranked above it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


@torch.no_grad()
def retrieval_ranks(
    image_features: torch.Tensor, text_features: torch.Tensor, text_to_image: torch.Tensor, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rank of each image's best caption, rank of each caption's image), from normalised features.

    `text_to_image[j]` is the index of the image caption j describes. Computed in chunks of queries,
    so the full similarity matrix is never held at once.
    """
    images, texts = image_features.float(), text_features.float()
    text_to_image = text_to_image.to(images.device).long()
    if text_to_image.shape[0] != texts.shape[0]:
        raise ValueError(f"{texts.shape[0]} captions but {text_to_image.shape[0]} caption->image indices")
    image_ranks = torch.empty(images.shape[0], dtype=torch.long)
    for start in range(0, images.shape[0], chunk):
        scores = images[start : start + chunk] @ texts.t()  # n T
        own = text_to_image.unsqueeze(0) == torch.arange(start, start + scores.shape[0]).unsqueeze(1)  # n T
        if not own.any(dim=1).all():
            raise ValueError("every image needs at least one caption")
        best = scores.masked_fill(~own, float("-inf")).max(dim=1, keepdim=True).values  # n 1
        image_ranks[start : start + scores.shape[0]] = 1 + ((scores >= best) & ~own).sum(dim=1).cpu()
    text_ranks = torch.empty(texts.shape[0], dtype=torch.long)
    for start in range(0, texts.shape[0], chunk):
        scores = texts[start : start + chunk] @ images.t()  # n I
        right = scores.gather(1, text_to_image[start : start + chunk].unsqueeze(1))  # n 1
        text_ranks[start : start + scores.shape[0]] = ((scores >= right).sum(dim=1)).cpu()
    return image_ranks, text_ranks


def retrieval_metrics(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_to_image: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Recall@K (fractions) and median rank, both directions: `image_to_text_R@1`, ..., `text_to_image_median_rank`."""
    image_ranks, text_ranks = retrieval_ranks(image_features, text_features, text_to_image)
    metrics = {}
    for direction, ranks in (("image_to_text", image_ranks), ("text_to_image", text_ranks)):
        for k in ks:
            metrics[f"{direction}_R@{k}"] = int((ranks <= k).sum()) / len(ranks)
        metrics[f"{direction}_median_rank"] = ranks.float().median().item()
    return metrics

"""Prompt ensembling in embedding space, as the paper does it.

Each class's prompts ("a photo of a {}." for every template) are encoded and L2-normalised, averaged
over the templates, and normalised again; the columns of the result are the class weights. An
image's class probabilities are the softmax of exp(t) times its cosine similarity to each column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..models import CLIP
from ..models.clip import MAX_LOGIT_SCALE


def _fill(template: str, name: str) -> str:
    return template.format(name) if "{}" in template else template.replace("{c}", name)


@torch.no_grad()
def build_classifier(
    model: CLIP,
    classnames: Sequence[str],
    templates: Sequence[str] = ("a photo of a {}.",),
    batch_size: int = 256,
    tokenizer: Callable[[list[str]], torch.Tensor] | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(embed_dim, classes) weights: per class, the normalised mean of its normalised prompt embeddings.

    Prompts are encoded `batch_size` at a time, so 1,000 classes x 80 templates never sit in memory as
    one batch; only one running sum per class is kept.
    """
    if not classnames or not templates:
        raise ValueError("a zero-shot classifier needs at least one class name and one template")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    tokenizer = tokenizer or model.tokenizer
    prompts = [(c, _fill(t, name)) for c, name in enumerate(classnames) for t in templates]
    sums = torch.zeros(len(classnames), model.config.embed_dim, device=device)
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        features = model.encode_text(tokenizer([text for _, text in chunk]).to(device), normalize=True)
        sums.index_add_(0, torch.tensor([c for c, _ in chunk], device=device), features.float())
    return F.normalize(sums / len(templates), dim=-1).t()


@torch.no_grad()
def classify(model: CLIP, images: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """(N, classes) probabilities for preprocessed images (N 3 H W)."""
    features = model.encode_image(images.to(classifier.device), normalize=True).float()
    scale = model.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
    return (scale * features @ classifier).softmax(dim=-1)

"""Prompt ensembling in embedding space, as the paper does it.

Each class's prompts ("a photo of a {}." for every template) are encoded and L2-normalised, averaged
over the templates, and normalised again; the columns of the result are the class weights. An
image's class probabilities are the softmax of its logits, exp(t) times its cosine similarity to
each column; a model trained with the sigmoid loss (SigLIP) adds its bias and takes the sigmoid of
each logit instead, as it was trained to.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..caches import LRUCache
from ..encode import embed_texts
from ..errors import ConfigError
from ..models.protocol import Model, logits, model_device
from .templates import check_templates, fill

PROMPT_CACHE_BYTES = 64 * 2**20  # ~30,000 prompts (with their embeddings) of a 512-wide model


class PromptCache:
    """Normalised text embeddings of prompts already encoded by one model, least recently used first
    out, within `max_bytes` (prompts and embeddings counted). Asking again for a classifier over labels
    seen before costs no text-tower work: the server's zero-shot panel sends the same labels over and over."""

    def __init__(self, max_bytes: int = PROMPT_CACHE_BYTES):
        self._cache = LRUCache(max_bytes)

    @property
    def nbytes(self) -> int:
        return self._cache.nbytes

    def __len__(self) -> int:
        return len(self._cache)

    def __contains__(self, prompt: str) -> bool:
        return prompt in self._cache

    def get(self, prompt: str) -> torch.Tensor | None:
        return self._cache.get(prompt)

    def add(self, prompts: Sequence[str], embeddings: torch.Tensor) -> None:
        for prompt, embedding in zip(prompts, embeddings):
            self._cache.put(prompt, embedding.clone())  # a copy: a row would keep its whole batch alive


def _embed_prompts(model: Model, texts: list[str], device, cache: PromptCache | None) -> torch.Tensor:
    """(len(texts), embed_dim) normalised float32 embeddings, from the cache where it has them."""
    if cache is None:
        return embed_texts(model, texts, batch_size=len(texts)).to(device)
    found = {text: cache.get(text) for text in dict.fromkeys(texts)}
    missing = [text for text, embedding in found.items() if embedding is None]
    if missing:  # kept for the next call (as far as the cache's budget allows), used now either way
        encoded = embed_texts(model, missing, batch_size=len(missing)).to(device)
        cache.add(missing, encoded)
        found.update(zip(missing, encoded))
    return torch.stack([found[text] for text in texts])


@torch.no_grad()
def build_classifier(
    model: Model,
    classnames: Sequence[str],
    templates: Sequence[str] = ("a photo of a {}.",),
    batch_size: int = 256,
    device: torch.device | str | None = None,
    cache: PromptCache | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """(embed_dim, classes) weights: per class, the normalised mean of its normalised prompt embeddings.

    Prompts are encoded `batch_size` at a time in order of length, so each batch runs only as far as
    its own longest prompt; 1,000 classes x 80 templates never sit in memory as one batch, only one
    running sum per class. `cache` keeps prompt embeddings for the next call with the same model.
    """
    if not classnames or not templates:
        raise ConfigError("a zero-shot classifier needs at least one class name and one template")
    device = torch.device(device) if device is not None else model_device(model)
    prompts = [
        fill(t, name) for name in classnames for t in check_templates(list(templates))
    ]  # class c: rows c*T .. c*T + T - 1
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # characters: a proxy for tokens
    sums = torch.zeros(len(classnames), model.embed_dim, device=device)
    with tqdm(total=len(prompts), desc="zero-shot classifier", unit="prompt", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            features = _embed_prompts(model, [prompts[i] for i in rows], device, cache)
            sums.index_add_(0, torch.tensor([i // len(templates) for i in rows], device=device), features)
            bar.update(len(rows))
    return F.normalize(sums / len(templates), dim=-1).t()


def probabilities(model: Model, image_features: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """(N, classes) probabilities of normalised image features: the softmax of the logits, or, for a
    model with a learned logit bias (trained with the sigmoid loss), each logit's sigmoid."""
    scores = logits(model, image_features, classifier.t())
    return scores.sigmoid() if getattr(model, "logit_bias", None) is not None else scores.softmax(dim=-1)


@torch.no_grad()
def classify(model: Model, images: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """(N, classes) probabilities for preprocessed images (N 3 H W)."""
    features = model.encode_image(images.to(classifier.device), normalize=True).float()
    return probabilities(model, features, classifier)

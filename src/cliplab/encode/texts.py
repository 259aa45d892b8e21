"""Texts through the text tower, in batches of similar length."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext

import torch
from tqdm import tqdm

from ..models.protocol import Model, model_device
from .images import evaluating


@torch.no_grad()
def embed_texts(
    model: Model,
    texts: Sequence[str],
    batch_size: int = 256,
    autocast: AbstractContextManager | None = None,
    progress: bool = False,
    desc: str = "embed texts",
) -> torch.Tensor:
    """(len(texts), D) normalised float32 embeddings on the CPU, in the order of `texts`.

    Texts are encoded shortest first, `batch_size` at a time, so each batch runs only as far as its
    own longest text (the towers cut padding), and put back in order.
    """
    device, batch_size = model_device(model), max(1, batch_size)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # characters: a proxy for tokens
    features = torch.zeros(len(texts), model.embed_dim)
    with evaluating(model), tqdm(total=len(texts), desc=desc, unit="text", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            tokens = model.tokenizer([texts[i] for i in rows]).to(device)
            with autocast or nullcontext():
                features[rows] = model.encode_text(tokens, normalize=True).float().cpu()
            bar.update(len(rows))
    return features

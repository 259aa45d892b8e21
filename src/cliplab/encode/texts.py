"""Texts through the text tower, in batches of similar length."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    progress: bool | tqdm = False,
    desc: str = "embed texts",
    encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """(len(texts), D) normalised float32 embeddings on the CPU, in the order of `texts`.

    Texts are encoded shortest first, `batch_size` at a time, so each batch runs only as far as its
    own longest text (the towers cut padding), and put back in order. `encode` maps token ids to
    features (default: the normalised text embedding; the trainer's feature cache passes a locked
    tower's trunk). `progress` is a bool (a bar of its own) or a tqdm bar to advance.
    """
    device, batch_size = model_device(model), max(1, batch_size)
    encode = encode or (lambda tokens: model.encode_text(tokens, normalize=True))
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # characters: a proxy for tokens
    features = torch.zeros(len(texts), model.embed_dim)
    bar = (
        progress if isinstance(progress, tqdm) else tqdm(total=len(texts), desc=desc, unit="text", disable=not progress)
    )
    try:
        with evaluating(model):
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                tokens = model.tokenizer([texts[i] for i in rows]).to(device)
                with autocast or nullcontext():
                    encoded = encode(tokens).float().cpu()
                if encoded.shape[1] != features.shape[1]:  # a trunk's width is not the embedding's
                    features = torch.zeros(len(texts), encoded.shape[1])
                features[rows] = encoded
                bar.update(len(rows))
    finally:
        if bar is not progress:
            bar.close()
    return features

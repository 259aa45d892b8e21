"""Gradient caching (Gao et al., 2021): the contrastive gradient of a batch larger than memory.

The loss couples every pair in the batch, so it cannot simply be accumulated over micro-batches.
Instead: (1) embed every micro-batch without building a graph, (2) compute the loss on the whole
batch of embeddings and its gradient with respect to them, (3) re-embed each micro-batch with a
graph and back-propagate its slice of that cached gradient. Memory is one micro-batch of
activations plus the embeddings; the gradient equals the full-batch one. Step 3 replays the random
state of step 1, so stochastic layers (patch dropout) see the same draws.

Models with batch statistics (the ResNets' BatchNorm) normalise each micro-batch on its own
statistics, so for them the result is that of training on micro-batches; running statistics are
restored after step 1 so that they are updated once, by step 3.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Encoder = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
FeatureLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def grad_cache_backward(
    model: nn.Module,
    encode: Encoder,
    loss_fn: FeatureLoss,
    images: torch.Tensor,
    texts: torch.Tensor,
    micro_batch_size: int,
) -> torch.Tensor:
    """Accumulate into `model`'s .grad the gradient of `loss_fn(*encode(images, texts))`, running
    `encode` on at most `micro_batch_size` pairs at a time. Returns the (detached) loss.

    `encode(images, texts)` returns the normalised (image, text) features of a micro-batch;
    `loss_fn(image_features, text_features)` the loss of the whole batch (it may use parameters,
    such as the temperature, whose gradients it accumulates directly).
    """
    if micro_batch_size < 1:
        raise ValueError(f"micro_batch_size must be positive, got {micro_batch_size}")
    device = images.device
    slices = [slice(start, start + micro_batch_size) for start in range(0, images.shape[0], micro_batch_size)]
    buffers = [b.detach().clone() for b in model.buffers()]
    rng_states, image_parts, text_parts = [], [], []
    with torch.no_grad():
        for part in slices:
            rng_states.append(_rng_state(device))
            image_features, text_features = encode(images[part], texts[part])
            image_parts.append(image_features)
            text_parts.append(text_features)
    for saved, buffer in zip(buffers, model.buffers()):
        buffer.copy_(saved)  # the embedding pass must not count as an update of running statistics

    all_images = torch.cat(image_parts).requires_grad_()
    all_texts = torch.cat(text_parts).requires_grad_()
    loss = loss_fn(all_images, all_texts)
    loss.backward()

    for part, state in zip(slices, rng_states):
        _set_rng_state(state, device)
        image_features, text_features = encode(images[part], texts[part])
        torch.autograd.backward([image_features, text_features], [all_images.grad[part], all_texts.grad[part]])
    return loss.detach()

"""The paper's symmetric InfoNCE loss, in one process or across many."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import gather_with_grad, rank_and_world_size


class ClipLoss(nn.Module):
    """(CE over rows + CE over columns) / 2 of logit_scale * I @ T^T, positives on the diagonal.

    `image_features` and `text_features` are L2-normalised, (n, d) on each process; `logit_scale` is
    the multiplier exp(t). Across processes, features are all-gathered with gradients, so the loss
    and the (data-parallel averaged) gradients equal one process holding the whole global batch.

    With `local_loss=True` each rank scores only its own n rows against the N gathered columns
    (2nN logits instead of 2N^2); its value is this rank's share, and the mean over ranks is the
    global loss. Without it every rank computes the full N x N loss.
    """

    def __init__(self, local_loss: bool = False):
        super().__init__()
        self.local_loss = local_loss

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor
    ) -> torch.Tensor:
        rank, world = rank_and_world_size()
        n = image_features.shape[0]
        all_images, all_texts = gather_with_grad(image_features), gather_with_grad(text_features)  # N d
        if self.local_loss:
            logits_per_image = logit_scale * image_features @ all_texts.t()  # n N
            logits_per_text = logit_scale * text_features @ all_images.t()  # n N
            labels = torch.arange(n, device=image_features.device) + rank * n
        else:
            logits_per_image = logit_scale * all_images @ all_texts.t()  # N N
            logits_per_text = logits_per_image.t()
            labels = torch.arange(n * world, device=image_features.device)
        return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2

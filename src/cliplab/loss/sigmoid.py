"""SigLIP's pairwise sigmoid loss (Zhai et al., 2023), an alternative to the softmax loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import gather_with_grad, rank_and_world_size


class SigLipLoss(nn.Module):
    """-sum over all pairs of log sigmoid(label * (logit_scale * i.t + logit_bias)) / n.

    Labels are +1 for matching pairs and -1 for all others. Each rank scores its own images against
    every rank's texts (gathered with gradients); the mean over ranks equals the single-process loss.
    """

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor,
    ) -> torch.Tensor:
        rank, _ = rank_and_world_size()
        n = image_features.shape[0]
        all_texts = gather_with_grad(text_features)  # N d
        logits = logit_scale * image_features @ all_texts.t() + logit_bias  # n N
        labels = -torch.ones_like(logits)
        labels[:, rank * n : (rank + 1) * n] += 2 * torch.eye(n, device=logits.device, dtype=logits.dtype)
        return -F.logsigmoid(labels * logits).sum() / n

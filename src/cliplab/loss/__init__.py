"""Training losses: CLIP's contrastive loss, SigLIP's sigmoid loss, and gradient caching."""

from .contrastive import ClipLoss
from .distributed import gather_with_grad, rank_and_world_size
from .grad_cache import grad_cache_backward
from .sigmoid import SigLipLoss

__all__ = ["ClipLoss", "SigLipLoss", "gather_with_grad", "grad_cache_backward", "rank_and_world_size"]

"""Image towers from timm or torchvision: a pretrained classifier with its head removed."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..checkpoints import read_checkpoint_file
from ..errors import CheckpointError, ConfigError
from ..extras import require
from ..models.weights import load_weights
from .efficientnet import is_lukemelas_efficientnet, lukemelas_to_timm

LIBRARIES = ("timm", "torchvision")
# containers whose children are a backbone's blocks (or stages of blocks), as the libraries name them
_BLOCK_CONTAINERS = ("blocks", "stages", "layer1", "layer2", "layer3", "layer4", "features", "layers")


def create_backbone(library: str, name: str) -> tuple[nn.Module, int]:
    """(an untrained `name` from `library` without its classifier, the width of its pooled features)."""
    if library == "timm":
        timm = require("timm", "towers", "a timm image tower")
        backbone = timm.create_model(name, pretrained=False, num_classes=0)  # num_classes=0: pooled features
        return backbone, backbone.num_features
    if library == "torchvision":
        from torchvision import models

        backbone = models.get_model(name, weights=None)
        for attribute in ("fc", "classifier", "heads"):  # ResNets, EfficientNets/MobileNets, ViTs
            head = getattr(backbone, attribute, None)
            if isinstance(head, nn.Module):
                features = next(m for m in head.modules() if isinstance(m, nn.Linear)).in_features
                setattr(backbone, attribute, nn.Identity())
                return backbone, features
        raise ConfigError(f"torchvision's {name}: no fc, classifier or heads to remove")
    raise ConfigError(f"unknown image tower library {library!r}; choose from {LIBRARIES}")


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> list[str]:
    """Pretrained weights from a local file into `backbone`, strictly; returns the classifier keys left out.

    Reads any file cliplab reads safely (safetensors, `torch.load(weights_only=True)`), renames
    lukemelas/EfficientNet-PyTorch keys for timm, and leaves out the ImageNet classifier, which a
    tower does not have. Anything else that does not fit is an error naming the keys.
    """
    state_dict = read_checkpoint_file(path).state_dict
    if is_lukemelas_efficientnet(state_dict):
        state_dict = lukemelas_to_timm(state_dict, [len(stage) for stage in backbone.blocks])
    own = backbone.state_dict()
    dropped = sorted(k for k in state_dict if k not in own and k.split(".")[0] in ("classifier", "fc", "head", "heads"))
    try:
        load_weights(backbone, {k: v for k, v in state_dict.items() if k not in dropped})
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return dropped


class ImageTower(nn.Module):
    """A backbone's pooled features, (N, 3, H, W) -> (N, features)."""

    def __init__(self, library: str, name: str):
        super().__init__()
        self.trunk, self.features = create_backbone(library, name)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # Channels-last input makes oneDNN (and cuDNN) pick their faster convolutions: 1.75x for
        # EfficientNet-Lite0 on a 2-core CPU; the same features up to float rounding (tested).
        return self.trunk(image.contiguous(memory_format=torch.channels_last))

    def set_grad_checkpointing(self, enabled: bool) -> None:
        if hasattr(self.trunk, "set_grad_checkpointing"):  # timm
            self.trunk.set_grad_checkpointing(enabled)
        elif enabled:
            raise ConfigError("gradient checkpointing needs a timm image tower")

    def groups(self, prefix: str) -> list[list[str]]:
        """Parameter-name prefixes of the stem, each block and the head, in forward order."""
        children = list(self.trunk.named_children())
        inside = [i for i, (name, _) in enumerate(children) if name in _BLOCK_CONTAINERS]
        if not inside:
            raise ConfigError(f"{type(self.trunk).__name__}: no blocks found to leave unlocked")
        own = f"{prefix}trunk."
        stem = [own + name for name, _ in self.trunk.named_parameters(recurse=False)]  # class tokens and the like
        stem += [own + name for name, _ in children[: inside[0]]]
        blocks = []
        for name, container in children[inside[0] : inside[-1] + 1]:
            for child_name, child in container.named_children():
                stages = isinstance(child, (nn.Sequential, nn.ModuleList))  # timm EfficientNet: stages of blocks
                inner = list(child.named_children()) if stages else [("", child)]
                blocks += [[own + ".".join(filter(None, (name, child_name, sub)))] for sub, _ in inner]
        head = [own + name for name, _ in children[inside[-1] + 1 :]]
        return [stem, *blocks, head]

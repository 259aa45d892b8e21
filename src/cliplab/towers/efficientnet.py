"""EfficientNet weights in lukemelas/EfficientNet-PyTorch's key names, renamed for timm's models.

lukemelas numbers blocks in one flat list (`_blocks.0` .. `_blocks.15`) and names layers after
TensorFlow's (`_expand_conv`, `_bn0`, ...); timm groups blocks by stage (`blocks.s.j`) and names
them after what they do (`conv_pw`, `bn1`, ...). The first stage's blocks have no expansion
(depthwise-separable), so the same lukemelas name maps to different timm names there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch

from ..errors import CheckpointError

# stage 0: depthwise -> pointwise; later stages: expand -> depthwise -> project (inverted residual)
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
    "_se_reduce": "se.conv_reduce",  # EfficientNet (not Lite) blocks have squeeze-and-excitation
    "_se_expand": "se.conv_expand",
}
_OUTSIDE_BLOCKS = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")

# blocks per stage of EfficientNet-B0 and -Lite0 (the same layout)
B0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)


def is_lukemelas_efficientnet(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return "_conv_stem.weight" in state_dict


def lukemelas_to_timm(
    state_dict: Mapping[str, torch.Tensor], stage_depths: Sequence[int] = B0_STAGE_DEPTHS
) -> dict[str, torch.Tensor]:
    """The same tensors under timm's names (`efficientnet_lite0`, `efficientnet_b0`, ...).

    `stage_depths` is the number of blocks in each stage of the timm model (`[len(s) for s in
    model.blocks]`). Raises CheckpointError on a key it does not know, so nothing is silently dropped.
    """
    position = [(stage, j) for stage, depth in enumerate(stage_depths) for j in range(depth)]
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if match := _BLOCK_KEY.match(key):
            index, layer, param = int(match[1]), match[2], match[3]
            if index >= len(position):
                raise CheckpointError(
                    f"{key}: block {index}, but the stages {tuple(stage_depths)} hold {len(position)}"
                )
            stage, j = position[index]
            names = _DEPTHWISE_SEPARABLE if stage == 0 else _INVERTED_RESIDUAL
            if layer not in names:
                raise CheckpointError(f"{key}: no timm name for {layer!r} in a stage-{stage} block")
            renamed[f"blocks.{stage}.{j}.{names[layer]}.{param}"] = tensor
        else:
            layer, _, param = key.partition(".")
            if layer not in _OUTSIDE_BLOCKS:
                raise CheckpointError(f"{key}: not an EfficientNet key in lukemelas's names")
            renamed[f"{_OUTSIDE_BLOCKS[layer]}.{param}"] = tensor
    return renamed

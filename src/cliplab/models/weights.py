"""Loading a state dict into a module, strictly, with one readable error listing every mismatch.

It imports no model, so every model family (cliplab's CLIP, towers from other libraries) can use it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..errors import CheckpointError


def load_weights(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """`load_state_dict(strict=True)` with one readable error listing every mismatch."""
    check_fits(model, state_dict)
    model.load_state_dict(state_dict, strict=True)


def check_fits(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """A CheckpointError listing every key and shape in which `state_dict` differs from `model`'s
    (which may live on the meta device: built from a configuration, before any memory is spent)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches: {_listing(shapes)}")
    if problems:
        raise CheckpointError("checkpoint does not match the model: " + "; ".join(problems))


def _listing(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")

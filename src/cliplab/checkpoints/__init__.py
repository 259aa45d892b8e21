"""Checkpoint files: cliplab's safetensors format, OpenAI's and OpenCLIP's files, Hugging Face folders."""

from __future__ import annotations

import os
from pathlib import Path

from .files import CheckpointContents, read_checkpoint_file, save_checkpoint
from .huggingface import (
    from_hf_config,
    from_hf_state_dict,
    read_hf_folder,
    save_hf_folder,
    to_hf_config,
    to_hf_state_dict,
)
from .openclip import from_open_clip_config, is_open_clip_folder, read_open_clip_folder


def read_checkpoint(path: str | os.PathLike) -> CheckpointContents:
    """Tensors and configuration from a checkpoint file, a Hugging Face (transformers) model folder or an
    OpenCLIP model folder (`open_clip_config.json` and its weights, as on the Hub)."""
    path = Path(path)
    if not path.is_dir():
        return read_checkpoint_file(path)
    return read_open_clip_folder(path) if is_open_clip_folder(path) else read_hf_folder(path)


__all__ = [
    "CheckpointContents",
    "from_hf_config",
    "from_open_clip_config",
    "from_hf_state_dict",
    "read_checkpoint",
    "read_checkpoint_file",
    "read_hf_folder",
    "read_open_clip_folder",
    "save_checkpoint",
    "save_hf_folder",
    "to_hf_config",
    "to_hf_state_dict",
]

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


def read_checkpoint(path: str | os.PathLike) -> CheckpointContents:
    """Tensors and configuration from a checkpoint file, or from a Hugging Face model folder."""
    path = Path(path)
    return read_hf_folder(path) if path.is_dir() else read_checkpoint_file(path)


__all__ = [
    "CheckpointContents",
    "from_hf_config",
    "from_hf_state_dict",
    "read_checkpoint",
    "read_checkpoint_file",
    "read_hf_folder",
    "save_checkpoint",
    "save_hf_folder",
    "to_hf_config",
    "to_hf_state_dict",
]

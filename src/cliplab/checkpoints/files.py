"""Reading and writing checkpoint files safely.

Reading recognises a file by its first bytes, never by its name, and never runs code from it:
safetensors directly, PyTorch archives through `torch.load(weights_only=True)`, TorchScript
archives through the allowlisted reader in `torchscript.py`. Writing is atomic (`cliplab.files`):
a checkpoint is written beside its destination and renamed into place, so it is never seen half-written.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from ..errors import CheckpointError, ConfigError
from ..files import os_reason, regular_file_problem, save_safetensors
from .torchscript import is_torchscript_archive, read_torchscript_state_dict

CONFIG_METADATA_KEY = "cliplab_config"
FORMAT_METADATA_KEY = "format"
FORMAT_NAME = "cliplab"
# Wrappers that training code puts around a model's state dict.
_NESTED_KEYS = ("state_dict", "model", "module")
_KEY_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class CheckpointContents:
    """What a checkpoint file holds: its tensors, and a cliplab model configuration if it has one."""

    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any] | None
    kind: str  # "cliplab", "safetensors", "torch", "torchscript" or "huggingface"


def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """cliplab's format: one safetensors file, the model configuration as JSON in its metadata."""
    config = getattr(model, "config", None)
    if config is None:
        raise ConfigError("save_checkpoint needs a cliplab model (one with a .config)")
    metadata = {FORMAT_METADATA_KEY: FORMAT_NAME, CONFIG_METADATA_KEY: json.dumps(config.to_dict())}
    save_safetensors(model.state_dict(), path, metadata)


def read_checkpoint_file(path: str | os.PathLike) -> CheckpointContents:
    """The tensors (and configuration, if any) of any checkpoint file cliplab understands."""
    path = Path(path)
    if problem := regular_file_problem(path):
        raise CheckpointError(f"no checkpoint at {path}: {problem}")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as err:
        raise CheckpointError(f"{path} cannot be read ({os_reason(err)})") from None
    size = path.stat().st_size
    if head[:4] == b"PK\x03\x04":
        reader = _read_zip
    elif _safetensors_header(path, head, size):
        reader = _read_safetensors
    elif head[:1] == b"\x80" and len(head) > 1 and head[1] <= pickle.HIGHEST_PROTOCOL:
        reader = _read_torch_file  # PyTorch's legacy (pre-1.6) format starts with a pickle
    elif not head:
        raise CheckpointError(f"{path} is empty, not a checkpoint")
    else:
        raise CheckpointError(
            f"{path} is not a checkpoint: it is neither safetensors, a PyTorch archive nor a TorchScript archive"
        )
    contents = _guarded(reader, path)
    if not contents.state_dict:
        raise CheckpointError(f"{path} holds no tensors")
    return contents


def _guarded(reader, path: Path) -> CheckpointContents:
    """`reader(path)`, every way it can fail on a hostile or damaged file turned into a CheckpointError
    naming the file. The readers only parse (nothing from the file runs), so whatever they raise is about
    the file's contents."""
    try:
        return reader(path)
    except CheckpointError as err:
        raise err if str(path) in str(err) else CheckpointError(f"{path}: {err}") from None
    except MemoryError:
        raise CheckpointError(f"{path} asks for more memory than this machine has; not a usable checkpoint") from None
    except Exception as err:  # a malformed file can make a parser raise anything
        reason = (str(err).splitlines() or [""])[0][:300]
        raise CheckpointError(
            f"{path} is damaged or not a checkpoint cliplab can read ({type(err).__name__}: {reason})"
        ) from None


def _safetensors_header(path: Path, head: bytes, size: int) -> bool:
    """Whether the file starts as safetensors does (an 8-byte length, then JSON); an error when its header
    claims more bytes than the file has."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    if header_len < 2:
        return False
    if header_len > size - 8:
        raise CheckpointError(
            f"{path} is a damaged safetensors file: its header claims {header_len:,} bytes, the whole file has {size:,}"
        )
    return True


def _read_safetensors(path: Path) -> CheckpointContents:
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state_dict = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is a damaged or truncated safetensors file: {os_reason(err)}") from None
    config = metadata.get(CONFIG_METADATA_KEY)
    if config is None:
        return CheckpointContents(_unwrap(state_dict), None, "safetensors")
    try:
        config = json.loads(config)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: its model configuration metadata is not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: its model configuration metadata is not a JSON object")
    return CheckpointContents(state_dict, config, "cliplab")


def _read_zip(path: Path) -> CheckpointContents:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if is_torchscript_archive(names):
                return CheckpointContents(read_torchscript_state_dict(archive), None, "torchscript")
    except zipfile.BadZipFile as err:
        raise CheckpointError(f"{path} is a truncated or damaged zip archive ({err})") from None
    except (KeyError, EOFError, pickle.UnpicklingError, RuntimeError) as err:
        raise CheckpointError(f"{path} is a damaged TorchScript archive ({type(err).__name__}: {err})") from None
    return _read_torch_file(path)


def _read_torch_file(path: Path) -> CheckpointContents:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} holds Python objects beyond tensors and plain containers; cliplab loads only with "
            f"weights_only=True and never unpickles anything else ({str(err).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is a damaged or truncated PyTorch file ({str(err).splitlines()[0]})") from None
    return CheckpointContents(_unwrap(obj, path), None, "torch")


def _unwrap(obj: Any, path: Path | None = None) -> dict[str, torch.Tensor]:
    """The model state dict inside a training checkpoint, without `module.`/`_orig_mod.` prefixes."""
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _NESTED_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path or 'checkpoint'} holds a {type(obj).__name__}, not a state dict")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    for prefix in _KEY_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state

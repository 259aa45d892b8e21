"""Read the weights out of a TorchScript archive (OpenAI's released `.pt` files) without running it.

A TorchScript archive is a zip holding `data.pkl` (the module tree as a pickle), tensor bytes
under `data/`, and the model's code under `code/`. `torch.jit.load` would compile and run that
code, and `torch.load(weights_only=True)` refuses such archives, so this module unpickles
`data.pkl` with an allowlist: tensor rebuilds, storage types and OrderedDict. Every
`__torch__.*` class becomes an inert record of its attributes; any other global is refused.
No code from the file is ever executed.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from typing import Any

import torch

from ..errors import CheckpointError

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _ScriptObject:
    """Stands in for a scripted module: keeps the attribute dict that BUILD hands it."""

    def __setstate__(self, state: Any) -> None:
        self.attributes = state if isinstance(state, dict) else {}


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
    return storage.as_strided(size, stride, offset)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.prefix = prefix

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__"):
            return _ScriptObject
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise CheckpointError(
            f"TorchScript archive references {module}.{name}, which a weights file never needs; refusing it"
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], torch.dtype)):
            raise CheckpointError(f"unexpected persistent id in TorchScript archive: {pid!r}")
        _, dtype, key, _location, numel = pid
        raw = self.archive.read(f"{self.prefix}data/{key}")
        if len(raw) != numel * dtype.itemsize:
            raise CheckpointError(f"tensor data {key} holds {len(raw)} bytes, expected {numel * dtype.itemsize}")
        return torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)


def is_torchscript_archive(names: list[str]) -> bool:
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def read_torchscript_state_dict(archive: zipfile.ZipFile) -> dict[str, torch.Tensor]:
    """Every tensor attribute of the archived module tree, keyed like `Module.state_dict()`."""
    names = archive.namelist()
    data_pkl = next((n for n in names if n.endswith("data.pkl") and n.count("/") == 1), None)
    if data_pkl is None:
        raise CheckpointError("TorchScript archive has no data.pkl")
    prefix = data_pkl[: -len("data.pkl")]
    byteorder = f"{prefix}byteorder"
    if byteorder in names and archive.read(byteorder).strip() != b"little":
        raise CheckpointError("big-endian TorchScript archives are not supported")
    root = _RestrictedUnpickler(archive.read(data_pkl), archive, prefix).load()
    state: dict[str, torch.Tensor] = {}
    _flatten(root, "", state)
    if not state:
        raise CheckpointError("TorchScript archive holds no tensors")
    return state


def _flatten(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    for name, value in getattr(obj, "attributes", {}).items():
        if isinstance(value, torch.Tensor):
            if name != "attn_mask":  # OpenAI's causal mask is an attribute, not a parameter
                out[prefix + name] = value
        elif isinstance(value, _ScriptObject):
            _flatten(value, f"{prefix}{name}.", out)

"""Optional dependencies, imported where a feature needs them, with one message when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtra


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """`import module`, or a `MissingExtra` saying that `purpose` needs the extra `extra`."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = module.split(".")[0]
        raise MissingExtra(f"{purpose} needs {package}: pip install 'cliplab[{extra}]' ({err})") from err

"""Optional dependencies, imported where a feature needs them, with one message when they are missing:
the install command for the extra that brings them, in the form that works for how cliplab was installed."""

from __future__ import annotations

import functools
import importlib
import json
from importlib import metadata
from types import ModuleType
from urllib.parse import unquote, urlparse

from .errors import MissingExtra


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """`import module`, or a `MissingExtra` saying that `purpose` needs the extra `extra`."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = module.split(".")[0]
        raise MissingExtra(f"{purpose} needs {package}: {install_command(extra)} ({err})") from err


def install_command(extra: str) -> str:
    """`pip install 'cliplab[extra]'`, or `pip install -e '/path/to/checkout[extra]'` for an editable install."""
    checkout = _editable_checkout()
    return f"pip install -e '{checkout}[{extra}]'" if checkout else f"pip install 'cliplab[{extra}]'"


@functools.cache
def _editable_checkout() -> str | None:
    try:
        record = metadata.distribution("cliplab").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    try:
        info = json.loads(record or "{}")
    except json.JSONDecodeError:
        return None
    if not info.get("dir_info", {}).get("editable") or not info.get("url", "").startswith("file://"):
        return None
    return unquote(urlparse(info["url"]).path)

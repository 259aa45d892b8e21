"""The search service (`cliplab serve`): needs the `serve` extra, pip install 'cliplab[serve]'.

`create_app` is imported when first used, so `Limits` and `Batching` can be read (by `cliplab serve --help`)
without the web framework or PyTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .batching import Batching
from .limits import Limits

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["Batching", "Limits", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

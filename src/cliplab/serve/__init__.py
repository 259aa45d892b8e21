"""The search service (`cliplab serve`): needs the `serve` extra, pip install 'cliplab[serve]'."""

from .app import Limits, create_app

__all__ = ["Limits", "create_app"]

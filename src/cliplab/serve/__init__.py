"""The search service (`cliplab serve`): needs the `serve` extra, pip install 'cliplab[serve]'."""

from .app import create_app
from .limits import Limits

__all__ = ["Limits", "create_app"]

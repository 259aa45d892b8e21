"""`cliplab.load`: a model and its preprocessing from a checkpoint path or a model name.

cliplab never downloads. A model name resolves to a file you already have: cliplab's cache
(`$CLIPLAB_CACHE`, default `~/.cache/cliplab`), then OpenAI's `clip` cache (`~/.cache/clip`),
looked up under the file names OpenAI publishes (`ViT-B-32.pt`, `ViT-L-14-336px.pt`, ...).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .checkpoints import read_checkpoint, save_checkpoint, save_hf_folder
from .errors import CheckpointError, ConfigError
from .files import cache_dir
from .models import CLIPConfig, Model, build_model
from .models.config import architecture_name, available_models, display_name
from .towers import TowersConfig, build_towers_model, is_towers_config
from .transforms import Transform, model_transform

OPENAI_URL = "https://openaipublic.azureedge.net/clip/models"


def architecture(model: Model) -> str:
    """A readable name of a model's architecture ('ViT-B/32', 'tiny-RN@32px', 'timm:resnet50+bert')."""
    config = model.config
    return config.name if isinstance(config, TowersConfig) else architecture_name(config)


def cache_dirs() -> list[Path]:
    return [cache_dir(), Path.home() / ".cache" / "clip"]


def _released_file_names(name: str) -> list[str]:
    """File names looked for in the caches: OpenAI's release name, as .pt or as .safetensors."""
    openai = display_name(name).replace("/", "-").replace("@", "-")  # "ViT-L/14@336px" -> "ViT-L-14-336px"
    return [f"{openai}.pt", f"{openai}.safetensors"]


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """The file or folder a path or a model name refers to, or a clear error saying where to put it."""
    path = Path(name_or_path).expanduser()
    if path.exists() or path.is_symlink():  # a broken link is the reader's to explain
        return path
    try:
        names = _released_file_names(str(name_or_path))
    except ConfigError:
        raise CheckpointError(
            f"no checkpoint at {name_or_path}: no such file or folder, and not a model name "
            f"({', '.join(available_models())})"
        ) from None
    for folder in cache_dirs():
        for file_name in names:
            if (folder / file_name).is_file():
                return folder / file_name
    where = " or ".join(str(d) for d in cache_dirs())
    raise CheckpointError(
        f"no weights for {display_name(str(name_or_path))} found in {where}: OpenAI publishes them as {names[0]} "
        f"(openai/CLIP's clip/clip.py lists the address, under {OPENAI_URL}); cliplab does not download, so put "
        "the file in one of those folders, or give its path instead of the name"
    )


def resolve_device(name: str | torch.device = "auto", index: int = 0) -> torch.device:
    """A device from its name: "auto" is a GPU when there is one (the `index`-th), else the CPU."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda", index) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:1, ...") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but this machine has no CUDA GPU")
        if device.index is None:
            device = torch.device("cuda", index)
    return device


def load_model(
    name_or_path: str | os.PathLike,
    device: str | torch.device = "cpu",
    image_size: int | None = None,
    activation: str = "quick_gelu",
) -> Model:
    """A model from any checkpoint cliplab reads, in eval mode and float32, on `device` ("auto": a GPU
    when there is one).

    `image_size` runs it at another resolution (positional embedding interpolated).
    `activation` matters only for checkpoints without a configuration (OpenAI, OpenCLIP files):
    their released weights use QuickGELU; OpenCLIP's non-`quickgelu` models need "gelu".
    """
    path = resolve_checkpoint(name_or_path)
    contents = read_checkpoint(path)
    towers = is_towers_config(contents.config)  # towers from other libraries (cliplab.towers)
    try:
        config = (TowersConfig if towers else CLIPConfig).from_dict(contents.config) if contents.config else None
    except ConfigError as err:
        raise CheckpointError(f"{path}: the model configuration it holds is not usable: {err}") from None
    try:
        if towers:
            model = build_towers_model(contents.state_dict, config, image_size)
        else:
            model = build_model(contents.state_dict, image_size=image_size, activation=activation, config=config)
    except (CheckpointError, ConfigError) as err:  # the tensors do not fit, or the size asked for
        raise type(err)(f"{path}: {err}") from None
    return model.float().to(resolve_device(device)).eval()


def load(
    name_or_path: str | os.PathLike,
    device: str | torch.device = "cpu",
    image_size: int | None = None,
    activation: str = "quick_gelu",
) -> tuple[Model, Transform]:
    """OpenAI's `clip.load`: (model, preprocess) from a checkpoint path or a model name."""
    model = load_model(name_or_path, device=device, image_size=image_size, activation=activation)
    return model, model_transform(model)


def convert(src: str | os.PathLike, dst: str | os.PathLike, to: str = "cliplab", image_size: int | None = None) -> Path:
    """Rewrite a checkpoint as cliplab's safetensors file (`to="cliplab"`) or a Hugging Face folder (`to="hf"`)."""
    if to not in ("cliplab", "hf"):
        raise ConfigError(f"unknown target format {to!r}; choose 'cliplab' or 'hf'")
    model = load_model(src, image_size=image_size)
    if to == "cliplab":
        save_checkpoint(model, dst)
    else:
        save_hf_folder(model, dst)
    return Path(dst)

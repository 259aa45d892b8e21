"""`cliplab.load`: a model and its preprocessing from a checkpoint path, a model name, an OpenCLIP
pretrained tag or a Hugging Face Hub id (see `cliplab.pretrained.locate`).

A released model's name ("ViT-B/32") is looked up in cliplab's cache (`$CLIPLAB_CACHE`, default
`~/.cache/cliplab`) and OpenAI's `clip` cache (`~/.cache/clip`) under the file names OpenAI publishes
(`ViT-B-32.pt`, ...), and downloaded from OpenAI's URL, verified, when it is in neither.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .checkpoints import read_checkpoint, save_checkpoint, save_hf_folder
from .errors import CheckpointError, ConfigError
from .export import save_onnx
from .models import CLIPConfig, Model, build_model
from .models.config import architecture_name
from .pretrained import Located, locate
from .towers import TowersConfig, build_towers_model, is_towers_config
from .transforms import Transform, model_transform


def architecture(model: Model) -> str:
    """A readable name of a model's architecture ('ViT-B/32', 'tiny-RN@32px', 'timm:resnet50+bert')."""
    config = model.config
    return config.name if isinstance(config, TowersConfig) else architecture_name(config)


def resolve_checkpoint(name_or_path: str | os.PathLike, pretrained: str | None = None) -> Path:
    """The file or folder a path, a model name, a tag or a Hub id refers to (downloaded if need be)."""
    return locate(name_or_path, pretrained).path


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
    pretrained: str | None = None,
) -> Model:
    """A model from any checkpoint cliplab reads, in eval mode and float32, on `device` ("auto": a GPU
    when there is one).

    `name_or_path`: a file or folder, a released model's name ("ViT-B/32"), an OpenCLIP name with a
    `pretrained` tag ("ViT-B-32", pretrained="laion2b_s34b_b79k", or "ViT-B-32:laion2b_s34b_b79k"),
    "hf-hub:ORG/REPO" (an OpenCLIP repository) or "ORG/REPO" (a transformers CLIPModel repository).
    `image_size` runs it at another resolution (positional embedding interpolated).
    `activation` matters only for files without a configuration whose name says nothing either
    (OpenCLIP files by path): released OpenAI weights use QuickGELU, OpenCLIP's non-`quickgelu` ones "gelu".
    """
    return model_from(locate(name_or_path, pretrained), device, image_size, activation)


def model_from(
    located: Located, device: str | torch.device = "cpu", image_size: int | None = None, activation: str = "quick_gelu"
) -> Model:
    """`load_model` of what `cliplab.pretrained.locate` found."""
    path = located.path
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
            config = config or located.config  # a file's own configuration, else what its name says
            model = build_model(contents.state_dict, image_size=image_size, activation=activation, config=config)
    except (CheckpointError, ConfigError) as err:  # the tensors do not fit, or the size asked for
        raise type(err)(f"{path}: {err}") from None
    return model.float().to(resolve_device(device)).eval()


def load(
    name_or_path: str | os.PathLike,
    device: str | torch.device = "cpu",
    image_size: int | None = None,
    activation: str = "quick_gelu",
    pretrained: str | None = None,
) -> tuple[Model, Transform]:
    """OpenAI's `clip.load`: (model, preprocess) from a checkpoint path, a model name, a tag or a Hub id."""
    model = load_model(name_or_path, device=device, image_size=image_size, activation=activation, pretrained=pretrained)
    return model, model_transform(model)


CONVERT_TARGETS = ("cliplab", "hf", "onnx")


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    to: str = "cliplab",
    image_size: int | None = None,
    pretrained: str | None = None,
) -> Path:
    """Rewrite a checkpoint as cliplab's safetensors file (`to="cliplab"`), a Hugging Face folder (`to="hf"`)
    or ONNX graphs of the two towers (`to="onnx"`, see `cliplab.export.save_onnx`)."""
    if to not in CONVERT_TARGETS:
        raise ConfigError(f"unknown target format {to!r}; choose from {', '.join(CONVERT_TARGETS)}")
    model = load_model(src, image_size=image_size, pretrained=pretrained)
    if to == "cliplab":
        save_checkpoint(model, dst)
    elif to == "hf":
        save_hf_folder(model, dst)
    else:
        save_onnx(model, dst)
    return Path(dst)

"""OpenCLIP's model configurations (`open_clip_config.json` on the Hub, `model_configs/*.json` in the
package) as cliplab configurations, for the architectures cliplab builds: OpenAI's layout, which
OpenCLIP keeps for its plain ViTs and ModifiedResNets. Any other feature (a timm or Hugging Face
tower, layer scale, attentional pooling, another MLP ratio, SigLIP's or CoCa's heads) is named in
a clear error rather than built wrongly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigError
from ..files import read_regular
from ..models.config import CLIPConfig, TextConfig, VisionConfig
from .files import CheckpointContents, read_checkpoint_file

OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

# OpenCLIP options cliplab's towers have only at these values (OpenCLIP's defaults).
_VISION_FIXED = {
    "mlp_ratio": 4.0,
    "ls_init_value": None,
    "patch_dropout": None,  # a training option: any value builds the same model
    "attentional_pool": False,
    "no_ln_pre": False,
    "pos_embed_type": "learnable",
    "final_ln_after_pool": False,
    "pool_type": "tok",
    "output_tokens": False,
    "timm_model_name": None,
    "act_kwargs": None,
    "norm_kwargs": None,
    "input_patchnorm": False,
    "global_average_pool": False,
}
_TEXT_FIXED = {
    "mlp_ratio": 4.0,
    "ls_init_value": None,
    "hf_model_name": None,
    "pad_id": 0,
    "embed_cls": False,
    "no_causal_mask": False,
    "pool_type": "argmax",
    "proj_bias": False,
    "proj_type": "linear",
    "output_tokens": False,
    "act_kwargs": None,
    "norm_kwargs": None,
    "tokenizer_kwargs": None,
}
_TOP_IGNORED = {"embed_dim", "quick_gelu", "vision_cfg", "text_cfg", "custom_text", "cast_dtype", "init_logit_scale"}


def from_open_clip_config(
    model_cfg: Mapping[str, Any], preprocess_cfg: Mapping[str, Any] | None = None, quick_gelu: bool | None = None
) -> CLIPConfig:
    """The CLIPConfig of an OpenCLIP model configuration (and its preprocessing), or a CheckpointError
    naming what cliplab does not build. `quick_gelu` overrides the configuration's activation (OpenCLIP's
    pretrained tags say which one their weights were trained with)."""
    if not isinstance(model_cfg, Mapping):
        raise CheckpointError("an OpenCLIP model configuration must be a JSON object")
    vision, text = model_cfg.get("vision_cfg") or {}, model_cfg.get("text_cfg") or {}
    problems = [f"{key}={model_cfg[key]!r}" for key in model_cfg if key not in _TOP_IGNORED]
    for where, tower, fixed, known in (
        ("vision", vision, _VISION_FIXED, {"image_size", "layers", "width", "patch_size", "head_width"}),
        ("text", text, _TEXT_FIXED, {"context_length", "vocab_size", "width", "heads", "layers"}),
    ):
        for key, value in tower.items():
            if key in known or (key in fixed and (value == fixed[key] or key == "patch_dropout")):
                continue
            problems.append(f"{where}_cfg.{key}={value!r}")
    if problems:
        raise CheckpointError(
            f"cliplab does not build this OpenCLIP architecture ({', '.join(problems[:4])}): it builds OpenAI's "
            "layout, plain ViTs and ModifiedResNets with OpenAI's text tower"
        )
    if quick_gelu is None:
        quick_gelu = bool(model_cfg.get("quick_gelu", False))
    try:
        layers = vision.get("layers", 12)
        config = CLIPConfig(
            embed_dim=model_cfg["embed_dim"],
            vision=VisionConfig(
                image_size=_square(vision.get("image_size", 224)),
                layers=tuple(layers) if isinstance(layers, (list, tuple)) else layers,
                width=vision.get("width", 768),
                patch_size=None if isinstance(layers, (list, tuple)) else vision.get("patch_size", 16),
                head_width=vision.get("head_width", 64),
            ),
            text=TextConfig(
                context_length=text.get("context_length", 77),
                vocab_size=text.get("vocab_size", 49408),
                width=text.get("width", 512),
                heads=text.get("heads", 8),
                layers=text.get("layers", 12),
            ),
            activation="quick_gelu" if quick_gelu else "gelu",
            **preprocess_options(preprocess_cfg or {}),
        )
    except KeyError as missing:
        raise CheckpointError(f"an OpenCLIP model configuration without {missing}") from None
    except ConfigError as err:
        raise CheckpointError(f"an OpenCLIP model configuration cliplab cannot build: {err}") from None
    return config


def preprocess_options(preprocess_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """CLIPConfig's image_mean, image_std and image_resize from OpenCLIP's preprocessing configuration."""
    options: dict[str, Any] = {}
    if preprocess_cfg.get("mean") is not None:
        options["image_mean"] = tuple(preprocess_cfg["mean"])
    if preprocess_cfg.get("std") is not None:
        options["image_std"] = tuple(preprocess_cfg["std"])
    resize = preprocess_cfg.get("resize_mode") or "shortest"
    interpolation = preprocess_cfg.get("interpolation") or "bicubic"
    if resize not in ("shortest", "squash") or interpolation != "bicubic":
        raise CheckpointError(
            f"cliplab does not implement this preprocessing (resize_mode {resize!r}, interpolation "
            f"{interpolation!r}): it resizes bicubically, shortest side or squash"
        )
    options["image_resize"] = resize
    return options


def _square(size: Any) -> int:
    if isinstance(size, (list, tuple)):
        if len(size) != 2 or size[0] != size[1]:
            raise CheckpointError(f"cliplab builds square image towers, not {size}")
        return size[0]
    return size


def is_open_clip_folder(folder: Path) -> bool:
    return (Path(folder) / OPEN_CLIP_CONFIG).is_file()


def read_open_clip_folder(folder: Path) -> CheckpointContents:
    """An OpenCLIP model folder (a Hub repository's files: `open_clip_config.json` and the weights)."""
    folder = Path(folder)
    config_file = folder / OPEN_CLIP_CONFIG
    try:
        raw = json.loads(read_regular(config_file, 2**20))
        model_cfg, preprocess_cfg = raw["model_cfg"], raw.get("preprocess_cfg")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{config_file} is not an OpenCLIP configuration ({type(err).__name__}: {err})") from None
    try:
        config = from_open_clip_config(model_cfg, preprocess_cfg)
    except CheckpointError as err:
        raise CheckpointError(f"{config_file}: {err}") from None
    for name in OPEN_CLIP_WEIGHTS:
        if (folder / name).is_file():
            return CheckpointContents(read_checkpoint_file(folder / name).state_dict, config.to_dict(), "openclip")
    raise CheckpointError(f"{folder} has {OPEN_CLIP_CONFIG} but no {' or '.join(OPEN_CLIP_WEIGHTS)}")

"""Model configurations: small frozen dataclasses, read from the JSON files in `configs/`.

A configuration is plain data; `CLIP(config)` builds the model. Named configurations live in
`configs/*.json` under OpenCLIP's file spellings (`ViT-B-32.json`) and carry OpenAI's display
name (`"ViT-B/32"`), so both spellings resolve to the same file.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from ..errors import ConfigError
from ..transforms import OPENAI_MEAN, OPENAI_STD

ACTIVATIONS = ("quick_gelu", "gelu")
RESIZE_MODES = ("shortest", "squash")


@dataclass(frozen=True)
class VisionConfig:
    """The image tower. `layers` is an int for a ViT, four stage depths for a ModifiedResNet."""

    image_size: int = 224
    layers: int | tuple[int, int, int, int] = 12
    width: int = 768
    patch_size: int | None = 32
    head_width: int = 64

    def __post_init__(self) -> None:
        if isinstance(self.layers, list):
            object.__setattr__(self, "layers", tuple(self.layers))
        _check_sizes(self, "vision", "image_size", "width", "head_width")
        for depth in self.layers if self.is_resnet else (self.layers,):
            _check_size("vision", "layers", depth, MAX_LAYERS)
        if self.patch_size is not None:
            _check_sizes(self, "vision", "patch_size")
        if (self.width * 32 if self.is_resnet else self.width) % self.head_width:
            raise ConfigError(f"vision width {self.width} is not a whole number of {self.head_width}-wide heads")
        if self.is_resnet:
            if len(self.layers) != 4:
                raise ConfigError(f"a ModifiedResNet needs 4 stage depths, got {self.layers}")
            if self.image_size % 32:
                raise ConfigError(f"a ModifiedResNet needs an image size divisible by 32, got {self.image_size}")
        else:
            if not self.patch_size:
                raise ConfigError("a VisionTransformer needs a patch_size")
            if self.image_size % self.patch_size:
                raise ConfigError(f"image size {self.image_size} is not a multiple of patch size {self.patch_size}")

    @property
    def is_resnet(self) -> bool:
        return isinstance(self.layers, tuple)

    @property
    def heads(self) -> int:
        # The ResNet's attention pool works on width * 32 channels (the last stage's output).
        return (self.width * 32 if self.is_resnet else self.width) // self.head_width


@dataclass(frozen=True)
class TextConfig:
    """The causal text transformer."""

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12

    def __post_init__(self) -> None:
        _check_sizes(self, "text", "context_length", "vocab_size", "width", "heads")
        _check_size("text", "layers", self.layers, MAX_LAYERS)
        if self.width % self.heads:
            raise ConfigError(f"text width {self.width} is not divisible by its {self.heads} heads")


# Far above any CLIP (ViT-bigG: width 1,664, 48 layers; vocabularies ~250k), low enough that a
# configuration cannot ask for a model no machine holds before its weights are compared with it.
MAX_SIZE = {"vocab_size": 2**22, "image_size": 8192, "context_length": 8192}
MAX_DIM = 2**16
MAX_LAYERS = 1024


def _check_sizes(config: Any, what: str, *names: str) -> None:
    for name in names:
        _check_size(what, name, getattr(config, name), MAX_SIZE.get(name, MAX_DIM))


def _check_size(what: str, name: str, value: Any, most: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ConfigError(f"{what} {name} must be a whole number from 1 to {most:,}, got {value!r}")


@dataclass(frozen=True)
class CLIPConfig:
    embed_dim: int = 512
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    activation: str = "quick_gelu"
    # A learned bias added to every logit (SigLIP's sigmoid loss learns one): logits = exp(t) cos + b.
    logit_bias: bool = False
    # The preprocessing the weights were trained with: the normalisation (OpenAI's for nearly every
    # CLIP), and how an image becomes a square: "shortest" resizes the shorter side and crops the
    # centre (OpenAI), "squash" resizes both sides (Apple's DFN5B models).
    image_mean: tuple[float, float, float] = OPENAI_MEAN
    image_std: tuple[float, float, float] = OPENAI_STD
    image_resize: str = "shortest"

    def __post_init__(self) -> None:
        if isinstance(self.vision, dict):
            object.__setattr__(self, "vision", _from_fields(VisionConfig, self.vision, "vision"))
        if isinstance(self.text, dict):
            object.__setattr__(self, "text", _from_fields(TextConfig, self.text, "text"))
        _check_sizes(self, "model", "embed_dim")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; choose from {ACTIVATIONS}")
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            try:
                value = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                value = ()
            if len(value) != 3 or not all(math.isfinite(v) for v in value) or (name == "image_std" and min(value) <= 0):
                raise ConfigError(f"{name} must be three finite numbers (std above 0), got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        if self.image_resize not in RESIZE_MODES:
            raise ConfigError(f"unknown image_resize {self.image_resize!r}; choose from {RESIZE_MODES}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CLIPConfig:
        data = {k: v for k, v in data.items() if k != "name"}
        return _from_fields(cls, data, "model")

    def with_overrides(self, **overrides: Any) -> CLIPConfig:
        """A copy with fields replaced: top-level fields, `image_size`, `context_length`,
        or whole sub-dicts `vision={...}` / `text={...}` holding only the fields to change."""
        top: dict[str, Any] = {}
        vision = dict(overrides.pop("vision", None) or {})
        text = dict(overrides.pop("text", None) or {})
        if "image_size" in overrides:
            vision["image_size"] = overrides.pop("image_size")
        if "context_length" in overrides:
            text["context_length"] = overrides.pop("context_length")
        for key, value in overrides.items():
            if key not in {f.name for f in dataclasses.fields(self)}:
                raise TypeError(f"unknown model option {key!r}")
            top[key] = value
        return dataclasses.replace(
            self,
            vision=_from_fields(VisionConfig, {**dataclasses.asdict(self.vision), **vision}, "vision"),
            text=_from_fields(TextConfig, {**dataclasses.asdict(self.text), **text}, "text"),
            **top,
        )


def _from_fields(cls: type, data: dict[str, Any], what: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"a {what} configuration must be a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown {what} configuration keys {sorted(unknown)}; expected some of {sorted(names)}")
    return cls(**data)


# ---------------------------------------------------------------------------------------------
# Named configurations


def canonical_name(name: str) -> str:
    """'ViT-L/14@336px', 'vit-l-14-336', 'ViT-L-14-336-quickgelu' -> 'vit-l-14-336'."""
    key = name.strip().lower().replace("/", "-").replace("@", "-")
    if key.endswith("px"):
        key = key[:-2]
    return key.removesuffix("-quickgelu")


@cache
def _named_configs() -> dict[str, tuple[str, dict[str, Any]]]:
    """canonical key -> (display name, raw dict) for every JSON file in `configs/`."""
    table: dict[str, tuple[str, dict[str, Any]]] = {}
    for entry in sorted(resources.files(__package__).joinpath("configs").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            raw = json.loads(entry.read_text())
            display = raw.get("name", entry.name[: -len(".json")])
            table[canonical_name(entry.name[: -len(".json")])] = (display, raw)
            table.setdefault(canonical_name(display), (display, raw))
    return table


def available_models() -> list[str]:
    """Names of the built-in architectures: the paper's nine under OpenAI's names, then small ones."""
    seen: dict[str, dict[str, Any]] = {}
    for display, raw in _named_configs().values():
        seen.setdefault(display, raw)
    return sorted(seen, key=lambda n: (seen[n].get("order", 1000), n))


def display_name(name: str) -> str:
    """OpenAI's spelling of a built-in model name: 'vit-b-32-quickgelu' -> 'ViT-B/32'."""
    entry = _named_configs().get(canonical_name(name))
    if entry is None:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    return entry[0]


def get_config(name: str, **overrides: Any) -> CLIPConfig:
    """The named configuration (OpenAI or OpenCLIP spelling), with optional field overrides.

    An OpenCLIP name ending in `-quickgelu` selects QuickGELU, which is already the default here;
    pass `activation="gelu"` for OpenCLIP's plain-GELU variants.
    """
    raw = _named_configs()[canonical_name(display_name(name))][1]
    config = CLIPConfig.from_dict({k: v for k, v in raw.items() if k != "order"})
    return config.with_overrides(**overrides) if overrides else config


def architecture_name(config: CLIPConfig) -> str:
    """A readable name of the architecture: the built-in one it is ('ViT-B/32', 'tiny-RN@32px'), else
    a description ('ViT/16 12x768@224px', 'RN 3-4-6-3 w64@224px')."""
    for display in available_models():
        named = get_config(display)
        if (named.embed_dim, named.vision, named.text) == (config.embed_dim, config.vision, config.text):
            return display
    vision = config.vision
    if vision.is_resnet:
        return f"RN {'-'.join(map(str, vision.layers))} w{vision.width}@{vision.image_size}px"
    return f"ViT/{vision.patch_size} {vision.layers}x{vision.width}@{vision.image_size}px"

"""The released weights cliplab knows by name: `registry.json`, written by `tools/pretrained_registry.py`.

An entry is an architecture (OpenCLIP's spelling, "ViT-B-32"), a tag ("openai", "laion2b_s34b_b79k"),
where the file comes from (OpenAI's URL with its SHA-256, or a Hugging Face Hub repository), the
activation and preprocessing the weights were trained with, their licence and the zero-shot ImageNet
top-1 their authors report.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from ..errors import ConfigError
from ..models.config import CLIPConfig, canonical_name


@dataclass(frozen=True)
class Pretrained:
    architecture: str  # OpenCLIP's name: "ViT-B-32", "RN50x4", "ViT-H-14"
    tag: str  # "openai", "laion2b_s34b_b79k", ...
    activation: str  # what the weights were trained with: "quick_gelu" or "gelu"
    source: str  # "openai" (OpenAI's URL) or "hf-hub" (a Hugging Face Hub repository)
    file: str  # the file's name: at OpenAI's URL, or in the Hub repository
    config: dict[str, Any] = field(repr=False)  # the architecture's shapes (CLIPConfig fields)
    sha256: str | None = None  # published with the file (OpenAI's URLs hold it)
    repo: str | None = None  # the Hub repository
    licence: str = ""
    imagenet_top1: float | None = None  # zero-shot, as the weights' authors report it
    image_mean: tuple[float, float, float] | None = None  # when not OpenAI's
    image_std: tuple[float, float, float] | None = None
    image_resize: str | None = None  # when not "shortest"

    @property
    def name(self) -> str:
        """How to ask for it in one string: "ViT-B-32:laion2b_s34b_b79k"."""
        return f"{self.architecture}:{self.tag}"

    def clip_config(self) -> CLIPConfig:
        """The whole configuration: shapes, activation and preprocessing."""
        options = {"activation": self.activation}
        for key in ("image_mean", "image_std", "image_resize"):
            if getattr(self, key) is not None:
                options[key] = getattr(self, key)
        return CLIPConfig.from_dict({**self.config, **options})


@functools.cache
def _registry() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("registry.json").read_text())


def pretrained_weights() -> list[Pretrained]:
    """Every entry of the registry, by architecture, OpenAI's first."""
    registry = _registry()
    entries = []
    for raw in registry["pretrained"]:
        raw = dict(raw)
        for key in ("image_mean", "image_std"):
            if key in raw:
                raw[key] = tuple(raw[key])
        entries.append(Pretrained(config=registry["architectures"][raw["architecture"]], **raw))
    return entries


def find(architecture: str, tag: str) -> Pretrained:
    """The entry for an architecture (any spelling: "ViT-B/32", "ViT-B-32", "vit-b-32-quickgelu") and tag,
    or a ConfigError listing what there is."""
    entries = pretrained_weights()
    key = canonical_name(architecture)
    same = [e for e in entries if canonical_name(e.architecture) == key]
    if not same:
        known = sorted({e.architecture for e in entries})
        raise ConfigError(
            f"no released weights for {architecture!r} that cliplab builds; architectures with weights: "
            f"{', '.join(known)} (`cliplab models --pretrained` lists them all)"
        )
    for entry in same:
        if entry.tag == tag.strip().lower():
            return entry
    raise ConfigError(f"{architecture} has no pretrained tag {tag!r}; its tags: {', '.join(e.tag for e in same)}")


def openai_release(name: str) -> Pretrained | None:
    """OpenAI's release for a model name ("ViT-B/32", "RN50x4", "ViT-L-14-336"), or None."""
    key = canonical_name(name)
    for entry in pretrained_weights():
        if entry.source == "openai" and canonical_name(entry.architecture) == key:
            return entry
    return None

"""CLIP models: configurations, the two towers, and construction from names or state dicts."""

from .build import (
    build_model,
    build_towers_model,
    create_model,
    infer_config,
    load_weights,
    resize_positional_embedding,
)
from .clip import CLIP
from .config import CLIPConfig, TextConfig, VisionConfig, available_models, display_name, get_config
from .layers import ATTENTION_FUNCTIONS, set_attention
from .towers_clip import TowersCLIP, TowersConfig, is_towers_config

__all__ = [
    "ATTENTION_FUNCTIONS",
    "CLIP",
    "CLIPConfig",
    "TextConfig",
    "VisionConfig",
    "TowersCLIP",
    "TowersConfig",
    "available_models",
    "build_model",
    "build_towers_model",
    "create_model",
    "display_name",
    "get_config",
    "infer_config",
    "is_towers_config",
    "load_weights",
    "resize_positional_embedding",
    "set_attention",
]

"""CLIP models: configurations, the two towers, construction from names or state dicts, and the
`Model` protocol every model family satisfies."""

from .build import build_model, create_model, infer_config, resize_positional_embedding
from .clip import CLIP
from .config import CLIPConfig, TextConfig, VisionConfig, available_models, display_name, get_config
from .fingerprint import model_fingerprint
from .layers import ATTENTION_FUNCTIONS, set_attention
from .protocol import MAX_LOGIT_SCALE, Model, add_logit_bias, logit_scale, logits, model_device
from .weights import load_weights

__all__ = [
    "ATTENTION_FUNCTIONS",
    "CLIP",
    "CLIPConfig",
    "MAX_LOGIT_SCALE",
    "Model",
    "TextConfig",
    "VisionConfig",
    "add_logit_bias",
    "available_models",
    "build_model",
    "create_model",
    "display_name",
    "get_config",
    "infer_config",
    "load_weights",
    "logit_scale",
    "logits",
    "model_device",
    "model_fingerprint",
    "resize_positional_embedding",
    "set_attention",
]

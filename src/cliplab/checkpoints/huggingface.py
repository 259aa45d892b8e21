"""Converting between cliplab's (OpenAI's) layout and Hugging Face `transformers`' CLIPModel.

A Hugging Face folder is `config.json` plus `model.safetensors` (or shards, or the older
`pytorch_model.bin`); `transformers.CLIPModel.from_pretrained(folder)` loads what `save_hf_folder`
writes. Only Vision Transformer models have a CLIPModel layout.

The two layouts differ in names, in attention (HF keeps q, k and v projections apart where
OpenAI packs them into `in_proj_weight`), and in the projections (HF's are `nn.Linear` weights,
the transpose of OpenAI's matrices).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError
from ..files import read_regular, save_safetensors, write_json, write_text
from ..models.config import CLIPConfig, TextConfig, VisionConfig
from ..tokenizer.bpe import EOT_TEXT, SOT_TEXT, default_tokenizer
from .files import CheckpointContents, read_checkpoint_file

MAX_CONFIG_BYTES = 16 * 2**20  # config.json and shard indexes are a few kilobytes

HF_LOGIT_SCALE_INIT = 2.6592  # ln(1 / 0.07), as transformers writes it
_TOWERS = (
    ("text_model.encoder.layers.", "transformer.resblocks."),
    ("vision_model.encoder.layers.", "visual.transformer.resblocks."),
)
_BLOCK_RENAMES = (
    ("self_attn.out_proj.", "attn.out_proj."),
    ("layer_norm1.", "ln_1."),
    ("layer_norm2.", "ln_2."),
    ("mlp.fc1.", "mlp.c_fc."),
    ("mlp.fc2.", "mlp.c_proj."),
)
_RENAMES = (
    ("text_model.embeddings.token_embedding.weight", "token_embedding.weight"),
    ("text_model.embeddings.position_embedding.weight", "positional_embedding"),
    ("text_model.final_layer_norm.", "ln_final."),
    ("vision_model.embeddings.class_embedding", "visual.class_embedding"),
    ("vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight"),
    ("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding"),
    ("vision_model.pre_layrnorm.", "visual.ln_pre."),  # sic: transformers' spelling
    ("vision_model.post_layernorm.", "visual.ln_post."),
    ("logit_scale", "logit_scale"),
)
_TRANSPOSED = (("text_projection.weight", "text_projection"), ("visual_projection.weight", "visual.proj"))


# ---------------------------------------------------------------------------------------------
# state dicts


def to_hf_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI layout -> transformers' CLIPModel layout."""
    if "visual.proj" not in state_dict:
        raise ConfigError("only Vision Transformer models have a Hugging Face CLIPModel layout (this one is a ResNet)")
    out: dict[str, torch.Tensor] = {}
    for hf_key, key in _TRANSPOSED:
        out[hf_key] = state_dict[key].t().contiguous()
    for key, value in state_dict.items():
        if any(key == k for _, k in _TRANSPOSED):
            continue
        for hf_prefix, prefix in _TOWERS:
            if key.startswith(prefix):
                index, rest = key[len(prefix) :].split(".", 1)
                head = f"{hf_prefix}{index}."
                if rest.startswith("attn.in_proj_"):
                    kind = rest[len("attn.in_proj_") :]  # weight or bias
                    for name, part in zip("qkv", value.chunk(3, dim=0)):
                        out[f"{head}self_attn.{name}_proj.{kind}"] = part.contiguous()
                else:
                    out[head + _rename(rest, _BLOCK_RENAMES, reverse=True)] = value
                break
        else:
            out[_rename(key, _RENAMES, reverse=True)] = value
    return out


def from_hf_state_dict(hf_state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' CLIPModel layout -> OpenAI layout."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for hf_key, value in hf_state_dict.items():
        if hf_key.endswith("position_ids"):  # a buffer older transformers versions saved
            continue
        transposed = dict(_TRANSPOSED).get(hf_key)
        if transposed:
            out[transposed] = value.t().contiguous()
            continue
        for hf_prefix, prefix in _TOWERS:
            if hf_key.startswith(hf_prefix):
                index, rest = hf_key[len(hf_prefix) :].split(".", 1)
                head = f"{prefix}{index}."
                match = re.fullmatch(r"self_attn\.([qkv])_proj\.(weight|bias)", rest)
                if match:
                    qkv.setdefault((head, match.group(2)), {})[match.group(1)] = value
                else:
                    out[head + _rename(rest, _BLOCK_RENAMES)] = value
                break
        else:
            out[_rename(hf_key, _RENAMES)] = value
    for (head, kind), parts in qkv.items():
        if set(parts) != set("qkv"):
            raise CheckpointError(
                f"Hugging Face checkpoint lacks {sorted(set('qkv') - set(parts))} projections in {head}"
            )
        out[f"{head}attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def _rename(key: str, table: tuple[tuple[str, str], ...], reverse: bool = False) -> str:
    for hf, ours in table:
        src, dst = (ours, hf) if reverse else (hf, ours)
        if key.startswith(src):
            return dst + key[len(src) :]
    return key  # unknown keys pass through, so strict loading names them


# ---------------------------------------------------------------------------------------------
# configurations


def to_hf_config(config: CLIPConfig) -> dict[str, Any]:
    vision, text = config.vision, config.text
    if vision.is_resnet:
        raise ConfigError("only Vision Transformer models have a Hugging Face CLIPModel layout (this one is a ResNet)")
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": config.embed_dim,
        "logit_scale_init_value": HF_LOGIT_SCALE_INIT,
        "torch_dtype": "float32",
        "text_config": {
            "model_type": "clip_text_model",
            "vocab_size": text.vocab_size,
            "hidden_size": text.width,
            "intermediate_size": 4 * text.width,
            "num_attention_heads": text.heads,
            "num_hidden_layers": text.layers,
            "max_position_embeddings": text.context_length,
            "hidden_act": config.activation,
            "layer_norm_eps": 1e-5,
            "projection_dim": config.embed_dim,
            "bos_token_id": 49406,
            "eos_token_id": 49407,
            "pad_token_id": 1,
        },
        "vision_config": {
            "model_type": "clip_vision_model",
            "hidden_size": vision.width,
            "intermediate_size": 4 * vision.width,
            "num_attention_heads": vision.heads,
            "num_hidden_layers": vision.layers,
            "image_size": vision.image_size,
            "patch_size": vision.patch_size,
            "num_channels": 3,
            "hidden_act": config.activation,
            "layer_norm_eps": 1e-5,
            "projection_dim": config.embed_dim,
        },
    }


def from_hf_config(hf: Mapping[str, Any], **preprocessing: Any) -> CLIPConfig:
    text, vision = hf.get("text_config") or {}, hf.get("vision_config") or {}
    if hf.get("model_type") not in (None, "clip") or not text or not vision:
        raise CheckpointError(f"not a CLIPModel configuration (model_type {hf.get('model_type')!r})")
    acts = {text.get("hidden_act", "quick_gelu"), vision.get("hidden_act", "quick_gelu")}
    if len(acts) != 1 or not acts <= {"quick_gelu", "gelu"}:
        raise CheckpointError(
            f"unsupported activations {sorted(acts)}: cliplab supports quick_gelu or gelu in both towers"
        )
    for name, tower in (("text", text), ("vision", vision)):
        if tower.get("intermediate_size", 4 * tower["hidden_size"]) != 4 * tower["hidden_size"]:
            raise CheckpointError(
                f"unsupported {name} MLP width {tower['intermediate_size']}: cliplab uses 4 x hidden size"
            )
        if tower.get("layer_norm_eps", 1e-5) != 1e-5:
            raise CheckpointError(f"unsupported {name} layer_norm_eps {tower['layer_norm_eps']}: cliplab uses 1e-5")
    width = vision["hidden_size"]
    return CLIPConfig(
        embed_dim=hf.get("projection_dim", 512),
        vision=VisionConfig(
            image_size=vision.get("image_size", 224),
            layers=vision["num_hidden_layers"],
            width=width,
            patch_size=vision.get("patch_size", 32),
            head_width=width // vision["num_attention_heads"],
        ),
        text=TextConfig(
            context_length=text.get("max_position_embeddings", 77),
            vocab_size=text.get("vocab_size", 49408),
            width=text["hidden_size"],
            heads=text["num_attention_heads"],
            layers=text["num_hidden_layers"],
        ),
        activation=acts.pop(),
        **preprocessing,
    )


# ---------------------------------------------------------------------------------------------
# folders


def save_hf_folder(model: torch.nn.Module, folder: str | Path) -> Path:
    """Write a folder that transformers loads whole: `config.json` and `model.safetensors` for
    `CLIPModel.from_pretrained`, the tokenizer's files and `preprocessor_config.json` for
    `CLIPProcessor.from_pretrained`."""
    folder = Path(folder)
    if getattr(model.config, "architecture", None) == "towers":
        raise ConfigError(
            "a CLIP of towers from other libraries has no transformers CLIPModel form; use save_checkpoint"
        )
    if getattr(model, "logit_bias", None) is not None:
        raise ConfigError(
            "this model has a learned logit bias (it was trained with the sigmoid loss), which transformers' "
            "CLIPModel has no place for: its scores could not be reproduced there; keep cliplab's format"
        )
    config = to_hf_config(model.config)
    save_safetensors(to_hf_state_dict(model.state_dict()), folder / "model.safetensors", {"format": "pt"})
    write_json(folder / "config.json", config, indent=2)
    write_hf_processor_files(model.config, folder)
    return folder


def write_hf_processor_files(config: CLIPConfig, folder: Path) -> None:
    """What `transformers.CLIPProcessor.from_pretrained(folder)` reads: the tokenizer's vocabulary and merges
    (OpenAI's BPE, as cliplab tokenizes) and `preprocessor_config.json` (cliplab's preprocessing)."""
    tokenizer = default_tokenizer()
    write_json(folder / "vocab.json", tokenizer.encoder)
    merges = sorted(tokenizer.bpe_ranks, key=tokenizer.bpe_ranks.get)
    write_text(folder / "merges.txt", "#version: 0.2\n" + "\n".join(" ".join(pair) for pair in merges) + "\n")
    special = {"bos_token": SOT_TEXT, "eos_token": EOT_TEXT, "unk_token": EOT_TEXT, "pad_token": EOT_TEXT}
    write_json(folder / "special_tokens_map.json", special, indent=2)
    write_json(
        folder / "tokenizer_config.json",
        {
            **special,
            "tokenizer_class": "CLIPTokenizer",
            "model_max_length": config.text.context_length,
            "do_lower_case": True,
            "errors": "replace",
            "add_prefix_space": False,
        },
        indent=2,
    )
    size = config.vision.image_size
    squash = config.image_resize == "squash"
    write_json(
        folder / "preprocessor_config.json",
        {
            "image_processor_type": "CLIPImageProcessor",
            "processor_class": "CLIPProcessor",
            "do_convert_rgb": True,
            "do_resize": True,
            "size": {"height": size, "width": size} if squash else {"shortest_edge": size},
            "resample": 3,  # PIL's bicubic
            "do_center_crop": not squash,
            "crop_size": {"height": size, "width": size},
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "image_mean": list(config.image_mean),
            "image_std": list(config.image_std),
        },
        indent=2,
    )


def preprocessing_from_hf(folder: Path) -> dict[str, Any]:
    """CLIPConfig's image_mean, image_std and image_resize from a folder's `preprocessor_config.json`, if any."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return {}
    try:
        raw = json.loads(read_regular(path, MAX_CONFIG_BYTES))
        options = {}
        if raw.get("image_mean") is not None:
            options["image_mean"] = tuple(raw["image_mean"])
        if raw.get("image_std") is not None:
            options["image_std"] = tuple(raw["image_std"])
        if raw.get("do_center_crop") is False and isinstance(raw.get("size"), dict) and "height" in raw["size"]:
            options["image_resize"] = "squash"
        return options
    except (OSError, ValueError, TypeError, AttributeError) as err:
        raise CheckpointError(
            f"{path} is not a usable preprocessor configuration ({type(err).__name__}: {err})"
        ) from None


def read_hf_folder(folder: Path) -> CheckpointContents:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{folder} is a folder without config.json, so not a Hugging Face model folder")
    try:
        hf_config = json.loads(read_regular(config_file, MAX_CONFIG_BYTES))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{config_file} cannot be read as JSON ({type(err).__name__}: {err})") from None
    try:
        config = from_hf_config(hf_config, **preprocessing_from_hf(folder))
    except CheckpointError as err:
        raise CheckpointError(f"{config_file}: {err}") from None
    except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError) as err:  # a field missing or mistyped
        raise CheckpointError(
            f"{config_file} is not a usable CLIPModel configuration ({type(err).__name__}: {err})"
        ) from None
    hf_state: dict[str, torch.Tensor] = {}
    for weights in _weight_files(folder):
        hf_state.update(read_checkpoint_file(weights).state_dict)
    return CheckpointContents(from_hf_state_dict(hf_state), config.to_dict(), "huggingface")


def _weight_files(folder: Path) -> list[Path]:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(read_regular(index, MAX_CONFIG_BYTES))["weight_map"].values()))
                if not all(isinstance(s, str) and s and Path(s).name == s for s in shards):
                    raise ValueError("its weight_map must name files in this folder")
            except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as err:
                raise CheckpointError(f"{index} is not a valid shard index ({type(err).__name__}: {err})") from None
            return [folder / shard for shard in shards]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return [folder / name]
    raise CheckpointError(f"{folder} has config.json but no model.safetensors or pytorch_model.bin")

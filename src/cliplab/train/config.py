"""A training run's configuration: one flat dataclass, read from YAML or JSON plus `key=value` overrides.

Flat on purpose: every option is one `key=value` away on the command line, and the resolved
configuration saved with the run (`config.yaml`) is complete and readable.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from ..errors import ConfigError
from ..extras import require
from ..files import read_user_text, write_text


@dataclass
class TrainConfig:
    # Model
    model: str = "tiny-ViT/8@64px"  # a built-in architecture (`cliplab models`)
    # Fine-tuning: start from this checkpoint (cliplab, OpenAI, OpenCLIP or a Hugging Face folder);
    # its architecture replaces `model`. Not the same as --resume, which continues a run of this config.
    init_from: str | None = None
    image_size: int | None = None  # train at this resolution (ViT positional embeddings resized)
    # Towers from other libraries (pip install 'cliplab[towers]'): set both to build a TowersCLIP
    image_tower: str | None = None  # "timm:efficientnet_lite0", "torchvision:resnet50", ...
    image_tower_weights: str | None = None  # a local file of its pretrained weights
    image_mean: list[float] | None = None  # its input normalisation (default: ImageNet's)
    image_std: list[float] | None = None
    text_tower: str | None = None  # a local Hugging Face encoder folder (AutoModel.from_pretrained)
    text_pooling: str = "mean"  # "mean" over tokens or "cls"
    embed_dim: int = 512  # towers: width of the shared embedding space
    projection: str = "linear"  # towers: "linear" or "mlp" heads joining them
    image_head: bool = True  # towers: false = the image features are the shared space (LiT), no image head
    # Data: a caption table (.csv/.tsv/.jsonl/.parquet), a folder or brace pattern of WebDataset shards,
    # or "synthetic" (the built-in world of coloured shapes; samples_per_epoch scenes, default 20,000)
    data: str = ""
    image_column: str = "image"
    caption_column: str = "caption"
    image_root: str | None = None
    split: str | None = None  # rows of the table's `split` column to train on
    samples_per_epoch: int | None = None  # shards: read from their sizes.json when absent; synthetic: 20,000
    resample: bool = False  # shards only: draw shards with replacement (an endless stream)
    workers: int = 2
    # Validation: a caption table (often the same file with another split); empty for none
    val_data: str = ""
    val_split: str | None = None
    val_every: int = 0  # steps; 0 means once per epoch
    # Schedule and optimiser (the paper's AdamW settings)
    batch_size: int = 64  # global: split evenly over the processes
    micro_batch_size: int | None = None  # gradient caching: encode at most this many pairs at once
    epochs: int = 1
    max_steps: int | None = None  # stop (and end the schedule) after this many steps
    lr: float = 5e-4
    min_lr: float = 0.0
    warmup_steps: int = 100
    weight_decay: float = 0.2
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    grad_clip: float | None = None  # max global gradient norm
    loss: str = "clip"  # "clip" (the paper's softmax loss) or "siglip"
    local_loss: bool = True  # with several processes: each scores only its rows (same gradients)
    # Model options for training
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA, float32 elsewhere), "fp32" or "bf16"
    grad_checkpointing: bool = False
    compile: bool = False
    lock_image: bool = False  # LiT: freeze the image tower
    lock_image_unlocked: int = 0  # ... but leave its last N groups trainable (blocks; the head is one)
    lock_text: bool = False
    lock_text_unlocked: int = 0
    patch_dropout: float = 0.0  # FLIP: share of image patches dropped in training (ViT only)
    max_bad_steps: int = 5  # stop after this many consecutive steps with a non-finite loss
    # Run
    out: str = "runs/clip"
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    log_every: int = 10
    checkpoint_every: int = 500  # steps; a checkpoint is also written at the end
    keep_checkpoints: int = 3
    tensorboard: bool = True
    plots: bool = True
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept with the run

    def __post_init__(self) -> None:
        if not self.data:
            raise ConfigError("no training data: set `data` to a caption table or a folder of shards")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {self.batch_size}")
        if self.micro_batch_size is not None and not 1 <= self.micro_batch_size <= self.batch_size:
            raise ConfigError(f"micro_batch_size must be between 1 and batch_size, got {self.micro_batch_size}")
        if self.loss not in ("clip", "siglip"):
            raise ConfigError(f"loss must be 'clip' or 'siglip', got {self.loss!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        if not 0 <= self.patch_dropout < 1:
            raise ConfigError(f"patch_dropout must be in [0, 1), got {self.patch_dropout}")
        if bool(self.image_tower) != bool(self.text_tower):
            raise ConfigError("towers from other libraries need both image_tower and text_tower")
        if self.image_tower and self.init_from:
            raise ConfigError("init_from and image_tower/text_tower both say where the weights come from; choose one")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; options are {sorted(known)}")
        hints = get_type_hints(cls)
        return cls(**{key: _coerce(key, value, hints[key]) for key, value in values.items()})


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """YAML already types most values; this turns ints into floats and checks the obvious mistakes."""
    origin = get_origin(hint)
    allowed = get_args(hint) if origin in (Union, UnionType) else (origin or hint,)
    if value is None:
        if type(None) not in allowed:
            raise ConfigError(f"option {key!r} cannot be empty")
        return None
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if float in allowed and isinstance(value, str):  # YAML 1.1 reads `1e-3` (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    plain = [get_origin(t) or t for t in allowed if t is not type(None)]  # list[float] -> list
    plain = [t for t in plain if isinstance(t, type)]
    if plain and not isinstance(value, tuple(plain)):
        names = " or ".join(t.__name__ for t in plain)
        raise ConfigError(f"option {key!r} must be {names}, got {value!r}")
    return value


def parse_value(text: str) -> Any:
    """A command-line value typed as YAML would: `3` int, `1e-3` float, `true` bool, `null` None."""
    for number in (int, float):  # before YAML, which reads `1e-3` as a string
        try:
            return number(text)
        except ValueError:
            pass
    try:
        import yaml
    except ImportError:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return yaml.safe_load(text)


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    text = read_user_text(path, "run configuration")
    if path.suffix.lower() == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from None
    else:
        yaml = require("yaml", "train", f"reading {path}")
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a run configuration is a mapping of option: value")
    return values


def load_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> TrainConfig:
    """The configuration in `path` (YAML or JSON), with `key=value` overrides applied on top."""
    values = read_config_file(path) if path else {}
    if isinstance(overrides, dict):
        values.update(overrides)
    else:
        for item in overrides or []:
            key, sep, text = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"override {item!r} is not key=value")
            values[key.strip()] = parse_value(text)
    return TrainConfig.from_dict(values)


def save_config(config: TrainConfig, path: str | Path) -> None:
    try:
        import yaml

        text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    except ImportError:
        text = json.dumps(config.to_dict(), indent=2)
    write_text(path, text)

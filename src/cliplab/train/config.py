"""A training run's configuration: one flat dataclass, read from YAML or JSON plus `key=value` overrides.

Flat on purpose: every option is one `key=value` away on the command line, and the resolved
configuration saved with the run (`config.yaml`) is complete and readable.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import math
import textwrap
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from ..errors import ConfigError
from ..extras import require
from ..files import read_user_text, write_text


@dataclass
class TrainConfig:
    """Every option of a training run. Each field's comment is its one-line help in `cliplab train --help`."""

    # Model
    model: str = "tiny-ViT/8@64px"  # a built-in architecture (`cliplab models`)
    # Not the same as --resume, which continues an interrupted run of this configuration.
    init_from: str | None = None  # fine-tune: start from this checkpoint; its architecture replaces `model`
    image_size: int | None = None  # train at this resolution (ViT positional embeddings resized)
    # Towers from other libraries (pip install 'cliplab[towers]'): set both to build a TowersCLIP
    image_tower: str | None = None  # towers: an image backbone, "timm:efficientnet_lite0", "torchvision:resnet50", ...
    image_tower_weights: str | None = None  # towers: a local file of the image backbone's pretrained weights
    image_mean: list[float] | None = None  # towers: the image backbone's input mean (default: ImageNet's)
    image_std: list[float] | None = None  # towers: the image backbone's input std (default: ImageNet's)
    text_tower: str | None = None  # towers: a local Hugging Face text encoder folder
    text_pooling: str = "mean"  # towers: pool the text encoder by "mean" over tokens or "cls"
    embed_dim: int = 512  # towers: width of the shared embedding space
    projection: str = "linear"  # towers: "linear" or "mlp" heads joining them
    image_head: bool = True  # towers: false = the image features are the shared space (LiT), no image head
    # Data
    data: str = ""  # a caption table (.csv/.tsv/.jsonl/.parquet), WebDataset shards, or "synthetic"
    image_column: str = "image"  # a table's column of image paths
    caption_column: str = "caption"  # a table's column of captions
    image_root: str | None = None  # where a table's relative image paths start (default: beside the table)
    split: str | None = None  # train on the rows whose `split` column has this value
    samples_per_epoch: int | None = None  # an epoch's samples (default: all rows; shards' sizes.json; 20,000 synthetic)
    resample: bool = False  # shards: draw shards with replacement (an endless stream)
    workers: int = 2  # image-decoding processes
    augment: bool = True  # random resized crops (tables, folders); false: the evaluation crop (LiT's setting)
    crop_scale: list[float] = field(default_factory=lambda: [0.9, 1.0])  # augment: crops' share of the area
    cache_features: bool = True  # compute a fully locked tower once per image/caption and reuse it (see README)
    # Validation
    val_data: str = ""  # a captioned source to validate on (default: `data`, when val_split is set)
    val_split: str | None = None  # validate on the rows whose `split` column has this value
    val_every: int = 0  # validate every this many steps; 0 means once per epoch
    # Schedule and optimiser (the paper's AdamW settings)
    batch_size: int = 64  # image-caption pairs encoded together in a step (global: split over the processes)
    micro_batch_size: int | None = None  # gradient caching: encode at most this many pairs at once
    epochs: int = 1  # passes over the data
    max_steps: int | None = None  # stop (and end the schedule) after this many steps
    lr: float = 5e-4  # peak learning rate
    min_lr: float = 0.0  # learning rate at the end of the cosine decay
    warmup_steps: int = 100  # steps of linear warm-up to `lr`
    weight_decay: float = 0.2  # AdamW's decoupled weight decay, on matrices only
    beta1: float = 0.9  # AdamW's beta1
    beta2: float = 0.98  # AdamW's beta2
    eps: float = 1e-6  # AdamW's epsilon
    grad_clip: float | None = None  # clip the global gradient norm to this
    loss: str = "clip"  # "clip" (the paper's softmax loss) or "siglip" (sigmoid, with a learned bias)
    temperature_init: float | None = None  # the starting exp(t) that scales cosines (default: 1/0.07; SigLIP's 10)
    ema: float = 0.0  # keep a moving average of the weights with this decay (e.g. 0.995): validated and saved
    local_loss: bool = True  # with several processes: each scores only its rows (same gradients)
    # Model options for training
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA, float32 elsewhere), "fp32" or "bf16"
    grad_checkpointing: bool = False  # recompute activations in the backward pass to save memory
    compile: bool = False  # run the model through torch.compile
    lock_image: bool = False  # LiT: freeze the image tower
    lock_image_unlocked: int = 0  # ... but leave its last N groups trainable (blocks; the head is one)
    lock_text: bool = False  # freeze the text tower
    lock_text_unlocked: int = 0  # ... but leave its last N layers trainable
    patch_dropout: float = 0.0  # FLIP: share of image patches dropped in training (ViT only)
    max_bad_steps: int = 5  # stop after this many consecutive steps with a non-finite loss
    # Run
    out: str = "runs/clip"  # the folder for the run: configuration, metrics, checkpoints, the final model
    seed: int = 0  # seed of the initial weights, the data order and the augmentations
    device: str = "auto"  # where the model runs: auto (a GPU when there is one), cpu, cuda, cuda:1, ...
    log_every: int = 10  # steps between metric records
    checkpoint_every: int = 500  # steps between checkpoints; one is also written at the end
    keep_checkpoints: int = 3  # how many of the newest checkpoints to keep
    tensorboard: bool = True  # write TensorBoard event files
    plots: bool = True  # draw plots/training.png at the end
    progress: bool = True  # show a progress bar
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
        self._check_ranges()

    def _check_ranges(self) -> None:
        """Every number in its range before any work starts (a run must not fail, or train on garbage, later).
        All the problems are said at once, so one run of the command shows every option to fix."""
        problems = []
        at_least = {"epochs": 1, "checkpoint_every": 1, "log_every": 1, "max_bad_steps": 1, "embed_dim": 1}
        at_least |= {"warmup_steps": 0, "val_every": 0, "workers": 0, "keep_checkpoints": 0}
        at_least |= {"lock_image_unlocked": 0, "lock_text_unlocked": 0}
        optional = {"max_steps": 1, "samples_per_epoch": 1, "image_size": 1}
        for name, low in {**at_least, **optional}.items():
            value = getattr(self, name)
            if value is not None and value < low:
                problems.append(f"{name} must be at least {low}, got {value}")
        for name in ("lr", "eps", "grad_clip"):  # positive and finite
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a positive finite number, got {value}")
        for name in ("min_lr", "weight_decay"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                problems.append(f"{name} must be a finite number of at least 0, got {getattr(self, name)}")
        if self.min_lr > self.lr:
            problems.append(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in self.crop_scale)
        if not (len(self.crop_scale) == 2 and numbers and 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1):
            problems.append(f"crop_scale must be [low, high] with 0 < low <= high <= 1, got {self.crop_scale}")
        from ..models import MAX_LOGIT_SCALE  # here, not at the top: `cliplab train --help` loads no torch

        if self.temperature_init is not None and not 1 <= self.temperature_init <= MAX_LOGIT_SCALE:
            problems.append(f"temperature_init must be between 1 and {MAX_LOGIT_SCALE:g}, got {self.temperature_init}")
        for name in ("beta1", "beta2", "ema"):
            if not 0 <= getattr(self, name) < 1:
                problems.append(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if problems:
            raise ConfigError("; ".join(problems))

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


def option_docs(cls: type = TrainConfig) -> dict[str, str]:
    """Each field's one-line help: the comment at the end of its line in the class's source."""
    source = textwrap.dedent(inspect.getsource(cls))
    (body,) = ast.parse(source).body
    lines = {node.lineno: node.target.id for node in body.body if isinstance(node, ast.AnnAssign)}
    docs = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT and token.start[0] in lines:
            docs[lines[token.start[0]]] = token.string.lstrip("#").strip()
    return docs


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


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> TrainConfig:
    """The configuration in `path` (YAML or JSON), with `key=value` overrides applied on top, then `options`
    (already typed values, as the command line's `--batch-size 64` gives them)."""
    values = read_config_file(path) if path else {}
    if isinstance(overrides, dict):
        values.update(overrides)
    else:
        for item in overrides or []:
            key, sep, text = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"override {item!r} is not key=value")
            values[key.strip()] = parse_value(text)
    values.update(options or {})
    return TrainConfig.from_dict(values)


def save_config(config: TrainConfig, path: str | Path) -> None:
    try:
        import yaml

        text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    except ImportError:
        text = json.dumps(config.to_dict(), indent=2)
    write_text(path, text)

"""Training: configuration, optimiser and schedule, the training loop and its checkpoints.

`cliplab.train.train(load_config("run.yaml"))` is what `cliplab train --config run.yaml` runs. Names
are imported when first used, so reading a configuration does not load PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "TrainConfig": ".config",
    "load_config": ".config",
    "TrainingDiverged": "..errors",
    "build_optimizer": ".optim",
    "clamp_logit_scale_": ".optim",
    "learning_rate": ".optim",
    "parameter_groups": ".optim",
    "set_learning_rate": ".optim",
    "TrainResult": ".trainer",
    "Trainer": ".trainer",
    "train": ".trainer",
}
__all__ = [
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "build_optimizer",
    "clamp_logit_scale_",
    "learning_rate",
    "load_config",
    "parameter_groups",
    "set_learning_rate",
    "train",
]

if TYPE_CHECKING:
    from ..errors import TrainingDiverged
    from .config import TrainConfig, load_config
    from .optim import build_optimizer, clamp_logit_scale_, learning_rate, parameter_groups, set_learning_rate
    from .trainer import Trainer, TrainResult, train


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value

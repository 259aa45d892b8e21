"""Training: configuration, optimiser and schedule, the training loop and its checkpoints.

`cliplab.train.train(load_config("run.yaml"))` is what `cliplab train --config run.yaml` runs.
"""

from ..errors import TrainingDiverged
from .config import TrainConfig, load_config
from .optim import build_optimizer, clamp_logit_scale_, learning_rate, parameter_groups, set_learning_rate
from .trainer import Trainer, TrainResult, train

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

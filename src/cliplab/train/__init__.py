"""Training: optimiser and schedule (the trainer itself builds on these)."""

from .optim import build_optimizer, clamp_logit_scale_, learning_rate, parameter_groups, set_learning_rate

__all__ = ["build_optimizer", "clamp_logit_scale_", "learning_rate", "parameter_groups", "set_learning_rate"]

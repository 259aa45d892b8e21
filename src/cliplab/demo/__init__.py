"""`cliplab demo`: contrastive pre-training on the built-in synthetic world, then zero-shot transfer to
colour-shape pairs the model never saw, retrieval, and a left/right test, in about five minutes on a CPU."""

from .evaluate import DemoEvaluation, evaluate_world
from .run import DemoResult, run_demo

__all__ = ["DemoEvaluation", "DemoResult", "evaluate_world", "run_demo"]

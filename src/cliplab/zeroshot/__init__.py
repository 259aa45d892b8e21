"""Zero-shot classification: class names and prompt templates become a linear classifier."""

from .classifier import PromptCache, build_classifier, classify, probabilities
from .templates import (
    DEFAULT_TEMPLATES,
    check_labels,
    check_templates,
    fill,
    get_classnames,
    get_templates,
    template_sets,
)

__all__ = [
    "DEFAULT_TEMPLATES",
    "PromptCache",
    "build_classifier",
    "check_labels",
    "check_templates",
    "classify",
    "fill",
    "get_classnames",
    "get_templates",
    "probabilities",
    "template_sets",
]

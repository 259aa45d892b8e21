"""Zero-shot classification: class names and prompt templates become a linear classifier."""

from .classifier import build_classifier, classify

__all__ = ["build_classifier", "classify"]

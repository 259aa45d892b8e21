"""Evaluation: classification and retrieval metrics (zero-shot tasks and the paper's others build on these)."""

from .classification import ClassificationReport, classification_report
from .retrieval import retrieval_metrics, retrieval_ranks

__all__ = ["ClassificationReport", "classification_report", "retrieval_metrics", "retrieval_ranks"]

"""Evaluation: retrieval metrics (zero-shot classification and the paper's other tasks build on these)."""

from .retrieval import retrieval_metrics, retrieval_ranks

__all__ = ["retrieval_metrics", "retrieval_ranks"]

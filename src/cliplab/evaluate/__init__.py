"""Evaluation as a library: one function per task of the paper, each taking a model and a source
(`cliplab.data.open_source`) and returning a result that writes CLIP_benchmark's JSON.

    from cliplab.data import open_source
    from cliplab.evaluate import zero_shot_classification
    result = zero_shot_classification(model, open_source("imagenette/"), templates)
    result.report.top1, result.write("results/", model="my-model")

Tasks: `zero_shot_classification`, `zero_shot_retrieval`, `linear_probe`, `few_shot`, `robustness`,
`overlap`, `dense_segmentation`, `dense_detection`. Accuracies and recalls are fractions everywhere (percent only on screen). Beneath them,
metrics of scores and features: `classification_report`, `retrieval_metrics`, `fit_linear_probe`,
`fit_few_shot`, `find_overlap`.
"""

from .classification import ClassificationReport, classification_report
from .dense import Detection, Segmentation, dense_detection, dense_segmentation
from .features import FeatureOptions, ImageFeatures, image_features
from .few_shot import FewShot, few_shot, fit_few_shot
from .linear_probe import LinearProbe, ProbeFit, fit_linear_probe, linear_probe, stratified_split
from .overlap import OverlapResult, find_overlap, overlap
from .results import TaskResult, write_result
from .retrieval import retrieval_metrics, retrieval_ranks
from .robustness import Robustness, ShiftResult, robustness, score_shifts
from .shifts import SHIFTS, shifted
from .zeroshot_classification import DEFAULT_TEMPLATES, ZeroShotClassification, zero_shot_classification
from .zeroshot_retrieval import ZeroShotRetrieval, zero_shot_retrieval

TASKS = {
    "zeroshot_classification": zero_shot_classification,
    "zeroshot_retrieval": zero_shot_retrieval,
    "linear_probe": linear_probe,
    "few_shot": few_shot,
    "robustness": robustness,
    "overlap": overlap,
}

__all__ = [
    "Detection",
    "Segmentation",
    "dense_detection",
    "dense_segmentation",
    "DEFAULT_TEMPLATES",
    "SHIFTS",
    "TASKS",
    "ClassificationReport",
    "FeatureOptions",
    "FewShot",
    "ImageFeatures",
    "LinearProbe",
    "OverlapResult",
    "ProbeFit",
    "Robustness",
    "ShiftResult",
    "TaskResult",
    "ZeroShotClassification",
    "ZeroShotRetrieval",
    "classification_report",
    "few_shot",
    "find_overlap",
    "fit_few_shot",
    "fit_linear_probe",
    "image_features",
    "linear_probe",
    "overlap",
    "retrieval_metrics",
    "retrieval_ranks",
    "robustness",
    "score_shifts",
    "shifted",
    "stratified_split",
    "write_result",
    "zero_shot_classification",
    "zero_shot_retrieval",
]

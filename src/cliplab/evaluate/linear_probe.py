"""Linear probes on frozen image features, as OpenAI ran them: scikit-learn's L2-regularised logistic
regression (lbfgs, up to 1,000 iterations), the inverse regularisation strength C chosen on a
validation split carved from the training features, then refit on all of them.

OpenAI swept C over 10^-6 .. 10^6 with a parametric binary search; here a grid of 13 powers of ten
is refined by a second grid between the best value's neighbours, which finds the same optimum to
within a factor of about 1.5.

`linear_probe(model, test, train)` is the task: features of both sources (or, with one source, of
its two stratified halves), C chosen, the test set scored. `fit_linear_probe` does the same on
features already computed. scikit-learn comes with the `eval` extra: pip install 'cliplab[eval]'.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..data import Source
from ..errors import SourceError
from ..extras import require
from ..models import Model
from .classification import ClassificationReport, classification_report
from .features import FeatureOptions, ImageFeatures, image_features
from .results import TaskResult, classification_metrics, skipped_list

COARSE_CS = tuple(10.0**p for p in range(-6, 7))


def _logistic_regression(c: float, max_iter: int, seed: int):
    linear_model = require("sklearn.linear_model", "eval", "linear probes")
    return linear_model.LogisticRegression(C=c, max_iter=max_iter, random_state=seed)


@dataclass
class ProbeFit:
    report: ClassificationReport
    c: float  # the chosen inverse regularisation strength
    validation: dict[float, float]  # C -> validation top-1, for every C tried
    classifier: object = None  # the regression refit on all training features (scikit-learn's)

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """(N, classes) scores of other features (a shifted test set, say) from the fitted probe."""
        probabilities = self.classifier.predict_proba(features.double().numpy())
        return scores_over_all_classes(self.classifier, probabilities, len(self.report.classes))


def stratified_split(labels: torch.Tensor, share: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held) indices: `share` of each class held out (at least one where a class has two or more)."""
    generator = torch.Generator().manual_seed(seed)
    kept, held = [], []
    for label in labels.unique().tolist():
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        count = min(len(members) - 1, max(1, round(share * len(members)))) if len(members) > 1 else 0
        held.append(members[:count])
        kept.append(members[count:])
    return torch.cat(kept).sort().values, torch.cat(held).sort().values


def fit_and_score(train_x, train_y, test_x, c: float, max_iter: int = 1000, seed: int = 0):
    """(the fitted regression, probabilities of `test_x` over the classes present in training)."""
    model = _logistic_regression(c, max_iter, seed).fit(train_x, train_y)
    return model, model.predict_proba(test_x)


def scores_over_all_classes(model, probabilities: np.ndarray, classes: int) -> torch.Tensor:
    """Scores over all classes (a class absent from training scores below every present one)."""
    full = np.full((len(probabilities), classes), -1.0)
    full[:, model.classes_] = probabilities
    return torch.from_numpy(full)


def fit_linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    classes: Sequence[str],
    cs: Sequence[float] | None = None,
    validation_share: float = 0.2,
    max_iter: int = 1000,
    seed: int = 0,
) -> ProbeFit:
    """Choose C on a stratified validation split of the training features, refit on all, score the test set."""
    x, y = train_features.double().numpy(), train_labels.numpy()
    fit_idx, val_idx = stratified_split(train_labels, validation_share, seed)
    if len(val_idx) == 0:
        raise SourceError("too few training examples to carve a validation split; pass cs=[C] to fix C")

    def validation_top1(c: float) -> float:
        with warnings.catch_warnings():  # the sweep's extreme C values stop short of convergence, by design
            warnings.filterwarnings("ignore", message=".*(failed to converge|max_iter).*")
            model, probabilities = fit_and_score(x[fit_idx], y[fit_idx], x[val_idx], c, max_iter, seed)
        predicted = model.classes_[probabilities.argmax(axis=1)]
        return float((predicted == y[val_idx]).mean())

    tried: dict[float, float] = {}
    grid = list(cs) if cs is not None else list(COARSE_CS)
    for c in grid:
        tried[c] = validation_top1(c)

    def best() -> float:  # the best validation accuracy; among ties the strongest regularisation, the safer
        return min(c for c in tried if tried[c] == max(tried.values()))

    if cs is None:  # refine between the best power of ten's neighbours
        for c in np.logspace(np.log10(best()) - 1, np.log10(best()) + 1, 9).tolist():
            if c not in tried:
                tried[c] = validation_top1(c)
    chosen = best()
    model, probabilities = fit_and_score(x, y, test_features.double().numpy(), chosen, max_iter, seed)
    report = classification_report(scores_over_all_classes(model, probabilities, len(classes)), test_labels, classes)
    return ProbeFit(report, chosen, dict(sorted(tried.items())), model)


@dataclass
class LinearProbe(TaskResult):
    task = "linear_probe"
    dataset: str
    fit: ProbeFit
    train: ImageFeatures
    test: ImageFeatures  # positions (`kept`) among `test_source`'s items
    test_source: Source  # the test images: the source, or its held-out half
    how: str  # where the training features came from, in words

    @property
    def report(self) -> ClassificationReport:
        return self.fit.report

    def metrics(self) -> dict[str, float]:
        return classification_metrics(self.fit.report)

    def details(self) -> dict:
        return {
            "c": self.fit.c,
            "validation_top1": {f"{c:.6g}": v for c, v in self.fit.validation.items()},
            "train": self.how,
            "images": self.fit.report.count,
            "confusion_matrix": self.fit.report.confusion.tolist(),
            "skipped": skipped_list(self.test, self.test_source.problems),
        }


def linear_probe(
    model: Model,
    test: Source,
    train: Source | None = None,
    cs: Sequence[float] | None = None,
    seed: int = 0,
    options: FeatureOptions = FeatureOptions(),
) -> LinearProbe:
    """A probe fitted on the image features of `train` and scored on `test`. Without `train`, a stratified
    half of `test` trains and the other half tests (`test_source` is then that half)."""
    test = test.labelled()
    test_features = image_features(model, test, options)
    if train is not None:
        train = train.labelled()
        if train.classes != test.classes:
            raise SourceError(
                f"the training set has classes {train.classes[:5]}..., {test.name} has {test.classes[:5]}..."
            )
        train_features, how = image_features(model, train, options), f"trained on {train.name}"
    else:
        train_rows, test_rows = stratified_split(test_features.labels, 0.5, seed=seed)
        train_features = test_features.rows(train_rows)
        held = test_features.rows(test_rows)
        test = test.subset(held.kept.tolist(), name=test.name)
        test_features = ImageFeatures(held.features, held.labels, torch.arange(len(held.kept)), held.skipped)
        how = f"trained on a stratified half of {test.name} ({len(train_rows)} images), tested on the other"
    fit = fit_linear_probe(
        train_features.features,
        train_features.labels,
        test_features.features,
        test_features.labels,
        test.classes,
        cs,
        seed=seed,
    )
    return LinearProbe(test.name, fit, train_features, test_features, test, how)

"""Linear probes on frozen image features, as OpenAI ran them: scikit-learn's L2-regularised logistic
regression (lbfgs, up to 1,000 iterations), the inverse regularisation strength C chosen on a
validation split carved from the training features, then refit on all of them.

OpenAI swept C over 10^-6 .. 10^6 with a parametric binary search; here a grid of 13 powers of ten
is refined by a second grid between the best value's neighbours, which finds the same optimum to
within a factor of about 1.5.

scikit-learn comes with the `eval` extra: pip install 'cliplab[eval]'.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .classification import ClassificationReport, classification_report

COARSE_CS = tuple(10.0**p for p in range(-6, 7))


def _logistic_regression(c: float, max_iter: int, seed: int):
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise ImportError("linear probes need scikit-learn: pip install 'cliplab[eval]'") from None
    return LogisticRegression(C=c, max_iter=max_iter, random_state=seed)


@dataclass
class ProbeResult:
    report: ClassificationReport
    c: float  # the chosen inverse regularisation strength
    validation: dict[float, float]  # C -> validation top-1 (percent), for every C tried
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


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    classes: Sequence[str],
    cs: Sequence[float] | None = None,
    validation_share: float = 0.2,
    max_iter: int = 1000,
    seed: int = 0,
) -> ProbeResult:
    """Choose C on a stratified validation split of the training features, refit on all, score the test set."""
    x, y = train_features.double().numpy(), train_labels.numpy()
    fit_idx, val_idx = stratified_split(train_labels, validation_share, seed)
    if len(val_idx) == 0:
        raise ValueError("too few training examples to carve a validation split; pass cs=[C] to fix C")

    def validation_top1(c: float) -> float:
        with warnings.catch_warnings():  # the sweep's extreme C values stop short of convergence, by design
            warnings.filterwarnings("ignore", message=".*(failed to converge|max_iter).*")
            model, probabilities = fit_and_score(x[fit_idx], y[fit_idx], x[val_idx], c, max_iter, seed)
        predicted = model.classes_[probabilities.argmax(axis=1)]
        return 100.0 * float((predicted == y[val_idx]).mean())

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
    return ProbeResult(report, chosen, dict(sorted(tried.items())), model)

"""Classification metrics, checked by hand on small cases."""

from __future__ import annotations

import pytest
import torch

from cliplab.evaluate import classification_report


def test_hand_checked_report():
    classes = ["a", "b", "c"]
    # Truths a, a, b, c, c, c; top-1 predictions a, b, b, c, a, c. Rows of scores give those orders.
    scores = torch.tensor(
        [
            [0.9, 0.05, 0.05],  # a -> a
            [0.3, 0.6, 0.1],  # a -> b (a second)
            [0.1, 0.8, 0.1],  # b -> b
            [0.1, 0.2, 0.7],  # c -> c
            [0.5, 0.4, 0.1],  # c -> a (c last)
            [0.2, 0.1, 0.7],  # c -> c
        ]
    )
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    report = classification_report(scores, labels, classes)
    assert report.top1 == pytest.approx(4 / 6)
    assert report.top5 == 1.0  # three classes: every truth is among the top five
    # recall per class: a 1/2, b 1/1, c 2/3 -> mean (0.5 + 1 + 0.6667) / 3
    assert report.mean_per_class_recall == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    assert report.confusion.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert report.chance == pytest.approx(1 / 3)
    assert report.per_class_recall() == pytest.approx({"a": 0.5, "b": 1.0, "c": 2 / 3})
    assert report.to_dict()["confusion"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_top5_counts_the_truth_anywhere_in_the_first_five_and_skips_absent_classes_in_recall():
    scores = torch.arange(7, dtype=torch.float).flip(0).repeat(2, 1)  # every row ranks class 0 first, 6 last
    report = classification_report(scores, torch.tensor([4, 5]), [str(i) for i in range(7)])
    assert report.top1 == 0.0 and report.top5 == 0.5  # class 4 is 5th (in), class 5 is 6th (out)
    assert report.mean_per_class_recall == 0.0 and set(report.per_class_recall()) == {"4", "5"}


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="scores must be"):
        classification_report(torch.zeros(3, 2), torch.zeros(3), ["a", "b", "c"])
    with pytest.raises(ValueError, match="labels"):
        classification_report(torch.zeros(3, 2), torch.zeros(2), ["a", "b"])
    with pytest.raises(ValueError, match="lie in"):
        classification_report(torch.zeros(1, 2), torch.tensor([2]), ["a", "b"])

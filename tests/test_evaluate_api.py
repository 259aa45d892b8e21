"""Evaluation as a library: every task called from Python on generated data, each checked against a
direct computation written out here with the model, PyTorch and scikit-learn alone."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.linear_model import LogisticRegression

import cliplab
from cliplab.data import open_source
from cliplab.evaluate import (
    FeatureOptions,
    few_shot,
    linear_probe,
    overlap,
    zero_shot_classification,
    zero_shot_retrieval,
)
from cliplab.evaluate.few_shot import sample_shots

TEMPLATES = ["a {}", "one {}"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return cliplab.create_model("tiny-RN@32px").eval()


@pytest.fixture
def options(tmp_path):
    return FeatureOptions(workers=0, cache_dir=tmp_path / "cache", progress=False)


def direct_image_features(model, source) -> torch.Tensor:
    preprocess = cliplab.image_transform(model.image_size)
    with torch.no_grad():
        pixels = torch.stack([preprocess(item.open_image()) for item in source.items])
        return F.normalize(model.encode_image(pixels), dim=-1)


def direct_classifier(model, classes: list[str]) -> torch.Tensor:
    with torch.no_grad():
        columns = []
        for name in classes:
            prompts = model.encode_text(cliplab.tokenize([t.format(name) for t in TEMPLATES], model.context_length))
            columns.append(F.normalize(F.normalize(prompts, dim=-1).mean(dim=0), dim=-1))
    return torch.stack(columns, dim=1)


def labels_of(source) -> torch.Tensor:
    return torch.tensor([item.label for item in source.items])


def test_zero_shot_classification_equals_the_direct_computation(model, options, tmp_path):
    source = open_source("synthetic:heldout", count=60, image_size=32)
    result = zero_shot_classification(model, source, TEMPLATES, options=options)
    predicted = (direct_image_features(model, source) @ direct_classifier(model, source.classes)).argmax(dim=1)
    labels = labels_of(source)
    assert result.report.count == 60 and result.report.classes == source.classes
    assert result.report.top1 == pytest.approx((predicted == labels).double().mean().item())
    assert torch.equal(result.scores.argmax(dim=1), predicted)
    for c in range(len(source.classes)):  # per-class recall: the share of class c predicted as c
        if (labels == c).any():
            expected = ((predicted == c) & (labels == c)).sum().item() / (labels == c).sum().item()
            assert result.report.per_class_recall()[source.classes[c]] == pytest.approx(expected)
    written = json.loads(result.write(tmp_path / "out", "tiny").read_text())
    assert written["metrics"]["acc1"] == result.report.top1 and written["task"] == "zeroshot_classification"
    assert written["dataset"] == "synthetic-heldout" and written["images"] == 60


def test_zero_shot_retrieval_equals_brute_force_ranking(model, options):
    source = open_source("synthetic:seen", count=40, image_size=32)  # each scene captioned with its description
    result = zero_shot_retrieval(model, source, options=options)
    images = direct_image_features(model, source)
    with torch.no_grad():
        texts = F.normalize(model.encode_text(cliplab.tokenize([item.caption for item in source.items])), dim=-1)
    similarity = images @ texts.t()  # one caption per image: caption i belongs to image i
    truth = torch.arange(40)
    for k in (1, 5, 10):
        image_to_text = (similarity.topk(k, dim=1).indices == truth[:, None]).any(dim=1).double().mean().item()
        text_to_image = (similarity.t().topk(k, dim=1).indices == truth[:, None]).any(dim=1).double().mean().item()
        assert result.recall[f"image_to_text_R@{k}"] == pytest.approx(image_to_text)
        assert result.recall[f"text_to_image_R@{k}"] == pytest.approx(text_to_image)
    assert result.metrics()["images"] == 40 and result.metrics()["captions"] == 40


def test_linear_probe_equals_sklearn_on_the_direct_features(model, options):
    train = open_source("synthetic:heldout", count=72, seed=5, image_size=32)
    test = open_source("synthetic:heldout", count=48, seed=6, image_size=32)
    result = linear_probe(model, test, train, options=options)
    x, y = direct_image_features(model, train).double().numpy(), labels_of(train).numpy()
    torch.testing.assert_close(result.train.features, direct_image_features(model, train), atol=1e-5, rtol=0)
    reference = LogisticRegression(C=result.fit.c, max_iter=1000, random_state=0).fit(x, y)
    predicted = reference.predict(direct_image_features(model, test).double().numpy())
    assert result.report.top1 == pytest.approx((predicted == labels_of(test).numpy()).mean())
    assert result.fit.validation[result.fit.c] == max(result.fit.validation.values())
    assert result.how == f"trained on {train.name}" and result.metrics()["acc1"] == result.report.top1


def test_few_shot_draws_and_its_zero_shot_line_equal_direct_computations(model, options):
    train = open_source("synthetic:heldout", count=72, seed=5, image_size=32)
    test = open_source("synthetic:heldout", count=48, seed=6, image_size=32)
    result = few_shot(model, test, train, TEMPLATES, shots=(1, 4), seeds=(0, 1), options=options)
    predicted = (direct_image_features(model, test) @ direct_classifier(model, test.classes)).argmax(dim=1)
    assert result.zero_shot.report.top1 == pytest.approx((predicted == labels_of(test)).double().mean().item())
    picked = sample_shots(labels_of(train), 4, seed=1).numpy()
    x, y = direct_image_features(model, train).double().numpy(), labels_of(train).numpy()
    reference = LogisticRegression(C=result.probe.fit.c, max_iter=1000, random_state=1).fit(x[picked], y[picked])
    scores = np.full((48, len(test.classes)), -1.0)
    scores[:, reference.classes_] = reference.predict_proba(direct_image_features(model, test).double().numpy())
    expected = (scores.argmax(axis=1) == labels_of(test).numpy()).mean()
    assert result.draws.top1[4][1] == pytest.approx(expected)
    assert result.metrics()["acc1_4shot"] == pytest.approx(np.mean(result.draws.top1[4]))


def test_overlap_finds_copied_files_and_splits_the_accuracy(model, options, tmp_path):
    rng = np.random.default_rng(0)
    for folder in ("train/a", "train/b", "test/a", "test/b"):
        (tmp_path / folder).mkdir(parents=True)
    for k in range(8):
        for split in ("train", "test"):
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / split / "ab"[k % 2] / f"{split}{k}.png")
    for k in (0, 3):  # two exact copies of training images among the test images
        shutil.copy(
            tmp_path / "train" / "ab"[k % 2] / f"train{k}.png", tmp_path / "test" / "ab"[k % 2] / f"copy{k}.png"
        )
    test, train = open_source(tmp_path / "test"), open_source(tmp_path / "train")
    result = overlap(model, test, train, TEMPLATES, threshold=1.01, options=options)  # exact copies only
    copies = {item.key for item in test.items if "copy" in item.key}
    assert {pair["image"] for pair in result.overlapping} == copies and all(p["exact"] for p in result.overlapping)
    predicted = (direct_image_features(model, test) @ direct_classifier(model, test.classes)).argmax(dim=1)
    correct = (predicted == labels_of(test)).double()
    copied = torch.tensor([item.key in copies for item in test.items])
    summary = result.metrics()
    assert summary["exact_duplicates"] == 2 and summary["overlap_rate"] == pytest.approx(2 / 10)
    assert summary["acc1_overlapping"] == pytest.approx(correct[copied].mean().item())
    assert summary["acc1_clean"] == pytest.approx(correct[~copied].mean().item())

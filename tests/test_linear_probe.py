"""Linear probe and few-shot results equal scikit-learn run directly on the same features."""

from __future__ import annotations

import json

import pytest
import torch
from sklearn.linear_model import LogisticRegression

from cliplab.cli import main
from cliplab.evaluate import fit_few_shot, fit_linear_probe, stratified_split
from cliplab.evaluate.few_shot import sample_shots


def _features(n: int, classes: int = 3, dim: int = 16, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=generator)
    labels = torch.arange(n) % classes
    features = centres[labels] + 1.5 * torch.randn(n, dim, generator=generator)
    return torch.nn.functional.normalize(features, dim=-1), labels


def test_stratified_split_holds_out_a_share_of_each_class():
    labels = torch.tensor([0] * 10 + [1] * 5 + [2])
    kept, held = stratified_split(labels, 0.2, seed=3)
    assert sorted(torch.cat([kept, held]).tolist()) == list(range(16))
    assert [int((labels[held] == c).sum()) for c in range(3)] == [2, 1, 0]  # a lone example is never held out
    assert torch.equal(stratified_split(labels, 0.2, seed=3)[1], held)


def test_a_fixed_c_gives_sklearns_predictions():
    train_x, train_y = _features(90)
    test_x, test_y = _features(60, seed=1)
    result = fit_linear_probe(train_x, train_y, test_x, test_y, ["a", "b", "c"], cs=[0.5])
    reference = LogisticRegression(C=0.5, max_iter=1000, random_state=0).fit(train_x.double().numpy(), train_y.numpy())
    expected = (reference.predict(test_x.double().numpy()) == test_y.numpy()).mean()
    assert result.c == 0.5 and result.report.top1 == pytest.approx(expected)
    assert result.report.confusion.sum() == 60


def test_c_is_the_best_on_the_validation_split():
    train_x, train_y = _features(120)
    test_x, test_y = _features(60, seed=1)
    result = fit_linear_probe(train_x, train_y, test_x, test_y, ["a", "b", "c"])
    assert len(result.validation) > 13  # the coarse grid plus its refinement
    assert result.validation[result.c] == max(result.validation.values())
    fit, val = stratified_split(train_y, 0.2, seed=0)
    x, y = train_x.double().numpy(), train_y.numpy()
    direct = LogisticRegression(C=result.c, max_iter=1000, random_state=0).fit(x[fit], y[fit])
    assert result.validation[result.c] == pytest.approx((direct.predict(x[val]) == y[val]).mean())


def test_few_shot_draws_equal_sklearn_on_the_same_examples():
    train_x, train_y = _features(60)
    test_x, test_y = _features(45, seed=1)
    result = fit_few_shot(train_x, train_y, test_x, test_y, ["a", "b", "c"], c=2.0, shots=(1, 4), seeds=(0, 1))
    assert sorted(result.top1) == [1, 4] and all(len(v) == 2 for v in result.top1.values())
    picked = sample_shots(train_y, 4, seed=1)
    assert torch.bincount(train_y[picked]).tolist() == [4, 4, 4]
    x, y = train_x.double().numpy(), train_y.numpy()
    reference = LogisticRegression(C=2.0, max_iter=1000, random_state=1).fit(x[picked], y[picked])
    assert result.top1[4][1] == pytest.approx((reference.predict(test_x.double().numpy()) == test_y.numpy()).mean())


def test_linear_probe_and_few_shot_from_the_command_line(tmp_path):
    import cliplab

    torch.manual_seed(0)
    cliplab.save_checkpoint(cliplab.create_model("tiny-RN@32px"), tmp_path / "m.safetensors")
    out, model = tmp_path / "out", tmp_path / "m.safetensors"
    common = f"synthetic:heldout --checkpoint {model} --out {out} --no-progress --no-cache --workers 0".split()
    assert main(["eval", *common, "--task", "linear_probe"]) == 0
    assert main(["eval", *common, "--task", "few_shot", "--template", "a {}"]) == 0
    probe = json.loads(next((tmp_path / "out").glob("*linear_probe.json")).read_text())
    shots = json.loads(next((tmp_path / "out").glob("*few_shot.json")).read_text())
    assert probe["task"] == "linear_probe" and 0 <= probe["metrics"]["acc1"] <= 1 and probe["c"] > 0
    assert set(shots["shots"]) == {"1", "2", "4", "8", "16"} and "zeroshot_acc1" in shots["metrics"]
    assert list((tmp_path / "out").glob("*few_shot.png"))

"""Made distribution shifts, and zero-shot and linear-probe robustness measured on them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import cliplab
from cliplab.cli import main
from cliplab.evaluate.datasets import open_labelled_images
from cliplab.evaluate.features import image_features
from cliplab.evaluate.linear_probe import linear_probe
from cliplab.evaluate.robustness import robustness
from cliplab.evaluate.shifts import SHIFTS, shifted
from cliplab.evaluate.zeroshot_classification import zero_shot_classification


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    pixels = np.zeros((96, 128, 3), np.uint8)
    pixels[:, :, 0] = np.linspace(0, 255, 128, dtype=np.uint8)  # a red ramp
    pixels[30:70, 40:90] = (30, 160, 40)  # a green block with sharp edges
    return Image.fromarray(np.clip(pixels + rng.normal(0, 6, pixels.shape), 0, 255).astype(np.uint8))


def test_each_shift_keeps_size_and_changes_what_it_should(photo):
    original = np.asarray(photo, dtype=float)
    outputs = {name: np.asarray(shift(photo), dtype=float) for name, shift in SHIFTS.items()}
    assert all(o.shape == original.shape for o in outputs.values())
    assert np.array_equal(outputs["grayscale"][..., 0], outputs["grayscale"][..., 2])  # no colour left
    assert np.abs(np.diff(outputs["blur"], axis=1)).mean() < 0.5 * np.abs(np.diff(original, axis=1)).mean()
    low = outputs["low_resolution"]
    assert np.array_equal(low[:, 0], low[:, 1]) or np.array_equal(low[:, 1], low[:, 2])  # blocks of equal pixels
    assert outputs["sketch"].mean() > 180  # mostly white paper ...
    assert outputs["sketch"][30:70, 38:42].mean() < outputs["sketch"][80:90, 100:110].mean()  # ... dark at edges
    assert 0 < np.abs(outputs["jpeg"] - original).mean() < 40


def test_no_shift_means_no_drop_and_the_clean_score_is_zero_shots(tmp_path):
    torch.manual_seed(0)
    model = cliplab.create_model("tiny-RN@32px").eval()
    data = open_labelled_images("synthetic:heldout").subset(range(96))
    options = dict(workers=0, cache_dir=tmp_path, progress=False)
    features = image_features(model, data, **options)
    probe = linear_probe(features.features, features.labels, features.features, features.labels, data.classes, cs=[1.0])
    result = robustness(model, data, {"same": data, "grey": shifted(data, "grayscale")}, ["a {}"], probe, **options)
    same = result.shifts[0]
    assert same.zero_shot_top1 == result.clean.zero_shot_top1 and same.probe_top1 == result.clean.probe_top1
    report, _ = zero_shot_classification(model, data, ["a {}"], **options)
    assert result.clean.zero_shot_top1 == pytest.approx(report.top1)
    assert result.clean.probe_top1 == pytest.approx(probe.report.top1)
    assert result.to_dict()["same"]["zero_shot_drop"] == 0 and result.shifts[1].images == 96


def test_robustness_from_the_command_line(tmp_path):
    torch.manual_seed(0)
    cliplab.save_checkpoint(cliplab.create_model("tiny-RN@32px"), tmp_path / "m.safetensors")
    argv = ["eval", "synthetic:heldout", "--task", "robustness", "--checkpoint", str(tmp_path / "m.safetensors"), "--shift", "sketch", "--shift", "blur", "--out", str(tmp_path / "out"), "--no-progress", "--no-cache", "--workers", "0"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(next((tmp_path / "out").glob("*robustness.json")).read_text())
    assert set(result["shifts"]) == {"clean", "sketch", "blur"}
    assert result["metrics"]["clean_zero_shot_drop"] == 0 and "sketch_linear_probe_drop" in result["metrics"]
    unknown = [a if a != "sketch" else "rain" for a in argv]  # neither a made shift nor a dataset: an error
    assert main(unknown) == 2

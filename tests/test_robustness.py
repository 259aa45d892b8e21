"""Made distribution shifts, and zero-shot and linear-probe robustness measured on them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import cliplab
from cliplab.cli import main
from cliplab.data import open_source
from cliplab.evaluate import (
    SHIFTS,
    FeatureOptions,
    fit_linear_probe,
    image_features,
    robustness,
    score_shifts,
    shifted,
    zero_shot_classification,
)


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
    data = open_source("synthetic:heldout").subset(range(96))
    options = FeatureOptions(workers=0, cache_dir=tmp_path, progress=False)
    features = image_features(model, data, options)
    fit = fit_linear_probe(
        features.features, features.labels, features.features, features.labels, data.classes, cs=[1.0]
    )
    sets = {"same": data, "grey": shifted(data, "grayscale")}
    clean, (same, grey) = score_shifts(model, data, sets, ["a {}"], fit, options)
    assert same.zero_shot_top1 == clean.zero_shot_top1 and same.probe_top1 == clean.probe_top1
    report = zero_shot_classification(model, data, ["a {}"], options=options).report
    assert clean.zero_shot_top1 == pytest.approx(report.top1)
    assert clean.probe_top1 == pytest.approx(fit.report.top1)
    assert grey.images == 96


def test_robustness_from_python_fits_the_probe_on_half_and_scores_each_shift(tmp_path):
    torch.manual_seed(0)
    model = cliplab.create_model("tiny-RN@32px").eval()
    data = open_source("synthetic:heldout").subset(range(96))
    options = FeatureOptions(workers=0, cache_dir=tmp_path, progress=False)
    result = robustness(model, data, ["blur", data], ["a {}"], options=options)
    test = result.probe.test_source  # the held-out half the probe never saw
    assert len(test.items) + len(result.probe.train.kept) == 96 and len(test.items) == result.probe.report.count
    assert [s.name for s in result.shifts] == ["blur", data.name]
    zero_shot = zero_shot_classification(model, test, ["a {}"], options=options).report.top1
    assert result.clean.zero_shot_top1 == pytest.approx(zero_shot)
    assert result.clean.probe_top1 == pytest.approx(result.probe.report.top1)
    table = result.table()
    assert table["clean"]["zero_shot_drop"] == 0
    assert table["blur"]["zero_shot_drop"] == pytest.approx(
        result.clean.zero_shot_top1 - result.shifts[0].zero_shot_top1
    )
    written = json.loads(result.write(tmp_path / "out", "tiny").read_text())
    assert written["metrics"]["blur_linear_probe_acc1"] == result.shifts[0].probe_top1


def test_robustness_from_the_command_line(tmp_path):
    torch.manual_seed(0)
    cliplab.save_checkpoint(cliplab.create_model("tiny-RN@32px"), tmp_path / "m.safetensors")
    options = f"--checkpoint {tmp_path / 'm.safetensors'} --out {tmp_path / 'out'} --no-progress --no-cache --workers 0"
    argv = f"eval synthetic:heldout --task robustness --shift sketch --shift blur {options}".split()
    assert main(argv) == 0
    result = json.loads(next((tmp_path / "out").glob("*robustness.json")).read_text())
    assert set(result["shifts"]) == {"clean", "sketch", "blur"}
    assert result["metrics"]["clean_zero_shot_drop"] == 0 and "sketch_linear_probe_drop" in result["metrics"]
    unknown = [a if a != "sketch" else "rain" for a in argv]  # neither a made shift nor a dataset: an error
    assert main(unknown) == 2

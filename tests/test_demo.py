"""`cliplab demo`: the plan of steps, and a short run end to end through the command line."""

from __future__ import annotations

import json

import pytest

import cliplab
from cliplab.cli import main
from cliplab.demo.run import RESERVE_SECONDS, STEPS, plan_steps


def test_the_default_steps_run_when_they_fit_and_shrink_with_a_note_when_not():
    assert plan_steps(5, None, seconds_per_step=0.1) == (STEPS, None)
    steps, note = plan_steps(5, None, seconds_per_step=1.0)
    assert steps == 300 - RESERVE_SECONDS and f"{steps} of the default {STEPS}" in note
    assert plan_steps(0.1, None, seconds_per_step=10.0)[0] == 20  # never fewer than 20
    assert plan_steps(5, 7, seconds_per_step=100.0) == (7, None)  # asked for: as asked


def test_a_short_demo_writes_results_plots_and_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--steps", "3", "--out", str(out), "--seed", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert (
        "zero-shot, held-out colour-shape pairs" in printed
        and "cliplab classify" in printed
        and "cliplab eval" in printed
    )
    results = json.loads((out / "results.json").read_text())
    heldout = results["zero_shot_heldout"]
    assert results["kind"] == "cliplab-demo" and results["steps"] == 3 and results["seed"] == 1
    assert len(heldout["classes"]) == 12 and heldout["chance"] == pytest.approx(1 / 12)
    confusion = heldout["confusion"]  # rows: true class, columns: predicted; top-1 is its diagonal's share
    assert heldout["count"] == 600 == sum(map(sum, confusion)) and len(confusion) == 12
    assert heldout["top1"] == pytest.approx(sum(confusion[i][i] for i in range(12)) / 600)
    assert f"top-1 {heldout['top1']:.1%}" in printed  # fractions in the file, percent on screen
    assert results["zero_shot_heldout_among_all_classes"]["classes"] == 15 * 6
    assert {"text_to_image_R@1", "image_to_text_R@10", "scenes"} <= set(results["retrieval"])
    assert results["left_right"]["chance"] == 0.5 and results["wall_seconds"] > 0
    for name in ("learning_curve", "confusion_matrix", "examples"):
        assert (out / "plots").is_dir() and results["plots"][name].endswith(".png")
    model = cliplab.load_model(results["checkpoint"])
    assert model.config.vision.image_size == 32

    # Running again into the same folder replaces the earlier demo; a folder of other things is refused.
    assert main(["demo", "--steps", "2", "--out", str(out), "--no-progress"]) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 2 and all(json.loads(line)["step"] <= 2 for line in lines)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["demo", "--steps", "2", "--out", str(tmp_path / "mine")]) == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"

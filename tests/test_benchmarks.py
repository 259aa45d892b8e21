"""The from-scratch recipe benchmark's own bookkeeping, without Flickr8k: the one- against two-process
loss comparison, and the table that visits all five captions of an image."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def recipe():
    # The script imports its neighbour `common` and puts src/ first on sys.path; both are undone after it
    # loads, as src/ on the path would shadow the installed distribution's metadata for later tests.
    saved_path, saved_common = list(sys.path), sys.modules.get("common")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("recipe_flickr8k", ROOT / "benchmarks" / "recipe_flickr8k.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved_path
        if saved_common is None:
            sys.modules.pop("common", None)
        else:
            sys.modules["common"] = saved_common
    return module


def write_run(folder: Path, losses: dict[int, float]) -> None:
    folder.mkdir(parents=True)
    lines = [json.dumps({"step": step, "train/loss": loss}) for step, loss in losses.items()]
    lines.append(json.dumps({"step": max(losses), "val/loss": 4.0}))  # other records are left out
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_curves_compare_one_and_two_processes_in_windows_of_50_steps(tmp_path, recipe):
    one = {step: 5.0 - step / 100 for step in range(5, 121, 5)}
    two = {step: loss + (0.2 if step > 100 else 0.0) for step, loss in one.items()}
    write_run(tmp_path / "one", one)
    write_run(tmp_path / "two", two)
    rows = [
        {"name": "recipe", "seed": 0, "epochs": 2, "processes": 1, "folder": str(tmp_path / "one")},
        {"name": "recipe", "seed": 0, "epochs": 2, "processes": 2, "folder": str(tmp_path / "two")},
        {"name": "no-ema", "seed": 0, "epochs": 2, "processes": 1, "folder": str(tmp_path / "one")},  # no pair
    ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert recipe.loss_curve(tmp_path / "one") == pytest.approx({50: 4.725, 100: 4.225, 120: 3.875})
    report = recipe.curves(tmp_path)
    assert report.count("processes over") == 1 and "recipe, seed 0: 1 vs 2 processes over 120 steps" in report
    assert "3.875 vs 4.075 at the end" in report and "largest gap between 50-step means 0.200" in report
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_the_all_captions_table_gives_each_training_caption_a_path_of_its_own(tmp_path, recipe):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"photo a")
    rows = [("a.jpg", "train", f"caption {i}") for i in range(3)] + [("b.jpg", "dev", "dev caption")] * 2
    with open(tmp_path / "captions.tsv", "w", newline="") as f:
        csv.writer(f, delimiter="\t", lineterminator="\n").writerows([("image", "split", "caption"), *rows])
    table = recipe.all_captions_table(tmp_path / "captions.tsv", tmp_path)
    with open(table, newline="") as f:
        written = list(csv.DictReader(f, delimiter="\t"))
    train = [row["image"] for row in written if row["split"] == "train"]
    assert len(set(train)) == 3 and all(Path(path).read_bytes() == b"photo a" for path in train)
    assert [row["caption"] for row in written] == [caption for _, _, caption in rows]
    assert len({row["image"] for row in written if row["split"] == "dev"}) == 1  # dev rows unchanged

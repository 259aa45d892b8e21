"""Train/test overlap: exact copies by content, near-duplicates by centred embedding similarity."""

from __future__ import annotations

import json
import shutil

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import cliplab
from cliplab.cli import main
from cliplab.evaluate.overlap import accuracy_split, find_overlap


def test_hand_made_features():
    torch.manual_seed(0)
    common = torch.randn(32) * 4  # a shared component, as trained embeddings have
    train = F.normalize(common + torch.randn(50, 32), dim=-1)
    near = F.normalize(train[7] + 0.001 * torch.randn(32), dim=-1)  # a slightly changed copy of image 7
    unrelated = F.normalize(common + torch.randn(3, 32), dim=-1)
    evaluation = torch.cat([train[3:4], near[None], unrelated])
    assert (unrelated @ train.t()).max() > 0.8  # raw cosine would call unrelated images close
    overlap = find_overlap(evaluation, train, ["h3", "x", "y", "z", "w"], [f"h{i}" for i in range(50)], threshold=0.99)
    assert overlap.exact.tolist() == [True, False, False, False, False]
    assert overlap.near.tolist() == [True, True, False, False, False]
    assert overlap.nearest[:2].tolist() == [3, 7]
    split = accuracy_split(torch.tensor([True, True, False, True, False]), overlap)
    assert split["exact_duplicates"] == 1 and split["near_duplicates"] == 1 and split["overlap_rate"] == 0.4
    assert split["acc1_overlapping"] == 1.0 and abs(split["acc1_clean"] - 1 / 3) < 1e-9 and split["acc1_all"] == 0.6


def test_overlap_from_the_command_line_finds_copied_files(tmp_path):
    rng = np.random.default_rng(0)
    for folder in ("train/a", "train/b", "test/a", "test/b"):
        (tmp_path / folder).mkdir(parents=True)
    for k in range(6):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            tmp_path / "train" / "ab"[k % 2] / f"{k}.png"
        )
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            tmp_path / "test" / "ab"[k % 2] / f"t{k}.png"
        )
    shutil.copy(tmp_path / "train" / "a" / "0.png", tmp_path / "test" / "a" / "copy.png")  # one exact copy
    torch.manual_seed(0)
    cliplab.save_checkpoint(cliplab.create_model("tiny-RN@32px"), tmp_path / "m.safetensors")
    options = f"--checkpoint {tmp_path / 'm.safetensors'} --out {tmp_path / 'out'} --no-progress --no-cache --workers 0"
    argv = f"eval {tmp_path / 'test'} --task overlap --train {tmp_path / 'train'} {options} --threshold 1.01".split()
    assert main(argv) == 0
    result = json.loads(next((tmp_path / "out").glob("*overlap.json")).read_text())
    assert result["metrics"]["images"] == 7 and result["metrics"]["exact_duplicates"] == 1
    assert result["metrics"]["near_duplicates"] == 0  # nothing reaches a threshold above 1
    (pair,) = result["overlapping"]
    assert pair["image"].endswith("copy.png") and pair["train_image"].endswith("0.png") and pair["exact"]
    assert main(argv[:4] + argv[6:]) == 2  # no --train: a clear error

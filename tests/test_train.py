"""The trainer: exact resume after SIGKILL, bad data skipped and counted, non-finite steps, scale-out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import cliplab
from cliplab.data import open_source, write_shards
from cliplab.data.shards import read_shard
from cliplab.evaluate import retrieval_metrics
from cliplab.train import TrainConfig, Trainer, TrainingDiverged, load_config, train
from cliplab.train.checkpoint import list_checkpoints
from cliplab.train.step import StepLoss

from .conftest import write_caption_table
from .test_data import EXPECTED_SKIPS, messy_table  # noqa: F401  (a fixture)

QUIET = {"progress": False, "tensorboard": False, "plots": False, "warmup_steps": 2, "log_every": 1}


def config(**values) -> TrainConfig:
    return TrainConfig(**{**QUIET, **values})


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def assert_same_weights(a: Path, b: Path, atol: float = 0.0) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        if atol == 0:
            assert torch.equal(wa[key], wb[key]), key
        else:
            torch.testing.assert_close(wa[key], wb[key], atol=atol, rtol=0, msg=key)


def direct_recall(model_path: Path, table: Path) -> dict[str, float]:
    """Retrieval recall of a saved model on a caption table, computed here without the trainer."""
    model, preprocess = cliplab.load(model_path)
    items = open_source(table).items
    with torch.no_grad():
        images = model.encode_image(torch.stack([preprocess(item.open_image()) for item in items]), normalize=True)
        texts = model.encode_text(cliplab.tokenize([c for item in items for c in item.captions]), normalize=True)
    owners = torch.tensor([i for i, item in enumerate(items) for _ in item.captions])
    return retrieval_metrics(images, texts, owners)


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return write_caption_table(tmp_path_factory.mktemp("colours"), 48, size=32)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cliplab", "train", *args]


def run_cli(args: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600, **kwargs)


@pytest.mark.parametrize("source", ["table", "shards"])
def test_sigkill_mid_epoch_then_resume_ends_bitwise_identical(tmp_path, table, source):
    data = str(table)
    if source == "shards":
        write_shards(open_source(table).items, tmp_path / "shards", samples_per_shard=6, progress=False)
        data = str(tmp_path / "shards")
    # 48 samples / batch 8 = 6 steps per epoch; 2 epochs; checkpoints every 4 steps: step 4 is mid-epoch.
    options = [f"data={data}", "batch_size=8", "epochs=2", "checkpoint_every=4", "workers=2", "patch_dropout=0.25"]
    options += [f"{k}={v}" for k, v in QUIET.items()]
    if source == "shards":
        options.append("ema=0.9")  # the saved model is the weights' average: it resumes with them
    whole = run_cli(cli(*options, f"out={tmp_path / 'whole'}"))
    assert whole.returncode == 0, whole.stderr

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.Popen(cli(*options, f"out={tmp_path / 'killed'}"), env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list_checkpoints(tmp_path / "killed" / "checkpoints") and time.monotonic() < deadline:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    saved = list_checkpoints(tmp_path / "killed" / "checkpoints")
    assert saved and killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "model.safetensors").exists()  # it really died before the end

    resumed = run_cli(cli(*options, f"out={tmp_path / 'killed'}", "--resume", "latest"))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(tmp_path / "whole" / "model.safetensors", tmp_path / "killed" / "model.safetensors")
    # The metrics log has one record per step, as if nothing had happened.
    steps = [r["step"] for r in map(json.loads, (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines())]
    assert steps == list(range(1, 13))


def test_every_kind_of_bad_sample_trains_to_the_end_with_counts(tmp_path, messy_table):  # noqa: F811
    # 17 images, one batch of 17: every index is visited once, so every bad sample is met once.
    result = train(config(data=str(messy_table), batch_size=17, epochs=2, out=str(tmp_path / "run"), workers=2))
    assert result.steps == 2 and result.model_path.is_file()
    expected = EXPECTED_SKIPS + EXPECTED_SKIPS  # two epochs
    assert Counter(result.skipped) == expected
    listed = [json.loads(line) for line in (tmp_path / "run" / "skipped.jsonl").read_text().splitlines()]
    assert Counter(row["reason"] for row in listed) == expected
    assert {row["sample"].rsplit("/", 1)[-1] for row in listed} >= {"bomb.png", "missing.jpg", "g_bad_bytes.png"}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["skipped"] == dict(expected)


def test_bad_samples_and_a_cut_off_shard_in_webdataset_shards(tmp_path, messy_table):  # noqa: F811
    shards = tmp_path / "shards"
    report = write_shards(open_source(messy_table).items, shards, samples_per_shard=4, progress=False)
    assert report.skipped == Counter({"missing file": 1}) and report.samples == 16
    first = (shards / "00000.tar").read_bytes()
    # A copy of the first shard that stops inside the header of the second image's caption file.
    (shards / "00004.tar").write_bytes(first[: first.index(b"000000002.txt") + 100])
    complete, problem = read_shard(str(shards / "00004.tar"))
    assert problem == "shard cut off" and [key for key, _ in complete] == ["000000000"]
    # One pass over the five shards is one batch: every good sample once, every bad one counted once.
    good = 9 + 1
    result = train(
        config(data=str(shards), batch_size=good, samples_per_epoch=good, out=str(tmp_path / "run"), workers=0)
    )
    assert result.steps == 1
    assert Counter(result.skipped) == EXPECTED_SKIPS - Counter({"missing file": 1}) + Counter({"shard cut off": 1})


def test_non_finite_steps_are_skipped_then_the_run_stops_with_the_last_good_checkpoint(tmp_path, table, monkeypatch):
    real = StepLoss.__call__
    calls = {"n": 0}

    def sometimes_nan(self, *args):
        calls["n"] += 1
        loss = real(self, *args)
        return loss * float("nan") if calls["n"] in (2, 5, 6, 7, 8) else loss

    monkeypatch.setattr(StepLoss, "__call__", sometimes_nan)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="3 steps in a row.*step_00000006"):
        train(config(data=str(table), batch_size=8, epochs=2, checkpoint_every=2, max_bad_steps=3, out=str(out)))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["train/bad_steps"] for r in records] == [0, 1, 1, 1, 2, 3]  # step 2 skipped, training went on
    last = list_checkpoints(out / "checkpoints")[-1]
    assert last.name == "step_00000006"  # written between bad steps: the weights of step 4, still finite
    state = json.loads((last / "state.json").read_text())
    assert state["bad_steps"] == 3 and all(
        torch.isfinite(t).all() for t in weights(last / "model.safetensors").values()
    )


# The attention key bias has a gradient of exactly zero in exact arithmetic (softmax ignores a shift
# shared by all keys), so in floating point it is rounding noise, which Adam's default eps of 1e-6
# would blow up into full-size updates. A larger eps keeps equivalence tests about the gradients.
TAME_ADAM = {"eps": 1e-2, "lr": 1e-2}


def test_a_cached_locked_image_tower_skips_bad_samples_as_running_it_does(tmp_path, messy_table, capsys):  # noqa: F811
    """cliplab's own CLIP, image tower locked (its projection with it): the cached run passes over the same
    bad images and captions and ends with the same weights as the run that encodes every image each step."""
    common = {"data": str(messy_table), "batch_size": 17, "epochs": 2, "lock_image": True, "augment": False}
    runs = [
        train(config(**common, **TAME_ADAM, cache_features=cache, out=str(tmp_path / str(cache))))
        for cache in (False, True)
    ]
    assert "17 images cached (17 computed now; " in capsys.readouterr().out
    assert Counter(runs[0].skipped) == Counter(runs[1].skipped) == EXPECTED_SKIPS + EXPECTED_SKIPS
    assert_same_weights(runs[0].model_path, runs[1].model_path, atol=1e-5)


def test_gradient_caching_trains_like_the_whole_batch(tmp_path, table):
    common = {"data": str(table), "batch_size": 16, "max_steps": 3, "workers": 0, **TAME_ADAM}
    plain = train(config(**common, out=str(tmp_path / "plain")))
    cached = train(config(**common, micro_batch_size=5, out=str(tmp_path / "cached")))
    assert_same_weights(plain.model_path, cached.model_path, atol=1e-6)


def test_locked_image_tower_is_bit_identical_after_training(tmp_path, table):
    result = train(config(data=str(table), batch_size=8, max_steps=3, lock_image=True, out=str(tmp_path / "lit")))
    torch.manual_seed(0)
    from cliplab import create_model

    initial = create_model("tiny-ViT/8@64px").state_dict()
    trained = weights(result.model_path)
    assert all(torch.equal(trained[k], initial[k]) for k in initial if k.startswith("visual."))
    assert not torch.equal(trained["text_projection"], initial["text_projection"])


def test_siglip_bias_lives_on_the_model_and_is_saved_with_it(tmp_path):
    options = dict(data="synthetic", samples_per_epoch=64, batch_size=8, max_steps=3, workers=0, loss="siglip")
    trainer = Trainer(config(**options, model="tiny-ViT/8@32px", out=str(tmp_path / "sig")))
    result = trainer.fit()
    trained = trainer.model.eval()
    assert result.steps == 3 and trained.config.logit_bias and trained.logit_bias.item() != -10.0
    loaded = cliplab.load_model(result.model_path)
    assert loaded.config.logit_bias and loaded.logit_bias.item() == trained.logit_bias.item()
    torch.manual_seed(1)
    images = torch.randn(4, 3, 32, 32)
    texts = cliplab.tokenize(["a red star", "a blue circle", "two green hearts"])
    with torch.no_grad():
        expected, _ = trained(images, texts)
        logits, _ = loaded(images, texts)
        cosines = loaded.encode_image(images, normalize=True) @ loaded.encode_text(texts, normalize=True).t()
    torch.testing.assert_close(logits, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(logits, loaded.logit_scale.exp() * cosines + loaded.logit_bias, atol=1e-5, rtol=0)
    # a checkpoint of the run resumes with the bias, and such a model has no transformers CLIPModel form
    assert load_file(str(result.last_checkpoint / "model.safetensors"))["logit_bias"].item() == loaded.logit_bias.item()
    with pytest.raises(cliplab.CliplabError, match="logit bias"):
        cliplab.save_hf_folder(loaded, tmp_path / "hf")


def test_run_folder_has_config_metrics_validation_plots_and_tensorboard(tmp_path, table):
    run = run_cli(
        [sys.executable, "-m", "cliplab", "train", f"data={table}", f"val_data={table}", "batch_size=16", "epochs=2"]
        + ["warmup_steps=1", "progress=false", f"out={tmp_path / 'run'}", "workers=0"]
    )
    assert run.returncode == 0, run.stderr
    out = tmp_path / "run"
    saved = load_config(out / "config.yaml")
    assert saved.batch_size == 16 and saved.data == str(table)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in records if "val/loss" in r]
    assert [r["step"] for r in validations] == [3, 6]  # once per epoch
    assert (out / "plots" / "training.png").stat().st_size > 10_000
    assert any((out / "tensorboard").iterdir())
    assert cliplab.load(out / "model.safetensors")[0].config.vision.image_size == 64
    # the last validation ran on the final weights: its recall is the direct computation's
    expected = direct_recall(out / "model.safetensors", table)
    for key in ("image_to_text_R@1", "image_to_text_R@5", "text_to_image_R@1", "text_to_image_R@10"):
        assert validations[-1][f"val/{key}"] == pytest.approx(expected[key]), key


def test_config_file_overrides_and_mistakes(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data: captions.tsv\nbatch_size: 32\nlr: 1e-3\n")
    loaded = load_config(path, ["batch_size=64", "grad_clip=1", "split=train", "micro_batch_size=null"])
    assert (loaded.batch_size, loaded.lr, loaded.grad_clip, loaded.split) == (64, 1e-3, 1.0, "train")
    with pytest.raises(ValueError, match="unknown training option.*'btach_size'"):
        load_config(path, ["btach_size=3"])
    with pytest.raises(ValueError, match="'epochs' must be int"):
        load_config(path, ["epochs=two"])
    with pytest.raises(ValueError, match="not key=value"):
        load_config(path, ["epochs"])
    with pytest.raises(ValueError, match="no training data"):
        load_config(None, [])
    assert load_config(path, ["image_mean=[0.5,0.5,0.5]"]).image_mean == [0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match="'image_mean' must be list"):
        load_config(path, ["image_mean=0.5"])
    with pytest.raises(ValueError, match="both image_tower and text_tower"):
        load_config(path, ["image_tower=timm:resnet18"])


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, table):
    train(config(data=str(table), batch_size=8, max_steps=2, out=str(tmp_path / "a")))
    with pytest.raises(ValueError, match="other batch_size"):
        train(config(data=str(table), batch_size=16, max_steps=2, out=str(tmp_path / "a")), resume="latest")


@pytest.mark.parametrize("variant", ["plain", "micro+ema", "cached"])
def test_torchrun_two_processes_train_like_one(tmp_path, table, variant):
    """2 gloo processes x 4 samples = 1 process x 8: same samples, same loss, same weights. With gradient
    caching and a weight average (the saved model is the average, the same in both runs); and with a
    locked image tower cached (the first process computes it, the other waits and reads it)."""
    options = [f"data={table}", "batch_size=8", "max_steps=3", "workers=0", "progress=false", "tensorboard=false"]
    options += ["plots=false", "warmup_steps=1", f"val_data={table}"] + [f"{k}={v}" for k, v in TAME_ADAM.items()]
    options += {
        "plain": [],
        "micro+ema": ["micro_batch_size=2", "ema=0.5"],
        "cached": ["lock_image=true", "augment=false"],
    }[variant]
    one = run_cli(cli(*options, f"out={tmp_path / 'one'}"), env={"CLIPLAB_CACHE": str(tmp_path / "cache-one")})
    assert one.returncode == 0, one.stderr
    two = run_cli(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "cliplab"]
        + ["train", *options, f"out={tmp_path / 'two'}"],
        env={"CLIPLAB_CACHE": str(tmp_path / "cache-two")},
    )
    assert two.returncode == 0, two.stderr
    if variant == "cached":
        assert "48 images cached (48 computed now; 0 unusable)" in one.stdout
        assert two.stdout.count("48 images cached (48 computed now") == 1  # said once, by the first process
    assert_same_weights(tmp_path / "one" / "model.safetensors", tmp_path / "two" / "model.safetensors", atol=1e-6)
    records = [
        [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        for run in ("one", "two")
    ]
    losses = [[r["train/loss"] for r in run if "train/loss" in r] for run in records]
    assert losses[0] and losses[0] == pytest.approx(losses[1], abs=1e-5)
    # validation (one process validates for both): the same figures, the loss over the same global batch
    validated = [[r for r in run if "val/loss" in r] for run in records]
    assert validated[0] and validated[0][-1]["val/loss"] == pytest.approx(validated[1][-1]["val/loss"], abs=1e-5)
    assert validated[0][-1] == pytest.approx(validated[1][-1], abs=1e-5)


def test_the_weight_average_is_what_is_validated_and_saved(tmp_path, table):
    """`ema`: training itself is unchanged (the checkpoints hold the trained weights), and the saved model
    is the average of the weights after each step, computed here from a plain run's checkpoints."""
    common = {"data": str(table), "batch_size": 8, "max_steps": 4, "workers": 0, "checkpoint_every": 1}
    common |= {"keep_checkpoints": 10, "val_data": str(table)}
    plain = train(config(**common, out=str(tmp_path / "plain")))
    averaged = train(config(**common, ema=0.8, out=str(tmp_path / "ema")))
    for step in range(1, 5):
        name = f"checkpoints/step_{step:08d}/model.safetensors"
        assert_same_weights(tmp_path / "plain" / name, tmp_path / "ema" / name)
    torch.manual_seed(0)
    average = cliplab.create_model("tiny-ViT/8@64px").state_dict()
    for step in range(1, 5):
        decay = min(0.8, (1 + step) / (10 + step))
        trained = weights(tmp_path / "plain" / f"checkpoints/step_{step:08d}/model.safetensors")
        average = {k: decay * average[k] + (1 - decay) * trained[k] for k in average}
    saved = weights(averaged.model_path)
    assert not torch.equal(saved["text_projection"], weights(plain.model_path)["text_projection"])
    for key, value in average.items():
        torch.testing.assert_close(saved[key], value, atol=1e-6, rtol=0, msg=key)
    # the last validation scored the average: the model saved
    expected = direct_recall(averaged.model_path, table)
    assert averaged.metrics["val/text_to_image_R@5"] == pytest.approx(expected["text_to_image_R@5"])


def test_temperature_and_crop_options(tmp_path, table):
    options = dict(data=str(table), batch_size=8, max_steps=1, lr=1e-9, workers=0, out=str(tmp_path / "t"))
    run = train(config(**options, temperature_init=30))
    assert run.metrics["train/logit_scale"] == pytest.approx(30.0, rel=1e-4)
    crops = Trainer(config(**options, crop_scale=[0.3, 0.5])).transform.transforms[1]
    assert type(crops).__name__ == "RandomResizedCrop" and crops.scale == (0.3, 0.5)
    with pytest.raises(ValueError, match="temperature_init must be between 1 and 100"):
        config(data="x", temperature_init=0.5)
    with pytest.raises(ValueError, match=r"crop_scale must be \[low, high\]"):
        config(data="x", crop_scale=[0.5])
    with pytest.raises(ValueError, match=r"crop_scale must be \[low, high\]"):
        config(data="x", crop_scale=[0.8, 0.4])
    with pytest.raises(ValueError, match=r"ema must be in \[0, 1\)"):
        config(data="x", ema=1.0)

"""`cliplab demo`: train a small CLIP on the synthetic world, then test it on what it never saw.

The number of steps is fixed up front (the learning-rate schedule needs to know where it ends), so
one seed gives one result on any machine. A short probe times a step first; where the default
steps would not fit in `minutes`, fewer are run and the shortfall is said out loud.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import CaptionDataset, open_source
from ..data.synthetic import SyntheticWorld
from ..errors import ConfigError
from ..evaluate.plots import plot_confusion
from ..files import atomic_write, write_json
from ..loss import ClipLoss
from ..models import create_model
from ..train import TrainConfig, Trainer, build_optimizer
from ..transforms import image_transform
from .evaluate import DemoEvaluation, evaluate_world
from .plots import plot_examples

MODEL = "tiny-RN@32px"  # a convolutional image tower: it learns shapes apart from colours fastest
STEPS = 600
BATCH_SIZE = 128
LEARNING_RATE = 2e-3
WARMUP_STEPS = 30
RESERVE_SECONDS = 35  # start-up, evaluation, plots and checkpoints, on a 2-core laptop
MARKER = "results.json"  # a folder holding this (with "kind": "cliplab-demo") is an earlier demo's


@dataclass
class DemoResult:
    out: Path
    results: dict[str, Any]
    evaluation: DemoEvaluation


def plan_steps(minutes: float, steps: int | None, seconds_per_step: float) -> tuple[int, str | None]:
    """(steps to run, a note when the default had to shrink to fit in `minutes`)."""
    if steps is not None:
        return steps, None
    fit = int((60 * minutes - RESERVE_SECONDS) / seconds_per_step)
    if fit >= STEPS:
        return STEPS, None
    fewer = max(20, fit)
    return fewer, (
        f"this machine takes {seconds_per_step:.2f} s a step, so {fewer} of the default {STEPS} steps fit in "
        f"{minutes:g} minutes; accuracy will be lower (more time: --minutes)"
    )


def measure_step_seconds(model_name: str, batch_size: int) -> float:
    """Seconds per training step on this machine: compute and data loading, each timed after a warm-up."""
    torch.manual_seed(0)
    model = create_model(model_name)
    optimizer, loss_fn = build_optimizer(model, lr=1e-5), ClipLoss()
    scenes = open_source("synthetic", count=batch_size, seed=0, image_size=model.image_size)
    data = CaptionDataset(scenes.items, image_transform(model.image_size), model.tokenizer)
    samples = [data[i] for i in range(8)]  # the first few fill caches and load libraries
    began = time.perf_counter()
    samples = [data[i] for i in range(8, 40)]
    load_seconds = (time.perf_counter() - began) / len(samples) * batch_size
    images = torch.stack([s.image for s in samples] * (batch_size // len(samples)))
    texts = torch.stack([s.text for s in samples] * (batch_size // len(samples)))
    times = []
    for _ in range(4):  # the first two warm up (kernels chosen, optimiser state made); the best of two after
        began = time.perf_counter()
        loss = loss_fn(
            model.encode_image(images, normalize=True),
            model.encode_text(texts, normalize=True),
            model.logit_scale.exp(),
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - began)
    # Loading runs in worker processes; on two cores it takes its whole time from the step, with more
    # cores less of it. 10% more for what the probe leaves out (logging, the progress bar, collating).
    return 1.1 * (min(times[2:]) + load_seconds * min(1.0, 2 / (os.cpu_count() or 1)))


def run_demo(
    out: str | Path = "cliplab-demo",
    minutes: float = 5.0,
    seed: int = 0,
    steps: int | None = None,
    model: str = MODEL,
    progress: bool = True,
    say=print,
) -> DemoResult:
    began = time.perf_counter()
    out = Path(out)
    _prepare(out)
    world = SyntheticWorld()
    steps, note = plan_steps(minutes, steps, measure_step_seconds(model, BATCH_SIZE))
    say(
        f"cliplab demo: training {model} for {steps} steps of {BATCH_SIZE} generated image-caption pairs; "
        f"{len(world.held_out)} colour-shape pairs are never shown"
    )
    if note:
        say(f"note: {note}")
    config = TrainConfig(
        model=model,
        data="synthetic",
        samples_per_epoch=steps * BATCH_SIZE,
        batch_size=BATCH_SIZE,
        lr=LEARNING_RATE,
        warmup_steps=min(WARMUP_STEPS, max(1, steps // 10)),
        seed=seed,
        out=str(out),
        checkpoint_every=steps + 1,  # none on the way
        keep_checkpoints=1,
        tensorboard=False,
        progress=progress,
        extra={"demo": True},
    )
    train_began = time.perf_counter()
    trainer = Trainer(config)
    trained = trainer.fit()
    train_seconds = time.perf_counter() - train_began
    # The training checkpoint adds the optimiser state (three times the weights) for resuming, which
    # a demo never does; model.safetensors holds the weights.
    shutil.rmtree(out / "checkpoints", ignore_errors=True)

    say("evaluating on new scenes ...")
    evaluation = evaluate_world(trainer.model, world, seed)
    plots = {
        "learning_curve": out / "plots" / "training.png",
        "confusion_matrix": plot_confusion(
            evaluation.heldout, out / "plots" / "confusion_heldout.png", "zero-shot, held-out pairs"
        ),
        "examples": plot_examples(evaluation.examples, out / "plots" / "examples_heldout.png"),
    }
    # an image of a held-out pair, to try `cliplab classify` on: its pair and two others as the labels
    image, truth, _ = evaluation.examples[0]
    example = out / "example.png"
    write_image(example, image)
    others = [name for name in evaluation.heldout.classes if name != truth][:2]
    results = {
        "kind": "cliplab-demo",
        "model": model,
        "seed": seed,
        "steps": trained.steps,
        "batch_size": BATCH_SIZE,
        "note": note,
        "final_train_loss": trained.metrics.get("train/loss"),
        **evaluation.to_dict(),
        "wall_seconds": None,  # filled in below, last
        "train_seconds": round(train_seconds, 1),
        "checkpoint": str(trained.model_path),
        "example_image": str(example),
        "example_labels": [truth, *others],
        "plots": {name: str(path) for name, path in plots.items() if path is not None and Path(path).is_file()},
    }
    results["wall_seconds"] = round(time.perf_counter() - began, 1)
    write_json(out / MARKER, results)
    return DemoResult(out, results, evaluation)


def write_image(path: Path, image) -> None:
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def _prepare(out: Path) -> None:
    """Refuse to write into a folder that holds anything but an earlier demo; clear an earlier demo."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"{out} is a file; --out needs a folder")
    if not any(out.iterdir()):
        return
    marker = out / MARKER
    try:
        earlier = json.loads(marker.read_text()).get("kind") == "cliplab-demo"
    except (OSError, ValueError, AttributeError):
        earlier = False
    if not earlier:
        raise ConfigError(f"{out} is not empty and holds no earlier demo; choose another --out")
    for name in ("checkpoints", "plots", "tensorboard"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (
        "metrics.jsonl",
        "skipped.jsonl",
        "summary.json",
        "config.yaml",
        "model.safetensors",
        "example.png",
        MARKER,
    ):
        (out / name).unlink(missing_ok=True)

"""The training loop: data, steps, validation, checkpoints and reports for one run.

`Trainer(config).fit()` runs in one process or in each process torchrun starts; `train(config)`
is the same as a function. The run folder (`config.out`) receives `config.yaml`, `metrics.jsonl`,
`skipped.jsonl` (every bad sample passed over), `tensorboard/`, `checkpoints/step_*/`,
`model.safetensors` (the final weights), `plots/training.png` and `summary.json`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from .. import distributed
from ..checkpoints import save_checkpoint
from ..data import StreamState, TrainingData, open_source
from ..errors import CheckpointError, ConfigError, TrainingDiverged
from ..files import write_json
from ..loading import architecture
from ..models import Model
from ..transforms import model_transform
from . import checkpoint as ckpt
from .config import TrainConfig, save_config
from .ema import WeightAverage
from .features import CachedCaptionDataset, CachedTower, cache_plan, cache_tower, plain_captions
from .initial import initial_model
from .metrics import MetricsLog, drop_records_after, plot_metrics
from .optim import build_optimizer, clamp_logit_scale_, learning_rate, set_learning_rate
from .step import ContrastiveForward, StepLoss, forward_backward, lock_tower, set_patch_dropout
from .validate import ValidationSet

# Options that define what a checkpoint is a checkpoint of; resuming with others changed is refused.
RESUME_MUST_MATCH = (
    "model",
    "init_from",
    "image_tower",
    "text_tower",
    "data",
    "split",
    "batch_size",
    "seed",
    "loss",
    "resample",
    "augment",
)


@dataclass
class TrainResult:
    out: Path
    steps: int
    model_path: Path | None
    last_checkpoint: Path | None
    metrics: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    bad_steps: int = 0


class Trainer:
    def __init__(self, config: TrainConfig, resume: str | None = None):
        self.config = config
        self.place = distributed.setup(config.device)
        if config.batch_size % self.place.world:
            raise ConfigError(f"batch_size {config.batch_size} does not split evenly over {self.place.world} processes")
        self.local_batch = config.batch_size // self.place.world
        self.out = Path(config.out)
        self.checkpoints = self.out / "checkpoints"
        device = self.place.device
        self.bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")

        torch.manual_seed(config.seed)  # the same initial weights in every process
        self.model: Model = initial_model(config).to(device)
        set_patch_dropout(self.model, config.patch_dropout)
        self.frozen = []
        if config.lock_image:
            self.frozen += lock_tower(self.model, "image", config.lock_image_unlocked)
        if config.lock_text:
            self.frozen += lock_tower(self.model, "text", config.lock_text_unlocked)
        if not any(p.requires_grad for name, p in self.model.named_parameters() if not name.startswith("logit_")):
            raise ConfigError("both towers locked leave nothing to train but the temperature")
        self.model.set_grad_checkpointing(config.grad_checkpointing)
        self.head = ContrastiveForward(self.model, config.loss).to(device)
        if config.temperature_init is not None:
            with torch.no_grad():
                self.model.logit_scale.fill_(math.log(config.temperature_init))
        self.parameters = [p for p in self.head.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(
            self.head, config.lr, config.weight_decay, (config.beta1, config.beta2), config.eps
        )
        self.loss_fn = StepLoss(config.loss, config.local_loss)
        self.forward: nn.Module = self.head
        if self.place.world > 1 and config.micro_batch_size is None:
            ddp_device = [device.index] if device.type == "cuda" else None
            self.forward = nn.parallel.DistributedDataParallel(self.head, device_ids=ddp_device)
        if config.compile:
            self.forward = torch.compile(self.forward)

        self.average = WeightAverage(self.head, config.ema) if config.ema else None
        self._setup_data()
        self.head.cached = frozenset(self.cached)
        self.step = 0
        self.bad_in_row = 0
        self.bad_steps = 0
        self.skipped: Counter = Counter()
        self.stream_state = StreamState()
        self.stream_epoch = 0
        self._pending_skips: list[dict] = []
        self._grad_norm = float("nan")
        self._last_validation: int | None = None
        self._last_metrics: dict[str, Any] = {}
        self.window = _Window()  # what the next metrics record averages
        torch.manual_seed(config.seed + 1 + self.place.rank)  # training randomness differs by process
        if self.place.is_main:
            ckpt.remove_unfinished(self.checkpoints)  # what a run killed while writing a checkpoint left
        distributed.barrier()
        resume_path = None
        if resume == "latest-good":
            resume_path = self._restore_newest_readable()
        elif resume:
            resume_path = ckpt.resolve_resume(resume, self.checkpoints)
            self._restore(resume_path, self._read_checkpoint(resume_path))
        if self.place.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(config, self.out / "config.yaml")
        self.log = MetricsLog(
            self.out, self.place.is_main, config.tensorboard, resume_step=self.step if resume_path else None
        )
        if resume_path is not None and self.place.is_main:
            drop_records_after(self.out / "skipped.jsonl", self.step)  # as the metrics: a killed run's extra rows

    # ----- data -----

    def _setup_data(self) -> None:
        config, model = self.config, self.model
        columns = dict(
            image_column=config.image_column, caption_column=config.caption_column, image_root=config.image_root
        )
        source = open_source(
            config.data,
            split=config.split,
            count=config.samples_per_epoch,
            seed=config.seed,
            image_size=model.image_size,
            **columns,
        )
        self.transform = model_transform(
            model, train=source.allows_crops and config.augment, crop_scale=tuple(config.crop_scale)
        )
        towers, self.cache_notes = cache_plan(config, source)
        self.cached = self._cache(towers, source, self.transform)
        dataset = None
        if self.cached:
            dataset = CachedCaptionDataset(
                source.items,
                self.transform,
                model.tokenizer,
                config.seed,
                self.cached.get("image"),
                self.cached.get("text"),
            )
        self.data = TrainingData(
            source,
            self.transform,
            model.tokenizer,
            config.batch_size,
            seed=config.seed,
            rank=self.place.rank,
            world=self.place.world,
            workers=0 if "image" in self.cached else config.workers,  # nothing left to decode
            resample=config.resample,
            samples_per_epoch=config.samples_per_epoch,
            dataset=dataset,
        )
        self.steps_per_epoch = self.data.samples // config.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"{config.data}: {self.data.samples} samples per epoch, fewer than one batch of {config.batch_size}"
            )
        self.total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.source = source
        self.validation = None
        val_data = config.val_data or (config.data if config.val_split else "")  # another split of the same table
        self.validates = bool(val_data)
        if val_data and self.place.is_main:
            val = open_source(val_data, split=config.val_split, **columns)
            transform = model_transform(model)
            usable = [t for t in towers if t == "image" or plain_captions(val.items)]
            caches = self._cache(usable, val, transform, shared=False)
            self.validation = ValidationSet(val, transform, config.workers, caches.get("image"), caches.get("text"))

    def _cache(self, towers: list[str], source, transform, shared: bool = True) -> dict[str, CachedTower]:
        """The cached outputs of `towers` on `source`. With several processes (`shared`) the first computes
        what is missing while the others wait, then they read it (or, without a shared cache, compute it)."""

        def compute() -> dict[str, CachedTower]:
            autocast = torch.autocast(self.place.device.type, dtype=torch.bfloat16) if self.bf16 else None
            return {
                tower: cache_tower(
                    self.model,
                    tower,
                    source,
                    transform,
                    min(self.local_batch, CACHE_BATCH),
                    self.config.workers,
                    autocast,
                    self.config.progress and self.place.is_main,
                )
                for tower in towers
            }

        if not towers or not shared or self.place.world == 1:
            return compute() if towers else {}
        cached = compute() if self.place.is_main else {}
        distributed.barrier()
        return cached if self.place.is_main else compute()

    def _epoch_batches(self, epoch: int, start: int):
        if self.data.streamed and self.stream_epoch != epoch:
            self.stream_state, self.stream_epoch = StreamState(), epoch
        return self.data.batches(epoch, start, self.stream_state)

    # ----- the loop -----

    def fit(self) -> TrainResult:
        config, main = self.config, self.place.is_main
        bar = tqdm(
            total=self.total_steps * config.batch_size,
            initial=self.step * config.batch_size,
            unit="sample",
            unit_scale=True,
            desc="train",
            disable=not (main and config.progress),
            dynamic_ncols=True,
        )
        window = self.window
        last_checkpoint = None
        if main:
            self._announce()
        first_step, began_at = self.step, None
        try:
            while self.step < self.total_steps:
                epoch, start = divmod(self.step, self.steps_per_epoch)
                batches = iter(self._epoch_batches(epoch, start))
                while self.step < self.total_steps and self.step // self.steps_per_epoch == epoch:
                    waited = time.perf_counter()
                    batch = next(batches, None)
                    if batch is None:
                        raise RuntimeError(f"the data ran out at step {self.step} of epoch {epoch}")
                    began = time.perf_counter()
                    loss = self._train_step(batch.images, batch.texts)
                    self._account(batch)
                    self.step += 1
                    window.add(loss, began - waited, time.perf_counter() - waited, config.batch_size)
                    bar.update(config.batch_size)
                    if self.step == first_step + 1:
                        began_at = time.perf_counter()  # the first step warms up (kernels, workers): timed from here
                    elif main and self.step == first_step + ESTIMATE_AFTER and self.step < self.total_steps:
                        seconds = (time.perf_counter() - began_at) / (ESTIMATE_AFTER - 1)
                        left = (self.total_steps - self.step) * seconds
                        (bar.write if not bar.disable else print)(
                            f"cliplab train: {seconds:.2f} s a step, about {_duration(left)} to go (validation aside)"
                        )
                    if self.step % config.log_every == 0 or self.step == self.total_steps:
                        self._log_window(window, epoch, bar)
                    at_epoch_end = self.step % self.steps_per_epoch == 0
                    if self.validates and (
                        (config.val_every and self.step % config.val_every == 0)
                        or (not config.val_every and at_epoch_end)
                    ):
                        self._validate()
                    if self.step % config.checkpoint_every == 0 and self.step < self.total_steps:
                        last_checkpoint = self._save()
                del batches
            if self.validates and self._last_validation != self.step:
                self._validate()
            last_checkpoint = self._save()
            model_path = self._save_final()
        finally:
            bar.close()
            self.log.close()
        result = TrainResult(
            self.out,
            self.step,
            model_path,
            last_checkpoint,
            self._last_metrics,
            dict(self._all_skipped()),
            self.bad_steps,
        )
        if main:
            self._write_summary(result)
        distributed.barrier()
        return result

    def _announce(self) -> None:
        """The opening lines: what is trained on what, how long, and what looks wrong with the schedule."""
        config = self.config
        parameters = sum(p.numel() for p in self.model.parameters())
        trained = sum(p.numel() for p in self.parameters)
        epochs = self.total_steps / self.steps_per_epoch
        resumed = f", resuming at step {self.step}" if self.step else ""
        print(
            f"cliplab train: {architecture(self.model)}, {parameters:,} parameters ({trained:,} trained); "
            f"{self.source.name} ({self.source.kind}), {self.data.samples:,} samples an epoch; "
            f"{self.total_steps:,} steps of {config.batch_size} ({epochs:.3g} epoch{'s' if epochs != 1 else ''}){resumed}; "
            f"run folder {self.out}"
        )
        for tower, cache in self.cached.items():
            what = "images" if tower == "image" else "captions"
            fresh = f"{cache.computed:,} computed now" if cache.computed else "all read back"
            print(
                f"cliplab train: the locked {tower} tower runs once per {tower if tower == 'image' else 'caption'}: "
                f"{len(cache.features):,} {what} cached ({fresh}; {len(cache.bad):,} unusable) in {cache.folder}"
            )
        for note in self.cache_notes:
            print(f"cliplab train: {note}")
        if self.bf16 and self.place.device.type == "cpu" and distributed.cpu_has_bf16() is False:
            print(
                "cliplab train: warning: precision=bf16 on a CPU without bfloat16 instructions (AVX512-BF16, AMX, "
                "Arm BF16): autocast emulates them and is likely slower than precision=fp32"
            )
        if config.warmup_steps >= self.total_steps >= 10:  # (a run of a few steps has no schedule to speak of)
            print(
                f"cliplab train: warning: warmup_steps={config.warmup_steps} is not less than the run's "
                f"{self.total_steps} steps, so the learning rate rises until the last step and never decays; "
                f"a tenth of the run would be warmup_steps={max(1, self.total_steps // 10)}"
            )

    def _train_step(self, images: torch.Tensor, texts: torch.Tensor) -> float:
        config, device = self.config, self.place.device
        images = images.to(device, non_blocking=True)
        texts = texts.to(device, non_blocking=True)
        set_learning_rate(
            self.optimizer, learning_rate(self.step, config.lr, config.warmup_steps, self.total_steps, config.min_lr)
        )
        self.head.train()
        for module in self.frozen:
            module.eval()
        self.optimizer.zero_grad(set_to_none=True)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()
        loss = forward_backward(
            self.forward,
            self.head,
            self.loss_fn,
            images,
            texts,
            autocast,
            max(1, config.micro_batch_size // self.place.world) if config.micro_batch_size else None,
            self.parameters,
        )
        if config.grad_clip is not None:
            grad_norm = nn.utils.clip_grad_norm_(self.parameters, config.grad_clip)
        else:
            grad_norm = nn.utils.get_total_norm([p.grad for p in self.parameters if p.grad is not None])
        self._grad_norm = float(grad_norm)
        if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
            self.bad_in_row += 1
            self.bad_steps += 1
            self.optimizer.zero_grad(set_to_none=True)
            if self.bad_in_row >= config.max_bad_steps:
                raise TrainingDiverged(
                    f"the loss or gradient was not finite for {self.bad_in_row} steps in a row (up to step "
                    f"{self.step}); stopping. {self._last_good('lower the learning rate, set grad_clip, or check the data')}"
                )
            return float("nan")
        self.bad_in_row = 0
        self.optimizer.step()
        clamp_logit_scale_(self.model)
        if self.average is not None:
            self.average.update(self.head)
        return float(loss)

    def _account(self, batch) -> None:
        if batch.skipped:
            self.skipped.update(batch.skip_counts())
            self._pending_skips += [
                {
                    "step": self.step + 1,
                    "rank": self.place.rank,
                    "sample": path,
                    "reason": reason,
                }  # 1-based, as metrics
                for path, reason in batch.skipped
            ]
        if batch.stream is not None:
            self.stream_state.positions[batch.stream] = batch.position

    def _all_skipped(self) -> Counter:
        total = Counter()
        for counts in distributed.gather_objects(dict(self.skipped)):
            total.update(counts)
        return total

    def _flush_skips(self) -> None:
        pending = [row for rows in distributed.gather_objects(self._pending_skips) for row in rows]
        self._pending_skips = []
        if self.place.is_main and pending:
            with open(self.out / "skipped.jsonl", "a") as f:
                f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in pending)

    def _log_window(self, window: _Window, epoch: int, bar: tqdm) -> None:
        self._flush_skips()
        skipped = self._all_skipped()
        values = {
            "epoch": epoch,
            "train/loss": window.mean_loss(),
            "train/lr": self.optimizer.param_groups[0]["lr"],
            "train/logit_scale": self.model.logit_scale.exp().item(),
            "train/grad_norm": self._grad_norm,
            "train/samples_per_s": window.samples_per_s(),
            "train/data_wait": window.data_wait(),
            "train/skipped_samples": sum(skipped.values()),
            "train/bad_steps": self.bad_steps,
        }
        self.log.log(self.step, values)
        self._last_metrics.update(values)
        bar.set_postfix(loss=f"{values['train/loss']:.3f}", wait=f"{values['train/data_wait']:.0%}", refresh=False)
        window.reset()

    def _validate(self) -> None:
        if self.validation is not None:  # only the first process holds a validation set
            autocast = torch.autocast(self.place.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()
            with self._averaged():
                metrics = self.validation.evaluate(self.model, self.local_batch, autocast, self.config.batch_size)
            self.log.log(self.step, metrics)
            self._last_metrics.update(metrics)
            if self.validation.skipped:
                self.log.log(self.step, {f"val/skipped/{k}": v for k, v in self.validation.skipped.items()})
        self._last_validation = self.step
        distributed.barrier()

    def _averaged(self):
        """Inside it the model holds the weight average (`ema`), when the run keeps one."""
        return self.average.swapped_in(self.head) if self.average is not None else nullcontext()

    # ----- checkpoints -----

    def _check_finite(self) -> None:
        """Weights with a non-finite value are never saved: the run stops and names its last good checkpoint."""
        tensors = self.model.state_dict()
        broken = [name for name, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
        if self.average is not None:
            averaged = zip(self.average.names, self.average.average, strict=True)
            broken += [f"{name} (averaged)" for name, t in averaged if not torch.isfinite(t).all()]
        if broken:
            raise TrainingDiverged(
                f"at step {self.step}, {len(broken)} of the model's {len(tensors)} tensors hold infinities or NaNs "
                f"(e.g. {broken[0]}), "
                f"so nothing was saved. {self._last_good('lower the learning rate or set grad_clip')}"
            )

    def _last_good(self, advice: str) -> str:
        good = ckpt.list_checkpoints(self.checkpoints)
        if not good:
            return f"No checkpoint was written before it; {advice} and start again."
        return f"The last good checkpoint is {good[-1]}; {advice}, then resume from it (--resume {good[-1]})."

    def _save(self) -> Path | None:
        self._check_finite()
        self._flush_skips()
        rank_states = distributed.gather_objects(
            {
                "rng": ckpt.capture_rng(self.place.device),
                "skipped": dict(self.skipped),
                "streams": {str(k): v for k, v in self.stream_state.positions.items()},
            }
        )
        path = None
        if self.place.is_main:
            tensors = {"optimizer": self.optimizer.state_dict(), "rng": [state["rng"] for state in rank_states]}
            if self.average is not None:  # the checkpoint's model holds the trained weights, to resume them
                tensors["ema"] = self.average.state_dict()
            state = {
                "step": self.step,
                "epoch": self.step // self.steps_per_epoch,
                "total_steps": self.total_steps,
                "world": self.place.world,
                "workers": self.config.workers,
                "stream_epoch": self.stream_epoch,
                "ranks": [{"skipped": s["skipped"], "streams": s["streams"]} for s in rank_states],
                "bad_steps": self.bad_steps,
                "bad_in_row": self.bad_in_row,
                "last_validation": self._last_validation,
                # the log's running averages, so the first record after a resume is the one it would have been
                "window": self.window.state(),
                "config": self.config.to_dict(),
            }
            path = ckpt.save_training_checkpoint(
                self.checkpoints, self.step, self.model, tensors, state, self.config.keep_checkpoints
            )
        distributed.barrier()
        return path

    @staticmethod
    def _read_checkpoint(path: Path) -> tuple[dict, dict, dict]:
        try:
            return ckpt.load_training_checkpoint(path)
        except CheckpointError as err:
            earlier = [p for p in ckpt.list_checkpoints(path.parent) if ckpt.step_of(p) < ckpt.step_of(path)]
            hint = (
                f"resume from the one before it (--resume {earlier[-1]}), or from the newest that reads "
                "(--resume latest-good)"
                if earlier
                else "there is none before it"
            )
            raise CheckpointError(f"{err}; {hint}") from None

    def _restore_newest_readable(self) -> Path:
        """`--resume latest-good`: the newest checkpoint of this run that reads, each damaged one passed over
        said by name."""
        for path in reversed(ckpt.list_checkpoints(self.checkpoints)):
            try:
                loaded = ckpt.load_training_checkpoint(path)
            except CheckpointError as err:
                if self.place.is_main:
                    print(f"cliplab train: passing over a damaged checkpoint: {err}", file=sys.stderr)
                continue
            self._restore(path, loaded)
            return path
        raise CheckpointError(f"--resume latest-good: no readable checkpoint in {self.checkpoints}")

    def _restore(self, path: Path, loaded: tuple[dict, dict, dict]) -> None:
        model_state, tensors, state = loaded
        saved = state["config"]
        changed = [key for key in RESUME_MUST_MATCH if saved.get(key) != getattr(self.config, key)]
        if changed:
            raise ConfigError(
                f"{path} was written by a run with other {', '.join(changed)}: "
                + ", ".join(f"{k}={saved.get(k)!r} (now {getattr(self.config, k)!r})" for k in changed)
            )
        if "logit_bias" not in model_state and tensors.get("logit_bias") is not None:
            model_state["logit_bias"] = tensors["logit_bias"]  # written before the bias lived on the model
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(tensors["optimizer"])
        if self.average is not None:
            if "ema" in tensors:
                self.average.load_state_dict(tensors["ema"])
            else:
                self.average = WeightAverage(self.head, self.config.ema)
                if self.place.is_main:
                    print(f"cliplab train: {path} holds no weight average; it starts from its weights")
        self.step = state["step"]
        self.bad_steps, self.bad_in_row = state["bad_steps"], state["bad_in_row"]
        self._last_validation = state.get("last_validation")
        self.window.load(state.get("window"))
        same_layout = state["world"] == self.place.world
        if same_layout:
            ranked = state["ranks"][self.place.rank]
            ckpt.restore_rng(tensors["rng"][self.place.rank], self.place.device)
            self.skipped = Counter(ranked["skipped"])
            if state["workers"] == self.config.workers:
                self.stream_epoch = state["stream_epoch"]
                self.stream_state = StreamState({int(k): v for k, v in ranked["streams"].items()})
        if self.place.is_main and not (same_layout and state["workers"] == self.config.workers):
            print(
                f"cliplab train: resuming with {self.place.world} processes x {self.config.workers} workers "
                f"(saved: {state['world']} x {state['workers']}); the run continues, but not sample for sample"
            )

    def _save_final(self) -> Path | None:
        self._check_finite()
        if not self.place.is_main:
            return None
        path = self.out / "model.safetensors"
        with self._averaged():
            save_checkpoint(self.model, path)
        if self.config.plots:
            plot_metrics(self.log.path, self.out / "plots" / "training.png")
        return path

    def _write_summary(self, result: TrainResult) -> None:
        summary = {
            "steps": result.steps,
            "model": str(result.model_path),
            "last_checkpoint": str(result.last_checkpoint),
            "metrics": result.metrics,
            "skipped": result.skipped,
            "bad_steps": result.bad_steps,
        }
        write_json(self.out / "summary.json", summary)


CACHE_BATCH = 256  # inputs per batch when caching a locked tower: its memory, not the step's, sets it
ESTIMATE_AFTER = 20  # steps after which the time the run will take is estimated and said


def _duration(seconds: float) -> str:
    return (
        f"{seconds:.0f} s"
        if seconds < 90
        else f"{seconds / 60:.1f} min"
        if seconds < 5400
        else f"{seconds / 3600:.1f} h"
    )


class _Window:
    """Loss and timing since the last log line."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.losses, self.wait, self.total, self.samples = [], 0.0, 0.0, 0

    def state(self) -> dict:
        return {"losses": self.losses, "wait": self.wait, "total": self.total, "samples": self.samples}

    def load(self, state: dict | None) -> None:
        if state:  # checkpoints written before the window was saved start it afresh
            self.losses, self.wait, self.total, self.samples = (
                list(state["losses"]),
                state["wait"],
                state["total"],
                state["samples"],
            )

    def add(self, loss: float, wait: float, total: float, samples: int) -> None:
        if loss == loss:  # not NaN
            self.losses.append(loss)
        self.wait += wait
        self.total += total
        self.samples += samples

    def mean_loss(self) -> float:
        return sum(self.losses) / len(self.losses) if self.losses else float("nan")

    def samples_per_s(self) -> float:
        return self.samples / self.total if self.total else 0.0

    def data_wait(self) -> float:
        return self.wait / self.total if self.total else 0.0


def train(config: TrainConfig, resume: str | None = None) -> TrainResult:
    """Run (or, with `resume`, continue) a training run; see `TrainConfig` for every option."""
    try:
        return Trainer(config, resume).fit()
    finally:
        distributed.teardown()

"""Batches for training, split over processes and workers, restartable at any step of an epoch.

`TrainingData(source, ...)` is all the trainer sees of its data. Two ways of reading a source:
- its items (a caption table, generated scenes): a map-style dataset read in a seeded per-epoch
  permutation; each process takes its slice of every global batch, and a resumed run starts the
  permutation at its step;
- WebDataset shards: each (process, worker) pair reads its own stream of shards and batches it
  itself; every batch says which stream made it and how far into the stream it ends, so a resumed
  run restarts each stream where its last used batch ended.
Either way a sample's caption choice and random crop are seeded by the sample, so what a step sees
does not depend on the number of workers or on having been resumed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, IterableDataset, Sampler, get_worker_info

from ..errors import BadSample, CliplabError, ConfigError, SourceError
from .dataset import Batch, CaptionDataset, Sample, collate, seeded_transform
from .decode import check_caption, decode_image
from .shards import read_shard, sample_captions, sample_image_bytes, shard_sizes
from .sources import Source


class EpochBatchSampler(Sampler[list[int]]):
    """This process's indices for each global batch of one epoch, from `start_step` on.

    An epoch is `samples` indices (default: the dataset's size) of a seeded permutation of the
    dataset, which depends only on (seed, epoch); an epoch longer than the dataset continues with
    further permutations. The last incomplete global batch is dropped, so every process runs the
    same number of steps.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        rank: int,
        world: int,
        seed: int,
        epoch: int,
        start_step: int = 0,
        samples: int | None = None,
    ):
        if batch_size % world:
            raise ConfigError(f"batch_size {batch_size} does not split evenly over {world} processes")
        self.samples = size if samples is None else samples
        if self.samples < batch_size:
            raise SourceError(f"an epoch has {self.samples} samples, fewer than one batch of {batch_size}")
        self.size, self.batch_size, self.rank, self.world = size, batch_size, rank, world
        self.seed, self.epoch, self.start_step = seed, epoch, start_step

    @property
    def steps(self) -> int:
        return self.samples // self.batch_size

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order: list[int] = []
        while len(order) < self.steps * self.batch_size:
            order += torch.randperm(self.size, generator=generator).tolist()
        per_rank = self.batch_size // self.world
        for step in range(self.start_step, self.steps):
            start = step * self.batch_size + self.rank * per_rank
            yield order[start : start + per_rank]


@dataclass
class StreamState:
    """Where each worker stream of a shard source stands: raw samples read, by stream."""

    positions: dict[int, int] = field(default_factory=dict)


class ShardStream(IterableDataset):
    """An endless stream of this process's batches from WebDataset shards (one stream per worker).

    Without `resample`, stream s of S reads shards s, s + S, ... of a per-pass shuffled shard list,
    again and again; with it, shards are drawn with replacement. The trainer decides how many
    batches make an epoch. A batch's `position` counts the raw samples (good or bad) its stream has
    read; `start` maps streams to the positions to restart from, skipping without decoding.
    """

    def __init__(
        self,
        shards: Sequence[str],
        transform: Callable,
        tokenizer: Callable,
        batch_size: int,
        rank: int = 0,
        world: int = 1,
        seed: int = 0,
        epoch: int = 0,
        resample: bool = False,
        start: StreamState | None = None,
        rotation: int = 0,
    ):
        self.shards = list(shards)
        self.transform, self.tokenizer, self.batch_size = transform, tokenizer, batch_size
        self.rank, self.world, self.seed, self.epoch, self.resample = rank, world, seed, epoch, resample
        self.start = start or StreamState()
        # Worker j plays stream (j + rotation) % workers, so that the DataLoader's round robin over
        # workers continues, after a restart, with the stream whose turn it was.
        self.rotation = rotation

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        role = (worker + self.rotation) % workers
        stream = self.rank * workers + role
        skip = self.start.positions.get(role, 0)
        samples: list[Sample] = []
        skipped: list[tuple[str, str]] = []
        for position, shard, key, files, bad in self._raw_samples(stream, self.world * workers):
            if position <= skip:
                continue
            if bad is not None:
                skipped.append((f"{shard}:{key}", bad))
                continue
            try:
                samples.append(Sample(*self._decode(files, f"{self.seed}/{self.epoch}/{stream}/{position}"), []))
            except BadSample as err:
                skipped.append((f"{shard}:{key}", err.reason))
                continue
            if len(samples) == self.batch_size:
                batch = collate(samples)
                batch.skipped, batch.stream, batch.position = skipped, role, position
                yield batch
                samples, skipped = [], []

    def _raw_samples(self, stream: int, streams: int) -> Iterator[tuple[int, str, str, dict, str | None]]:
        """(position, shard, key, files, reason if bad) for every raw sample of one stream, endlessly."""
        check_enough_shards(len(self.shards), streams, self.resample)
        rng = random.Random(f"{self.seed}/{self.epoch}/{stream}")
        position = 0
        for pass_index in range(1 << 62):
            if self.resample:
                mine = [rng.choice(self.shards)]
            else:
                order = list(self.shards)
                random.Random(f"{self.seed}/{self.epoch}/pass{pass_index}").shuffle(order)
                mine = order[stream::streams]
            for shard in mine:
                samples, problem = read_shard(shard)
                if problem is not None:  # counted first; the shard's complete samples are still used
                    position += 1
                    yield position, shard, "", {}, problem
                for key, files in samples:
                    position += 1
                    yield position, shard, key, files, None

    def _decode(self, files: dict[str, bytes], sample_id: str) -> tuple[torch.Tensor, torch.Tensor]:
        rng = random.Random(sample_id)
        caption = check_caption(rng.choice(sample_captions(files)))
        with decode_image(sample_image_bytes(files)) as image:
            pixels = seeded_transform(self.transform, image, rng.getrandbits(63))
        return pixels, self.tokenizer(caption)[0]


def check_enough_shards(shards: int, streams: int, resample: bool) -> None:
    """Without resampling every (process, worker) stream needs a shard of its own."""
    if not resample and shards < streams:
        raise ConfigError(
            f"{shards} shards cannot feed {streams} streams (processes x workers): "
            "use fewer workers, more shards, or resample=true"
        )


class TrainingData:
    """A source as the trainer reads it: how many samples make an epoch, and each epoch's batches.

    Shard sources are streamed (an epoch is `samples_per_epoch`, or the count in `sizes.json`); any
    other source is read through its items, which must have captions (an epoch is `samples_per_epoch`
    of them, drawn in a fresh order each epoch, or every item once). `transform` and `tokenizer`
    turn an image and a caption into the model's inputs.
    """

    def __init__(
        self,
        source: Source,
        transform: Callable,
        tokenizer: Callable,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        workers: int = 0,
        resample: bool = False,
        samples_per_epoch: int | None = None,
        dataset: CaptionDataset | None = None,
    ):
        """`dataset` replaces the one made of the source's items (the trainer's cached features)."""
        self.transform, self.tokenizer, self.batch_size = transform, tokenizer, batch_size
        self.seed, self.rank, self.world, self.workers, self.resample = seed, rank, world, workers, resample
        self.shards = source.shards
        if self.shards is not None:
            self.dataset = None
            check_enough_shards(len(self.shards), world * max(1, workers), resample)
            if samples_per_epoch is None:
                sizes = shard_sizes(self.shards)
                if sizes is None:
                    raise ConfigError(
                        f"{source.location}: no sizes.json beside the shards; set samples_per_epoch to the number of samples"
                    )
                samples_per_epoch = sum(sizes.values())
            self.samples = samples_per_epoch
        else:
            if not source.has_captions:
                raise SourceError(
                    f"{source.location}: training needs captions (a caption column, .txt/.json in shards, or "
                    "synthetic); this source has none"
                )
            self.dataset = dataset or CaptionDataset(source.items, transform, tokenizer, seed=seed)
            self.samples = len(self.dataset) if samples_per_epoch is None else samples_per_epoch

    @property
    def streamed(self) -> bool:
        return self.dataset is None

    def batches(self, epoch: int, start_step: int, positions: StreamState) -> Iterator[Batch]:
        """The batches of one epoch from `start_step` on; streams restart at `positions`."""
        return _with_plain_errors(self._loader(epoch, start_step, positions))

    def _loader(self, epoch: int, start_step: int, positions: StreamState) -> DataLoader:
        if self.dataset is not None:
            self.dataset.set_epoch(epoch)
            sampler = EpochBatchSampler(
                len(self.dataset), self.batch_size, self.rank, self.world, self.seed, epoch, start_step, self.samples
            )
            return DataLoader(
                self.dataset,
                batch_sampler=sampler,
                collate_fn=collate,
                num_workers=self.workers,
                persistent_workers=False,
                generator=_private_generator(),
            )
        stream = ShardStream(
            self.shards,
            self.transform,
            self.tokenizer,
            self.batch_size // self.world,
            self.rank,
            self.world,
            self.seed,
            epoch,
            self.resample,
            start=positions,
            rotation=start_step % max(1, self.workers),
        )
        return DataLoader(
            stream, batch_size=None, num_workers=self.workers, persistent_workers=False, generator=_private_generator()
        )


def _with_plain_errors(loader: DataLoader) -> Iterator[Batch]:
    """The loader's batches; a user's error raised in a worker process reaches the caller as itself, with its
    own message, not wrapped in the worker's traceback (which PyTorch folds into the message)."""
    try:
        yield from loader
    except CliplabError as err:
        text = str(err)
        if "Original Traceback" not in text or isinstance(err, BadSample):
            raise
        last = text.rstrip().splitlines()[-1]
        message = last.partition(f"{type(err).__name__}: ")[2] or last
        raise type(err)(message) from None


def _private_generator() -> torch.Generator:
    """A DataLoader draws its workers' base seed from this instead of torch's global generator.

    Drawn from the global one, starting a loader would shift the random stream the model uses
    (patch dropout), at a different step in a resumed run than in an uninterrupted one. Nothing in
    a sample depends on the base seed: every sample seeds its own augmentation.
    """
    return torch.Generator().manual_seed(0)

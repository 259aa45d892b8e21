"""Concurrent requests gathered into batches: each waits a few milliseconds for others that need the same
tower, then one call encodes them all.

On a CPU one batch of 32 texts runs many times faster than 32 texts one by one, and the answers are the
same (the towers never mix rows). The encoding runs in a worker thread, so the event loop keeps taking
requests while a batch runs; the next batch gathers meanwhile. A request's own slow parts (reading its
body, decoding its image) happen before it joins a batch, so they delay no one else; if a batch fails,
each of its inputs is encoded alone, so one bad input fails only its own request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class Batching:
    enabled: bool = True
    max_batch: int = 32  # inputs encoded together at most
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for others

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ConfigError(f"the largest batch must be at least 1, got {self.max_batch}")
        if not 0 <= self.max_wait_ms <= 1000:
            raise ConfigError(f"the batch wait must be between 0 and 1000 ms, got {self.max_wait_ms}")


class Batcher:
    """`await batcher(x)` -> `encode_many([..., x, ...])`'s row for x, run through `run` (the model lock)."""

    def __init__(self, encode_many: Callable[[Sequence[Any]], np.ndarray], run: Callable, batching: Batching):
        self.encode_many, self.run, self.batching = encode_many, run, batching
        self._queue: asyncio.Queue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task | None = None
        self.batches: list[int] = []  # sizes of the batches run (the last 1,000), for tests and logs

    async def __call__(self, item: Any) -> np.ndarray:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new event loop (test clients start their own)
            self._loop, self._queue = loop, asyncio.Queue()
            self._worker = loop.create_task(self._gather())
        future = loop.create_future()
        self._queue.put_nowait((item, future))
        return await future

    async def _gather(self) -> None:
        queue, loop = self._queue, self._loop
        wait = self.batching.max_wait_ms / 1000
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + wait
            while len(batch) < self.batching.max_batch:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), left))
                except asyncio.TimeoutError:  # (TimeoutError itself from Python 3.11)
                    break
            batch = [(item, future) for item, future in batch if not future.done()]  # clients that left
            if batch:
                await self._encode(batch)

    async def _encode(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        self.batches = [*self.batches[-999:], len(batch)]
        try:
            vectors = await asyncio.to_thread(self.run, self.encode_many, [item for item, _ in batch])
        except Exception as err:
            if len(batch) > 1:  # one input spoiled the batch: each alone, so only its own request fails
                for pair in batch:
                    await self._encode([pair])
            elif not batch[0][1].done():
                batch[0][1].set_exception(err)
            return
        for (_, future), vector in zip(batch, vectors):
            if not future.done():
                future.set_result(vector)

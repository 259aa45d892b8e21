"""A video through the image tower: frames sampled at a rate, consecutive near-identical frames folded
into segments, and one embedding for the whole video.

    video = embed_video(model, "lecture.mp4", fps=1, fold=0.95)
    video.features          # (S, D) a segment's embedding: the normalised mean of its frames'
    video.starts, video.ends, video.frames   # seconds: where each segment begins and ends, the frame it shows
    video.vector            # (D,) the normalised mean of every sampled frame (CLIP4Clip's mean pooling)

A frame joins the current segment while its embedding's cosine similarity with the segment's first frame
is at least `fold` (so a static shot is one segment, and a slow pan is cut once it has moved far enough);
`fold=1` keeps every sampled frame as its own segment. Frames are decoded and preprocessed in a thread
while the model encodes the previous batch, through a bounded queue: memory stays the same however long
the video is. Frames are preprocessed exactly as an image file is (the model's own transform of the RGB
frame), so a frame saved as a picture and searched with `--image` finds its segment.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ..caches import release_free_memory
from ..data.decode import MAX_PIXELS
from ..data.video import VideoCutOff, sample_frames
from ..errors import BadSample, ConfigError
from ..models.protocol import Model, model_device
from ..transforms import model_transform
from .images import evaluating

DEFAULT_FPS = 1.0
DEFAULT_FOLD = 0.95
_END = object()


@dataclass
class VideoSegments:
    features: torch.Tensor  # (S, D) normalised float32 segment embeddings
    starts: list[float]
    ends: list[float]
    frames: list[float]  # the time of the frame each segment shows (its first)
    vector: torch.Tensor  # (D,) the whole video: normalised mean of all its sampled frames
    sampled: int  # frames sampled and embedded
    width: int
    height: int
    duration: float  # seconds: the file's own duration, else up to the last sampled frame's interval
    problem: BadSample | None = None  # a video cut off part of the way: what is here came before the damage
    segment_frames: list[int] = field(default_factory=list)  # frames folded into each segment


def check_video_options(fps: float, fold: float) -> None:
    if not 0 < fps <= 120:
        raise ConfigError(f"--fps must be above 0 and at most 120 frames a second, not {fps}")
    if not 0 < fold <= 1:
        raise ConfigError(f"--fold must be a cosine similarity above 0 and at most 1 (1: keep every frame), not {fold}")


@torch.no_grad()
def embed_video(
    model: Model,
    path: str | Path,
    fps: float = DEFAULT_FPS,
    fold: float = DEFAULT_FOLD,
    batch_size: int = 32,
    max_pixels: int = MAX_PIXELS,
    transform: Callable | None = None,
    progress: tqdm | None = None,
) -> VideoSegments:
    """Segments of the video at `path`; BadSample when not one frame of it can be read.

    `progress`, a tqdm bar, advances by the seconds of video read."""
    check_video_options(fps, fold)
    transform = transform or model_transform(model)
    device = model_device(model)
    info: list = []
    frames = _Prefetch(lambda: sample_frames(path, fps, max_pixels, info), transform, depth=2 * batch_size)
    folder = _Folder(fold)
    problem = None
    with evaluating(model), frames:
        batch: list[tuple[float, torch.Tensor]] = []
        while True:
            try:
                entry = frames.get()
            except VideoCutOff as err:
                problem, entry = err, _END
            if entry is not _END:
                batch.append(entry)
            if batch and (len(batch) == batch_size or entry is _END):
                pixels = torch.stack([p for _, p in batch]).to(device)
                features = model.encode_image(pixels, normalize=True).float().cpu()
                for (time, _), feature in zip(batch, features):
                    folder.add(time, feature)
                if progress is not None:
                    progress.update(max(0.0, batch[-1][0] + 1 / fps - progress.n))
                batch = []
                release_free_memory()  # decoded frames' buffers, freed into the heap: handed back
            if entry is _END:
                break
    if folder.last is None:
        raise problem or BadSample("undecodable video", f"{path}: no frame could be decoded")
    about = info[0]
    last = folder.last
    total = about.duration if about.duration and about.duration > last and problem is None else last + 1 / fps
    features, starts, ends, counts = folder.segments(total)
    vector = torch.nn.functional.normalize(folder.total, dim=0)
    return VideoSegments(
        features, starts, ends, list(starts), vector, folder.count, about.width, about.height, total, problem, counts
    )


class _Folder:
    """Consecutive frames folded into segments while they stay `fold`-similar to the segment's first."""

    def __init__(self, fold: float):
        self.fold = fold
        self.sums: list[torch.Tensor] = []  # one per segment
        self.starts: list[float] = []
        self.counts: list[int] = []
        self.anchor: torch.Tensor | None = None
        self.last: float | None = None  # the time of the last frame added
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, time: float, feature: torch.Tensor) -> None:
        self.total = feature.clone() if self.total is None else self.total + feature
        self.count += 1
        self.last = time
        if self.anchor is not None and self.fold < 1 and float(feature @ self.anchor) >= self.fold:
            self.sums[-1] += feature
            self.counts[-1] += 1
            return
        self.anchor = feature
        self.sums.append(feature.clone())
        self.starts.append(time)
        self.counts.append(1)

    def segments(self, end: float) -> tuple[torch.Tensor, list[float], list[float], list[int]]:
        features = torch.nn.functional.normalize(torch.stack(self.sums), dim=1)
        ends = self.starts[1:] + [max(end, self.starts[-1])]
        return features, list(self.starts), ends, list(self.counts)


class _Prefetch:
    """Frames decoded and preprocessed in a thread, `depth` at most waiting: (time, pixels), then _END.

    An error in the thread is raised by `get` in the caller's; leaving the context stops the thread."""

    def __init__(self, frames: Callable, transform: Callable, depth: int):
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(frames, transform), daemon=True)

    def __enter__(self) -> _Prefetch:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        while self.thread.is_alive():  # unblock a put waiting on a full queue
            try:
                self.queue.get(timeout=0.05)
            except queue.Empty:
                pass

    def _put(self, entry) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, frames: Callable, transform: Callable) -> None:
        try:
            for frame in frames():
                with frame.image as image:
                    pixels = transform(image)
                if not self._put((frame.time, pixels)):
                    return
            self._put(_END)
        except BaseException as err:  # handed to the caller's thread, raised there
            self._put(err)

    def get(self):
        entry = self.queue.get()
        if isinstance(entry, BaseException):
            raise entry
        return entry

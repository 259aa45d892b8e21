"""Items: one image of a source, which opens itself, with its captions and label when it has them.

Every input form becomes items of a few kinds: a file (`FileItem`), a byte range inside a tar shard
(`ShardItem`, read with one seek), a row of an in-memory array (`ArrayItem`: IDX files, scikit-learn's
digits) and a generated scene (`cliplab.data.synthetic.SceneItem`). Items are small and picklable, so
DataLoader workers receive them; opening an image that cannot be used raises `BadSample` with a reason.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import BadSample
from ..files import os_reason, read_range
from .decode import MAX_PIXELS, decode_image, read_image


@dataclass(frozen=True)
class Item:
    key: str  # the item's name in its source: a relative path, a table's image path, shard:key, ...
    captions: tuple[str, ...] = ()  # as the source holds them; `check_caption` tells the usable ones
    label: int | None = None  # the class index, in labelled sources

    @property
    def caption(self) -> str | None:
        """The first caption, or None."""
        return self.captions[0] if self.captions else None

    def open_image(self, max_pixels: int = MAX_PIXELS) -> Image.Image:
        """The fully decoded image, or BadSample saying why not."""
        raise NotImplementedError

    def content(self) -> bytes | None:
        """The image's encoded bytes, where it has them (files and shards), for exact-copy checks."""
        return None

    def draw_caption(self, rng: random.Random) -> str:
        """One caption, drawn with `rng` (training draws one per visit)."""
        if not self.captions:
            raise BadSample("no caption")
        return rng.choice(self.captions)


@dataclass(frozen=True, kw_only=True)
class FileItem(Item):
    path: str

    def open_image(self, max_pixels: int = MAX_PIXELS) -> Image.Image:
        return read_image(Path(self.path), max_pixels)

    def content(self) -> bytes | None:
        try:
            return Path(self.path).read_bytes()
        except OSError:
            return None


@dataclass(frozen=True, kw_only=True)
class ShardItem(Item):
    path: str  # the shard
    offset: int  # where the image's bytes start in it, and how many
    size: int

    def read(self) -> bytes:
        """The image's bytes, read with one seek, or BadSample."""
        try:
            data = read_range(self.path, self.offset, self.size)
        except OSError as err:
            raise BadSample("unreadable shard", f"{self.path}: {os_reason(err)}") from None
        if len(data) != self.size:
            raise BadSample("shard cut off")
        return data

    def content(self) -> bytes | None:
        try:
            return self.read()
        except BadSample:
            return None

    def open_image(self, max_pixels: int = MAX_PIXELS) -> Image.Image:
        return decode_image(self.read(), max_pixels)


@dataclass(frozen=True, kw_only=True, eq=False)
class ArrayItem(Item):
    """Row `index` of a (N, H, W) uint8 array of grey images; the array is shared, not copied."""

    array: np.ndarray
    index: int

    def open_image(self, max_pixels: int = MAX_PIXELS) -> Image.Image:
        return Image.fromarray(self.array[self.index]).convert("RGB")


@dataclass(frozen=True, kw_only=True)
class VideoItem(Item):
    """A video file of a source: `cliplab embed` samples its frames (`cliplab.data.video`); as one image it
    cannot be used."""

    path: str

    def open_image(self, max_pixels: int = MAX_PIXELS) -> Image.Image:
        raise BadSample("a video", "only `cliplab embed` reads videos; other commands take images")


@dataclass(frozen=True, kw_only=True)
class VideoFrameItem(Item):
    """The frame at `time` seconds of the video at `path` (a search result's thumbnail)."""

    path: str
    time: float

    def open_image(self, max_pixels: int = MAX_PIXELS) -> Image.Image:
        from .video import frame_at  # PyAV, an extra: imported when a video is opened

        return frame_at(self.path, self.time, max_pixels)


def item_at(
    key: str,
    path: str,
    offset: int | None = None,
    size: int | None = None,
    caption: str | None = None,
    frame: float | None = None,
):
    """The item stored at `path` (a file, `size` bytes at `offset` of a shard, or the frame at `frame`
    seconds of a video), as collections record it."""
    captions = (caption,) if caption is not None else ()
    if frame is not None:
        return VideoFrameItem(key, captions, path=path, time=frame)
    if offset is None:
        return FileItem(key, captions, path=path)
    return ShardItem(key, captions, path=path, offset=offset, size=size)

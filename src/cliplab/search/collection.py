"""An embedded collection on disk, as `cliplab embed` writes it: manifest, embeddings, metadata.

Item ids are row numbers: 0 .. rows - 1 in shard order, the same numbers the FAISS index returns.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..data import item_at
from ..data.video import format_time
from ..errors import ModelMismatch, SourceError
from ..extras import require

FORMAT = "cliplab-embeddings/1"
MANIFEST = "manifest.json"


def shard_name(n: int) -> str:
    return f"{n:05d}"


def require_pyarrow() -> None:
    require("pyarrow", "search", "an embedding collection")


@dataclass
class CollectionItem:
    id: int
    key: str
    path: str
    caption: str | None
    width: int
    height: int
    offset: int | None = None
    size: int | None = None
    video: str | None = None  # a video's segment: the video's key, its start and end in seconds,
    start: float | None = None
    end: float | None = None
    frame: float | None = None  # and the time of the frame it shows

    def public(self) -> dict:
        """What a client may see: no file-system paths."""
        out = {"id": self.id, "key": self.key, "caption": self.caption, "width": self.width, "height": self.height}
        if self.video is not None:
            out |= {"video": self.video, "start": self.start, "end": self.end}
        return out

    def where(self) -> str:
        """Where the item is, for people: a path, a member of a shard, or `lecture.mp4 @ 00:12:31-00:12:40`."""
        if self.video is not None:
            return f"{self.path} @ {format_time(self.start)}-{format_time(self.end)}"
        return self.path if self.offset is None else f"{self.path}:{self.key.partition(':')[2]}"


@dataclass
class Video:
    """A video of the collection, with its own embedding (row `id` of `Collection.video_vectors`)."""

    id: int
    key: str
    path: str
    duration: float
    frames: int  # sampled
    segments: int
    width: int
    height: int


class Collection:
    def __init__(self, folder: Path, manifest: dict):
        self.folder, self.manifest = folder, manifest

    @classmethod
    def open(cls, folder: str | os.PathLike) -> Collection:
        folder = Path(folder)
        path = folder / MANIFEST
        if not path.is_file():
            raise SourceError(f"{folder}: no {MANIFEST}; make a collection with `cliplab embed SOURCE --out {folder}`")
        try:
            manifest = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SourceError(f"{path} cannot be read as JSON ({err})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise SourceError(f"{folder}: {MANIFEST} is not a cliplab embedding manifest ({FORMAT})")
        if not manifest.get("complete"):
            raise SourceError(
                f"{folder}: the embedding run did not finish; run the same `cliplab embed` again to resume it"
            )
        return cls(folder, manifest)

    @property
    def model(self) -> dict:
        return self.manifest["model"]

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def has_captions(self) -> bool:
        return bool(self.manifest["captions"])

    def __len__(self) -> int:
        return int(self.manifest["rows"])

    def check_model(self, fingerprint: str) -> None:
        if fingerprint != self.model["fingerprint"]:
            raise ModelMismatch(
                f"{self.folder} was embedded by another model ({self.model['checkpoint']}, weights "
                f"{self.model['fingerprint'][:12]}); queries must use the same model (these weights: {fingerprint[:12]})"
            )

    def _files(self, kind: str) -> list[Path]:
        return [self.folder / kind / f"{kind}_{shard_name(n)}.npy" for n in range(self.manifest["shards"])]

    def embeddings(self, kind: str = "img_emb") -> np.ndarray:
        """(rows, dim) float32 embeddings of the images (`img_emb`) or the captions (`text_emb`)."""
        if kind == "text_emb" and not self.has_captions:
            raise SourceError(f"{self.folder}: its source had no captions")
        parts = [np.load(path) for path in self._files(kind)]
        array = np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, self.dim), np.float32)
        if len(array) != len(self):
            raise SourceError(f"{self.folder}: {len(array)} {kind} rows but the manifest says {len(self)}")
        return array

    @cached_property
    def image_vectors(self) -> np.ndarray:
        return self.embeddings("img_emb")

    @cached_property
    def _metadata(self):
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = [
            pq.read_table(self.folder / "metadata" / f"metadata_{shard_name(n)}.parquet")
            for n in range(self.manifest["shards"])
        ]
        table = pa.concat_tables(tables)
        if len(table) != len(self):
            raise SourceError(f"{self.folder}: {len(table)} metadata rows but the manifest says {len(self)}")
        return {name: table.column(name).to_pylist() for name in table.column_names}

    def item(self, id: int) -> CollectionItem:
        if not 0 <= id < len(self):
            raise KeyError(id)
        columns = self._metadata  # collections from before videos have no video columns
        return CollectionItem(
            **{name: columns[name][id] for name in CollectionItem.__dataclass_fields__ if name in columns}
        )

    def open_image(self, id: int):
        """The item's image, read from where it was embedded (a file, a byte range of a shard, a video's frame)."""
        item = self.item(id)
        return item_at(item.key, item.path, item.offset, item.size, frame=item.frame).open_image()

    @cached_property
    def _video_shards(self) -> list[tuple[int, dict]]:
        """(shard, what its done file says of the video) for each shard that holds a video, in order."""
        if not self.manifest.get("videos"):
            return []
        found = []
        for n in range(self.manifest["shards"]):
            done = json.loads((self.folder / "done" / f"{shard_name(n)}.json").read_text())
            if "video" in done:
                found.append((n, done["video"]))
        return found

    @cached_property
    def videos(self) -> list[Video]:
        """The collection's videos (those that could be read), in source order."""
        return [Video(id=i, **info) for i, (_, info) in enumerate(self._video_shards)]

    @cached_property
    def video_vectors(self) -> np.ndarray:
        """(videos, dim) float32: each video's own embedding, the normalised mean of its frames'."""
        parts = [np.load(self.folder / "vid_emb" / f"vid_emb_{shard_name(n)}.npy") for n, _ in self._video_shards]
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, self.dim), np.float32)

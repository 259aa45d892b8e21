"""What `cliplab embed` reads: an image folder, a caption table or WebDataset shards, as a list of items.

Every item says where its image lies (a file, or a byte range inside a tar shard, read with one
seek) and its caption, when the source has one. The list is in a fixed order (sorted paths, table
order, shard order), so the n-th output shard of an embedding run always holds the same items and an
interrupted run can resume.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..data.decode import BadSample, decode_image, read_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


@dataclass(frozen=True)
class Item:
    key: str  # the item's name in its source: a relative path, a table's image column, shard:key
    path: str  # the image file, or the shard holding it
    caption: str | None = None
    offset: int | None = None  # in a shard: where the image's bytes start, and how many
    size: int | None = None

    def open_image(self, max_pixels: int | None = None) -> Image.Image:
        """The decoded image, or BadSample saying why not."""
        limit = {} if max_pixels is None else {"max_pixels": max_pixels}
        if self.offset is None:
            return read_image(Path(self.path), **limit)
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(self.size)
        except OSError as err:
            raise BadSample("unreadable shard", str(err)) from None
        if len(data) != self.size:
            raise BadSample("shard cut off")
        return decode_image(data, **limit)


@dataclass
class Source:
    kind: str  # "folder", "table" or "shards"
    location: str  # as resolved: an absolute path, or a shard pattern
    items: list[Item]
    fingerprint: str  # changes when the items or their files change
    problems: list[tuple[str, str]]  # (what, why) found while listing, e.g. a cut-off shard

    @property
    def has_captions(self) -> bool:
        return any(item.caption is not None for item in self.items)


def open_source(source: str | os.PathLike, split: str | None = None) -> Source:
    """The items of an image folder, a caption table (CSV/TSV/JSONL/Parquet) or WebDataset shards."""
    text = str(source)
    path = Path(text).expanduser()
    if "{" in text or path.suffix == ".tar" or (path.is_dir() and any(path.glob("*.tar"))):
        return _shards(text)
    if path.is_file() and path.suffix.lower() in TABLE_SUFFIXES:
        return _table(path, split)
    if path.is_dir():
        return _folder(path)
    if not path.exists():
        raise FileNotFoundError(f"{text}: no such file or folder")
    raise ValueError(f"{text}: not an image folder, a caption table ({', '.join(TABLE_SUFFIXES)}) or .tar shards")


def _digest(lines) -> str:
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()[:16]


def _folder(root: Path) -> Source:
    root = root.resolve()
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in it or its subfolders")
    items = [Item(str(p.relative_to(root)), str(p)) for p in files]
    stats = [(p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    fingerprint = _digest(f"{item.key}|{size}|{mtime}" for item, (size, mtime) in zip(items, stats))
    return Source("folder", str(root), items, fingerprint, [])


def _table(table: Path, split: str | None) -> Source:
    from ..data.table import read_caption_table

    table = table.resolve()
    entries = read_caption_table(table, split=split)
    if not entries:
        raise ValueError(f"{table}: no rows" + (f" in split {split!r}" if split else ""))
    # One item per image, captioned with its first caption (the others stay in the table).
    items = [Item(str(e.path), str(e.path), e.captions[0] if e.captions else None) for e in entries]
    stat = table.stat()
    fingerprint = _digest([f"{table}|{split}|{stat.st_size}|{stat.st_mtime_ns}"])
    return Source("table", str(table), items, fingerprint, [])


def _shards(pattern: str) -> Source:
    from ..data.shard_index import index_shards, sample_caption_list

    index = index_shards(pattern)
    items, problems = [], list(index.problems)
    for sample in index.samples:
        if sample.image is None:
            problems.append((f"{sample.shard}:{sample.key}", "no complete image"))
            continue
        captions = sample_caption_list(sample)
        offset, size = sample.image
        items.append(
            Item(
                f"{Path(sample.shard).name}:{sample.key}", sample.shard, captions[0] if captions else None, offset, size
            )
        )
    if not items:
        raise ValueError(f"{pattern}: no samples with an image in these shards")
    location = pattern if "{" in pattern else str(Path(pattern).resolve())
    return Source("shards", location, items, index.fingerprint, problems)

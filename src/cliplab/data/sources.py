"""`open_source`: every input form cliplab reads, opened in one place, as items that open their own image.

    source = open_source("photos/")            # a folder of images (its subfolders are classes)
    source = open_source("captions.tsv", split="dev")
    source = open_source("shards/{00000..00009}.tar")
    for item in source.items:
        image = item.open_image()              # BadSample when it cannot be read
        item.captions, item.label

Forms: an image folder (recursively; top-level subfolders name classes; with `videos=True` its video
files too, or one video file), a table (CSV, TSV, JSON lines
or Parquet) with an image column and a caption or label column, WebDataset shards (a folder of `.tar`
files, one `.tar`, or a brace pattern) with `.txt`/`.json` captions or `.cls` labels, a folder of
MNIST-style IDX files, `sklearn:digits`, and the generated `synthetic`, `synthetic:heldout`,
`synthetic:seen`. Training, evaluation, embedding and search all read through this function.

Items come in a fixed order (sorted paths, table order, shard order), so a resumed run finds the same
item at the same position. Shards are listed lazily: training streams them without reading every
header first.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..errors import SourceError
from ..files import regular_file_problem
from .arrays import digits_items, has_idx_files, idx_items
from .formats import IMAGE_SUFFIXES, TABLE_SUFFIXES, is_shard_spec, is_table
from .items import FileItem, Item, VideoItem
from .shard_index import index_shards, shards_fingerprint
from .shards import list_shards
from .synthetic import synthetic_items
from .table import table_fingerprint, table_items
from .video import VIDEO_SUFFIXES, is_video


@dataclass
class Listing:
    items: Sequence[Item]
    classes: list[str] | None = None  # class names, in label order, for labelled sources
    problems: list[tuple[str, str]] = field(default_factory=list)  # (what, why), found while listing


class Source:
    """One input: its items, their classes when labelled, and what was wrong with it.

    `kind` is "folder", "table", "shards", "video", "idx", "sklearn" or "synthetic"; `name` names results and
    caches ("imagenette", "flickr8k-captions-dev"); `fingerprint` changes whenever the items do.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        location: str,
        fingerprint: str,
        listing: Listing | Callable[[], Listing],
        shards: list[str] | None = None,
        allows_crops: bool = True,
    ):
        self.name, self.kind, self.location, self.fingerprint = name, kind, location, fingerprint
        self._listing = listing
        self.shards = shards  # the tar files of a shard source, which training streams
        # False where a random crop would contradict the caption ("a star in the top left")
        self.allows_crops = allows_crops

    def __repr__(self) -> str:
        return f"Source({self.kind} {self.location!r})"

    @cached_property
    def listing(self) -> Listing:
        return self._listing if isinstance(self._listing, Listing) else self._listing()

    @property
    def items(self) -> Sequence[Item]:
        return self.listing.items

    @property
    def classes(self) -> list[str] | None:
        return self.listing.classes

    @property
    def problems(self) -> list[tuple[str, str]]:
        return self.listing.problems

    @cached_property
    def has_captions(self) -> bool:
        return any(item.captions for item in self.items)

    @property
    def file_backed(self) -> bool:
        """Every image is stored in a file (or a shard): what an embedding collection can point back to."""
        return self.kind in ("folder", "table", "shards", "video")

    @cached_property
    def has_videos(self) -> bool:
        return any(isinstance(item, VideoItem) for item in self.items)

    def derived(self, name: str, fingerprint: str, items: Sequence[Item], problems=None) -> Source:
        """Another source of the same kind and classes over `items` (a subset, shifted copies, ...)."""
        listing = Listing(items, self.classes, list(self.problems if problems is None else problems))
        return Source(name, self.kind, self.location, fingerprint, listing, allows_crops=self.allows_crops)

    def subset(self, indices: Sequence[int], name: str | None = None) -> Source:
        indices = list(indices)
        digest = hashlib.sha256(f"{self.fingerprint}/{indices}".encode()).hexdigest()[:16]
        return self.derived(name or self.name, digest, [self.items[i] for i in indices])

    def labelled(self) -> Source:
        """The items that have a label, the others listed as problems; an error where none has one."""
        if not self.classes:
            raise SourceError(
                f"{self.location}: no class labels (class subfolders, a 'label' column, .cls files, IDX labels)"
            )
        if len(self.classes) < 2:
            raise SourceError(
                f"{self.location}: only one class ({self.classes[0]!r}); classifying needs at least two to choose from"
            )
        kept = [item for item in self.items if item.label is not None]
        if not kept:
            raise SourceError(f"{self.location}: none of its {len(self.items)} images has a class label")
        if len(kept) == len(self.items):
            return self
        unlabelled = [(item.key, "no class label") for item in self.items if item.label is None]
        return self.derived(self.name, f"{self.fingerprint}-labelled", kept, self.problems + unlabelled)


def open_source(
    spec: str | os.PathLike,
    *,
    split: str | None = None,
    classes: Sequence[str] | None = None,
    image_column: str = "image",
    caption_column: str = "caption",
    label_column: str = "label",
    image_root: str | os.PathLike | None = None,
    count: int | None = None,
    seed: int | None = None,
    image_size: int | None = None,
    default_split: str = "test",
    videos: bool = False,
) -> Source:
    """Open `spec`, whatever its form (see the module's documentation).

    - `split`: for tables, only the rows whose `split` column has this value; for IDX files, the
      `train` or `test` half (`default_split` when not given).
    - `classes`: names for the classes in label order (rename folders, name integer labels).
    - `image_column`, `caption_column`, `label_column`, `image_root`: how to read a table.
    - `count`, `seed`, `image_size`: how many scenes a generated source makes, from which seed, at
      which size (files are read as they are).
    - `videos`: also list video files (a folder's, or one video file) as `VideoItem`s, for the one
      consumer that reads them (`cliplab embed`); otherwise they are listed as problems.
    """
    text = str(spec)
    if text == "synthetic" or text.startswith("synthetic:"):
        scene_split = text.partition(":")[2] or "train"
        items, found, fingerprint = synthetic_items(scene_split, count, seed, image_size)
        names = _name_classes(found, classes, items, text)
        listing = Listing(items, names)
        return Source(f"synthetic-{scene_split}", "synthetic", text, fingerprint, listing, allows_crops=False)
    if text == "sklearn:digits":
        items, fingerprint = digits_items()
        return Source(
            "sklearn-digits", "sklearn", text, fingerprint, Listing(items, _name_classes(None, classes, items, text))
        )
    path = Path(text).expanduser()
    if is_shard_spec(text):
        return _shards(text, classes)
    if not path.exists():
        raise SourceError(f"{text}: no such file or folder")
    if path.is_file() and is_video(path):
        if not videos:
            raise SourceError(f"{text} is a video: `cliplab embed` reads videos; this command takes images")
        path = path.resolve()
        stat = path.stat()
        listing = Listing([VideoItem(path.name, path=str(path))])
        return Source(
            path.stem, "video", str(path), _digest([f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}"]), listing
        )
    if path.is_file() and is_table(path):
        return _table(path, classes, split, image_column, caption_column, label_column, image_root)
    if path.is_dir() and has_idx_files(path):
        chosen = split or default_split
        items, fingerprint = idx_items(path, chosen)
        listing = Listing(items, _name_classes(None, classes, items, text))
        return Source(f"{path.name}-{chosen}", "idx", str(path.resolve()), fingerprint, listing)
    if path.is_dir():
        return _folder(path, classes, videos)
    raise SourceError(
        f"{text}: not an image folder, a table ({', '.join(TABLE_SUFFIXES)}), .tar shards, a folder of IDX files, "
        "sklearn:digits or synthetic[:heldout|:seen]"
    )


def _name_classes(found: list[str] | None, given: Sequence[str] | None, items: Sequence[Item], where: str):
    """The class names: `given` where the user named them (checked against the labels), else `found`, else
    "0", "1", ... up to the largest label."""
    labels = [item.label for item in items if item.label is not None] if found is None else []
    if given is not None:
        given = list(given)
        if found is not None and len(given) != len(found):
            raise SourceError(f"{where}: {len(given)} class names given for its {len(found)} classes {found[:5]}...")
        if labels and max(labels) >= len(given):
            raise SourceError(f"{where}: label {max(labels)} but only {len(given)} class names")
        return given
    if found is not None:
        return found
    return [str(i) for i in range(max(labels) + 1)] if labels else None


def _digest(lines) -> str:
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()[:16]


def _folder(root: Path, given: Sequence[str] | None, videos: bool = False) -> Source:
    root = root.resolve()
    files, problems = [], []
    for path in sorted(root.rglob("*")):  # symbolic links to folders are listed, not followed
        key = str(path.relative_to(root))
        if path.is_dir() and not path.is_symlink():
            continue
        if problem := regular_file_problem(path):
            if path.is_symlink() and path.is_dir():
                problem = "a link to a folder, not followed"
            problems.append((key, problem))
        elif is_video(path) and not videos:
            problems.append((key, "a video (`cliplab embed` reads videos; this command takes images)"))
        elif path.suffix.lower() not in IMAGE_SUFFIXES and not is_video(path):
            problems.append((key, f"not an image file ({path.suffix or 'no suffix'})"))
        else:
            files.append(path)
    if not files:
        kinds = ", ".join(IMAGE_SUFFIXES + (VIDEO_SUFFIXES if videos else ()))
        raise SourceError(f"{root}: no {'images or videos' if videos else 'images'} ({kinds}) in it or its subfolders")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    index = {name: i for i, name in enumerate(found)}
    items = []
    for path in files:
        key = path.relative_to(root)
        label = index.get(key.parts[0]) if len(key.parts) > 1 else None
        kind = VideoItem if is_video(path) else FileItem
        items.append(kind(str(key), (), label, path=str(path)))
    stats = [(p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    fingerprint = _digest(f"{item.key}|{size}|{mtime}" for item, (size, mtime) in zip(items, stats))
    listing = Listing(items, _name_classes(found, given, items, str(root)) if found else None, problems)
    return Source(root.name, "folder", str(root), fingerprint, listing)


def _table(table, given, split, image_column, caption_column, label_column, image_root) -> Source:
    table = table.resolve()
    items, found, problems = table_items(table, image_column, caption_column, label_column, image_root, split)
    options = (split, image_column, caption_column, label_column, image_root)
    listing = Listing(items, _name_classes(found, given, items, str(table)) if found else None, problems)
    name = f"{table.parent.name}-{table.stem}" + (f"-{split}" if split else "")  # flickr8k-captions-dev
    return Source(name, "table", str(table), table_fingerprint(table, options, items), listing)


def _shards(pattern: str, given: Sequence[str] | None) -> Source:
    shards = list_shards(pattern)
    missing = [shard for shard in shards if not Path(shard).is_file()]
    if missing:
        raise SourceError(f"{pattern}: {len(missing)} of its {len(shards)} shards do not exist, e.g. {missing[0]}")

    def listing() -> Listing:
        items, problems = index_shards(shards)
        if not items:
            raise SourceError(f"{pattern}: no samples with an image in these shards")
        labelled = any(item.label is not None for item in items)
        return Listing(items, _name_classes(None, given, items, pattern) if labelled else None, problems)

    location = pattern if "{" in pattern else str(Path(pattern).resolve())
    name = Path(pattern.split("{")[0].rstrip("/")).name or "shards"
    return Source(name, "shards", location, shards_fingerprint(shards), listing, shards=shards)

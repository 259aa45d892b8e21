"""WebDataset tar shards: writing them from a caption table, and streaming samples out of them.

The format is img2dataset's: `00000.tar`, `00001.tar`, ... each holding, per sample, files that share
a key (`000000042.jpg`, `000000042.txt`, optionally `000000042.json`). cliplab writes every caption
of an image into the `.json` (`{"captions": [...]}`) and the first into the `.txt`, and a
`sizes.json` beside the shards with the sample count of each (OpenCLIP reads the same file).
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadSample, ConfigError, SourceError
from ..files import atomic_write, read_regular, write_json
from .formats import IMAGE_EXTENSIONS
from .items import FileItem

SIZES_FILE = "sizes.json"
MAX_SHARD_BYTES = 16 * 2**30  # a shard is read whole: larger ones are refused (img2dataset writes ~ 1 GB)


@dataclass
class ShardWriteReport:
    shards: list[Path] = field(default_factory=list)
    samples: int = 0
    skipped: Counter = field(default_factory=Counter)


def write_shards(
    entries: Sequence[FileItem],
    out_dir: str | Path,
    samples_per_shard: int = 1000,
    progress: bool = True,
) -> ShardWriteReport:
    """Write `entries` (items of image files) as shards of at most `samples_per_shard` samples; images are
    copied byte for byte, with every caption (and the label, as `.cls`, where there is one).

    Images that are missing or unreadable are skipped and counted; decoding is left to training,
    which skips and counts what fails there. Each shard is written atomically.
    """
    from tqdm import tqdm

    if samples_per_shard < 1:
        raise ConfigError(f"samples_per_shard must be positive, got {samples_per_shard}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ShardWriteReport()
    sizes: dict[str, int] = {}
    pending: list[tuple[str, bytes, str, FileItem]] = []

    def flush() -> None:
        path = out_dir / f"{len(report.shards):05d}.tar"
        atomic_write(path, lambda tmp: _write_tar(tmp, pending))
        report.shards.append(path)
        sizes[path.name] = len(pending)
        report.samples += len(pending)
        pending.clear()

    for index, entry in enumerate(tqdm(entries, desc="shards", unit="image", disable=not progress)):
        try:
            data = Path(entry.path).read_bytes()
        except FileNotFoundError:
            report.skipped["missing file"] += 1
            continue
        except OSError:
            report.skipped["unreadable file"] += 1
            continue
        extension = Path(entry.path).suffix.lower().lstrip(".").replace("jpeg", "jpg") or "jpg"
        pending.append((f"{index:09d}", data, extension, entry))
        if len(pending) == samples_per_shard:
            flush()
    if pending:
        flush()
    write_json(out_dir / SIZES_FILE, sizes)
    return report


def _write_tar(path: str, samples: list[tuple[str, bytes, str, FileItem]]) -> None:
    with tarfile.open(path, "w") as tar:
        for key, data, extension, entry in samples:
            captions = list(entry.captions)
            meta = json.dumps({"captions": captions, "source": str(entry.path)}, ensure_ascii=False)
            caption = captions[0] if captions else ""
            members = [
                (f"{key}.{extension}", data),
                (f"{key}.txt", caption.encode("utf-8", "surrogateescape")),
                (f"{key}.json", meta.encode("utf-8", "surrogateescape")),
            ]
            if entry.label is not None:
                members.append((f"{key}.cls", str(entry.label).encode()))
            for name, payload in members:
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))


def list_shards(source: str | Path) -> list[str]:
    """The shard files of a folder (sorted), a single `.tar`, or a brace pattern `data/{00000..00099}.tar`."""
    text = str(source)
    if "{" in text:
        return _expand_braces(text)
    path = Path(text)
    if path.is_dir():
        shards = sorted(str(p) for p in path.glob("*.tar"))
        if not shards:
            raise SourceError(f"{path} has no .tar shards")
        return shards
    if path.suffix == ".tar":
        return [text]
    raise SourceError(f"{source}: not a folder of shards, a .tar file or a {{a..b}} pattern")


def _expand_braces(pattern: str) -> list[str]:
    head, _, rest = pattern.partition("{")
    body, _, tail = rest.partition("}")
    first, sep, last = body.partition("..")
    if not sep or not first.isdigit() or not last.isdigit():
        raise SourceError(f"{pattern}: only numeric ranges like {{00000..00099}} are supported")
    width = len(first)
    return [f"{head}{i:0{width}d}{tail}" for i in range(int(first), int(last) + 1)]


def shard_sizes(shards: Sequence[str]) -> dict[str, int] | None:
    """Sample counts from the `sizes.json` beside the shards, when it covers them all."""
    folders = {Path(s).parent for s in shards}
    sizes: dict[str, int] = {}
    for folder in folders:
        path = folder / SIZES_FILE
        if not path.is_file():
            return None
        try:
            for name, count in json.loads(path.read_text()).items():
                sizes[str(folder / name)] = int(count)
        except (ValueError, AttributeError, TypeError) as err:  # not JSON, not a mapping, not counts
            raise SourceError(f"{path}: not a mapping of shard names to sample counts ({err})") from None
    return sizes if all(s in sizes for s in shards) else None


def read_shard(path: str) -> tuple[list[tuple[str, dict[str, bytes]]], str | None]:
    """The complete samples of a tar shard, as (key, {extension: bytes}), and what was wrong with it, if anything.

    The whole shard is read before any sample is used, so a shard cut off in the middle is known as
    such up front (and reported once), and its complete samples are still used. A tar file ends with
    two zero blocks; without them it was cut off, possibly at a member boundary, where tarfile sees
    a clean end, so the last sample, which may lack files, is dropped too. Keys follow WebDataset:
    the member name up to the first dot of its base name.
    """
    try:
        data = read_regular(path, MAX_SHARD_BYTES)
    except OSError:
        return [], "unreadable shard"
    problem = None if data[-2 * tarfile.BLOCKSIZE :] == bytes(2 * tarfile.BLOCKSIZE) else "shard cut off"
    samples: list[tuple[str, dict[str, bytes]]] = []
    key, files = None, {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                folder, _, base = member.name.rpartition("/")
                stem, _, extension = base.partition(".")
                member_key = f"{folder}/{stem}" if folder else stem
                if member_key != key:
                    if key is not None:
                        samples.append((key, files))
                    key, files = member_key, {}
                payload = tar.extractfile(member).read()
                if len(payload) != member.size:
                    return samples, "shard cut off"  # the sample in progress is incomplete: dropped
                files[extension.lower()] = payload
    except (tarfile.TarError, EOFError):
        return samples, "shard cut off"
    if key is not None and problem is None:
        samples.append((key, files))
    return samples, problem


def sample_captions(files: dict[str, bytes]) -> list[str | bytes]:
    """The captions of a sample: the `.json`'s "captions" list, else its `.txt` (bytes, checked later)."""
    if "json" in files:
        try:
            meta = json.loads(files["json"])
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BadSample("caption not UTF-8") from None
        captions = meta.get("captions") if isinstance(meta, dict) else None
        if captions:
            return [str(c) for c in captions]
        if isinstance(meta, dict) and "caption" in meta:
            return [str(meta["caption"])]
    if "txt" in files:
        return [files["txt"]]
    raise BadSample("no caption")


def sample_image_bytes(files: dict[str, bytes]) -> bytes:
    for extension in IMAGE_EXTENSIONS:
        if extension in files:
            return files[extension]
    raise BadSample("no image")

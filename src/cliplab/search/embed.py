"""`cliplab embed`: L2-normalised float16 embeddings of a collection, in shards that survive interruption.

The layout follows clip-retrieval's, which its users know::

    OUT/manifest.json                    the model that made the embeddings, the source, the shards
    OUT/img_emb/img_emb_00000.npy        (rows, dim) float16 image embeddings
    OUT/text_emb/text_emb_00000.npy      caption embeddings, row-aligned (sources with captions)
    OUT/metadata/metadata_00000.parquet  id, key, path, caption, width, height (+ offset, size in a shard;
                                         video, start, end, frame: a video's segment, in seconds)
    OUT/vid_emb/vid_emb_00000.npy        (1, dim) a video's own embedding (the mean of its frames')
    OUT/done/00000.json                  written last: the shard is complete; its rows and skipped items
    OUT/skipped.jsonl                    every entry left out, and why: when listing, or when decoding

A shard holds up to shard_size consecutive images of the source, or one video (whose segments are its
rows): so shard n of an image-only source always holds items [n * shard_size, (n + 1) * shard_size).
Every file is written atomically, and a shard counts as finished only once its `done` file exists; so a
run that is killed resumes with the next unfinished shard (video by video), and ends with the same files
as a run that was not.

Under torchrun (`torchrun --nproc_per_node=N [--nnodes ...] -m cliplab embed ...`; any process group
works) rank r embeds shards r, r + N, r + 2N, ... into the same folder (shared by every node); rank 0
writes the manifest first and finishes the collection once every rank is done: the files are those one
process writes, byte for byte. A shard's item ids depend on how many items the shards before it kept,
which a rank may not know yet; rank 0 renumbers any shard written before it could know, at the end.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import distributed
from ..data import MAX_PIXELS, Item, Source, VideoItem, open_source
from ..encode import embed_images, embed_texts
from ..encode.videos import DEFAULT_FOLD, DEFAULT_FPS, check_video_options, embed_video
from ..errors import BadSample, ConfigError, ModelMismatch, SourceError
from ..files import atomic_write, write_json
from ..models import Model, model_fingerprint
from .collection import FORMAT, MANIFEST, require_pyarrow, shard_name

DEFAULT_SHARD_SIZE = 10_000
VIDEO_BATCH = 32  # frames a video encodes at once (and at most twice as many waiting, decoded)


@dataclass
class EmbedReport:
    out: Path
    rows: int  # embedded images, in the whole collection
    skipped: int
    shards: int
    embedded_now: int  # images embedded by this call (not counting those skipped, nor those of finished shards)
    seconds: float
    resumed_shards: int = 0  # shards already done when the run began (by any process)
    problems: list[tuple[str, str]] = field(default_factory=list)
    videos: int = 0  # videos in the collection (whose segments are among the rows)
    video_seconds: float = 0.0  # their length

    @property
    def images_per_second(self) -> float:
        return self.embedded_now / self.seconds if self.seconds > 0 else 0.0


def model_identity(model: Model, checkpoint: str) -> dict:
    """What the manifest records about the model: its weights' fingerprint decides whether two models match."""
    return {
        "fingerprint": model_fingerprint(model),
        "checkpoint": str(Path(checkpoint).resolve()) if Path(checkpoint).exists() else str(checkpoint),
        "config": model.config.to_dict(),
        "embed_dim": model.embed_dim,
        "image_size": model.image_size,
    }


def embed_collection(
    source: str | os.PathLike | Source,
    out: str | os.PathLike,
    model: Model,
    checkpoint: str,
    shard_size: int = DEFAULT_SHARD_SIZE,
    batch_size: int = 256,
    workers: int = 2,
    split: str | None = None,
    max_pixels: int = MAX_PIXELS,
    progress: bool = True,
    on_shard_done: Callable[[int], None] | None = None,
    fps: float = DEFAULT_FPS,
    fold: float = DEFAULT_FOLD,
) -> EmbedReport:
    """Embed every image (and caption) and every video of `source` into `out`, resuming where an earlier
    run stopped. A video's frames are sampled at `fps`; consecutive frames at least `fold` similar become
    one segment (see `cliplab.encode.videos`).

    An earlier run in `out` must have used the same model (same weights), the same source, shard size
    and video sampling; otherwise this refuses rather than mix embeddings from two models in one collection.
    """
    require_pyarrow()
    if shard_size < 1 or batch_size < 1:
        raise ConfigError("shard_size and batch_size must be positive")
    check_video_options(fps, fold)
    started = time.perf_counter()
    source = source if isinstance(source, Source) else open_source(source, split=split, videos=True)
    if not source.file_backed:
        raise SourceError(
            f"{source.location}: a collection points back at its images, so it needs images stored in files "
            "(a folder, a table or shards)"
        )
    out = Path(out)
    model = model.eval()
    rank, world = distributed.rank_and_world()
    plan = shard_plan(source.items, shard_size)
    shards = len(plan)
    manifest = _manifest(source, split, model, checkpoint, shard_size, shards)
    if source.has_videos:
        manifest["video"] = {"fps": fps, "fold": fold}
    _check_earlier(out, manifest)  # every rank: the same refusal, not one rank failing and the rest waiting
    done_before = sum(_marker(out, n).is_file() for n in range(shards))  # before any rank writes
    distributed.barrier()
    if rank == 0:
        _start(out, manifest)
    distributed.barrier()

    mine = range(rank, shards, world)
    embedded_now, skipped_now = 0, 0
    total = sum(plan[n][1] - plan[n][0] for n in mine)  # items, not made
    unit = "file" if source.has_videos else "image"
    bar = tqdm(total=total, desc="embed", unit=unit, disable=not progress or rank != 0, smoothing=0.1)
    first_id = _FirstIds(out, plan)
    for n in mine:
        items = source.items[plan[n][0] : plan[n][1]]
        if _marker(out, n).is_file():
            bar.update(len(items))
            continue
        if isinstance(items[0], VideoItem):
            _embed_video_shard(out, n, items[0], first_id(n), model, source.has_captions, fps, fold, max_pixels, bar)
        else:
            _embed_shard(out, n, items, first_id(n), model, source.has_captions, batch_size, workers, max_pixels, bar)
        if on_shard_done is not None:
            on_shard_done(n)
        done = json.loads(_marker(out, n).read_text())
        embedded_now += done["rows"]
        skipped_now += len(done["skipped"])
    bar.close()
    distributed.barrier()  # every shard is done

    markers = [json.loads(_marker(out, n).read_text()) for n in range(shards)]
    rows = sum(done["rows"] for done in markers)
    skipped = [{"key": what, "reason": why} for what, why in source.problems]  # left out when listing
    skipped += [entry for done in markers for entry in done["skipped"]]
    if rank == 0:
        _renumber(out, markers)
        atomic_write(
            out / "skipped.jsonl", lambda tmp: Path(tmp).write_text("".join(json.dumps(s) + "\n" for s in skipped))
        )
        manifest.update(complete=True, rows=rows, skipped=len(skipped))
        if source.has_videos:
            manifest["videos"] = sum("video" in done for done in markers)
        write_json(out / MANIFEST, manifest)
    distributed.barrier()  # the collection is complete for every rank
    seconds = time.perf_counter() - started
    report = EmbedReport(out, rows, len(skipped), shards, embedded_now, seconds, done_before, source.problems)
    report.videos = sum("video" in done for done in markers)
    report.video_seconds = sum(done["video"]["duration"] for done in markers if "video" in done)
    timings = {
        "embedded": embedded_now,
        "skipped": skipped_now,
        "resumed_shards": done_before,
        "seconds": round(seconds, 3),
    }
    if world > 1:
        timings |= {"rank": rank, "world": world}
    with open(out / "runs.jsonl", "a") as log:  # the one file that differs between runs: timings
        log.write(json.dumps(timings | {"images_per_second": round(report.images_per_second, 2)}) + "\n")
    return report


def shard_plan(items: Sequence[Item], shard_size: int) -> list[tuple[int, int]]:
    """Each shard's [start, end) among the items: up to `shard_size` consecutive images, or one video."""
    plan, start = [], 0
    for i, item in enumerate(items):
        if isinstance(item, VideoItem):
            if start < i:
                plan.append((start, i))
            plan.append((i, i + 1))
            start = i + 1
        elif i - start == shard_size:
            plan.append((start, i))
            start = i
    if start < len(items):
        plan.append((start, len(items)))
    return plan


def _marker(out: Path, n: int) -> Path:
    return out / "done" / f"{shard_name(n)}.json"


class _FirstIds:
    """Shard n's first item id: the rows the shards before it kept, once all of them are done (read once
    each, as the done prefix grows); until then, its first item's position if none of them skipped
    anything and no video came before (`_renumber` corrects it at the end)."""

    def __init__(self, out: Path, plan: list[tuple[int, int]]):
        self.out, self.plan = out, plan
        self.done, self.rows = 0, 0  # the leading shards all done, and the rows they kept

    def __call__(self, n: int) -> int:
        while self.done < n and _marker(self.out, self.done).is_file():
            self.rows += json.loads(_marker(self.out, self.done).read_text())["rows"]
            self.done += 1
        return self.rows if self.done == n else self.plan[n][0]


def _renumber(out: Path, markers: list[dict]) -> None:
    """Rewrite the ids of any shard written before the rows of the shards ahead of it were known."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    first = 0
    for n, done in enumerate(markers):
        path = out / "metadata" / f"metadata_{shard_name(n)}.parquet"
        ids = pq.read_table(path, columns=["id"]).column("id").to_pylist()
        if ids and ids[0] != first:
            table = pq.read_table(path)
            table = table.set_column(0, "id", pa.array(range(first, first + len(ids)), pa.int64()))
            atomic_write(path, lambda tmp, table=table: pq.write_table(table, tmp))
        first += done["rows"]


def _manifest(source: Source, split: str | None, model: Model, checkpoint: str, shard_size: int, shards: int) -> dict:
    """The manifest of an embedding run: the model, the source, the layout; `complete` once all shards are."""
    return {
        "format": FORMAT,
        "model": model_identity(model, checkpoint),
        "source": {
            "kind": source.kind,
            "location": source.location,
            "split": split,
            "items": len(source.items),
            "fingerprint": source.fingerprint,
        },
        "shard_size": shard_size,
        "shards": shards,
        "dim": model.embed_dim,
        "dtype": "float16",
        "captions": source.has_captions,
        "complete": False,
    }


def _check_earlier(out: Path, manifest: dict) -> None:
    """Refuse a folder that holds something else: another model's or another source's embeddings."""
    path = out / MANIFEST
    if path.is_file():
        earlier = json.loads(path.read_text())
        if earlier.get("format") != FORMAT:
            raise SourceError(f"{out} holds something other than cliplab embeddings; choose another --out")
        if earlier["model"]["fingerprint"] != manifest["model"]["fingerprint"]:
            raise ModelMismatch(
                f"{out} holds embeddings made by another model ({earlier['model']['checkpoint']}); "
                "embeddings of two models cannot share a collection: choose another --out"
            )
        if earlier.get("video") != manifest.get("video"):
            raise SourceError(
                f"{out} holds videos sampled otherwise ({earlier.get('video')}, not {manifest.get('video')}); "
                "use the same --fps and --fold to resume, or choose another --out"
            )
        if earlier["source"] != manifest["source"] or earlier["shard_size"] != manifest["shard_size"]:
            raise SourceError(
                f"{out} holds embeddings of another source or shard size ({earlier['source']['location']}, "
                f"{earlier['shard_size']} per shard); choose another --out, or delete it to start again"
            )
    elif out.exists() and any(out.iterdir()):
        raise SourceError(f"{out} is not empty and holds no cliplab embeddings; choose another --out")


def _start(out: Path, manifest: dict) -> None:
    for folder in ("img_emb", "text_emb", "vid_emb", "metadata", "done"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    write_json(out / MANIFEST, manifest)


@torch.no_grad()
def _embed_shard(
    out: Path,
    n: int,
    items: Sequence[Item],
    first_id: int,
    model: Model,
    captions: bool,
    batch_size: int,
    workers: int,
    max_pixels: int,
    bar: tqdm,
) -> None:
    images = embed_images(model, items, batch_size, workers, max_pixels=max_pixels, progress=bar)
    skipped = [{"key": items[s.index].key, "path": items[s.index].path, "reason": s.message} for s in images.skipped]
    for entry in skipped:
        bar.write(f"skipped {entry['key']}: {entry['reason']}", file=sys.stderr)
    chosen = [items[i] for i in images.kept.tolist()]
    name = shard_name(n)
    _save_npy(out / "img_emb" / f"img_emb_{name}.npy", images.features.numpy())
    if captions:
        text_emb = np.zeros((len(chosen), model.embed_dim), np.float32)  # items without a caption keep a zero row
        with_caption = [row for row, item in enumerate(chosen) if item.caption is not None]
        text_emb[with_caption] = embed_texts(model, [chosen[r].caption for r in with_caption], batch_size).numpy()
        _save_npy(out / "text_emb" / f"text_emb_{name}.npy", text_emb)
    rows = len(chosen)
    columns = {
        "key": [item.key for item in chosen],
        "path": [item.path for item in chosen],
        "caption": [item.caption for item in chosen],
        "width": [w for w, _ in images.sizes],
        "height": [h for _, h in images.sizes],
        "offset": [getattr(item, "offset", None) for item in chosen],
        "size": [getattr(item, "size", None) for item in chosen],
    }
    _save_metadata(out, n, first_id, columns | {name: [None] * rows for name in ("video", "start", "end", "frame")})
    write_json(out / "done" / f"{name}.json", {"rows": rows, "skipped": skipped})


METADATA_TYPES = {
    "key": "string",
    "path": "string",
    "caption": "string",
    "width": "int32",
    "height": "int32",
    "offset": "int64",
    "size": "int64",
    "video": "string",  # the video's key: its path in the source
    "start": "float64",  # seconds
    "end": "float64",
    "frame": "float64",  # the time of the frame the segment shows
}


def _save_metadata(out: Path, n: int, first_id: int, columns: dict[str, list]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = len(columns["key"])
    arrays = {"id": pa.array(range(first_id, first_id + rows), pa.int64())}
    arrays |= {name: pa.array(columns[name], getattr(pa, kind)()) for name, kind in METADATA_TYPES.items()}
    table = pa.table(arrays)
    atomic_write(out / "metadata" / f"metadata_{shard_name(n)}.parquet", lambda tmp: pq.write_table(table, tmp))


def segment_key(video: str, start: float, end: float) -> str:
    """`lecture.mp4#t=751,760`: a segment named as a media fragment (W3C Media Fragments URI)."""

    def seconds(value: float) -> str:
        return f"{value:.3f}".rstrip("0").rstrip(".")

    return f"{video}#t={seconds(start)},{seconds(end)}"


@torch.no_grad()
def _embed_video_shard(
    out: Path,
    n: int,
    item: VideoItem,
    first_id: int,
    model: Model,
    captions: bool,
    fps: float,
    fold: float,
    max_pixels: int,
    bar: tqdm,
) -> None:
    """One video's segments as the shard's rows, its own embedding in vid_emb; a video that cannot be read
    at all is skipped (the shard has no rows), one cut off part of the way keeps what came before and is
    listed too."""
    name = shard_name(n)
    seconds = tqdm(desc=item.key[-40:], unit="s", leave=False, disable=bar.disable, bar_format=_SECONDS_BAR)
    try:
        video = embed_video(model, item.path, fps, fold, VIDEO_BATCH, max_pixels, progress=seconds)
    except BadSample as err:
        video, skipped = None, [{"key": item.key, "path": item.path, "reason": str(err)}]
    else:
        skipped = []
        if video.problem is not None:  # the part before the damage is embedded
            skipped = [{"key": item.key, "path": item.path, "reason": str(video.problem), "partial": True}]
    finally:
        seconds.close()
    bar.update(1)
    for entry in skipped:
        bar.write(
            f"{'cut off' if entry.get('partial') else 'skipped'} {entry['key']}: {entry['reason']}", file=sys.stderr
        )
    if video is None:
        features, rows = np.zeros((0, model.embed_dim), np.float32), 0
    else:
        features, rows = video.features.numpy(), len(video.starts)
        _save_npy(out / "vid_emb" / f"vid_emb_{name}.npy", video.vector.numpy()[None])
    _save_npy(out / "img_emb" / f"img_emb_{name}.npy", features)
    if captions:  # a source with captions and videos: the videos' rows have none
        _save_npy(out / "text_emb" / f"text_emb_{name}.npy", np.zeros((rows, model.embed_dim), np.float32))
    starts, ends = (video.starts, video.ends) if video else ([], [])
    columns = {
        "key": [segment_key(item.key, s, e) for s, e in zip(starts, ends)],
        "path": [item.path] * rows,
        "caption": [None] * rows,
        "width": [video.width if video else 0] * rows,
        "height": [video.height if video else 0] * rows,
        "offset": [None] * rows,
        "size": [None] * rows,
        "video": [item.key] * rows,
        "start": starts,
        "end": ends,
        "frame": video.frames if video else [],
    }
    _save_metadata(out, n, first_id, columns)
    done = {"rows": rows, "skipped": skipped}
    if video is not None:
        done["video"] = {
            "key": item.key,
            "path": item.path,
            "duration": round(video.duration, 3),
            "frames": video.sampled,
            "segments": rows,
            "width": video.width,
            "height": video.height,
        }
    write_json(out / "done" / f"{name}.json", done)


_SECONDS_BAR = "{desc}: {n:.0f} s of video [{elapsed}, {rate_fmt}]"


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array.astype(np.float16))

    atomic_write(path, write)

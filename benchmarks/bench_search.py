"""Indexes over a million vectors: what `cliplab index --recall 0.95` chooses, and every kind side by side.

For each data set, a collection is written as `cliplab embed` writes one (float16 shards, a manifest),
then:

1. exact search, single queries: FAISS float32 inner product (cliplab's index before it kept float16)
   and the float16 index cliplab builds now, alternated query by query;
2. `index_collection(..., recall=0.95)`: the tuning output (recall measured on the collection's own
   vectors), then the chosen index measured on queries from outside the collection, loaded into memory
   and memory-mapped;
3. a table of every kind at several `nprobe` / `ef_search`: recall@10 of what a search returns
   (re-scoring included) against exact search, p50 / p99 of single queries, bytes per vector, build time.

Clustered vectors (1,000 centres, the default) are closer to real embeddings; uniformly random unit
vectors (`--data random`) are the hardest case for any approximate index.

    python benchmarks/bench_search.py                             # 1,000,000 x 512 clustered (~15 min)
    python benchmarks/bench_search.py --rows 100000 --kinds ivfsq8 # quicker
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import faiss  # noqa: E402

from cliplab.search import Collection  # noqa: E402
from cliplab.search.collection import FORMAT, MANIFEST, shard_name  # noqa: E402
from cliplab.search.index import (  # noqa: E402  # noqa: E402
    ShardedVectors,
    build_index,
    bytes_per_vector,
    index_collection,
    load_index,
    nearest,
    set_search_params,
)
from common import machine  # noqa: E402

SWEEPS = {  # kind, build parameters, the search setting and its values
    "ivfpq": [({"m": 64}, "nprobe", (1, 4, 16, 64)), ({"m": 128}, "nprobe", (1, 4, 16, 64))],
    "ivfsq8": [({}, "nprobe", (1, 4, 16, 64))],
    "ivfflat": [({}, "nprobe", (1, 4, 16, 64))],
    "hnsw": [({}, "ef_search", (16, 64, 256))],
}


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def make_vectors(kind: str, rows: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(collection, queries) of unit vectors: uniformly random, or around 1,000 random centres."""
    if kind == "random":
        return unit(rng.standard_normal((rows, dim), dtype=np.float32)), None
    centres = rng.standard_normal((1000, dim), dtype=np.float32)
    vectors = np.empty((rows, dim), np.float32)
    for start in range(0, rows, 100_000):  # in chunks, to keep the peak memory down
        stop = min(rows, start + 100_000)
        noise = rng.standard_normal((stop - start, dim), dtype=np.float32)
        vectors[start:stop] = unit(centres[rng.integers(0, 1000, stop - start)] + noise)
    return vectors, centres


def write_collection(folder: Path, vectors: np.ndarray, shard: int = 100_000) -> None:
    """A collection as `cliplab embed` leaves it: float16 shards and a manifest."""
    (folder / "img_emb").mkdir(parents=True)
    shards = range(0, len(vectors), shard)
    for n, start in enumerate(shards):
        np.save(folder / "img_emb" / f"img_emb_{shard_name(n)}.npy", vectors[start : start + shard].astype(np.float16))
    manifest = {"format": FORMAT, "complete": True, "rows": len(vectors), "dim": vectors.shape[1]}
    manifest |= {"shards": len(shards), "captions": False, "model": {"fingerprint": "0" * 32, "checkpoint": "-"}}
    (folder / MANIFEST).write_text(json.dumps(manifest))


def timed(search, queries: np.ndarray) -> tuple[np.ndarray, list]:
    out, found = [], []
    for query in queries:
        began = time.perf_counter()
        found.append(search(query))
        out.append(time.perf_counter() - began)
    return np.array(out) * 1000, found


def recall_at_10(truth: np.ndarray, found: list) -> float:
    return float(np.mean([len(set(t) & {h.id for h in f}) / 10 for t, f in zip(truth, found)]))


def row(label: str, ms: np.ndarray, recall: float | None = None, extra: str = "") -> str:
    got = f"recall@10 {recall:.3f}   " if recall is not None else ""
    return f"  {label:<40} {got}p50 {np.percentile(ms, 50):7.2f} ms   p99 {np.percentile(ms, 99):7.2f} ms   {extra}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000, help="out-of-collection queries for the table")
    parser.add_argument("--exact-queries", type=int, default=200, help="single queries timed on the exact indexes")
    parser.add_argument("--data", nargs="+", default=["clustered"], choices=("clustered", "random"))
    parser.add_argument("--kinds", nargs="*", default=list(SWEEPS), choices=list(SWEEPS))
    parser.add_argument("--recall", type=float, default=0.95)
    args = parser.parse_args()
    print(f"machine: {machine()}, faiss {faiss.__version__}")
    rng = np.random.default_rng(0)
    for data in args.data:
        with tempfile.TemporaryDirectory() as work:
            measure(data, args, rng, Path(work) / "emb")


def measure(data: str, args: argparse.Namespace, rng: np.random.Generator, folder: Path) -> None:
    began = time.perf_counter()
    vectors, centres = make_vectors(data, args.rows, args.dim, rng)
    if centres is None:
        queries = unit(rng.standard_normal((args.queries, args.dim), dtype=np.float32))
    else:
        picks = centres[rng.integers(0, len(centres), args.queries)]
        queries = unit(picks + rng.standard_normal((args.queries, args.dim), dtype=np.float32))
    write_collection(folder, vectors)
    collection = Collection.open(folder)
    stored = ShardedVectors(collection)
    print(
        f"\n{data}: {args.rows:,} x {args.dim} unit vectors stored as float16, {args.queries:,} queries from outside "
        f"the collection (made in {time.perf_counter() - began:.0f} s)"
    )

    print("exact search, single queries, alternated:")
    float32 = faiss.IndexFlatIP(args.dim)
    float32.add(vectors)
    del vectors
    half, _, _ = build_index(stored, "flat")
    began = time.perf_counter()
    _, truth = half.search(queries, 10)  # ground truth over the stored values, all queries in one batch
    print(f"  (exact top-10 of all queries as one batch: {time.perf_counter() - began:.1f} s)")
    ms32, ms16 = [], []
    for query in queries[: args.exact_queries]:
        for index, ms in ((float32, ms32), (half, ms16)):
            t = time.perf_counter()
            index.search(query[None, :], 10)
            ms.append((time.perf_counter() - t) * 1000)
    del float32
    ms32, ms16 = np.array(ms32), np.array(ms16)
    print(row("flat float32 (before)", ms32, extra=f"{args.dim * 4} B/vector"))
    print(row("flat float16 (cliplab's exact index)", ms16, extra=f"{args.dim * 2} B/vector"))
    print(f"  float16 / float32 median speed-up: {np.median(ms32) / np.median(ms16):.2f}x")
    del half

    print(f"cliplab index --recall {args.recall} (tuning on the collection's own vectors):")
    info = index_collection(collection, recall=args.recall, progress=lambda line: print("   ", line, flush=True))
    print(
        f"  chose {info.kind} {info.params} in {info.build_seconds:.0f} s: recall@10 {info.recall:.3f}, "
        f"p99 {info.p99_ms:.2f} ms, {info.bytes_per_vector:.0f} B/vector"
    )
    for memory_map in (False, True):
        index, info = load_index(collection, memory_map=memory_map)
        ms, found = timed(lambda q, i=index, k=info.kind: nearest(i, k, stored, q, 10), queries)
        label = f"{info.kind}, {'memory-mapped' if memory_map else 'in memory'}"
        print(row(label, ms, recall_at_10(truth, found), "(queries from outside the collection)"))
        del index

    print("every kind, queries from outside the collection (recall of what a search returns, re-scoring included):")
    shared: dict = {}
    for kind in args.kinds:
        for params, knob, values in SWEEPS[kind]:
            began = time.perf_counter()
            index, kind, params = build_index(stored, kind, params, shared=shared)
            built = time.perf_counter() - began
            size = bytes_per_vector(kind, params, args.dim)
            for value in values:
                set_search_params(index, kind, params | {knob: value})
                ms, found = timed(lambda q, i=index, k=kind: nearest(i, k, stored, q, 10), queries)
                shown = {k: v for k, v in params.items() if k in ("m", "nlist", "hnsw_m")} | {knob: value}
                label = f"{kind} " + " ".join(f"{k}={v}" for k, v in shown.items())
                print(row(label, ms, recall_at_10(truth, found), f"{size:5.0f} B/vector   built in {built:4.0f} s"))
            del index


if __name__ == "__main__":
    main()

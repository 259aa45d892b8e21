"""Query latency of cliplab's indexes over a million vectors, and the approximate index's recall.

One query at a time, as a search service sees them: p50 / p99 latency of the exact index (FAISS
inner product over every vector) and of the approximate one (IVF-PQ, as `cliplab index` builds it
above 100,000 items), and recall@10 of the approximate results against the exact ones, before and
after cliplab's exact re-scoring of 10 x k candidates (what `Searcher.search` returns).

Random unit vectors are the hardest case for any approximate index (no clusters to exploit: every
vector is nearly as far from a query as every other); clustered vectors, closer to real embeddings,
are measured beside them.

    python benchmarks/bench_search.py                 # 1,000,000 x 512, 1,000 queries (a few minutes)
    python benchmarks/bench_search.py --rows 100000   # quicker
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cliplab.search.index import build_index, default_params  # noqa: E402
from cliplab.search.searcher import nearest  # noqa: E402
from common import machine  # noqa: E402


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


def latencies(search, queries: np.ndarray) -> np.ndarray:
    out = []
    for query in queries:
        began = time.perf_counter()
        search(query)
        out.append(time.perf_counter() - began)
    return np.array(out) * 1000


def recall_at_10(truth: np.ndarray, found: list[list[int]]) -> float:
    return float(np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--exact-queries", type=int, default=200, help="single queries timed on the exact index")
    parser.add_argument("--data", nargs="+", default=["random", "clustered"])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 64, 256])
    args = parser.parse_args()
    print(f"machine: {machine()}")
    rng = np.random.default_rng(0)
    for data in args.data:
        measure(data, args, rng)  # one data set at a time: its vectors are freed before the next


def measure(data: str, args: argparse.Namespace, rng: np.random.Generator) -> None:
    began = time.perf_counter()
    vectors, centres = make_vectors(data, args.rows, args.dim, rng)
    if centres is None:
        queries = unit(rng.standard_normal((args.queries, args.dim), dtype=np.float32))
    else:
        picks = centres[rng.integers(0, len(centres), args.queries)]
        queries = unit(picks + rng.standard_normal((args.queries, args.dim), dtype=np.float32))
    print(
        f"\n{data}: {args.rows:,} x {args.dim} unit vectors, {args.queries:,} queries "
        f"(made in {time.perf_counter() - began:.0f} s)"
    )

    exact, _, _ = build_index(vectors, "flat")
    began = time.perf_counter()
    _, truth = exact.search(queries, 10)  # ground truth, all queries in one batch
    print(f"  exact top-10 of all queries as one batch: {time.perf_counter() - began:.1f} s")
    ms = latencies(lambda q: exact.search(q[None, :], 10), queries[: args.exact_queries])
    print(
        f"  flat (exact)       p50 {np.percentile(ms, 50):7.2f} ms   p99 {np.percentile(ms, 99):7.2f} ms"
        f"   ({len(ms)} single queries)"
    )

    params = default_params("ivfpq", args.rows, args.dim)
    began = time.perf_counter()
    approximate, _, params = build_index(vectors, "ivfpq", params)
    built = time.perf_counter() - began
    print(
        f"  ivfpq nlist={params['nlist']} m={params['m']} (trained on {params['train_size']:,}): built in {built:.0f} s, "
        f"{approximate.ntotal:,} codes of {params['m']} bytes"
    )
    for nprobe in args.nprobe:
        approximate.nprobe = nprobe
        raw = [approximate.search(q[None, :], 10)[1][0].tolist() for q in queries]
        ms = latencies(lambda q: nearest(approximate, "ivfpq", vectors, q, 10), queries)
        reranked = [[h.id for h in nearest(approximate, "ivfpq", vectors, q, 10)] for q in queries]
        print(
            f"  ivfpq nprobe={nprobe:<4}  p50 {np.percentile(ms, 50):7.2f} ms   p99 {np.percentile(ms, 99):7.2f} ms"
            f"   recall@10 {recall_at_10(truth, raw):.3f} from the index alone, "
            f"{recall_at_10(truth, reranked):.3f} re-scored (what cliplab returns)"
        )


if __name__ == "__main__":
    main()

"""`cliplab index DIR [--recall 0.95]`: a FAISS index over an embedded collection, chosen by measurement."""

from __future__ import annotations

import argparse
import math
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "index",
        help="build a FAISS index over embeddings made by cliplab embed",
        description="Builds candidate indexes, smallest first, and keeps the first whose recall@10 (measured "
        "against exact search, with a sample of the collection's own vectors as queries) reaches --recall "
        "within --max-latency at the 99th percentile. Up to 100,000 items: exact search.",
    )
    parser.add_argument("folder", help="a folder written by cliplab embed")
    parser.add_argument(
        "--recall", type=float, default=0.95, help="recall@10 to reach (default: 0.95; 1 means exact search)"
    )
    parser.add_argument(
        "--max-latency",
        type=float,
        default=10.0,
        metavar="MS",
        help="99th-percentile milliseconds a single query may take (default: 10)",
    )
    parser.add_argument(
        "--queries", type=int, default=500, help="sample queries the recall and latency are measured on (default: 500)"
    )
    parser.add_argument(
        "--kind",
        default="auto",
        choices=("auto", "flat", "ivfpq", "ivfsq8", "ivfflat", "hnsw"),
        help="flat: exact; ivfpq: m bytes a vector; ivfsq8: a byte a value; ivfflat: float16 in k-means cells; "
        "hnsw: a graph (default: auto, chosen by measurement)",
    )
    parser.add_argument("--nlist", type=int, help="ivfpq: k-means cells (default ~sqrt(rows))")
    parser.add_argument("--m", type=int, help="ivfpq: bytes per compressed vector (default: dim/8, then dim/4)")
    parser.add_argument("--nprobe", type=int, help="ivf kinds: cells searched per query (default: tuned)")
    parser.add_argument("--ef-search", type=int, help="hnsw: candidate list length per query (default: tuned)")
    parser.add_argument(
        "--max-memory",
        type=memory_size,
        metavar="SIZE",
        help="most memory the build may use, e.g. 512M or 4G: embeddings are read shard by shard, so only the "
        "index (about 72 bytes a vector for ivfpq at 512 dimensions) must fit; an index that cannot is refused before any work",
    )
    parser.set_defaults(run=run)


def memory_size(text: str) -> int:
    """'512M', '4G', '1.5GB', '100000' (bytes) -> bytes."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = value[-1:] if value[-1:] in units else ""
    try:
        size = float(value[: len(value) - len(unit)]) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 512M or 4G") from None
    if not (math.isfinite(size) and size >= 1):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 512M or 4G")
    return int(size)


def run(args: argparse.Namespace) -> int:
    from ..search import Collection, index_collection

    given = {"nlist": args.nlist, "m": args.m, "nprobe": args.nprobe, "ef_search": args.ef_search}
    params = {name: value for name, value in given.items() if value is not None}
    collection = Collection.open(args.folder)
    info = index_collection(
        collection,
        args.kind,
        params,
        max_memory=args.max_memory,
        recall=args.recall,
        max_latency_ms=args.max_latency,
        queries=args.queries,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    settings = ", ".join(f"{k}={v}" for k, v in info.params.items() if k != "train_size")
    met = (
        ""
        if info.target["met"]
        else f" (the target, recall@10 {args.recall} within {args.max_latency} ms, was not met)"
    )
    print(
        f"{info.kind} index over {info.rows:,} x {info.dim} embeddings ({settings or 'exact'}) in {info.build_seconds:.1f} s: "
        f"recall@10 {info.recall:.3f}, p50 {info.p50_ms:.2f} ms, p99 {info.p99_ms:.2f} ms, "
        f"{info.bytes_per_vector:,.0f} bytes a vector{met}"
    )
    print(f'next: cliplab search {args.folder} "a dog running through snow"')
    return 0

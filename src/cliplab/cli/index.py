"""`cliplab index DIR [--kind auto|flat|hnsw|ivfpq]`: a FAISS index over an embedded collection."""

from __future__ import annotations

import argparse
import math


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "index",
        help="build a FAISS index over embeddings made by cliplab embed",
        description="Exact inner product up to 100,000 items, IVF-PQ above; --kind overrides.",
    )
    parser.add_argument("folder", help="a folder written by cliplab embed")
    parser.add_argument(
        "--kind",
        default="auto",
        choices=("auto", "flat", "hnsw", "ivfpq"),
        help="flat: exact; hnsw: a graph, fast and accurate; ivfpq: compressed, the smallest (default: auto, "
        "flat up to 100,000 items and ivfpq above)",
    )
    parser.add_argument("--nlist", type=int, help="ivfpq: k-means cells (default ~sqrt(rows))")
    parser.add_argument("--m", type=int, help="ivfpq: bytes per compressed vector (default 64)")
    parser.add_argument("--nprobe", type=int, help="ivfpq: cells searched per query (default 64)")
    parser.add_argument("--ef-search", type=int, help="hnsw: candidate list length per query (default 128)")
    parser.add_argument(
        "--max-memory",
        type=memory_size,
        metavar="SIZE",
        help="most memory the build may use, e.g. 512M or 4G: embeddings are read shard by shard, so only the "
        "index (about 72 bytes a vector for ivfpq) must fit; an index that cannot is refused before any work",
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
    info = index_collection(collection, args.kind, params, max_memory=args.max_memory)
    settings = ", ".join(f"{k}={v}" for k, v in info.params.items())
    print(
        f"{info.kind} index over {info.rows:,} x {info.dim} embeddings ({settings or 'exact'}) in {info.build_seconds:.1f} s"
    )
    print(f'next: cliplab search {args.folder} "a dog running through snow"')
    return 0

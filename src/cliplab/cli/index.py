"""`cliplab index DIR [--kind auto|flat|hnsw|ivfpq]`: a FAISS index over an embedded collection."""

from __future__ import annotations

import argparse


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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..search import Collection, index_collection

    given = {"nlist": args.nlist, "m": args.m, "nprobe": args.nprobe, "ef_search": args.ef_search}
    params = {name: value for name, value in given.items() if value is not None}
    collection = Collection.open(args.folder)
    info = index_collection(collection, args.kind, params)
    settings = ", ".join(f"{k}={v}" for k, v in info.params.items())
    print(
        f"{info.kind} index over {info.rows:,} x {info.dim} embeddings ({settings or 'exact'}) in {info.build_seconds:.1f} s"
    )
    print(f'next: cliplab search {args.folder} "a dog running through snow"')
    return 0

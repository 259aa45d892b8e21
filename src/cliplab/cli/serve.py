"""`cliplab serve DIR [--host 127.0.0.1] [--port 8000]`: the search page and API over an embedded collection."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a search page and API over an embedded collection",
        description="FastAPI on uvicorn: a search page at /, the API under /search, /classify, /embed, /items, "
        "/health, and its OpenAPI docs at /docs.",
    )
    parser.add_argument("folder", help="a folder written by cliplab embed (and, ideally, cliplab index)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--checkpoint", help="the model's file, if it moved since embedding (must be the same weights)")
    parser.add_argument("--max-upload-mb", type=float, default=10.0, help="largest request body (default: 10 MB)")
    parser.add_argument("--max-k", type=int, default=100, help="most results per query (default: 100)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..extras import require

    require("fastapi", "serve", "cliplab serve")
    uvicorn = require("uvicorn", "serve", "cliplab serve")
    from ..search import Searcher
    from ..serve import Limits, create_app

    searcher = Searcher.open(args.folder, checkpoint=args.checkpoint)
    limits = Limits(max_body_bytes=int(args.max_upload_mb * 2**20), max_k=args.max_k)
    print(f"{len(searcher.collection):,} items from {args.folder}; open http://{args.host}:{args.port}/")
    uvicorn.run(create_app(searcher, limits), host=args.host, port=args.port, log_level="info")
    return 0

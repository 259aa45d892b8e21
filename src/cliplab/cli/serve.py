"""`cliplab serve DIR [--host 127.0.0.1] [--port 8000]`: the search page and API over an embedded collection."""

from __future__ import annotations

import argparse

from ..serve.batching import Batching
from ..serve.limits import Limits
from . import options


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
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    options.checkpoint(
        parser, default=None, note="default: the one that embedded the collection; it must be the same weights"
    )
    options.device(parser)
    options.memory_map(parser)
    bounds = parser.add_argument_group("bounds on every request (anything beyond them is answered with a 4xx)")
    default = Limits()
    bounds.add_argument(
        "--max-upload-mb",
        type=float,
        default=default.max_body_bytes / 2**20,
        help="largest request body (default: 10 MB)",
    )
    bounds.add_argument(
        "--max-pixels",
        type=int,
        default=default.max_pixels,
        help=f"largest uploaded image, in pixels (default: {default.max_pixels:,})",
    )
    bounds.add_argument(
        "--max-k", type=int, default=default.max_k, help=f"most results per query (default: {default.max_k})"
    )
    bounds.add_argument(
        "--max-text-chars",
        type=int,
        default=default.max_text_chars,
        help=f"longest text query (default: {default.max_text_chars:,})",
    )
    bounds.add_argument(
        "--max-labels",
        type=int,
        default=default.max_labels,
        help=f"most labels or templates in /classify (default: {default.max_labels})",
    )
    bounds.add_argument(
        "--max-label-chars",
        type=int,
        default=default.max_label_chars,
        help=f"longest label or template (default: {default.max_label_chars})",
    )
    bounds.add_argument(
        "--max-prompts",
        type=int,
        default=default.max_prompts,
        help=f"most labels x templates in /classify (default: {default.max_prompts:,})",
    )
    batched = parser.add_argument_group("batching (concurrent requests encoded together)")
    batching = Batching()
    batched.add_argument("--no-batching", action="store_true", help="encode each request on its own (for comparison)")
    batched.add_argument(
        "--max-batch",
        type=int,
        default=batching.max_batch,
        help=f"most texts or images encoded together (default: {batching.max_batch})",
    )
    batched.add_argument(
        "--batch-wait-ms",
        type=float,
        default=batching.max_wait_ms,
        help=f"how long a request waits for others to join its batch (default: {batching.max_wait_ms:g} ms)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..extras import require

    require("fastapi", "serve", "cliplab serve")
    uvicorn = require("uvicorn", "serve", "cliplab serve")
    from ..search import Searcher
    from ..serve import create_app

    batching = Batching(not args.no_batching, args.max_batch, args.batch_wait_ms)
    searcher = Searcher.open(args.folder, checkpoint=options.model_name(args), device=args.device, memory_map=args.mmap)
    limits = Limits(
        max_body_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=args.max_pixels,
        max_k=args.max_k,
        max_text_chars=args.max_text_chars,
        max_labels=args.max_labels,
        max_label_chars=args.max_label_chars,
        max_prompts=args.max_prompts,
    )
    print(f"{len(searcher.collection):,} items from {args.folder}; open http://{args.host}:{args.port}/")
    uvicorn.run(create_app(searcher, limits, batching), host=args.host, port=args.port, log_level="info")
    return 0

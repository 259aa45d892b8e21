"""Embedding throughput of `cliplab embed`, then a load test of `cliplab serve` on loopback.

1. Embeds the first N images of a caption table (Flickr8k when ../shared holds it, else generated
   photos) with a model (random ViT-B/32 weights unless --checkpoint), and reports images/s.
2. Indexes them and starts `cliplab serve` in its own process, with batching and with `--no-batching`,
   alternately (--rounds of each).
3. C concurrent clients each send Q text searches, all different (captions of the table, none repeated
   across runs, so no run is helped by the server's text cache), and the script reports errors, queries/s
   and latency p50/p99 of each server, and the ratio. Bounded in time by --timeout.

    python benchmarks/bench_serve.py                        # 1,000 images, 64 clients x 20 queries, 2 rounds
    python benchmarks/bench_serve.py --images 200 --clients 20 --queries 10 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import cliplab  # noqa: E402
from cliplab.data import open_source  # noqa: E402
from cliplab.search import Collection, embed_collection, index_collection  # noqa: E402
from common import SHARED, machine  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _generated_table(folder: Path, count: int) -> Path:
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.conftest import natural_image

    (folder / "images").mkdir(parents=True)
    rows = ["image\tcaption"]
    for i in range(count):
        Image.fromarray(natural_image(240, 320, seed=i)).save(folder / "images" / f"{i}.jpg", quality=90)
        rows.append(f"{i}.jpg\ta generated photo with colourful blobs, number {i}")
    (folder / "captions.tsv").write_text("\n".join(rows) + "\n")
    return folder / "captions.tsv"


async def _load(url: str, queries: list[str], clients: int, per_client: int, timeout: float):
    """`clients` concurrent clients, each sending `per_client` searches in turn: (latencies ms, errors, seconds)."""
    import httpx

    latencies, errors = [], []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def one_client(c: int) -> None:
            for q in range(per_client):
                text = queries[(c * per_client + q) % len(queries)]
                began = time.perf_counter()
                try:
                    response = await client.post("/search", json={"text": text, "k": 10})
                    if response.status_code != 200:
                        errors.append(f"{response.status_code}: {response.text[:100]}")
                except httpx.HTTPError as err:
                    errors.append(repr(err))
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one_client(c) for c in range(clients))), timeout)
        return np.array(latencies) * 1000, errors, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", help="a caption table (default: Flickr8k from ../shared, else generated)")
    parser.add_argument("--checkpoint", help="default: random ViT-B/32 weights")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--queries", type=int, default=20, help="queries per client")
    parser.add_argument("--rounds", type=int, default=2, help="load tests of each server, alternating")
    parser.add_argument("--timeout", type=float, default=600, help="seconds the load test may take in all")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    table = Path(args.table) if args.table else SHARED / "flickr8k" / "captions.tsv"
    if not table.is_file():
        table = _generated_table(work / "generated", args.images)
    checkpoint = args.checkpoint
    if checkpoint is None:
        torch.manual_seed(0)
        checkpoint = str(work / "ViT-B-32-random.safetensors")
        cliplab.save_checkpoint(cliplab.create_model("ViT-B/32"), checkpoint)
    model = cliplab.load_model(checkpoint)

    source = open_source(table)
    source = source.subset(range(min(args.images, len(source.items))))
    report = embed_collection(source, work / "emb", model, checkpoint, batch_size=args.batch_size, progress=False)
    print(
        f"\nembed: {report.rows:,} images of {table} (with their captions) in {report.seconds:.1f} s = "
        f"{report.images_per_second:.1f} images/s, {torch.get_num_threads()} threads, 2 decoding workers"
    )
    index_collection(Collection.open(work / "emb"), "flat")

    captions = list(dict.fromkeys(c for e in open_source(table).items for c in e.captions))  # all, distinct
    total = args.clients * args.queries
    results: dict[str, list[tuple]] = {"batched": [], "one at a time": []}
    run = 0
    for _ in range(args.rounds):
        for mode in results:
            queries = captions[run * total : (run + 1) * total] or captions  # fresh texts for every run
            run += 1
            flags = ["--no-batching"] if mode == "one at a time" else []
            results[mode].append(_serve_and_load(work / "emb", flags, queries, args))
    for mode, runs in results.items():
        for latencies, errors, seconds in runs:
            print(
                f"load, {mode}: {args.clients} clients x {args.queries} text searches (k=10) on loopback: "
                f"{len(latencies):,} answered, {len(errors)} errors, {seconds:.1f} s, "
                f"{len(latencies) / seconds:.1f} queries/s; latency p50 {np.percentile(latencies, 50):.0f} ms, "
                f"p99 {np.percentile(latencies, 99):.0f} ms"
            )
            for error in errors[:5]:
                print("  error:", error)
    rate = {mode: np.median([len(lat) / sec for lat, _, sec in runs]) for mode, runs in results.items()}
    print(f"batched / one at a time: {rate['batched'] / rate['one at a time']:.2f}x (median queries/s of each)")


def _serve_and_load(folder: Path, flags: list[str], queries: list[str], args) -> tuple:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cliplab", "serve", str(folder), "--port", str(port), *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit(f"the server did not start: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        return asyncio.run(_load(url, queries, args.clients, args.queries, args.timeout))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()

"""Memory of `cliplab serve` under adversarial `/classify` requests: is it bounded?

Starts `cliplab serve` on a small generated collection in its own process, then sends R requests
(C at a time) that each try to make the server keep memory: templates built to expand
(`{{}}{0:>300000000}`), malformed templates, the most labels x templates allowed with every prompt new
(so each one fills the prompt cache), more prompts than allowed, the longest labels. It reads the
server's resident memory (`VmRSS`, and the peak `VmHWM`) from /proc every 100 requests and reports the
answers by status (no 5xx allowed) and the memory against its bound: the caches' byte budgets
(prompt embeddings, text queries, thumbnails, the tokenizer's words) above the warmed-up server, plus one request's work.

    python benchmarks/bench_hostile_serve.py                       # 1,000 requests, 4 at a time
    python benchmarks/bench_hostile_serve.py --model ViT-B/32 --requests 200
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import cliplab  # noqa: E402
from bench_serve import _free_port, _generated_table  # noqa: E402
from cliplab.data import open_source  # noqa: E402
from cliplab.search import Collection, embed_collection, index_collection  # noqa: E402
from cliplab.search.searcher import TEXT_CACHE_BYTES  # noqa: E402
from cliplab.serve import Limits  # noqa: E402
from cliplab.serve.service import THUMBNAIL_CACHE_BYTES  # noqa: E402
from cliplab.tokenizer.bpe import WORD_CACHE_BYTES  # noqa: E402
from cliplab.zeroshot.classifier import PROMPT_CACHE_BYTES  # noqa: E402
from common import machine  # noqa: E402

LIMITS = Limits()


def _memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def _words(rng: np.random.Generator, chars: int) -> str:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz     "))
    return "".join(rng.choice(letters, chars)).strip() or "x"


def adversarial_request(i: int, rng: np.random.Generator) -> tuple[str, str, str]:
    """(kind, labels, templates) of the i-th request: every kind in turn, every text new."""
    most, chars = LIMITS.max_labels, LIMITS.max_label_chars
    kind = ("expanding", "malformed", "most prompts, all new", "too many prompts", "longest labels")[i % 5]
    if kind == "expanding":
        templates = ["{{}}{0:>300000000}", "{:>300000000}", "{!r:>99999999}", "{}" + "{{}}" * 90][i // 5 % 4]
        return kind, "cat,dog", templates
    if kind == "malformed":
        templates = ["a {} {x}", "a {} {1}", "{}{0}", "a {} }", "{0.__class__}", "no placeholder", "{} {}"][i // 5 % 7]
        return kind, "cat,dog", templates
    if kind == "most prompts, all new":  # labels x templates = max_prompts, each a prompt never seen before
        templates = [f"{_words(rng, chars - 30)} {{}} {j}" for j in range(most)]
        labels = [_words(rng, 20) for _ in range(LIMITS.max_prompts // most)]
        return kind, ",".join(labels), "\n".join(templates)
    if kind == "too many prompts":
        return kind, ",".join(_words(rng, 10) for _ in range(most)), "\n".join(f"{{}} {j}" for j in range(most))
    labels = [_words(rng, chars) for _ in range(most)]
    return kind, ",".join(labels), "a photo of {}."


async def _attack(url: str, requests: int, clients: int, image: bytes, pid: int, seed: int):
    import httpx

    statuses: Counter = Counter()
    samples, seconds = [], []
    rng = np.random.default_rng(seed)
    bodies = [adversarial_request(i, rng) for i in range(requests)]
    queue: asyncio.Queue = asyncio.Queue()
    for i, body in enumerate(bodies):
        queue.put_nowait((i, body))
    done = 0
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        async def worker() -> None:
            nonlocal done
            while not queue.empty():
                i, (kind, labels, templates) = queue.get_nowait()
                began = time.perf_counter()
                response = await client.post(
                    "/classify",
                    data={"labels": labels, "templates": templates},
                    files={"image": ("x.png", image, "image/png")},
                )
                seconds.append(time.perf_counter() - began)
                statuses[(kind, response.status_code)] += 1
                done += 1
                if done % 100 == 0:
                    samples.append((done, _memory(pid)))

        await asyncio.gather(*(worker() for _ in range(clients)))
    return statuses, samples, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-ViT/8@32px", help="random weights of this architecture")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4, help="requests in flight at once")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    work = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    table = _generated_table(work / "generated", 50)
    torch.manual_seed(0)
    checkpoint = work / "model.safetensors"
    cliplab.save_checkpoint(cliplab.create_model(args.model), checkpoint)
    model = cliplab.load_model(checkpoint)
    embed_collection(open_source(table), work / "emb", model, str(checkpoint), batch_size=50, progress=False)
    index_collection(Collection.open(work / "emb"), "flat")
    del model

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cliplab", "serve", str(work / "emb"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx
        from PIL import Image

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
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), (200, 120, 40)).save(buffer, format="PNG")
        image = buffer.getvalue()
        for _ in range(3):  # warm up: the model has run, the default templates' prompts are cached
            httpx.post(url + "/classify", data={"labels": "cat,dog"}, files={"image": ("x.png", image)}, timeout=120)
        warm = _memory(server.pid)
        began = time.perf_counter()
        statuses, samples, seconds = asyncio.run(
            _attack(url, args.requests, args.clients, image, server.pid, args.seed)
        )
        elapsed = time.perf_counter() - began
        final = _memory(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    log = server.stderr.read().decode()
    mib = 2**20
    caches = PROMPT_CACHE_BYTES + TEXT_CACHE_BYTES + THUMBNAIL_CACHE_BYTES + WORD_CACHE_BYTES
    print(
        f"\n{args.requests:,} adversarial /classify requests, {args.clients} at a time, {elapsed:.0f} s ({args.model})"
    )
    for (kind, status), count in sorted(statuses.items()):
        print(f"  {kind:<24} {status}: {count}")
    server_errors = sum(c for (_, s), c in statuses.items() if s >= 500)
    print(f"  5xx answers: {server_errors}; tracebacks in the server's log: {log.count('Traceback')}")
    print(f"  slowest answer {max(seconds):.1f} s, median {np.median(seconds):.2f} s")
    print("\nserver memory (VmRSS), every 100 requests:")
    print(f"  warmed up: {warm['VmRSS'] / mib:.0f} MiB")
    for done, memory in samples:
        print(f"  after {done:>5}: {memory['VmRSS'] / mib:.0f} MiB")
    print(
        f"peak (VmHWM) {final['VmHWM'] / mib:.0f} MiB = warmed up + {(final['VmHWM'] - warm['VmRSS']) / mib:.0f} MiB; "
        f"the caches may hold {caches / mib:.0f} MiB (prompts {PROMPT_CACHE_BYTES / mib:.0f}, text queries "
        f"{TEXT_CACHE_BYTES / mib:.0f}, thumbnails {THUMBNAIL_CACHE_BYTES / mib:.0f}, the tokenizer's words "
        f"{WORD_CACHE_BYTES / mib:.0f}), plus one request's work "
        f"(at most {LIMITS.max_prompts:,} prompts, encoded 256 at a time; bodies up to "
        f"{LIMITS.max_body_bytes / mib:.0f} MiB)"
    )


if __name__ == "__main__":
    main()

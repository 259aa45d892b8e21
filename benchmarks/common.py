"""Timing helpers shared by the benchmarks: alternating runs, medians, ratios, a matmul peak."""

from __future__ import annotations

import csv
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
# Imagenette's classes and their ImageNet indices (OpenAI's curated names for them are at those indices)
IMAGENETTE = {
    "tench": 0,
    "English springer": 217,
    "cassette player": 482,
    "chain saw": 491,
    "church": 497,
    "French horn": 566,
    "garbage truck": 569,
    "gas pump": 571,
    "golf ball": 574,
    "parachute": 701,
}


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}"


def matmul_peak_gflops(sizes: tuple[int, ...] = (1024, 2048), repeats: int = 10) -> float:
    """Float32 GFLOP/s of torch's matmul on this machine (best of several sizes and runs):
    the ceiling for dense models. Noisy shared machines read low, so take the best, not the median."""
    return max(_matmul_gflops(n, repeats) for n in sizes)


def _matmul_gflops(n: int, repeats: int) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    return 2 * n**3 / min(_seconds(lambda: a @ b) for _ in range(repeats)) / 1e9


def matmul_candidate(n: int = 2048) -> tuple[Callable[[], object], float]:
    """A square float32 matmul to run among `compare`'s candidates, and its GFLOPs: the peak measured
    in the same alternating rounds as the models, so a machine that slows down mid-run (shared
    hosts here vary by 30%) slows the denominator too."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return (lambda: a @ b), 2 * n**3 / 1e9


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(candidates: dict[str, Callable[[], object]], rounds: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each candidate, run in alternation so machine noise hits all alike."""
    with torch.inference_mode():
        for fn in candidates.values():
            for _ in range(warmup):
                fn()
        times: dict[str, list[float]] = {name: [] for name in candidates}
        order = list(candidates)
        for _ in range(rounds):
            for name in order:
                times[name].append(_seconds(candidates[name]))
            order = order[1:] + order[:1]  # rotate, so no candidate always runs first
    return {name: statistics.median(ts) for name, ts in times.items()}


def report(
    title: str,
    medians: dict[str, float],
    items: int,
    unit: str,
    flops_per_item: float | None = None,
    peak: float | None = None,
) -> None:
    """Print throughput per candidate and the ratio of cliplab to each reference."""
    print(f"\n{title}")
    ours = medians["cliplab"]
    for name, seconds in medians.items():
        line = f"  {name:<14} {items / seconds:9.1f} {unit}/s"
        if flops_per_item and peak:
            achieved = flops_per_item * items / seconds / 1e9
            line += f"   {achieved:6.1f} GFLOP/s ({achieved / peak:5.1%} of matmul peak)"
        if name != "cliplab":
            line += f"   cliplab / {name} = {seconds / ours:.2f}x"
        print(line)


def captions(limit: int) -> list[str]:
    """Flickr8k captions from ../shared when present, otherwise generated caption-like text."""
    table = SHARED / "flickr8k" / "captions.tsv"
    if table.is_file():
        with open(table, newline="") as f:
            return [row["caption"] for _, row in zip(range(limit), csv.DictReader(f, delimiter="\t"))]
    words = "a dog runs across the green grass while two children in red shirts watch from a bench".split()
    return [" ".join(words[: 5 + i % 12]) + "." for i in range(limit)]

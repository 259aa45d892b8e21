"""Training throughput against open-clip-torch, and the largest batch that trains in a memory budget.

1. Samples/s of a whole training step (forward, symmetric loss, backward, AdamW step) for cliplab
   and open-clip-torch: same model and weights, same images and Flickr8k captions, same process,
   steps alternating; the first step's losses are printed side by side to show they agree.
2. Peak memory (resident set size of a fresh process doing one step) at a few batch sizes, with and
   without gradient caching (open-clip-torch's beside the plain ones), fitted (plain: linear in the batch; cached: linear plus the N x N
   logits) and solved for the largest global batch under the budget.

    python benchmarks/bench_train.py                               # ViT-B/32, batch 32, 16 GB
    python benchmarks/bench_train.py --model tiny-ViT/8@64px --batch 128 --budget-gb 16
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cliplab  # noqa: E402
from cliplab.train.optim import build_optimizer  # noqa: E402
from cliplab.train.step import ContrastiveForward, StepLoss, forward_backward  # noqa: E402
from common import captions, machine  # noqa: E402

OPENCLIP_NAMES = {"ViT-B/32": "ViT-B-32-quickgelu", "ViT-B/16": "ViT-B-16-quickgelu", "RN50": "RN50-quickgelu"}


def inputs(name: str, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    config = cliplab.get_config(name)
    size = config.vision.image_size
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    texts = cliplab.tokenize(captions(batch), config.text.context_length, truncate=True)
    return images, texts


def cliplab_step(model: cliplab.CLIP, micro: int | None = None):
    head = ContrastiveForward(model)
    optimizer = build_optimizer(head)
    loss_fn = StepLoss("clip")
    parameters = [p for p in head.parameters() if p.requires_grad]

    def step(images, texts) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = forward_backward(
            head, head, loss_fn, images, texts, torch.autocast("cpu", enabled=False), micro, parameters
        )
        optimizer.step()
        return float(loss)

    return step


def openclip_step(model):
    import open_clip

    loss_fn = open_clip.ClipLoss()
    optimizer = build_optimizer(model)

    def step(images, texts) -> float:
        optimizer.zero_grad(set_to_none=True)
        image_features, text_features, logit_scale = model(images, texts)
        loss = loss_fn(image_features, text_features, logit_scale)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def throughput(name: str, batch: int, rounds: int) -> None:
    import open_clip

    torch.manual_seed(0)
    reference = open_clip.create_model(OPENCLIP_NAMES[name]).train()
    ours = cliplab.build_model(reference.state_dict()).train()
    images, texts = inputs(name, batch)
    steps = {"cliplab": cliplab_step(ours), "open_clip": openclip_step(reference)}
    first = {label: step(images, texts) for label, step in steps.items()}  # same weights: same loss
    print(
        f"\ntraining step, {name}, batch {batch}, Flickr8k captions: first-step loss "
        + ", ".join(f"{k} {v:.6f}" for k, v in first.items())
        + f" (|diff| {abs(first['cliplab'] - first['open_clip']):.1e})"
    )
    times: dict[str, list[float]] = {label: [] for label in steps}
    order = list(steps)
    for _ in range(rounds):
        for label in order:
            start = time.perf_counter()
            steps[label](images, texts)
            times[label].append(time.perf_counter() - start)
        order = order[1:] + order[:1]
    medians = {label: statistics.median(t) for label, t in times.items()}
    for label, seconds in medians.items():
        line = f"  {label:<10} {batch / seconds:8.2f} samples/s"
        if label != "cliplab":
            line += f"   cliplab / {label} = {seconds / medians['cliplab']:.2f}x"
        print(line)


def peak_rss() -> int:
    """This process's peak resident set size in bytes. (getrusage's ru_maxrss is no good here: on
    Linux it keeps the peak of the parent from before exec, the benchmark itself.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def probe(name: str, batch: int, micro: int | None, reference: bool = False) -> None:
    """One training step in this (fresh) process, cliplab's or open_clip's; prints its peak resident
    memory in bytes."""
    torch.manual_seed(0)
    images, texts = inputs(name, batch)
    if reference:
        import open_clip

        openclip_step(open_clip.create_model(OPENCLIP_NAMES[name]).train())(images, texts)
    else:
        cliplab_step(cliplab.create_model(name).train(), micro)(images, texts)
    print(peak_rss())


def probe_loss(name: str, batch: int) -> None:
    """The symmetric loss alone, forward and backward, on a batch of random features; prints peak memory."""
    dim = cliplab.get_config(name).embed_dim
    features = [torch.nn.functional.normalize(torch.randn(batch, dim), dim=-1).requires_grad_() for _ in range(2)]
    StepLoss("clip")(*features, torch.tensor(100.0), None).backward()
    print(peak_rss())


def peak_bytes(
    name: str, batch: int, micro: int | None, loss_only: bool = False, reference: bool = False
) -> int | None:
    args = [
        sys.executable,
        __file__,
        "--probe-loss" if loss_only else "--probe",
        "--model",
        name,
        "--batch",
        str(batch),
    ]
    args += ["--micro", str(micro)] if micro else []
    args += ["--reference"] if reference else []
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode == -9 and reference:
        return None  # killed by the kernel: it did not fit in this machine's memory
    done.check_returncode()
    return int(done.stdout.split()[-1])


def loss_bytes_per_pair(name: str, sizes: tuple[int, int] = (4096, 8192)) -> float:
    small, large = (peak_bytes(name, n, None, loss_only=True) for n in sizes)
    per_pair = (large - small) / (sizes[1] ** 2 - sizes[0] ** 2)
    print(f"  the loss alone at N = {sizes[0]} and {sizes[1]}: {per_pair:.1f} bytes per (image, text) pair")
    return per_pair


def largest_batch(name: str, budget: float, plain_sizes: list[int], cached_sizes: list[int], micro: int) -> None:
    print(f"\npeak memory of one training step, {name} (fresh process each; budget {budget / 2**30:.0f} GiB)")
    plain = {n: peak_bytes(name, n, None) for n in plain_sizes}
    reference = {n: peak_bytes(name, n, None, reference=True) for n in plain_sizes} if name in OPENCLIP_NAMES else {}
    for n, b in plain.items():
        line = f"  batch {n:>6}, no caching:          {b / 2**30:6.2f} GiB"
        if n in reference:
            line += (
                f"   (open_clip {reference[n] / 2**30:6.2f} GiB)"
                if reference[n]
                else "   (open_clip: killed, out of memory)"
            )
        print(line)
    (n0, b0), (n1, b1) = list(plain.items())[-2:]
    slope = (b1 - b0) / (n1 - n0)
    plain_max = int(n1 + (budget - b1) / slope)
    print(f"  -> {slope / 2**20:.1f} MiB per sample; largest batch without caching ~ {plain_max:,}")
    measured = [(n, b) for n, b in reference.items() if b]
    if len(measured) >= 2:  # its process also imports open_clip, so compare the slopes, not the totals
        (n0, r0), (n1, r1) = measured[-2:]
        theirs = (r1 - r0) / (n1 - n0)
        print(
            f"  -> open_clip {theirs / 2**20:.1f} MiB per sample, ~ {int(n1 + (budget - r1) / theirs):,} in the budget"
        )

    cached = {n: peak_bytes(name, n, micro) for n in cached_sizes}
    for n, b in cached.items():
        print(f"  batch {n:>6}, micro-batches of {micro}: {b / 2**30:6.2f} GiB")
    # memory = fixed + per_sample * N + quadratic * N^2; the N x N part (logits, softmax, their
    # gradients) is too small to see at these batch sizes, so it is measured on the loss alone.
    quadratic = loss_bytes_per_pair(name)
    (n0, b0), (n1, b1) = list(cached.items())[-2:]
    per_sample = ((b1 - quadratic * n1**2) - (b0 - quadratic * n0**2)) / (n1 - n0)
    fixed = b1 - per_sample * n1 - quadratic * n1**2
    n = n1
    while fixed + per_sample * (n * 2) + quadratic * (n * 2) ** 2 < budget:
        n *= 2
    low, high = n, n * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fixed + per_sample * mid + quadratic * mid**2 < budget else (low, mid)
    print(
        f"  -> {per_sample / 2**20:.2f} MiB per sample beyond the micro-batch (inputs, features); "
        f"largest batch with caching ~ {low:,} (extrapolated)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B/32")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget-gb", type=float, default=16)
    parser.add_argument("--micro", type=int, default=None)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe-loss", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    if args.probe or args.probe_loss:
        (
            probe_loss(args.model, args.batch)
            if args.probe_loss
            else probe(args.model, args.batch, args.micro, args.reference)
        )
        return
    print(machine())
    if args.model in OPENCLIP_NAMES and not args.skip_throughput:
        throughput(args.model, args.batch, args.rounds)
    if not args.skip_memory:
        # Batches large enough that activations, not the weights and optimiser state, set the peak;
        # cached ones far apart, since what grows with them (inputs, features) is small beside allocator noise.
        largest_batch(args.model, args.budget_gb * 2**30, [64, 128, 256], [256, 1024], micro=32)


if __name__ == "__main__":
    main()

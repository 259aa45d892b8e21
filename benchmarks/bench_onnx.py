"""ONNX Runtime against cliplab: parity and throughput of the exported towers (`cliplab convert --to onnx`).

Seeded random weights, the same inputs, one process, runs alternating; prints the largest differences
between ONNX Runtime's embeddings and cliplab's, then medians and ratios at batch 32.

    python benchmarks/bench_onnx.py                       # ViT-B/32 and RN50
    python benchmarks/bench_onnx.py --models ViT-B/16 --rounds 7
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cliplab  # noqa: E402
from cliplab.export.onnx import IMAGE_FILE, TEXT_FILE  # noqa: E402
from cliplab.zeroshot import get_classnames  # noqa: E402
from common import captions, compare, machine, report  # noqa: E402


def session(path: Path, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads  # the same threads torch uses
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def largest_difference(theirs, ours: torch.Tensor) -> float:
    return (torch.from_numpy(theirs) - ours).abs().max().item()


def bench(name: str, folder: Path, batch: int, rounds: int) -> None:
    torch.manual_seed(0)
    model = cliplab.create_model(name).eval()
    start = time.perf_counter()
    cliplab.save_onnx(model, folder, check=False)
    print(f"\n{name}: exported in {time.perf_counter() - start:.0f} s")
    threads = torch.get_num_threads()
    image, text = session(folder / IMAGE_FILE, threads), session(folder / TEXT_FILE, threads)

    pixels = torch.randn(batch, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(0))
    classes = get_classnames("imagenet1k")
    texts = {
        "Flickr8k-style captions": captions(batch),
        "ImageNet prompts": [f"a photo of a {c}." for c in classes[:: len(classes) // batch]][:batch],
    }
    with torch.inference_mode():
        (onnx_images,) = image.run(None, {"pixel_values": pixels.numpy()})
        ours = model.encode_image(pixels)
        print(f"  image embeddings, batch {batch}: largest difference {largest_difference(onnx_images, ours):.1e}")
        for label, batch_texts in texts.items():
            ids = model.tokenizer(batch_texts)
            (onnx_texts,) = text.run(None, {"input_ids": ids.numpy()})
            difference = largest_difference(onnx_texts, model.encode_text(ids))
            print(f"  text embeddings, {label}: largest difference {difference:.1e}")

    medians = compare(
        {
            "cliplab": lambda: model.encode_image(pixels),
            "onnxruntime": lambda: image.run(None, {"pixel_values": pixels.numpy()}),
        },
        rounds=rounds,
    )
    report(f"{name} image embedding, batch {batch}", medians, batch, "images")
    for label, batch_texts in texts.items():
        ids = model.tokenizer(batch_texts)
        longest = int(ids.argmax(-1).max()) + 1
        medians = compare(
            {
                "cliplab": lambda ids=ids: model.encode_text(ids),
                "onnxruntime": lambda ids=ids: text.run(None, {"input_ids": ids.numpy()}),
            },
            rounds=rounds,
        )
        report(f"{name} text embedding, {label} (longest {longest} tokens), batch {batch}", medians, batch, "texts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ViT-B/32", "RN50"], choices=cliplab.available_models())
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import onnxruntime

    print(f"machine: {machine()}; onnxruntime {onnxruntime.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            bench(name, Path(tmp) / name.replace("/", "-"), args.batch, args.rounds)


if __name__ == "__main__":
    main()

"""Building a zero-shot classifier: cliplab's `build_classifier` against open-clip-torch's
`build_zero_shot_classifier`, same weights, ImageNet class names and OpenAI's 80 templates.

    python benchmarks/bench_zeroshot.py                      # ViT-B/32, 25 classes spread over ImageNet x 80 templates
    python benchmarks/bench_zeroshot.py --full               # and then cliplab alone on all 1,000 classes
    python benchmarks/bench_zeroshot.py --classes 1000       # both on the whole of ImageNet (hours on a 2-core CPU)

Every prompt goes through the text tower once, so time grows linearly with classes x templates and
the ratio measured on a subset holds for all 1,000 classes; prompts/s is printed to extrapolate. The
two classifiers are also compared, so the speed is known to come with the same weights.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cliplab  # noqa: E402
from common import compare, machine  # noqa: E402


def time_full(model, templates, open_clip_prompts_per_second: float) -> None:
    """cliplab's classifier for all 1,000 ImageNet classes, once, set beside open_clip's measured rate."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    from cliplab.zeroshot import build_classifier

    prompts = len(IMAGENET_CLASSNAMES) * len(templates)
    start = time.perf_counter()
    with torch.inference_mode():
        build_classifier(model, list(IMAGENET_CLASSNAMES), templates, batch_size=256, progress=True)
    seconds = time.perf_counter() - start
    theirs = prompts / open_clip_prompts_per_second
    print(
        f"  all 1,000 classes x {len(templates)} templates: cliplab {seconds / 60:.1f} min ({prompts / seconds:.1f} prompts/s);"
        f" open_clip at its rate above ~{theirs / 60:.1f} min; cliplab / open_clip = {theirs / seconds:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32-quickgelu", help="an open_clip architecture name")
    parser.add_argument("--classes", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="also time cliplab once on all 1,000 classes")
    args = parser.parse_args()

    import open_clip
    from open_clip.zero_shot_classifier import build_zero_shot_classifier
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    from cliplab.zeroshot import build_classifier, get_templates

    torch.manual_seed(0)
    reference = open_clip.create_model(args.model).eval()
    ours = cliplab.build_model(reference.state_dict()).eval()
    tokenizer = open_clip.get_tokenizer(args.model)
    classes = list(IMAGENET_CLASSNAMES[:: max(1, len(IMAGENET_CLASSNAMES) // args.classes)][: args.classes])
    templates = get_templates("imagenet1k")
    prompts = len(classes) * len(templates)

    def theirs():
        return build_zero_shot_classifier(
            reference, tokenizer, classes, OPENAI_IMAGENET_TEMPLATES, num_classes_per_batch=10
        )

    def cliplab_():
        return build_classifier(ours, classes, templates, batch_size=256)

    with torch.inference_mode():
        difference = (cliplab_() - theirs()).abs().max().item()
    print(f"{machine()}\nzero-shot classifier, {args.model}: {len(classes)} classes x {len(templates)} templates")
    print(f"  largest difference between the two classifiers' weights: {difference:.1e}")
    medians = compare({"cliplab": cliplab_, "open_clip": theirs}, rounds=args.rounds, warmup=0)
    for name, seconds in medians.items():
        line = f"  {name:<10} {seconds:8.1f} s   {prompts / seconds:7.1f} prompts/s   80,000 prompts ~ {80_000 / (prompts / seconds) / 60:6.1f} min"
        if name != "cliplab":
            line += f"   cliplab / {name} = {seconds / medians['cliplab']:.2f}x"
        print(line)
    if args.full:
        time_full(ours, templates, prompts / medians["open_clip"])


if __name__ == "__main__":
    main()

"""`cliplab demo [--minutes 5] [--out ./cliplab-demo] [--seed 0]`: train a CLIP from nothing, then test it."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train a small CLIP on built-in generated data and test zero-shot transfer (about 4 minutes on a 2-core CPU)",
        description="Generate images of coloured shapes with captions, train a small CLIP on them, then classify "
        "colour-shape pairs it never saw, retrieve images from captions, and test left/right. No downloads.",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=5.0,
        help="time budget; fewer steps run where the default would not fit (default: 5)",
    )
    parser.add_argument(
        "--out",
        default="cliplab-demo",
        help="the folder for results.json, plots and the checkpoint (default: ./cliplab-demo)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the weights and the evaluation scenes")
    parser.add_argument(
        "--steps", type=int, help="training steps (default: 600, fewer if they would not fit in --minutes)"
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    from ..errors import ConfigError

    if args.minutes <= 0:
        raise ConfigError("--minutes must be positive")
    if args.steps is not None and args.steps < 1:
        raise ConfigError("--steps must be positive")
    result = run_demo(args.out, args.minutes, args.seed, args.steps, progress=args.progress)
    print(format_results(result))
    return 0


def format_results(result) -> str:
    """The console summary of a `DemoResult`: a table of results against chance, then what to try next."""
    r, out = result.results, result.out
    heldout, seen, among = r["zero_shot_heldout"], r["zero_shot_seen"], r["zero_shot_heldout_among_all_classes"]
    retrieval, relation = r["retrieval"], r["left_right"]
    scenes = retrieval["scenes"]

    def recall(direction: str) -> str:
        return f"R@1 {retrieval[f'{direction}_R@1']:.1%}  R@5 {retrieval[f'{direction}_R@5']:.1%}"

    def zero_shot(report: dict) -> tuple[str, str]:
        return f"top-1 {report['top1']:.1%}", f"{report['chance']:.1%}"

    rows = [
        ("task", "", "result", "chance"),
        ("zero-shot, held-out colour-shape pairs", f"{len(heldout['classes'])} classes", *zero_shot(heldout)),
        ("  the same images, among every pair", f"{among['classes']} classes", *zero_shot(among)),
        ("zero-shot, pairs seen in training", f"{seen['classes']} classes", *zero_shot(seen)),
        ("retrieval, text -> image", f"{scenes} scenes", recall("text_to_image"), f"R@1 {1 / scenes:.1%}"),
        ("retrieval, image -> text", f"{scenes} scenes", recall("image_to_text"), f"R@1 {1 / scenes:.1%}"),
        (
            "left or right? (CLIP's known weakness)",
            f"{relation['pairs']} scenes",
            f"{relation['accuracy']:.1%}",
            "50.0%",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    checkpoint = r["checkpoint"]
    return "\n".join(
        [
            f"\n{r['model']}, seed {r['seed']}: {r['steps']} steps in {r['train_seconds']:.0f} s "
            f"(final loss {r['final_train_loss']:.3f}); {r['wall_seconds']:.0f} s in all",
            "",
            *("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows),
            "",
            f"results: {out / 'results.json'}" + (f"; plots: {out / 'plots'}/" if r["plots"] else ""),
            "",
            "next:",
            f'  cliplab classify {r["example_image"]} --checkpoint {checkpoint} --labels "{",".join(r["example_labels"])}" --template "a {{}}"',
            f'  cliplab eval synthetic:heldout --checkpoint {checkpoint} --template "a {{}}" --template "one {{}}"',
            f"  cliplab info {checkpoint}",
            f"  cliplab demo --steps 2000 --minutes 15 --out {out}-long    # train longer",
        ]
    )

"""`cliplab eval DATASET --checkpoint CKPT [--task ...]`: the paper's evaluations as one command.

Tasks:
- `zeroshot_classification` on a folder of class folders, a label table (image,label), IDX files
  (MNIST, Fashion-MNIST) or `synthetic:heldout`: top-1, top-5, mean per-class recall, confusion
  matrix (JSON and PNG);
- `zeroshot_retrieval` on a caption table (image,caption; several rows per image allowed) or
  WebDataset shards of images with .txt / .json captions (shards with .cls labels mean classification):
  recall@1/5/10 and median rank, both ways;
- `linear_probe`: logistic regression on frozen image features of `--train` (or, without it, of a
  stratified half of DATASET, the other half being the test set), C chosen on a validation split;
- `few_shot`: the same with k = 1, 2, 4, 8, 16 images per class, three draws each, plotted against
  the zero-shot accuracy;
- `robustness`: zero-shot and the linear probe on the test images and on shifted versions of them
  (greyscale, blur, low resolution, sketch, JPEG; `--shift FOLDER` adds a real shifted set), with
  the accuracy each loses;
- `overlap`: exact copies (content hashes) and near-duplicates (image embeddings) of DATASET's images
  in `--train` (a labelled set or a caption table), with zero-shot accuracy on the overlapping and
  the clean images.
Results go to `--out` as CLIP_benchmark-style JSON files; image features are cached on disk. The work
is `cliplab.evaluate`'s (one function per task); this command parses, calls and prints.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import options

TASKS = (
    "auto",
    "zeroshot_classification",
    "zeroshot_retrieval",
    "linear_probe",
    "few_shot",
    "robustness",
    "overlap",
    "segmentation",
    "detection",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="zero-shot classification or retrieval of a model on a dataset, as JSON and plots",
        description="Evaluate a checkpoint the way the CLIP paper does. A caption table means retrieval; "
        "class folders, a label table or IDX files mean classification.",
        epilog="examples: cliplab eval imagenette/ --checkpoint m.safetensors --templates imagenet1k\n"
        "          cliplab eval captions.tsv --split test --checkpoint m.safetensors",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "dataset",
        help="class folders, a label or caption table, shards, an IDX folder, sklearn:digits, synthetic:heldout",
    )
    options.checkpoint(parser)
    parser.add_argument(
        "--task", choices=TASKS, default="auto", help="default: classification for labels, retrieval for captions"
    )
    options.templates(parser)
    parser.add_argument(
        "--method",
        default="all",
        choices=("all", "clearclip", "sclip", "maskclip"),
        help="segmentation, detection: the last-block rule of the maps (default: all three, side by side)",
    )
    parser.add_argument(
        "--classnames",
        help="class names in label order: a built-in set (imagenet1k, mnist, ...), a file (one per line), "
        "or a comma-separated list; default the folder names or labels",
    )
    parser.add_argument("--split", default=None, help="tables: rows of this split; IDX files: train or test (default)")
    parser.add_argument(
        "--train", help="linear_probe, few_shot, robustness, overlap: the training images (same forms as DATASET)"
    )
    parser.add_argument(
        "--train-split", help="--train's split: for IDX files train (default) or test; for tables, rows of this split"
    )
    parser.add_argument(
        "--shift",
        action="append",
        default=[],
        metavar="NAME|PATH",
        help="robustness: a made shift (grayscale, blur, low_resolution, sketch, jpeg; default all) or a labelled "
        "set with the same classes; repeatable",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.99,
        help="overlap: centred cosine similarity from which images are near-duplicates",
    )
    options.out(parser, "the JSON results and plots", default="results")
    options.device(parser)
    options.batch_size(parser)
    options.workers(parser)
    parser.add_argument("--no-cache", dest="cache", action="store_false", help="neither read nor write cached features")
    options.progress(parser)
    parser.set_defaults(run=run)


def _classnames(spec: str | None) -> list[str] | None:
    from ..errors import ConfigError
    from ..files import read_user_text
    from ..zeroshot import get_classnames

    if spec is None:
        return None
    path = Path(spec).expanduser()
    if path.is_file():
        names = [line.strip() for line in read_user_text(path, "--classnames file").splitlines() if line.strip()]
    elif "," in spec:
        names = [name.strip() for name in spec.split(",") if name.strip()]
    else:
        names = get_classnames(spec)
    if not names:
        raise ConfigError(f"--classnames {spec!r} gives no names")
    return names


def run(args: argparse.Namespace) -> int:
    from ..data import open_source
    from ..errors import ConfigError
    from ..evaluate import SHIFTS, FeatureOptions
    from ..loading import architecture, model_from
    from ..pretrained import locate

    classnames = _classnames(args.classnames)
    source = open_source(args.dataset, split=args.split, classes=classnames)
    task = args.task
    if task == "auto":  # labels mean classification, captions alone retrieval
        task = "zeroshot_retrieval" if not source.classes and source.has_captions else "zeroshot_classification"
    train = None
    if task == "overlap" and not args.train:
        raise ConfigError("--task overlap needs --train: the training images to look for DATASET's images in")
    if args.train and task in ("linear_probe", "few_shot", "robustness", "overlap"):
        names = classnames if task != "overlap" else None
        train = open_source(args.train, split=args.train_split, classes=names, default_split="train")
    shifts = []
    if task == "robustness":  # made shifts by name, other labelled sets by path
        shifts = [
            s if s in SHIFTS else open_source(s, split=args.split, classes=classnames) for s in args.shift or SHIFTS
        ]
    templates = options.read_templates(args)

    located = locate(options.model_name(args))
    model = model_from(located, device=args.device)
    checkpoint = located.path
    stat = checkpoint.stat()
    feature_options = FeatureOptions(
        batch_size=args.batch_size,
        workers=args.workers,
        cache=args.cache,
        # the file's identity stands in for hashing every weight of a large checkpoint
        model_id=f"{checkpoint.resolve()}|{stat.st_size}|{stat.st_mtime_ns}",
        progress=args.progress,
    )
    weights = located.weights
    out = Path(args.out)
    methods = ("clearclip", "sclip", "maskclip") if args.method == "all" else (args.method,)
    run = EvalRun(
        model,
        architecture(model),
        weights,
        source,
        train,
        templates,
        shifts,
        feature_options,
        args.threshold,
        out,
        methods,
    )
    return REPORTS[task](run)


@dataclass
class EvalRun:
    """What every task's report is given: the parsed command line, opened."""

    model: Any  # a cliplab model
    architecture: str  # its architecture's name ("ViT-B/32"): CLIP_benchmark's "model"
    weights: str  # the checkpoint's name: CLIP_benchmark's "pretrained"
    source: Any  # the dataset, a cliplab.data.Source
    train: Any  # --train's source, or None
    templates: list[str]
    shifts: list  # robustness: made shifts' names and sources
    options: Any  # cliplab.evaluate.FeatureOptions
    threshold: float  # overlap
    out: Path
    methods: tuple[str, ...] = ()  # segmentation: the last-block rules

    @property
    def title(self) -> str:
        return self.architecture if self.weights == self.architecture else f"{self.architecture} ({self.weights})"

    def write(self, result) -> Path:
        return result.write(self.out, self.architecture, self.weights)

    def plot_path(self, dataset: str, what: str) -> Path:
        from ..evaluate.results import result_name

        return self.out / f"{result_name(dataset, self.architecture, self.weights, what)}.png"


def _classification(run: EvalRun) -> int:
    from ..evaluate import zero_shot_classification
    from ..evaluate.plots import plot_confusion

    result = zero_shot_classification(run.model, run.source, run.templates, options=run.options)
    r = result.report
    plot = plot_confusion(r, run.plot_path(result.dataset, "confusion"), f"{run.title} on {result.dataset}, zero-shot")
    print(
        f"{result.dataset}: zero-shot top-1 {r.top1:.2%}, top-5 {r.top5:.2%}, mean per-class recall "
        f"{r.mean_per_class_recall:.2%} ({len(r.classes)} classes, chance {r.chance:.2%}, {r.count} images, "
        f"{len(run.templates)} templates)"
    )
    _report_files(run.write(result), plot, result.features, result.problems)
    return 0


def _retrieval(run: EvalRun) -> int:
    from ..evaluate import zero_shot_retrieval
    from ..evaluate.plots import plot_retrieval_examples

    result = zero_shot_retrieval(run.model, run.source, options=run.options)
    rows = list(range(min(8, len(result.features.kept))))
    images = [run.source.items[int(result.features.kept[row])].open_image().convert("RGB") for row in rows]
    examples = list(zip(images, result.top_captions(rows)))
    plot = plot_retrieval_examples(examples, run.plot_path(result.dataset, "retrieval_examples"))
    recall = result.recall

    def both(direction: str) -> str:
        return "/".join(f"{100 * recall[f'{direction}_R@{k}']:.1f}" for k in (1, 5, 10))

    print(
        f"{result.dataset}: {len(result.features.kept)} images, {len(result.captions)} captions; "
        f"text->image R@1/5/10 {both('text_to_image')}%, image->text {both('image_to_text')}%"
    )
    _report_files(run.write(result), plot, result.features, result.problems)
    return 0


def _probe_line(probe) -> str:
    r = probe.report
    return (
        f"{probe.dataset}: linear probe top-1 {r.top1:.2%}, mean per-class recall {r.mean_per_class_recall:.2%} "
        f"(C = {probe.fit.c:.3g} chosen on validation; {probe.how}; {r.count} test images)"
    )


def _linear_probe(run: EvalRun) -> int:
    from ..evaluate import linear_probe

    result = linear_probe(run.model, run.source, run.train, options=run.options)
    print(_probe_line(result))
    _report_files(run.write(result), None, result.test, result.test_source.problems)
    return 0


def _few_shot(run: EvalRun) -> int:
    from ..evaluate import few_shot
    from ..evaluate.plots import plot_few_shot

    result = few_shot(run.model, run.source, run.train, run.templates, options=run.options)
    draws, zero_shot = result.draws, result.zero_shot.report.top1
    print(_probe_line(result.probe))
    for k in sorted(draws.top1):
        values = ", ".join(f"{100 * v:.1f}" for v in draws.top1[k])
        print(f"  {k:>2} per class: top-1 {draws.mean(k):.2%} (draws: {values})")
    print(f"  zero-shot: top-1 {zero_shot:.2%}; all-data linear probe: {result.probe.report.top1:.2%}")
    plot = plot_few_shot(
        draws, zero_shot, run.plot_path(result.dataset, "few_shot"), f"{run.title} on {result.dataset}"
    )
    _report_files(run.write(result), plot, result.probe.test, result.probe.test_source.problems)
    return 0


def _robustness(run: EvalRun) -> int:
    from ..evaluate import robustness

    result = robustness(run.model, run.source, run.shifts, run.templates, run.train, options=run.options)
    print(_probe_line(result.probe))
    print(f"{'':<16} {'zero-shot':>10} {'drop':>7}   {'linear probe':>12} {'drop':>7}   images")
    clean = result.clean
    for r in [clean, *result.shifts]:
        print(
            f"{r.name:<16} {r.zero_shot_top1:10.2%} {100 * (clean.zero_shot_top1 - r.zero_shot_top1):7.2f}   "
            f"{r.probe_top1:12.2%} {100 * (clean.probe_top1 - r.probe_top1):7.2f}   {r.images}"
        )
    print(f"results: {run.write(result)} (the probe {result.probe.how})")
    return 0


def _overlap(run: EvalRun) -> int:
    from ..evaluate import overlap

    result = overlap(run.model, run.source, run.train, run.templates, run.threshold, options=run.options)
    summary = result.summary
    print(
        f"{result.dataset} in {result.train}: {summary['exact_duplicates']} exact and {summary['near_duplicates']} "
        f"near duplicates (centred similarity >= {run.threshold}) among {summary['images']} images, "
        f"overlap {summary['overlap_rate']:.2%}"
    )
    for key in ("acc1_all", "acc1_overlapping", "acc1_clean"):
        value = summary[key]
        print(f"  zero-shot top-1, {key[5:]:<11} {'-' if value is None else f'{value:.2%}'}")
    print(f"results: {run.write(result)}")
    return 0


def _segmentation(run: EvalRun) -> int:
    from ..evaluate import dense_segmentation

    for method in run.methods:
        result = dense_segmentation(run.model, run.source, run.templates, method, progress=run.options.progress)
        path = run.write(result)
        print(
            f"{result.dataset} ({result.scenes} scenes), {method}: pointing game {result.pointing:.1%}, mean IoU "
            f"{result.miou:.3f} by pixel, {result.miou_crops:.3f} by region crops (whole image painted with the top "
            f"zero-shot label: {result.baseline_miou:.3f}); {path}"
        )
    return 0


def _detection(run: EvalRun) -> int:
    from ..evaluate import dense_detection

    for objects in (1, 2):
        for method in run.methods:
            result = dense_detection(
                run.model, run.source, run.templates, method, objects, progress=run.options.progress
            )
            path = run.write(result)
            print(
                f"{result.dataset} ({result.scenes} scenes of {objects} things), {method}: box AP@0.5 {result.ap50:.3f}; {path}"
            )
    return 0


REPORTS = {
    "segmentation": _segmentation,
    "detection": _detection,
    "zeroshot_classification": _classification,
    "zeroshot_retrieval": _retrieval,
    "linear_probe": _linear_probe,
    "few_shot": _few_shot,
    "robustness": _robustness,
    "overlap": _overlap,
}


def _report_files(path: Path, plot: Path | None, features, problems: list[tuple[str, str]]) -> None:
    cached = " (image features from the cache)" if features.from_cache else ""
    print(f"results: {path}" + (f"; plot: {plot}" if plot else "") + cached)
    if features.skipped:
        print(f"skipped {len(features.skipped)} unreadable images (listed in the JSON), e.g. {features.skipped[0]}")
    if problems:
        print(f"left out {len(problems)} more (listed in the JSON), e.g. {problems[0]}")

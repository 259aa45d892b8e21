"""`cliplab eval DATASET --checkpoint CKPT [--task ...]`: the paper's evaluations as one command.

Tasks:
- `zeroshot_classification` on a folder of class folders, a label table (image,label), IDX files
  (MNIST, Fashion-MNIST) or `synthetic:heldout`: top-1, top-5, mean per-class recall, confusion
  matrix (JSON and PNG);
- `zeroshot_retrieval` on a caption table (image,caption; several rows per image allowed):
  recall@1/5/10 and median rank, both ways.
Results go to `--out` as CLIP_benchmark-style JSON files; image features are cached on disk.
"""

from __future__ import annotations

import argparse
from pathlib import Path

TASKS = ("auto", "zeroshot_classification", "zeroshot_retrieval")


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
    parser.add_argument("dataset", help="class folders, a label or caption table, an IDX folder, or synthetic:heldout")
    parser.add_argument("--checkpoint", required=True, help="a checkpoint file or a model name found in the caches")
    parser.add_argument("--task", choices=TASKS, default="auto", help="default: from the dataset's form")
    parser.add_argument(
        "--templates",
        dest="template_set",
        default=None,
        metavar="FILE|SET",
        help="prompt templates: a built-in set (imagenet1k = OpenAI's 80, imagenet1k_7, cifar10, ...) or a "
        'file; default "a photo of a {}."',
    )
    parser.add_argument("--template", action="append", dest="templates", metavar="TEXT", help="a template; repeatable")
    parser.add_argument(
        "--classnames",
        help="class names in label order: a built-in set (imagenet1k, mnist, ...), a file (one per line), "
        "or a comma-separated list; default the folder names or labels",
    )
    parser.add_argument("--split", default=None, help="caption tables: rows of this split; IDX files: train or test")
    parser.add_argument("--out", default="results", help="folder for the JSON and plots (default: ./results)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2, help="image-loading processes (default: 2)")
    parser.add_argument("--no-cache", dest="cache", action="store_false", help="neither read nor write cached features")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.set_defaults(run=run)


def _classnames(spec: str | None) -> list[str] | None:
    from ..zeroshot import get_classnames

    if spec is None:
        return None
    path = Path(spec).expanduser()
    if path.is_file():
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif "," in spec:
        names = [name.strip() for name in spec.split(",") if name.strip()]
    else:
        names = get_classnames(spec)
    if not names:
        raise ValueError(f"--classnames {spec!r} gives no names")
    return names


def _is_caption_table(dataset: str) -> bool:
    from ..data.table import read_rows

    path = Path(dataset)
    if not path.is_file() or path.suffix.lower() not in (".csv", ".tsv", ".jsonl", ".parquet"):
        return False
    rows = read_rows(path)
    return bool(rows) and "caption" in rows[0]


def run(args: argparse.Namespace) -> int:
    from ..loading import load_model, resolve_checkpoint
    from ..zeroshot import check_templates, get_templates

    task = args.task
    if task == "auto":
        task = "zeroshot_retrieval" if _is_caption_table(args.dataset) else "zeroshot_classification"
    model = load_model(args.checkpoint)
    checkpoint = resolve_checkpoint(args.checkpoint)
    model_name = checkpoint.stem if checkpoint.is_file() else checkpoint.name
    stat = checkpoint.stat()
    options = dict(
        batch_size=args.batch_size,
        workers=args.workers,
        use_cache=args.cache,
        # the file's identity stands in for hashing every weight of a large checkpoint
        model_id=f"{checkpoint.resolve()}|{stat.st_size}|{stat.st_mtime_ns}",
        progress=args.progress,
    )
    out = Path(args.out)
    if task == "zeroshot_classification":
        templates = list(args.templates or []) + (get_templates(args.template_set) if args.template_set else [])
        templates = check_templates(templates or ["a photo of a {}."], "--template")
        return _classification(model, model_name, args, templates, options, out)
    return _retrieval(model, model_name, args, options, out)


def _classification(model, model_name: str, args, templates: list[str], options: dict, out: Path) -> int:
    from ..evaluate.datasets import open_labelled_images
    from ..evaluate.plots import plot_confusion
    from ..evaluate.results import classification_metrics, write_result
    from ..evaluate.zeroshot_classification import zero_shot_classification

    classnames = _classnames(args.classnames)
    data = open_labelled_images(args.dataset, split=args.split or "test", classes=classnames)
    report, features = zero_shot_classification(model, data, templates, **options)
    plot = plot_confusion(
        report, out / f"{data.name}__{model_name}__confusion.png", f"{model_name} on {data.name}, zero-shot"
    )
    path = write_result(
        out,
        data.name,
        model_name,
        "zeroshot_classification",
        classification_metrics(report),
        classes=report.classes,
        images=report.count,
        chance=report.chance / 100,
        templates=templates,
        per_class_recall={k: v / 100 for k, v in report.per_class_recall().items()},
        confusion_matrix=report.confusion.tolist(),
        skipped=[{"image": i, "reason": r} for i, r in features.skipped],
    )
    print(
        f"{data.name}: zero-shot top-1 {report.top1:.2f}%, top-5 {report.top5:.2f}%, mean per-class recall "
        f"{report.mean_per_class_recall:.2f}% ({len(report.classes)} classes, chance {report.chance:.2f}%, "
        f"{report.count} images, {len(templates)} templates)"
    )
    _report_files(path, plot, features)
    return 0


def _retrieval(model, model_name: str, args, options: dict, out: Path) -> int:
    from ..data import read_caption_table
    from ..evaluate.results import retrieval_metrics_in_benchmark_names, write_result
    from ..evaluate.zeroshot_retrieval import zero_shot_retrieval

    entries = read_caption_table(args.dataset, split=args.split)
    if not entries:
        raise ValueError(f"{args.dataset}: no rows" + (f" in split {args.split!r}" if args.split else ""))
    table = Path(args.dataset)
    name = f"{table.parent.name}-{table.stem}" + (f"-{args.split}" if args.split else "")  # flickr8k-captions-dev
    metrics, features = zero_shot_retrieval(model, entries, name, **options)
    path = write_result(
        out,
        name,
        model_name,
        "zeroshot_retrieval",
        retrieval_metrics_in_benchmark_names(metrics),
        skipped=[{"image": i, "reason": r} for i, r in features.skipped],
    )
    print(
        f"{name}: {metrics['images']} images, {metrics['captions']} captions; text->image R@1/5/10 "
        f"{metrics['text_to_image_R@1']:.1f}/{metrics['text_to_image_R@5']:.1f}/{metrics['text_to_image_R@10']:.1f}%, "
        f"image->text {metrics['image_to_text_R@1']:.1f}/{metrics['image_to_text_R@5']:.1f}/"
        f"{metrics['image_to_text_R@10']:.1f}%"
    )
    _report_files(path, None, features)
    return 0


def _report_files(path: Path, plot: Path | None, features) -> None:
    print(f"results: {path}" + (f"; plot: {plot}" if plot else "") + (" (image features from the cache)" if features.from_cache else ""))  # fmt: skip
    if features.skipped:
        print(f"skipped {len(features.skipped)} unreadable images (listed in the JSON), e.g. {features.skipped[0]}")

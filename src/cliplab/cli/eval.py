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
Results go to `--out` as CLIP_benchmark-style JSON files; image features are cached on disk.
"""

from __future__ import annotations

import argparse
from pathlib import Path

TASKS = ("auto", "zeroshot_classification", "zeroshot_retrieval", "linear_probe", "few_shot", "robustness", "overlap")


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
    parser.add_argument("--train", help="linear_probe, few_shot: the labelled training images (same forms as DATASET)")
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


def _is_shards(dataset: str) -> bool:
    path = Path(dataset)
    return "{" in dataset or path.suffix == ".tar" or (path.is_dir() and any(path.glob("*.tar")))


def _labelled_shards(dataset: str) -> bool:
    from ..data.shard_index import index_shards

    return any("cls" in s.texts for s in index_shards(dataset).samples[:100])


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
        captioned = _is_caption_table(args.dataset) or (_is_shards(args.dataset) and not _labelled_shards(args.dataset))
        task = "zeroshot_retrieval" if captioned else "zeroshot_classification"
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
    if task == "zeroshot_retrieval":
        return _retrieval(model, model_name, args, options, out)
    templates = list(args.templates or []) + (get_templates(args.template_set) if args.template_set else [])
    templates = check_templates(templates or ["a photo of a {}."], "--template")
    if task == "zeroshot_classification":
        return _classification(model, model_name, args, templates, options, out)
    if task == "overlap":
        return _overlap(model, model_name, args, templates, options, out)
    return _probe(model, model_name, args, templates, options, out, task)


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
    from ..data.shard_index import ShardImages, index_shards, sample_caption_list
    from ..evaluate.datasets import LabelledImages, images_of
    from ..evaluate.plots import plot_retrieval_examples
    from ..evaluate.results import retrieval_metrics_in_benchmark_names, write_result
    from ..evaluate.zeroshot_retrieval import top_captions, zero_shot_retrieval

    source = Path(args.dataset)
    if _is_shards(args.dataset):
        index = index_shards(args.dataset)
        samples = [s for s in index.samples if sample_caption_list(s)]
        if not samples:
            raise ValueError(f"{args.dataset}: no samples with captions (.txt or .json)")
        name = Path(args.dataset.split("{")[0].rstrip("/")).name or "shards"
        images = LabelledImages(name, ["image"], [0] * len(samples), ShardImages(samples), index.fingerprint,
                                [f"{s.shard}:{s.key}" for s in samples])  # fmt: skip
        captions = [sample_caption_list(s) for s in samples]
        for shard, problem in index.problems:
            print(f"{shard}: {problem}")
    else:
        entries = read_caption_table(source, split=args.split)
        if not entries:
            raise ValueError(f"{args.dataset}: no rows" + (f" in split {args.split!r}" if args.split else ""))
        name = f"{source.parent.name}-{source.stem}" + (f"-{args.split}" if args.split else "")  # flickr8k-captions-dev
        images, captions = images_of(entries, name), [list(e.captions) for e in entries]
    metrics, features, texts = zero_shot_retrieval(model, images, captions, **options)
    rows = list(range(min(8, len(features.kept))))
    examples = [
        (images.load(int(features.kept[row])).convert("RGB"), top)
        for row, top in zip(rows, top_captions(features, texts, rows))
    ]
    plot = plot_retrieval_examples(examples, out / f"{name}__{model_name}__retrieval_examples.png")
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
    _report_files(path, plot, features)
    return 0


def _probe(model, model_name: str, args, templates: list[str], options: dict, out: Path, task: str) -> int:
    from ..evaluate.datasets import open_labelled_images
    from ..evaluate.features import image_features
    from ..evaluate.few_shot import few_shot, plot_few_shot
    from ..evaluate.linear_probe import linear_probe, stratified_split
    from ..evaluate.results import classification_metrics, write_result
    from ..evaluate.zeroshot_classification import zero_shot_classification

    classnames = _classnames(args.classnames)
    data = open_labelled_images(args.dataset, split=args.split or "test", classes=classnames)
    test = image_features(model, data, **options)
    if args.train:
        train_data = open_labelled_images(args.train, split=args.train_split or "train", classes=classnames)
        if train_data.classes != data.classes:
            raise ValueError(
                f"--train has classes {train_data.classes[:5]}..., {args.dataset} has {data.classes[:5]}..."
            )
        train, how = image_features(model, train_data, **options), f"trained on {train_data.name}"
    else:  # one labelled set: a stratified half trains, the other half tests
        train_rows, test_rows = stratified_split(test.labels, 0.5, seed=0)
        train = type(test)(test.features[train_rows], test.labels[train_rows], test.kept[train_rows])
        test = type(test)(test.features[test_rows], test.labels[test_rows], test.kept[test_rows], test.skipped)
        data = data.subset(test.kept.tolist(), name=data.name)  # the test half, for shifted copies
        how = f"trained on a stratified half of {data.name} ({len(train_rows)} images), tested on the other"
    probe = linear_probe(train.features, train.labels, test.features, test.labels, data.classes)
    report = probe.report
    print(
        f"{data.name}: linear probe top-1 {report.top1:.2f}%, mean per-class recall {report.mean_per_class_recall:.2f}% "
        f"(C = {probe.c:.3g} chosen on validation; {how}; {report.count} test images)"
    )
    if task == "robustness":
        return _robustness(model, model_name, args, templates, options, out, data, probe, how)
    if task == "linear_probe":
        path = write_result(
            out, data.name, model_name, "linear_probe", classification_metrics(report),
            c=probe.c, validation_top1={f"{c:.6g}": v / 100 for c, v in probe.validation.items()},
            train=how, images=report.count, confusion_matrix=report.confusion.tolist(),
        )  # fmt: skip
        _report_files(path, None, test)
        return 0
    zero_shot, _ = zero_shot_classification(model, data, templates, features=test)
    shots = few_shot(train.features, train.labels, test.features, test.labels, data.classes, c=probe.c)
    for k in sorted(shots.top1):
        print(f"  {k:>2} per class: top-1 {shots.mean(k):.2f}% (draws: {', '.join(f'{v:.1f}' for v in shots.top1[k])})")
    print(f"  zero-shot: top-1 {zero_shot.top1:.2f}%; all-data linear probe: {report.top1:.2f}%")
    plot = plot_few_shot(
        shots, zero_shot.top1, out / f"{data.name}__{model_name}__few_shot.png", f"{model_name} on {data.name}"
    )
    path = write_result(
        out, data.name, model_name, "few_shot",
        {f"acc1_{k}shot": shots.mean(k) / 100 for k in sorted(shots.top1)} | {"zeroshot_acc1": zero_shot.top1 / 100, "linear_probe_acc1": report.top1 / 100},
        shots=shots.to_dict(), c=probe.c, train=how, images=report.count,
    )  # fmt: skip
    _report_files(path, plot, test)
    return 0


def _robustness(model, model_name, args, templates, options, out, data, probe, how) -> int:
    from ..evaluate.datasets import open_labelled_images
    from ..evaluate.results import write_result
    from ..evaluate.robustness import robustness
    from ..evaluate.shifts import SHIFTS, shifted

    sets = {}
    for spec in args.shift or list(SHIFTS):
        if spec in SHIFTS:
            sets[spec] = shifted(data, spec)
        else:
            other = open_labelled_images(spec, split=args.split or "test", classes=_classnames(args.classnames))
            sets[other.name] = other
    result = robustness(model, data, sets, templates, probe, **options)
    print(f"{'':<16} {'zero-shot':>10} {'drop':>7}   {'linear probe':>12} {'drop':>7}   images")
    for r in [result.clean, *result.shifts]:
        print(
            f"{r.name:<16} {r.zero_shot_top1:9.2f}% {result.clean.zero_shot_top1 - r.zero_shot_top1:6.2f}   "
            f"{r.probe_top1:11.2f}% {result.clean.probe_top1 - r.probe_top1:6.2f}   {r.images}"
        )
    path = write_result(
        out, data.name, model_name, "robustness",
        {f"{name}_{key}": value for name, row in result.to_dict().items() for key, value in row.items() if key != "images"},
        shifts=result.to_dict(), c=probe.c, train=how, templates=templates,
    )  # fmt: skip
    print(f"results: {path} (the probe {how})")
    return 0


def _overlap(model, model_name, args, templates, options, out) -> int:
    from ..data import read_caption_table
    from ..evaluate.datasets import images_of, open_labelled_images
    from ..evaluate.features import image_features
    from ..evaluate.overlap import accuracy_split, content_hashes, find_overlap
    from ..evaluate.results import write_result
    from ..zeroshot import build_classifier

    if not args.train:
        raise ValueError("--task overlap needs --train: the training images to look for DATASET's images in")
    data = open_labelled_images(args.dataset, split=args.split or "test", classes=_classnames(args.classnames))
    if _is_caption_table(args.train):
        table = Path(args.train)
        name = f"{table.parent.name}-{table.stem}" + (f"-{args.train_split}" if args.train_split else "")
        train_data = images_of(read_caption_table(table, split=args.train_split), name)
    else:
        train_data = open_labelled_images(args.train, split=args.train_split or "train")
    test, train = image_features(model, data, **options), image_features(model, train_data, **options)
    overlap = find_overlap(
        test.features, train.features,
        content_hashes(data, test.kept.tolist()), content_hashes(train_data, train.kept.tolist()),
        args.threshold,
    )  # fmt: skip
    weights = build_classifier(model, data.classes, templates).float().cpu()
    correct = (test.features @ weights).argmax(dim=1) == test.labels  # zero-shot, image by image
    summary = accuracy_split(correct, overlap)
    pairs = [
        {"image": data.ids[int(test.kept[i])], "train_image": train_data.ids[int(train.kept[overlap.nearest[i]])],
         "similarity": float(overlap.similarity[i]), "exact": bool(overlap.exact[i])}
        for i in overlap.overlapping.nonzero().flatten().tolist()
    ]  # fmt: skip
    path = write_result(
        out, data.name, model_name, "overlap", summary,
        train=train_data.name, train_images=len(train.kept), threshold=args.threshold, overlapping=pairs,
    )  # fmt: skip
    rate = summary["overlap_rate"]
    print(
        f"{data.name} in {train_data.name}: {summary['exact_duplicates']} exact and {summary['near_duplicates']} near "
        f"duplicates (centred similarity >= {args.threshold}) among {summary['images']} images, overlap {100 * rate:.2f}%"
    )
    for key in ("acc1_all", "acc1_overlapping", "acc1_clean"):
        value = summary[key]
        print(f"  zero-shot top-1, {key[5:]:<11} {'-' if value is None else f'{100 * value:.2f}%'}")
    print(f"results: {path}")
    return 0


def _report_files(path: Path, plot: Path | None, features) -> None:
    print(f"results: {path}" + (f"; plot: {plot}" if plot else "") + (" (image features from the cache)" if features.from_cache else ""))  # fmt: skip
    if features.skipped:
        print(f"skipped {len(features.skipped)} unreadable images (listed in the JSON), e.g. {features.skipped[0]}")

"""`cliplab eval` end to end on small generated datasets in each input format, checked against a direct
computation with the same model, plus the feature cache and the IDX reader."""

from __future__ import annotations

import csv
import gzip
import json

import numpy as np
import pytest
import torch
from PIL import Image

import cliplab
from cliplab.cli import main
from cliplab.data import open_source
from cliplab.data.arrays import read_idx
from cliplab.errors import SourceError
from cliplab.evaluate import FeatureOptions, classification_report, image_features, retrieval_metrics
from cliplab.zeroshot import build_classifier

from .conftest import saved_model

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 180, 60)}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return saved_model(tmp_path_factory, "tiny-RN@32px")


def _image(colour, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 25, (24, 24, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _expected_top1(checkpoint, images: list[Image.Image], labels: list[int], classes: list[str], templates) -> float:
    model, preprocess = cliplab.load(checkpoint)
    with torch.no_grad():
        features = model.encode_image(torch.stack([preprocess(i) for i in images]), normalize=True)
    weights = build_classifier(model, classes, templates)
    return classification_report(features @ weights, torch.tensor(labels), classes).top1


def _run_eval(argv, tmp_path) -> dict:
    assert main(["eval", *argv, "--out", str(tmp_path / "results"), "--no-progress", "--workers", "0"]) == 0
    (result,) = [json.loads(p.read_text()) for p in (tmp_path / "results").glob("*.json")]
    return result


def test_class_folders_with_a_corrupt_file(tmp_path, checkpoint, monkeypatch, capsys):
    monkeypatch.setenv("CLIPLAB_CACHE", str(tmp_path / "cache"))
    images, labels = [], []
    for label, (name, colour) in enumerate(sorted(COLOURS.items())):  # folders are sorted: blue, green, red
        (tmp_path / "set" / name).mkdir(parents=True)
        for k in range(3):
            image = _image(colour, 10 * label + k)
            image.save(tmp_path / "set" / name / f"{k}.png")
            images.append(image)
            labels.append(label)
    (tmp_path / "set" / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    argv = [
        str(tmp_path / "set"),
        "--checkpoint",
        str(checkpoint),
        "--template",
        "a photo of a {}.",
        "--template",
        "a {} thing",
    ]
    result = _run_eval(argv, tmp_path)
    assert result["task"] == "zeroshot_classification" and result["dataset"] == "set"
    assert result["classes"] == ["blue", "green", "red"] and result["images"] == 9
    assert len(result["skipped"]) == 1 and result["skipped"][0]["image"].endswith("broken.jpg")
    expected = _expected_top1(checkpoint, images, labels, ["blue", "green", "red"], ["a photo of a {}.", "a {} thing"])
    assert result["metrics"]["acc1"] == pytest.approx(expected)
    assert result["metrics"]["acc5"] == 1.0 and sum(map(sum, result["confusion_matrix"])) == 9
    assert list((tmp_path / "results").glob("*confusion.png"))
    assert "from the cache" not in capsys.readouterr().out
    # the second time the features come from the cache, with the same numbers
    again = _run_eval(argv, tmp_path)
    assert "from the cache" in capsys.readouterr().out and again["metrics"] == result["metrics"]


def test_label_table_and_class_names(tmp_path, checkpoint):
    rows, images, labels = [], [], []
    for k in range(6):
        name = ("red", "blue")[k % 2]
        image = _image(COLOURS[name], k)
        image.save(tmp_path / f"{k}.jpg", quality=95)
        images.append(Image.open(tmp_path / f"{k}.jpg").convert("RGB"))
        rows.append({"image": f"{k}.jpg", "label": k % 2})
        labels.append(k % 2)
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["image", "label"])
        writer.writeheader()
        writer.writerows(rows)
    argv = [
        str(tmp_path / "labels.csv"),
        "--checkpoint",
        str(checkpoint),
        "--classnames",
        "red thing,blue thing",
        "--no-cache",
    ]
    result = _run_eval(argv, tmp_path)
    assert result["classes"] == ["red thing", "blue thing"] and result["images"] == 6
    expected = _expected_top1(checkpoint, images, labels, ["red thing", "blue thing"], ["a photo of a {}."])
    assert result["metrics"]["acc1"] == pytest.approx(expected)


def _write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_idx_files_as_fashion_mnist_ships_them(tmp_path, checkpoint):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (7, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2, 0], dtype=np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    assert np.array_equal(read_idx(tmp_path / "t10k-images-idx3-ubyte.gz"), images)
    data = open_source(tmp_path, split="test", classes=["T-shirt", "trouser", "pullover"])
    assert len(data.items) == 7 and [item.label for item in data.items] == labels.tolist()
    assert np.array_equal(np.asarray(data.items[3].open_image())[..., 0], images[3])  # grey copied into RGB
    result = _run_eval(
        [str(tmp_path), "--checkpoint", str(checkpoint), "--classnames", "T-shirt,trouser,pullover", "--no-cache"],
        tmp_path,
    )
    assert result["images"] == 7 and result["dataset"] == f"{tmp_path.name}-test"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03")
    (tmp_path / "bad" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01")
    with pytest.raises(SourceError, match="not an IDX file"):
        open_source(tmp_path / "bad")


def test_retrieval_on_a_caption_table_equals_the_direct_computation(tmp_path, checkpoint):
    rows, images, owner, captions = [], [], [], []
    for k, (name, colour) in enumerate(COLOURS.items()):
        _image(colour, k).save(tmp_path / f"{name}.png")
        images.append(Image.open(tmp_path / f"{name}.png").convert("RGB"))
        for text in (f"a {name} square", f"something {name}", "noise")[: k + 1]:  # 1, 2 and 3 captions
            rows.append(f"{name}.png\t{text}")
            owner.append(k)
            captions.append(text)
    (tmp_path / "captions.tsv").write_text("image\tcaption\n" + "\n".join(rows) + "\n")
    result = _run_eval([str(tmp_path / "captions.tsv"), "--checkpoint", str(checkpoint), "--no-cache"], tmp_path)
    assert result["task"] == "zeroshot_retrieval"
    model, preprocess = cliplab.load(checkpoint)
    with torch.no_grad():
        image_features_ = model.encode_image(torch.stack([preprocess(i) for i in images]), normalize=True)
        text_features = model.encode_text(cliplab.tokenize(captions), normalize=True)
    expected = retrieval_metrics(image_features_, text_features, torch.tensor(owner))
    assert result["metrics"]["image_retrieval_recall@1"] == pytest.approx(expected["text_to_image_R@1"])
    assert result["metrics"]["text_retrieval_recall@1"] == pytest.approx(expected["image_to_text_R@1"])
    assert result["metrics"]["images"] == 3 and result["metrics"]["captions"] == 6
    assert list((tmp_path / "results").glob("*retrieval_examples.png"))


def test_the_cache_key_follows_the_weights(tmp_path):
    torch.manual_seed(0)
    data = open_source("synthetic:heldout").subset(range(8))
    a, b = cliplab.create_model("tiny-RN@32px").eval(), cliplab.create_model("tiny-RN@32px").eval()
    options = FeatureOptions(workers=0, cache_dir=tmp_path, progress=False)
    first = image_features(a, data, options)
    assert not first.from_cache
    assert image_features(a, data, options).from_cache
    other = image_features(b, data, options)
    assert not other.from_cache and not torch.equal(other.features, first.features)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


def test_sklearn_digits():
    data = open_source("sklearn:digits")
    assert len(data.items) == 1797 and data.classes == [str(d) for d in range(10)]
    assert [item.label for item in data.items[:3]] == [0, 1, 2]
    image = np.asarray(data.items[0].open_image())
    assert image.shape == (8, 8, 3) and image.max() > 200 and image.min() == 0  # ink on paper, 0..255


def _add(tar, name: str, payload: bytes) -> None:
    import io
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def test_webdataset_shards_for_retrieval_and_classification(tmp_path, checkpoint):
    import io
    import tarfile

    from cliplab.data import write_shards

    # retrieval: shards written from a caption table give the table's own figures
    rows = []
    for k, (name, colour) in enumerate(COLOURS.items()):
        _image(colour, k).save(tmp_path / f"{name}.png")
        rows += [f"{name}.png\ta {name} square", f"{name}.png\tsomething {name}"]
    (tmp_path / "captions.tsv").write_text("image\tcaption\n" + "\n".join(rows) + "\n")
    write_shards(open_source(tmp_path / "captions.tsv").items, tmp_path / "shards", samples_per_shard=2, progress=False)
    table = _run_eval([str(tmp_path / "captions.tsv"), "--checkpoint", str(checkpoint), "--no-cache"], tmp_path / "a")
    shards = _run_eval([str(tmp_path / "shards"), "--checkpoint", str(checkpoint), "--no-cache"], tmp_path / "b")
    assert shards["task"] == "zeroshot_retrieval" and shards["metrics"] == table["metrics"]

    # classification: .cls labels; a shard cut off inside its second image keeps its first sample
    images, labels = [], []
    with (
        tarfile.open(tmp_path / "labelled" / "00000.tar", "w")
        if (tmp_path / "labelled").mkdir() is None
        else None as tar
    ):
        for k in range(6):
            colour = list(COLOURS)[k % 3]
            buffer = io.BytesIO()
            _image(COLOURS[colour], 100 + k).save(buffer, format="PNG")
            _add(tar, f"s{k}.png", buffer.getvalue())
            _add(tar, f"s{k}.cls", str(k % 3).encode())
            images.append(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
            labels.append(k % 3)
    data = open_source(tmp_path / "labelled", classes=list(COLOURS))
    assert len(data.items) == 6 and [item.label for item in data.items] == labels
    result = _run_eval(
        [str(tmp_path / "labelled"), "--checkpoint", str(checkpoint), "--classnames", ",".join(COLOURS), "--no-cache"],
        tmp_path / "c",
    )
    assert result["task"] == "zeroshot_classification" and result["images"] == 6
    assert result["metrics"]["acc1"] == pytest.approx(
        _expected_top1(checkpoint, images, labels, list(COLOURS), ["a photo of a {}."])
    )
    with tarfile.open(tmp_path / "labelled" / "00000.tar") as tar:
        second_image = tar.getmember("s1.png").offset_data
    whole = (tmp_path / "labelled" / "00000.tar").read_bytes()
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "00000.tar").write_bytes(whole[: second_image + 100])  # into the second image's bytes
    cut = open_source(tmp_path / "cut", classes=list(COLOURS))
    assert "cut off" in cut.problems[0][1]
    assert len(cut.items) == 1 and np.array_equal(np.asarray(cut.items[0].open_image()), np.asarray(images[0]))

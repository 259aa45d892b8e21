"""The `cliplab` command line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import transformers

import cliplab
from cliplab.cli import main


def test_models_lists_the_paper_architectures(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("RN50x64", "ViT-L/14@336px", "tiny-ViT/8@64px"))


def test_convert_to_hf_and_back(tmp_path, capsys):
    torch.manual_seed(0)
    model = cliplab.create_model("tiny-ViT/8@64px")
    torch.save(model.state_dict(), tmp_path / "openai_style.pt")
    assert main(["convert", str(tmp_path / "openai_style.pt"), str(tmp_path / "hf"), "--to", "hf"]) == 0
    assert transformers.CLIPModel.from_pretrained(tmp_path / "hf").config.projection_dim == 128
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "back.safetensors")]) == 0
    assert "wrote" in capsys.readouterr().out
    back = cliplab.load_model(tmp_path / "back.safetensors")
    assert all(torch.equal(back.state_dict()[k], v) for k, v in model.state_dict().items())
    assert main(["info", str(tmp_path / "back.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "format:     cliplab" in out and '"patch_size": 8' in out


def test_bad_input_is_one_line_not_a_traceback(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"junk" * 10)
    result = subprocess.run(
        [sys.executable, "-m", "cliplab.cli.main", "info", str(tmp_path / "junk.pt")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "cliplab info: error:" in result.stderr and "not a checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_console_script_is_installed():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlib.metadata import entry_points; "
            "print([e.value for e in entry_points(group='console_scripts') if e.name == 'cliplab'])",
        ],
        capture_output=True,
        text=True,
    )
    assert "cliplab.cli:main" in result.stdout


def test_classify_prints_probabilities_and_skips_unreadable_images(tmp_path, capsys):
    from PIL import Image

    torch.manual_seed(0)
    cliplab.save_checkpoint(cliplab.create_model("tiny-RN@32px"), tmp_path / "m.safetensors")
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "red.png")
    (tmp_path / "broken.jpg").write_text("not an image")
    (tmp_path / "labels.txt").write_text("red star\n\nblue heart\ngreen cross\n")
    argv = [
        "classify",
        str(tmp_path / "red.png"),
        str(tmp_path / "broken.jpg"),
        "--checkpoint",
        str(tmp_path / "m.safetensors"),
    ]
    assert (
        main(
            argv
            + [
                "--labels",
                "@" + str(tmp_path / "labels.txt"),
                "--template",
                "a {}",
                "--template",
                "one {}",
                "--top",
                "2",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].endswith("red.png") and len(lines) == 3  # the image, then its top two labels
    probabilities = [float(line.split()[0]) for line in lines[1:]]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
    assert all(line.split(maxsplit=1)[1] in ("red star", "blue heart", "green cross") for line in lines[1:])
    assert "broken.jpg: skipped" in captured.err and "1 of 2 images" in captured.err
    # every image unreadable: a failing exit status; a template without {}: an error, not a guess
    assert (
        main(
            [
                "classify",
                str(tmp_path / "broken.jpg"),
                "--checkpoint",
                str(tmp_path / "m.safetensors"),
                "--labels",
                "a,b",
            ]
        )
        == 1
    )
    assert main(argv + ["--labels", "a,b", "--template", "a photo"]) == 2


def test_a_bug_keeps_its_traceback_and_a_users_mistake_is_one_line(tmp_path, monkeypatch):
    torch.manual_seed(0)
    cliplab.save_checkpoint(cliplab.create_model("tiny-RN@32px"), tmp_path / "m.safetensors")
    # an internal error (a function of cliplab's raising KeyError) is not dressed up as a user error
    code = (
        "import sys\n"
        "import cliplab.checkpoints as checkpoints\n"
        "def broken(path):\n"
        "    raise KeyError('an internal bug')\n"
        "checkpoints.read_checkpoint = broken\n"
        "from cliplab.cli import main\n"
        "sys.exit(main(['info', sys.argv[1]]))\n"
    )
    bug = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.safetensors")], capture_output=True, text=True)
    assert bug.returncode == 1
    assert "Traceback" in bug.stderr and "KeyError: 'an internal bug'" in bug.stderr
    monkeypatch.setattr("cliplab.checkpoints.read_checkpoint", lambda path: {}["missing"])
    with pytest.raises(KeyError):  # in process too: main lets it through
        main(["info", str(tmp_path / "m.safetensors")])
    # a user's mistake: one line naming the problem, status 2
    mistake = subprocess.run(
        [sys.executable, "-m", "cliplab", "info", str(tmp_path / "nothere.safetensors")], capture_output=True, text=True
    )
    assert mistake.returncode == 2 and "Traceback" not in mistake.stderr
    assert mistake.stderr.count("\n") == 1 and "cliplab info: error: no checkpoint at" in mistake.stderr

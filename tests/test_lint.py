"""The code base passes ruff's checks and is in ruff's format (configured in pyproject.toml), so style
is checked by the test command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


PATHS = ["src", "tests", "benchmarks", "tools", "examples"]


def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", *PATHS], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_is_in_ruffs_format():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *PATHS], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_library_imports_without_reference_packages():
    """The core needs none of the dev extras (open_clip, transformers)."""
    code = (
        "import sys; sys.modules['open_clip'] = None; sys.modules['transformers'] = None; "
        "import cliplab; m = cliplab.create_model('tiny-ViT/8@64px'); print(m.encode_text(cliplab.tokenize('a')).shape)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "torch.Size([1, 128])" in result.stdout

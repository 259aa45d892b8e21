"""The shape of the code: no import cycle anywhere in src/cliplab (imports inside functions included),
and packages that import only from the layers below them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("structure", ROOT / "tools" / "structure.py")
structure = importlib.util.module_from_spec(spec)
spec.loader.exec_module(structure)

# Bottom to top: a package may import from the layers below its own, never from its own layer or above.
LAYERS = (
    {"errors"},
    {"files", "extras", "caches", "tokenizer", "transforms", "loss"},
    {"models"},  # the two towers, configurations, weights, the Model protocol
    {"checkpoints", "data"},  # reading weights; every input form as items
    {"towers", "encode", "pretrained", "export"},  # other towers; encoding any model; weights by name; ONNX
    {"loading", "zeroshot"},
    {"distributed", "dense"},  # processes torchrun launched; where in the picture (maps, segmentation)
    {"evaluate", "search"},
    {"train", "serve"},
    {"demo"},
    {"__init__"},  # the public API: cliplab.load, cliplab.tokenize, ...
    {"cli"},
    {"__main__"},
)


def test_no_import_cycle_anywhere():
    graph = structure.import_graph()
    assert len(graph) > 90  # the whole tree was read
    assert structure.cycles(graph) == []
    assert structure.cycles(structure.package_graph(graph)) == []
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "structure.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "module import cycles: 0" in result.stdout, result.stdout


def test_the_cycle_check_finds_a_cycle(tmp_path):
    package = tmp_path / "cliplab"
    (package / "a").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a" / "__init__.py").write_text("")
    (package / "a" / "x.py").write_text("from . import y\n")
    (package / "a" / "y.py").write_text("def f():\n    from .x import g  # lazy, and still a cycle\n")
    assert structure.cycles(structure.import_graph(tmp_path)) == [["cliplab.a.x", "cliplab.a.y"]]


def test_packages_import_only_from_the_layers_below():
    level = {package: i for i, layer in enumerate(LAYERS) for package in layer}
    packages = structure.package_graph(structure.import_graph())
    assert set(packages) == set(level), "a package is missing from LAYERS"
    upward = [(p, t) for p, targets in packages.items() for t in targets if level[t] >= level[p]]
    assert upward == []

"""The shape of `src/cliplab`, read statically: its import graph (lazy imports inside functions
included), cycles in it, and size figures (files and lines per package, the longest functions).

    python tools/structure.py            # the report
    python tools/structure.py --check    # exit 1 if any import cycle exists (tests/test_structure.py runs this)

Edges: `import a.b` and `from a.b import c` point at module `a.b`, or at module `a.b.c` when `c` is a
module of the tree. A package's `__init__` counts as a module of its own (`cliplab.models`).
Packages are the folders under `cliplab/` (top-level modules count as packages of one file).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under root/cliplab."""
    found = {}
    for path in sorted((root / "cliplab").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the modules of the tree it imports, anywhere in its body."""
    tree = modules(root)
    graph: dict[str, set[str]] = {name: set() for name in tree}
    for name, path in tree.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in tree else base for a in node.names]
            graph[name] |= {t for t in targets if t in tree and t != name}
    return graph


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        packages[package_of(module)] |= {package_of(t) for t in targets} - {package_of(module)}
    return dict(packages)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan's algorithm), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def functions(root: Path = ROOT) -> list[tuple[int, str]]:
    """(lines, module:qualified name) of every function and method, longest first."""
    found = []

    def walk(node: ast.AST, module: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((child.end_lineno - child.lineno + 1, f"{module}:{prefix}{child.name}"))
                walk(child, module, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, module, f"{prefix}{child.name}.")

    for name, path in modules(root).items():
        walk(ast.parse(path.read_text(encoding="utf-8")), name, "")
    return sorted(found, reverse=True)


def sizes(root: Path = ROOT) -> dict[str, tuple[int, int]]:
    """package -> (files, lines)."""
    table: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name, path in modules(root).items():
        entry = table[package_of(name)]
        entry[0] += 1
        entry[1] += len(path.read_text(encoding="utf-8").splitlines())
    return {k: (v[0], v[1]) for k, v in sorted(table.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check for import cycles")
    parser.add_argument("--root", type=Path, default=ROOT, help="the folder holding cliplab/ (default: src)")
    args = parser.parse_args(argv)
    graph = import_graph(args.root)
    module_cycles = cycles(graph)
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} import edges (lazy imports included)")
    print(f"module import cycles: {len(module_cycles)}")
    for component in module_cycles:
        print("  " + " <-> ".join(component))
    packages = package_graph(graph)
    package_cycles = cycles(packages)
    print(f"package import cycles: {len(package_cycles)}")
    for component in package_cycles:
        print("  " + " <-> ".join(component))
    if args.check:
        return 1 if module_cycles or package_cycles else 0
    print("\npackage imports (what each package imports from the others):")
    for package, targets in sorted(packages.items()):
        print(f"  {package:<12} -> {', '.join(sorted(targets)) or '-'}")
    print(f"\n{'package':<12} {'files':>5} {'lines':>6}")
    table = sizes(args.root)
    for package, (files, lines) in table.items():
        print(f"{package:<12} {files:>5} {lines:>6}")
    print(f"{'total':<12} {sum(f for f, _ in table.values()):>5} {sum(n for _, n in table.values()):>6}")
    print("\nlongest functions:")
    for lines, name in functions(args.root)[:8]:
        print(f"  {lines:>4}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

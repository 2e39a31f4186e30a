"""The package-level import graph of lngraph has no cycle and keeps its layers.

Every module under ``lngraph/`` is parsed with :mod:`ast`; every import counts wherever it
stands (module level, inside a function, under ``if TYPE_CHECKING``), and so does
``importlib.import_module("lngraph....")`` with a literal name. Modules map to their top
package (``lngraph.train.fit`` → ``lngraph.train``); ``lngraph/__init__.py`` is ``lngraph``
(only ``__version__``, imported by a few), and a module directly under ``lngraph/`` is a node
of its own (``lngraph.__main__``, the entry point).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "lngraph"

#: The layers (the table "Layers" of docs/design.md): package → the other lngraph packages it
#: may import.
LAYERS: dict[str, set[str]] = {
    "_lazy": set(),             # lazy package exports (importlib only)
    "io": set(),
    "synth": {"io"},
    "nn": set(),
    "matching": set(),
    "data": {"io", "matching"},
    "metrics": {"io"},
    "viz": {"io", "_lazy"},
    "models": {"nn", "matching", "data", "io"},
    "baselines": {"io", "data", "nn", "matching", "metrics"},
    "train": {"io", "data", "nn", "matching", "models", "metrics", "baselines", "_lazy"},
    "bench": {"baselines", "train", "metrics", "io"},
    "tune": {"train", "models", "io"},
    "cli": {"io", "synth", "data", "nn", "matching", "models", "metrics", "viz", "baselines",
            "train", "bench", "tune"},
}
#: The same with full names; any package may also import the root ``lngraph`` (it holds only
#: ``__version__`` and imports nothing, see the last test).
MAY_IMPORT: dict[str, set[str]] = {f"lngraph.{k}": {f"lngraph.{v}" for v in vs} | {"lngraph"}
                                   for k, vs in LAYERS.items()}
#: Packages that never import the ones that run methods or commands.
FOUNDATION = ("lngraph.io", "lngraph.synth", "lngraph.nn", "lngraph.matching", "lngraph.data",
              "lngraph.metrics", "lngraph.viz", "lngraph.models")
UPPER = ("lngraph.baselines", "lngraph.train", "lngraph.bench", "lngraph.tune", "lngraph.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    """``lngraph.x.y`` → ``lngraph.x``; ``lngraph`` → ``lngraph``; ``lngraph.m`` (a module
    directly under ``lngraph/``, or a name of the root package's) → itself or ``lngraph``."""
    parts = module.split(".")
    if len(parts) < 2:
        return "lngraph"
    if (ROOT / parts[1]).is_dir() or (ROOT / f"{parts[1]}.py").is_file():
        return ".".join(parts[:2])
    return "lngraph"


def imported_modules(path: Path) -> set[str]:
    """Every lngraph module ``path`` imports, at any level of its code."""
    name = module_name(path)
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            # ``from lngraph import train`` imports the subpackage lngraph.train
            folder = ROOT.parent / module.replace(".", "/")
            found.update(f"{module}.{alias.name}" for alias in node.names
                         if (folder / alias.name).is_dir()
                         or (folder / f"{alias.name}.py").is_file())
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name)
                       and node.func.id in ("import_module", "__import__")))):
            found.add(node.args[0].value)
    return {m for m in found if m == "lngraph" or m.startswith("lngraph.")}


def package_graph() -> dict[str, set[str]]:
    """Package → the other lngraph packages its modules import."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in sorted(ROOT.rglob("*.py")):
        source = package_of(module_name(path))
        graph[source]  # every package is a node, even one that imports nothing
        for module in imported_modules(path):
            target = package_of(module)
            if target != source:
                graph[source].add(target)
    return dict(graph)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


GRAPH = package_graph()


def test_the_scan_sees_every_package_and_function_level_imports():
    assert {"lngraph", "lngraph.__main__", "lngraph.io", "lngraph.baselines", "lngraph.train",
            "lngraph.bench", "lngraph.cli"} <= set(GRAPH)
    assert "lngraph.bench" in GRAPH["lngraph.cli"]  # imported inside cli.bench.run()
    assert "lngraph.cli" in GRAPH["lngraph.__main__"]


def test_the_package_graph_has_no_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle between lngraph packages: " + " -> ".join(cycle)


def test_find_cycle_reports_the_path():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_package_has_a_layer():
    packages = set(GRAPH) - {"lngraph", "lngraph.__main__"}
    assert packages == set(MAY_IMPORT), "add new packages to MAY_IMPORT (and docs/design.md)"


def test_each_package_imports_only_its_lower_layers():
    wrong = sorted(f"{source} -> {target}" for source, targets in GRAPH.items()
                   if source in MAY_IMPORT for target in targets - MAY_IMPORT[source])
    assert wrong == [], "imports against the layering: " + ", ".join(wrong)


def test_the_layering_rules_themselves():
    """The table says: io imports nothing of lngraph; the building blocks never import a
    method, the training, the leaderboard, tuning or the commands; baselines sit below train,
    train below bench."""
    assert LAYERS["io"] == set()
    for low in FOUNDATION:
        assert not MAY_IMPORT[low] & set(UPPER), low
    for i, low in enumerate(UPPER):
        assert not MAY_IMPORT[low] & set(UPPER[i:]), low
    assert find_cycle(MAY_IMPORT) is None


def test_the_root_package_imports_nothing_and_only_the_entry_point_imports_the_commands():
    assert GRAPH["lngraph"] == set()
    assert [s for s, targets in GRAPH.items() if "lngraph.cli" in targets] == [
        "lngraph.__main__"]
    assert [s for s, targets in GRAPH.items() if "lngraph.__main__" in targets] == []

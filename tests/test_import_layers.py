"""The package's imports run one way: cli -> (report, export, plan) -> executors -> engine ->
(models, optim, data) -> spec and registry, with the store below all but the engine, which never
imports it. No import cycle, counting the imports made inside functions, and no module reads
another module's private names.

The import graph is read from the source with :mod:`ast` (every ``import`` statement at any
depth), not from ``sys.modules``, so an import hidden in a function counts as much as one at
the top of a file.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "trainlab"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _sources() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(encoding="utf-8"), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def _imported(module: str, tree: ast.Module) -> Iterator[tuple[str, str]]:
    """(imported module, name taken from it or "") for every import in ``tree``."""
    modules = _sources()
    package = module if (PACKAGE / Path(*module.split(".")[1:]) / "__init__.py").exists() else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ""
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield (submodule, "") if submodule in modules else (base, alias.name)


@cache
def graph() -> dict[str, set[str]]:
    """trainlab module -> the trainlab modules it imports."""
    modules = _sources()
    return {
        m: {target for target, _ in _imported(m, tree) if target in modules and target != m}
        for m, tree in modules.items()
    }


def _within(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


def _reach(start: str) -> dict[str, list[str]]:
    """Every module ``start`` imports, directly or not, with one import path to it."""
    edges = graph()
    paths = {start: [start]}
    todo = [start]
    while todo:
        here = todo.pop()
        for there in sorted(edges[here]):
            if there not in paths:
                paths[there] = [*paths[here], there]
                todo.append(there)
    return paths


def room(module: str) -> str:
    """The sub-package a module belongs to (``trainlab.report.tables`` -> ``trainlab.report``), or the module."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else module


def rooms() -> dict[str, set[str]]:
    """The import graph with each sub-package drawn as one node."""
    edges: dict[str, set[str]] = {}
    for m, targets in graph().items():
        edges.setdefault(room(m), set()).update(room(t) for t in targets)
    return {r: targets - {r} for r, targets in edges.items()}


def cycles(edges: dict[str, set[str]] | None = None) -> list[list[str]]:
    """The import cycles of ``edges`` (default: the package's modules): its strongly connected
    components of two nodes or more."""
    edges = graph() if edges is None else edges
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


UPPER = (
    "trainlab.cli",
    "trainlab.api",
    "trainlab.tracking",
    "trainlab.report",
    "trainlab.export",
    "trainlab.orchestrate",
    "trainlab.pruning",
    "trainlab.executors",
    "trainlab.cluster",
    "trainlab.planner",
    "trainlab.trained",
)
"""The modules that drive training or read its results: nothing below them reaches them."""

NEVER_IMPORTS: list[tuple[str, tuple[str, ...], str]] = [
    (
        "trainlab.report",
        ("trainlab.export", "trainlab.engine"),
        "export is above report (it picks its trial with the report's selection); the report reads "
        "trained models through trainlab.trained, not through the engine's internals",
    ),
    ("trainlab.store.base", ("trainlab.store.sqlite",), "backends build on the interface and register with it"),
    ("trainlab.api", ("trainlab.cli",), "the command is built on the API, never the other way"),
]
"""(importer, imported, why): direct imports that must not exist."""

NEVER_REACHES: list[tuple[str, tuple[str, ...], str]] = [
    ("trainlab.engine", ("trainlab.store", *UPPER), "the engine trains; it never imports the store or its drivers"),
    (
        "trainlab.report",
        ("trainlab.executors", "trainlab.cluster", "trainlab.export", "trainlab.cli"),
        "a report reads the store; it does not load the executors",
    ),
    ("trainlab.export", ("trainlab.executors", "trainlab.cluster", "trainlab.cli"), "an export reads the store"),
    (
        "trainlab.tracking",
        ("trainlab.cli", "trainlab.cluster"),
        "trackers sit below the commands, beside the executors",
    ),
    (
        "trainlab.trained",
        ("trainlab.report", "trainlab.export", "trainlab.executors", "trainlab.cli"),
        "reading a trained model sits below both its readers",
    ),
    (
        "trainlab.executors",
        ("trainlab.report", "trainlab.export", "trainlab.cluster", "trainlab.cli", "trainlab.tracking"),
        "executors train; the report, the trackers and the commands sit above them (trackers listen)",
    ),
    (
        "trainlab.spec",
        ("trainlab.engine", "trainlab.store", "trainlab.search", *UPPER),
        "a study file is read and resolved without the engine, the store or the search samplers",
    ),
    (
        "trainlab.data",
        ("trainlab.engine", "trainlab.store", "trainlab.spec", "trainlab.models", "trainlab.optim", *UPPER),
        "data sets are below the engine and the models",
    ),
    ("trainlab.models", ("trainlab.engine", "trainlab.store", "trainlab.data", *UPPER), "models are below the engine"),
    (
        "trainlab.optim",
        ("trainlab.engine", "trainlab.store", "trainlab.data", "trainlab.models", *UPPER),
        "optimizers are below the engine",
    ),
    (
        "trainlab.store",
        ("trainlab.engine", "trainlab.data", "trainlab.spec", "trainlab.models", "trainlab.optim", *UPPER),
        "the store knows nothing of torch, models or data",
    ),
]
"""(importer, reached, why): modules that must not be reached even through others."""


def test_the_graph_is_read_from_the_source() -> None:
    """The reader finds imports at the top, inside functions and relative ones, as Python resolves them."""
    edges = graph()
    assert "trainlab.engine.checkpoint" in edges["trainlab.engine.loop"]  # `from trainlab.engine import checkpoint`
    assert "trainlab.engine" in edges["trainlab.executors"]  # a name from a package's face
    assert "trainlab.report.inspect" in edges["trainlab.report.figures"]  # imported inside a method
    assert "trainlab.store.sqlite" in edges["trainlab.store"]


def test_a_cycle_is_found_where_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cycle finder on a graph with a cycle hidden in a function-level import."""
    edges = {m: set(targets) for m, targets in graph().items()}
    edges["trainlab.store.base"].add("trainlab.store.sqlite")
    monkeypatch.setitem(globals(), "graph", lambda: edges)
    assert ["trainlab.store.base", "trainlab.store.sqlite"] in cycles()
    edges["trainlab.report.inspect"].add("trainlab.export")
    assert ["trainlab.export", "trainlab.report"] in cycles(rooms())


def test_no_module_imports_the_package_face() -> None:
    """``trainlab/__init__.py`` exports the API, the top of the package: a module below it reads
    what it needs from its own module (the version from trainlab.version), never from the face."""
    assert sorted(m for m, targets in graph().items() if "trainlab" in targets) == []


def test_no_import_cycle() -> None:
    assert cycles() == []


def test_no_import_cycle_between_sub_packages() -> None:
    """Neither between modules through a sub-package (report -> export -> report.tables)."""
    assert cycles(rooms()) == []


@pytest.mark.parametrize(("importer", "imported", "why"), NEVER_IMPORTS, ids=[r[0] for r in NEVER_IMPORTS])
def test_no_import_runs_back_up(importer: str, imported: tuple[str, ...], why: str) -> None:
    wrong = sorted(
        f"{m} imports {t}"
        for m, targets in graph().items()
        if _within(m, importer)
        for t in targets
        if any(_within(t, layer) for layer in imported)
    )
    assert wrong == [], why


@pytest.mark.parametrize(("importer", "reached", "why"), NEVER_REACHES, ids=[r[0] for r in NEVER_REACHES])
def test_no_module_reaches_a_layer_above_it(importer: str, reached: tuple[str, ...], why: str) -> None:
    wrong = sorted(
        " -> ".join(path)
        for m in graph()
        if _within(m, importer)
        for t, path in _reach(m).items()
        if any(_within(t, layer) for layer in reached)
    )
    assert wrong == [], why


def _private_attributes(tree: ast.Module) -> set[str]:
    """Names starting with one underscore that the module's classes define or set on ``self``."""
    names: set[str] = set()
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for node in ast.walk(cls):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node in cls.body:
                names.add(node.name)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node in cls.body:
                names.add(node.target.id)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and isinstance(node.ctx, ast.Store)
            ):
                names.add(node.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_no_module_reads_another_modules_private_names() -> None:
    """Neither ``from m import _name`` nor ``obj._attr`` where ``_attr`` is private to a class of
    another trainlab module (and no class of this module has one so named)."""
    sources = _sources()
    private = {m: _private_attributes(tree) for m, tree in sources.items()}
    wrong = []
    for m, tree in sources.items():
        wrong += [
            f"{m} imports {name} from {target}"
            for target, name in _imported(m, tree)
            if target in sources and target != m and name.startswith("_") and not name.startswith("__")
        ]
        others = set().union(*(names for other, names in private.items() if other != m)) - private[m]
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in others
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                wrong.append(f"{m}:{node.lineno} reads .{node.attr}")
    assert wrong == []


def test_reports_and_exports_load_without_the_executors() -> None:
    """A report's figures (which hold the data cache) and an export's test split import neither
    the executors nor Optuna."""
    code = "\n".join(
        [
            "import sys",
            "from trainlab import export",
            "from trainlab.errors import TrainlabError",
            "from trainlab.report.figures import StudyFigures",
            "import trainlab.report.html, trainlab.report.inspect",
            "StudyFigures(None, 'study', report={'variants': []})",
            "try:",
            "    export.test_split({})",
            "except TrainlabError:",
            "    pass",
            "print(sorted(m for m in ('trainlab.executors', 'trainlab.cluster', 'optuna') if m in sys.modules))",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == "[]"


def test_the_data_face_does_not_load_torch() -> None:
    """``import trainlab.data`` (the ``trainlab data`` commands) stays free of torch; the tensor
    cache is imported from its own module."""
    code = "import sys, trainlab.data; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == "False"

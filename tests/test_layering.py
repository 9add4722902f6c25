"""The package's layering, read from the source with ``ast`` (nothing is imported).

The rules are those of docs/DESIGN.md ("Layout"): the pure layers (``io``, ``stats``)
never reach FiftyOne; each layer imports only the layers below it; nothing imports a
private name of another module; there is no import cycle, counting the imports hidden
inside functions; operators and panels use only public names; the lineage layer does
not borrow from the panel layer.
"""

from __future__ import annotations

import ast
import os
from collections import defaultdict

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "multireader")

#: subpackage -> the multireader subpackages it may import (besides itself and the
#: pure top-level modules ``errors`` and ``progress``)
ALLOWED = {
    # both pure; the demo generator measures its own nodules with the RECIST code
    "io": {"stats"},
    "stats": set(),
    "core": {"io", "stats"},
    "ingest": {"io", "stats", "core"},
    "embed": {"io", "stats", "core"},
    "analyses": {"io", "stats", "core", "ingest", "embed"},
    "lineage": {"io", "stats", "core", "embed", "analyses"},
    "figures": {"io", "stats", "core", "analyses"},
}
PURE = {"io", "stats"}
TOP_LEVEL = {"errors", "progress", "__init__"}


def _modules() -> dict[str, str]:
    """Dotted module name -> path, for every module of the package."""
    out = {}
    for folder, _, files in os.walk(PKG):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                out[rel.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    is_pkg = MODULES.get(module, "").endswith("__init__.py")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: str, module: str):
    """(imported module, imported name or None, line) for every import in the file,
    at any depth (function-level imports included)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in MODULES:
                    yield sub, None, node.lineno
                else:
                    yield target, a.name, node.lineno


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def test_every_module_is_in_a_named_layer():
    loose = [
        m
        for m in MODULES
        if m != "multireader" and _layer(m) is None and m.split(".")[-1] not in TOP_LEVEL
    ]
    assert not loose, f"modules outside the layers of DESIGN.md: {loose}"


def test_pure_layers_never_import_fiftyone():
    bad = []
    for m, path in MODULES.items():
        if _layer(m) in PURE or m.split(".")[-1] in {"errors", "progress"}:
            for target, _, line in _imports(path, m):
                if target.split(".")[0] in {"fiftyone", "eta", "mongoengine", "pymongo"}:
                    bad.append(f"{m}:{line} imports {target}")
    assert not bad, bad


def test_layers_import_only_the_layers_below():
    bad = []
    for m, path in MODULES.items():
        layer = _layer(m)
        if layer is None:
            continue
        for target, _, line in _imports(path, m):
            if not target.startswith("multireader"):
                continue
            other = _layer(target)
            if other is None:
                if target not in {"multireader", "multireader.errors", "multireader.progress"}:
                    bad.append(f"{m}:{line} imports {target}")
            elif other != layer and other not in ALLOWED[layer]:
                bad.append(f"{m}:{line} ({layer}) imports {target} ({other})")
    assert not bad, bad


def test_lineage_does_not_borrow_from_the_panel_layer():
    bad = [
        f"{m}:{line} imports {t}"
        for m, path in MODULES.items()
        if _layer(m) == "lineage"
        for t, _, line in _imports(path, m)
        if _layer(t) == "figures" or t.split(".")[0] == "panels"
    ]
    assert not bad, bad


def _private_uses(path: str, module: str):
    """Private names taken from another module: imported by name, or read as an
    attribute of an imported multireader module."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in MODULES:
                    aliases[a.asname or a.name] = sub
                elif (
                    target.startswith("multireader")
                    and a.name.startswith("_")
                    and a.name != "__version__"
                ):
                    yield f"{module}:{node.lineno} imports {target}.{a.name}"
        elif isinstance(node, ast.Import):
            aliases.update(
                {
                    a.asname: a.name
                    for a in node.names
                    if a.name.startswith("multireader") and a.asname
                }
            )
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            yield f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}"


def _plugin_files():
    for folder in ("operators", "panels"):
        for name in sorted(os.listdir(os.path.join(ROOT, folder))):
            if name.endswith(".py"):
                yield f"{folder}.{name[:-3]}", os.path.join(ROOT, folder, name)


def test_no_module_imports_another_modules_private_names():
    bad = [u for m, path in MODULES.items() for u in _private_uses(path, m)]
    assert not bad, bad


def test_operators_and_panels_use_only_public_names():
    bad = [u for m, path in _plugin_files() for u in _private_uses(path, m)]
    assert not bad, bad


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_even_through_function_level_imports():
    graph = defaultdict(set)
    for m, path in MODULES.items():
        graph[m]
        for target, _, _ in _imports(path, m):
            # a package's __init__ is a face, not a dependency of its modules
            if target in MODULES and target != m and not MODULES[target].endswith("__init__.py"):
                graph[m].add(target)
    for t in list(graph.values()):
        for x in t:
            graph[x]
    assert not _cycles(graph), _cycles(graph)


@pytest.mark.parametrize(
    "source",
    [
        "import fiftyone as fo\n",
        "def f():\n    from fiftyone import ViewField\n",
    ],
)
def test_the_checker_sees_module_and_function_level_imports(source, tmp_path):
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert [t for t, _, _ in _imports(str(path), "multireader.stats.probe")][0].startswith(
        "fiftyone"
    )


def test_the_cycle_finder_finds_a_hidden_cycle():
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]

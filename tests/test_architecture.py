"""The import graph of ``src/icmbridge``: commands on top, then workflows, then the library.

Read from the source with :mod:`ast`, so imports inside functions count too (a lazy import still
ties two modules together), and so do ``importlib.import_module("icmbridge....")`` calls with a
literal name. Nothing is imported to build the graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "icmbridge"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a module of the package."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every name an import statement or ``import_module`` call of ``tree`` names. A module that
    calls ``import_module`` imports, for this graph, every module name it spells out as a string
    (a list of command modules loaded by name is still an import)."""
    names: set[str] = set()
    strings: set[str] = set()
    dynamic = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            # a submodule imported by name resolves to itself, anything else to ``base``
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
            dynamic |= getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.add(node.value)
    if dynamic:
        names.update(s for s in strings if s.startswith(PACKAGE + ".") and " " not in s)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its body)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = {
            _resolve(n, modules)
            for n in _imported_names(tree, name, path.name == "__init__.py")
            if n == PACKAGE or n.startswith(PACKAGE + ".")
        }
        graph[name] = {t for t in targets if t and t != name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def _layer(module: str) -> str:
    parts = module.split(".")
    if module == f"{PACKAGE}.cli" or parts[1:2] == ["commands"]:
        return "commands"
    if parts[1:2] == ["workflows"]:
        return "workflows"
    return "library"


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_graph_sees_lazy_imports(graph: dict[str, set[str]]) -> None:
    # the shim and the command layer are found, and imports inside functions count
    assert f"{PACKAGE}.commands" in graph[f"{PACKAGE}.cli"]
    assert len(graph) > 40


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    cycles = find_cycles(graph)
    assert not cycles, "modules that import each other (directly or round about): " + "; ".join(
        " <-> ".join(c) for c in cycles
    )


def test_layers_import_only_downwards(graph: dict[str, set[str]]) -> None:
    rank = {"library": 0, "workflows": 1, "commands": 2}
    upward = [
        f"{src} ({_layer(src)}) imports {dst} ({_layer(dst)})"
        for src, targets in sorted(graph.items())
        for dst in sorted(targets)
        if rank[_layer(dst)] > rank[_layer(src)]
    ]
    assert not upward, "\n".join(upward)


def test_commands_package_is_the_entry_point(graph: dict[str, set[str]]) -> None:
    importers = sorted(
        src
        for src, targets in graph.items()
        if any(_layer(t) == "commands" for t in targets) and _layer(src) != "commands"
    )
    assert not importers, f"below the command layer, these import it: {importers}"

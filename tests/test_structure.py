"""The shape of the code (issue 14): no import cycles, small modules, short engine functions."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dreamsound"

#: Longest module (lines) and longest engine function (lines, decorators to last statement).
MAX_MODULE_LINES = 600
MAX_ENGINE_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, known: set[str]) -> set[str]:
    """dreamsound modules ``path`` imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            # "from a.b import c" imports a.b.c when c is a module, else just a.b.
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("dreamsound"):
                found.add(name)
    return found


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}
    # A package importing its own submodules (re-exports, command registration) is not an
    # upward arrow; everything else must point one way.
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt):], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_modules_are_small():
    long = {name: len(path.read_text(encoding="utf-8").splitlines())
            for name, path in _modules().items()}
    assert {n: size for n, size in long.items() if size > MAX_MODULE_LINES} == {}


def test_engine_functions_are_short():
    too_long = {}
    for path in (PACKAGE / "engine").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_ENGINE_FUNCTION_LINES:
                    too_long[f"{path.name}:{node.name}"] = length
    assert too_long == {}


def test_no_module_is_named_like_an_export():
    import dreamsound

    submodules = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir()
                                                          if p.is_dir()}
    assert set(dreamsound.__all__) & submodules == set()

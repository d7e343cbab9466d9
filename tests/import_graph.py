"""The import graph of a package read from its source (ast), and a cycle in it: for the tests that hold the
project's modules to importing one way (DESIGN.md's layers)."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path


def module_paths(root: Path, package: str) -> dict[str, Path]:
    """Every module below ``root`` by its dotted name (a package by its own name, for its ``__init__``)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join((package, *parts[: -1 if parts[-1] == "__init__" else None]))] = path
    return found


def imported(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The modules of ``known`` one import statement names, relative ones resolved from ``module``."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & known
    base = node.module or ""
    if node.level:
        parent = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(parent[: len(parent) - node.level + 1] + ([base] if base else []))
    return {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names} & known


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING"))


def _nodes(tree: ast.AST, runtime_only: bool) -> Iterator[ast.AST]:
    """Every node of ``tree``; with ``runtime_only``, not those under ``if TYPE_CHECKING:`` (annotations only)."""
    for child in ast.iter_child_nodes(tree):
        if runtime_only and _type_checking(child):
            assert isinstance(child, ast.If)
            for other in child.orelse:
                yield other
                yield from _nodes(other, runtime_only)
            continue
        yield child
        yield from _nodes(child, runtime_only)


def import_graph(root: Path, package: str, *, runtime_only: bool = False) -> dict[str, set[str]]:
    """Which module imports which, among the modules below ``root``, counting imports inside functions too
    (and, unless ``runtime_only``, those made for annotations under ``if TYPE_CHECKING:``)."""
    paths = module_paths(root, package)
    known = set(paths)
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        nodes = _nodes(ast.parse(path.read_text(encoding="utf-8"), str(path)), runtime_only)
        is_package = path.name == "__init__.py"
        graph[module] = {
            target
            for node in nodes if isinstance(node, ast.Import | ast.ImportFrom)
            for target in imported(module, is_package, node, known)
        } - {module}
    return graph


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules, the first repeated at the end), or None when the imports go one way."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        for target in sorted(graph.get(module, ())):
            cycle = visit(target, [*path, module])
            if cycle is not None:
                return cycle
        done.add(module)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle is not None:
            return cycle
    return None

"""The module import graph of models/, analysis/ and app/ has no circles.

The graph is built from the source with :mod:`ast`, not by importing: every ``import`` and ``from ... import``
statement anywhere in a file is an edge, including function-level (lazy) imports, because a lazy import only hides a
circle from the interpreter, not from the reader. Imports under ``if TYPE_CHECKING:`` are not edges (they never run),
nor those under ``if __name__ == "__main__":`` (they run only in the script copy of a module, ``__main__``, which no
module imports, so they cannot close a circle).
``from package import name`` is an edge to ``package.name`` when that is a module of the lab, else to ``package``.
A package's ``__init__`` is the node ``package``; an edge from a module to its own package's ``__init__`` counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "analysis", "app")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def lab_modules() -> dict[str, Path]:
    """Every module of the lab's packages, by dotted name."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_main_guard(test: ast.expr) -> bool:
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """All import statements in ``tree``, skipping the bodies of ``if TYPE_CHECKING:`` and ``if __name__ == ...``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and (_is_type_checking(node.test) or _is_main_guard(node.test)):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _resolve_from(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_names(module: str, path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names imported from it) for every import statement of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    out: list[tuple[str, list[str]]] = []
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, []) for alias in node.names)
        else:
            out.append((_resolve_from(module, is_package, node), [alias.name for alias in node.names]))
    return out


def import_graph() -> dict[str, set[str]]:
    """Edges module -> lab modules it imports (anywhere in the file, except under TYPE_CHECKING)."""
    modules = lab_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, names in imported_names(name, path):
            submodules = [f"{target}.{item}" for item in names if f"{target}.{item}" in modules]
            if submodules:
                graph[name].update(submodules)
                if len(submodules) < len(names) and target in modules:
                    graph[name].add(target)
                continue
            # `import a.b.c` or `from a.b import x`: the deepest lab module named.
            parts = target.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts:
                graph[name].add(".".join(parts))
        graph[name].discard(name)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan), as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def strongconnect(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                strongconnect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            strongconnect(node)
    return [_cycle_in(graph, set(component)) for component in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A closed path through ``component`` starting at its first module (breadth-first back to the start)."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph[node] & component):
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if succ not in previous:
                    previous[succ] = node
                    following.append(succ)
        frontier = following
    return sorted(component)


def test_find_cycles_names_a_circle() -> None:
    """The checker itself finds a planted circle (so the real test can fail)."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_lazy_imports_are_edges_type_checking_ones_are_not(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from analysis import report\n"
        "def f():\n    from analysis import claims\n    import models.zoo\n"
        "if __name__ == '__main__':\n    from analysis import report\n"
    )
    path = tmp_path / "m.py"
    path.write_text(source)
    targets = [target for target, _ in imported_names("app.m", path)]
    assert targets == ["typing", "analysis", "models.zoo"]
    names = [names for target, names in imported_names("app.m", path) if target == "analysis"]
    assert names == [["claims"]]


def test_import_graph_has_no_circles() -> None:
    graph = import_graph()
    assert len(graph) > 50, "the graph should cover the lab's modules"
    cycles = find_cycles(graph)
    assert not cycles, "import circles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)

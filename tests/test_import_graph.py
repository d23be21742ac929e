"""The package layout a newcomer can see: no import cycles, no oversized library files.

The import graph is read from the source (``ast``), not from ``sys.modules``: every
``import`` statement counts, including those inside functions, relative imports are
resolved against the importing module, and ``from pkg import name`` is an import of
``pkg.name`` when that is a submodule and of ``pkg`` otherwise.  The implicit
import of a parent package (its ``__init__`` runs first) is not an edge: a
package that re-exports its submodules would otherwise be in a cycle with each.
Only modules of the packages below are nodes; anything else (numpy, torch, the
standard library) is ignored.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: installed package name -> its folder in the repository (pyproject.toml's package-dir:
#: calibrate/ installs as perfmodel.calibrate)
PACKAGES = {"perfmodel": "perfmodel", "perfmodel.calibrate": "calibrate"}
MAX_LINES = 400


def _modules(root: Path = ROOT, packages=PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the packages (a folder's files under the
    name it installs as; ``packages`` maps name -> folder, or is a sequence of names that are folders)."""
    if not isinstance(packages, dict):
        packages = {name: name.replace(".", "/") for name in packages}
    out = {}
    for pkg, folder in packages.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = pkg.split(".") + list(path.relative_to(root / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out.setdefault(".".join(parts), path)
    return out


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _resolve(target: str, modules: dict[str, Path]) -> str | None:
    """The longest known module that ``target`` names (``a.b.c`` -> ``a.b`` when c is an attribute)."""
    parts = target.split(".")
    while parts:
        name = ".".join(parts)
        if name in modules:
            return name
        parts.pop()
    return None


def _imports(name: str, modules: dict[str, Path]) -> set[str]:
    """Modules of the packages that module ``name`` imports anywhere in its source."""
    tree = ast.parse(modules[name].read_text(), filename=str(modules[name]))
    package = name if _is_package(name, modules) else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                targets.add(sub if sub in modules else source)
    return {m for m in (_resolve(t, modules) for t in targets) if m is not None and m != name}


def import_graph(root: Path = ROOT, packages=PACKAGES) -> dict[str, set[str]]:
    modules = _modules(root, packages)
    return {name: _imports(name, modules) for name in modules}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle path per knot of mutually importing modules (strongly connected component of more
    than one module, Tarjan); ``knot_members`` names all of a knot's modules."""
    index, low, on_stack, stack, comps = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, set(c)) for c in comps]


def knot_members(graph: dict[str, set[str]], cycle: list[str]) -> list[str]:
    """Every module that lies on some cycle with ``cycle[0]`` (reachable from it and reaching it)."""
    def reach(start, edges):
        seen, todo = {start}, [start]
        while todo:
            for w in edges(todo.pop()):
                if w not in seen:
                    seen.add(w)
                    todo.append(w)
        return seen
    reverse: dict[str, set[str]] = {}
    for v, ws in graph.items():
        for w in ws:
            reverse.setdefault(w, set()).add(v)
    return sorted(reach(cycle[0], graph.__getitem__) & reach(cycle[0], lambda v: reverse.get(v, ())))


def _cycle_in(graph, comp: set[str]) -> list[str]:
    """One concrete cycle through the component's first module (breadth-first back to it)."""
    start = min(comp)
    prev, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    path = [v]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    return list(reversed(path)) + [start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return sorted(comp)


def test_graph_sees_relative_and_function_local_imports(tmp_path):
    files = {
        "pkg/__init__.py": "",
        "pkg/base.py": "X = 1\n",
        "pkg/sub/__init__.py": "from .leaf import Y\n",
        "pkg/sub/leaf.py": "from ..base import X\nY = X\n",
        "pkg/sub/top.py": ("import numpy\nfrom . import leaf\nfrom pkg.sub import Y\n"
                           "def f():\n    from .. import base\n    import pkg.sub.leaf\n"),
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.sub.leaf"] == {"pkg.base"}                      # relative, two levels up
    assert graph["pkg.sub"] == {"pkg.sub.leaf"}                       # a package's own relative import
    # ``from . import leaf``: the submodule; ``from pkg.sub import Y``: the package (Y is a name);
    # inside a function: ``from .. import base`` and ``import pkg.sub.leaf``; numpy is not a node
    assert graph["pkg.sub.top"] == {"pkg.sub.leaf", "pkg.sub", "pkg.base"}


def test_find_cycles_names_the_modules():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(
        f"{' -> '.join(c)}   (modules in this knot: {', '.join(knot_members(graph, c))})" for c in cycles)


def test_no_library_file_over_max_lines():
    too_long = []
    for path in _modules().values():
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {n} lines")
    assert not too_long, f"library files over {MAX_LINES} lines:\n" + "\n".join(sorted(too_long))

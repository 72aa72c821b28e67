"""nnspec's import graph has no cycles.

The graph is built from the source with `ast`, not by importing: every
`import x` and `from x import y` anywhere in a module of nnspec/ counts,
at module level and inside functions, classes and `if TYPE_CHECKING:` blocks
alike, because an import deferred into a function is still a dependency -
it only hides the cycle from the interpreter, not from a reader.  Relative
imports are resolved against the importing module's package, and
`from pkg import name` where `pkg.name` is a submodule counts as importing
that submodule (and not `pkg` itself, unless some other name is taken from it).

Rule for packages: an edge is an import as written, nothing more. A package's
`__init__` importing its own submodules (nnspec/layers/__init__.py imports every
layer module, nnspec/__init__.py re-exports the API) counts like any other
import, and so does a submodule importing names from its package's `__init__`;
both together are a cycle, the one that leaves a half-initialised package at
run time. What is not an edge is the implicit one: `import pkg.sub` runs
`pkg/__init__.py` first, but recording that would make every package that
re-exports its submodules a cycle, so importing a submodule is an edge to that
submodule alone.

A package that imports all its modules by walking itself
(`for info in pkgutil.iter_modules(__path__): importlib.import_module(...)`,
as nnspec.layers, nnspec.interp and nnspec.runtime do to fill their
registries) has an edge to each module directly in it: `ast` cannot read the
names, but the dependency is as real as a written import.

Only modules inside nnspec are nodes; imports of other libraries are ignored.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nnspec

ROOT = Path(nnspec.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The nnspec modules that the module `name` at `path` imports."""
    package = name if _is_package(path) else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: len(base) - (node.level - 1)]
                base_name = ".".join(base + ([node.module] if node.module else []))
            else:
                base_name = node.module or ""
            if base_name not in modules:
                continue
            took_name = False
            for alias in node.names:
                sub = f"{base_name}.{alias.name}"
                if sub in modules:
                    found.add(sub)
                else:
                    took_name = True
            if took_name:
                found.add(base_name)
    if _is_package(path) and _walks_itself(tree):
        found |= {m for m in modules if m.rpartition(".")[0] == name}
    found.discard(name)
    return found


def _walks_itself(tree: ast.Module) -> bool:
    """Whether a package's __init__ lists its own modules (`pkgutil.iter_modules(__path__)`)."""
    return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
               and node.func.attr == "iter_modules"
               and any(isinstance(a, ast.Name) and a.id == "__path__" for a in node.args)
               for node in ast.walk(tree))


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module
    (Tarjan), each given as a closed chain a -> b -> ... -> a."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_chain(graph, set(c)) for c in components]


def _chain(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the first module of a component."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & component):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover


def test_graph_sees_the_imports_it_must():
    # Guards the walker itself: a graph that found nothing would pass trivially.
    graph = import_graph()
    assert "nnspec.lang.diagnostics" in graph["nnspec.lang.parse"]   # from nnspec.lang.diagnostics import
    assert "nnspec.lang.syntax" in graph["nnspec.lang.sections"]     # from nnspec.lang import syntax as S
    assert "nnspec.lang.parse" in graph["nnspec.lang.sections"]      # inside override_value
    assert "nnspec.compile" in graph["nnspec.plan.command"]          # in a function
    assert "nnspec.layers.base" in graph["nnspec.layers"]         # a package's own submodules
    assert "nnspec.layers.linear" in graph["nnspec.layers"]       # ... imported by walking it
    assert len(graph) > 50
    assert sum(len(v) for v in graph.values()) > 100


def test_cycles_are_found_in_a_made_up_graph():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_has_no_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles in nnspec:\n" + "\n".join(
        "  " + " -> ".join(chain) for chain in cycles
    )

"""No import circles among edgeqat's modules, counting the imports inside functions too.

A lazy import hides a circle from Python at start-up, not from a reader: two modules that each
need the other are one module split in two, and whichever loads first decides what the other
sees. The graph is read with ast (nothing is imported), over src/edgeqat and the two folders
installed as edgeqat.components and edgeqat.pipelines.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FOLDERS = {"edgeqat": REPO / "src" / "edgeqat", "edgeqat.components": REPO / "components",
           "edgeqat.pipelines": REPO / "pipelines"}


def modules() -> dict[str, Path]:
    """Dotted module name -> file (a package is its __init__.py)."""
    out = {}
    for prefix, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((prefix, *parts)).removesuffix(".__init__")
            out[name] = path
    return out


def _target(name: str, known: set[str]) -> str | None:
    """The module an import of ``name`` runs: itself, else its longest known prefix."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imported(module: str, path: Path, known: set[str]) -> set[str]:
    """edgeqat modules ``module`` imports anywhere in its file (module level or inside functions)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {_target(a.name, known) for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:  # `from pkg import mod` imports the module pkg.mod
                found.add(_target(f"{base}.{alias.name}", known) if f"{base}.{alias.name}" in known
                          else _target(base, known))
    return {m for m in found if m and m != module}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imported(name, path, known) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_finder_sees_a_circle_through_a_lazy_import(tmp_path):
    (tmp_path / "a.py").write_text("import edgeqat.b\n")
    (tmp_path / "b.py").write_text("def f():\n    from edgeqat.a import g\n")
    (tmp_path / "c.py").write_text("from edgeqat import a\nfrom . import b\n")
    known = {"edgeqat.a", "edgeqat.b", "edgeqat.c", "edgeqat"}
    graph = {f"edgeqat.{n}": imported(f"edgeqat.{n}", tmp_path / f"{n}.py", known) for n in "abc"}
    assert graph["edgeqat.c"] == {"edgeqat.a", "edgeqat.b"}
    assert cycles(graph) == [["edgeqat.a", "edgeqat.b"]]


def test_no_import_circles():
    graph = import_graph()
    assert "edgeqat.devices.speed" in graph and "edgeqat.adapters.cli.app" in graph  # the walk found the package
    assert cycles(graph) == []

"""The modules that are not DVC deps (adapters/dvc.py NOT_DEPS) are pinned here, and each is
checked to stay unable to change what a stage writes. Editing one of them must re-run nothing
(test_stage_table.py edits strings in a scratch DVC repository); the checks below keep that
honest when the modules change. A module that fails them must leave NOT_DEPS, not the test."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from edgeqat.adapters import dvc
from edgeqat.workspace.stages import STAGES

SRC = REPO / "src" / "edgeqat"
MODULES = ("progress", "workspace.observe", "errors")  # the single-module entries (the rest are packages)


def _file(module: str) -> Path:
    return SRC.joinpath(*module.split(".")).with_suffix(".py")


def test_the_list_is_pinned():
    assert set(dvc.NOT_DEPS) == {"edgeqat.progress", "edgeqat.workspace.observe", "edgeqat.errors", "edgeqat.adapters"}
    for name in dvc.NOT_DEPS:  # each entry names something that exists (a renamed module would not match)
        rel = SRC.joinpath(*name.split(".")[1:])
        assert rel.with_suffix(".py").is_file() or (rel / "__init__.py").is_file(), name


def test_no_stage_depends_on_them_and_nothing_else_is_dropped(monkeypatch):
    """Leaving them out drops exactly their own files: what they import stays a dep."""
    ours = {_file(m).relative_to(REPO).as_posix() for m in MODULES}
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage in STAGES:
        module = stage.step.split(":")[0]
        kept = set(dvc.code_deps(module))
        with monkeypatch.context() as m:
            m.setattr(dvc, "NOT_DEPS", {})
            every = set(dvc.code_deps(module))
        dropped = {p.relative_to(REPO).as_posix() for p in every - kept}
        assert dropped <= ours, (stage.name, dropped - ours)  # no adapter module: no step reaches one
        if "src/edgeqat/progress.py" in {q.relative_to(REPO).as_posix() for q in every}:  # report's step does not
            assert "src/edgeqat/progress.py" in dropped, stage.name
        assert not dropped & set(doc[stage.name]["deps"]), stage.name


def _imports(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """(module, names) of every import anywhere in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}: relative import"
            found.append((node.module or "", tuple(a.name for a in node.names)))
    return found


@pytest.mark.parametrize("name", MODULES)
def test_they_compute_nothing_a_stage_writes(name):
    """Standard library only (progress opens rich lazily to draw bars), and of this package only
    each other and io.log (one line on stderr): no data, model, device or params code."""
    for module, names in _imports(_file(name)):
        top = module.split(".")[0]
        if top == "edgeqat":
            assert module in {f"edgeqat.{m}" for m in MODULES} or (module == "edgeqat.io" and names == ("log",)), \
                (name, module, names)
        else:
            assert top in sys.stdlib_module_names or (name == "progress" and top == "rich"), (name, module)


@pytest.mark.parametrize("name", ["progress", "workspace.observe"])
def test_they_write_only_to_stderr(name):
    """No file opened, written, moved or removed; every print and os.write goes to stderr."""
    bad = []
    for node in ast.walk(ast.parse(_file(name).read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        if func == "open" or func.rsplit(".", 1)[-1] in ("write_text", "write_bytes", "mkdir", "rename", "replace",
                                                         "unlink", "rmtree", "makedirs"):
            bad.append(ast.unparse(node))
        elif func == "print" and not any(k.arg == "file" and ast.unparse(k.value) == "sys.stderr" for k in node.keywords):
            bad.append(ast.unparse(node))
        elif func == "os.write" and ast.unparse(node.args[0]) != "2":
            bad.append(ast.unparse(node))
    assert bad == [], f"{name}.py writes somewhere a result could live: {bad}"


def test_errors_holds_only_classes_whose_tree_is_pinned():
    """Messages are written where an error is raised (a dep). errors.py holds classes with a
    docstring and constant attributes; the tree is pinned, because an `except` picks by it."""
    tree = ast.parse((SRC / "errors.py").read_text())
    bases = {}
    for node in tree.body[1:]:  # after the module's docstring
        assert isinstance(node, ast.ClassDef), ast.unparse(node)[:80]
        assert not node.decorator_list and not node.keywords, node.name
        bases[node.name] = tuple(ast.unparse(b) for b in node.bases)
        for item in node.body:
            doc = isinstance(item, ast.Expr) and isinstance(item.value, ast.Constant)
            const = isinstance(item, ast.Assign) and isinstance(item.value, ast.Constant)
            assert doc or const, f"{node.name}: {ast.unparse(item)[:80]}"
    assert bases == {"EdgeqatError": ("Exception",), "ConfigError": ("EdgeqatError",), "DataError": ("EdgeqatError",),
                     "ModelError": ("EdgeqatError",), "GateFailed": ("EdgeqatError",), "UnsafePath": ("EdgeqatError",),
                     "OutOfSpace": ("EdgeqatError",), "DeviceBudgetError": ("ConfigError",)}


def test_progress_and_observe_hand_back_what_they_were_given(capsys):
    from edgeqat.workspace.observe import epoch_end, observing
    from edgeqat.progress import track

    items = [3, 1, 2]
    assert list(track(iter(items), "items", total=3)) == items
    logs = {"loss": 0.5}

    def greedy(_f: str, _e: int, seen: dict) -> None:
        seen.clear()
        raise RuntimeError("listener broke")

    with observing(greedy):
        epoch_end("train", 1, logs)  # a listener that mutates and raises changes nothing of the caller's
    assert logs == {"loss": 0.5}
    assert "listener broke" in capsys.readouterr().err

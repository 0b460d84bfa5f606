"""dvc.yaml, generated from the stage table (``edgeqat dvc write``; a test fails when it is stale).

Per stage: ``cmd: edgeqat stage <name>``; deps = its input ports, the files its params name
(content-tracked, so replacing a pretrained model re-runs train), and every package module
its step imports, transitively (so a change to ``compression/annotate.py`` re-runs every stage
that quantizes), except the modules in :data:`NOT_DEPS`, whose edits cannot change what a
stage writes (so editing a progress bar re-runs nothing); params = every key of the sections it receives; outs by how the table says
DVC sees them (cached, or committed with ``cache: false``; run-varying "side" files are not
outputs at all).

A files-naming param that is set becomes a literal dep. DVC cannot template an optional
dep (``${...}`` over null stops ``dvc repro``), so after setting one (``train.from_model``)
the file must be rewritten: :func:`check_file_deps`, run by every stage under DVC, refuses
to run a stage whose dvc.yaml does not track the file its params name.
"""

from __future__ import annotations

import ast
import typing
from pathlib import Path
from typing import Any

import yaml

from edgeqat.config import Params
from edgeqat.errors import ConfigError
from edgeqat.workspace.stages import STAGES, Stage, stage_params

PKG = Path(__file__).resolve().parents[1]  # src/edgeqat
HEADER = """\
# Generated from the stage table (src/edgeqat/workspace/stages.py) and params.yaml by `edgeqat dvc write`:
# edit the table or params.yaml, then rerun that command (a test fails when this file is stale).
# Each stage runs one step (`edgeqat stage <name>`); deps list every package module the step
# imports except the presentation-only ones (NOT_DEPS in src/edgeqat/adapters/dvc.py), params
# every key of the sections it receives.
"""

PLOTS = [
    {"Accuracy per epoch": {"template": "linear", "x": "epoch",
                            "y": {"plots/train_history.csv": ["accuracy", "val_accuracy"],
                                  "plots/qat_history.csv": ["accuracy", "val_accuracy"]}}},
    {"Loss per epoch": {"template": "linear", "x": "epoch",
                        "y": {"plots/train_history.csv": ["loss", "val_loss"],
                              "plots/qat_history.csv": ["loss", "val_loss"]}}},
    {"Sparsity during magnitude pruning": {"template": "linear", "x": "epoch",
                                           "y": {"plots/prune_history.csv": ["sparsity"]}}},
    {"Confusion matrix (headline variant)": {"template": "confusion", "x": "actual",
                                             "y": {"plots/confusion.csv": "predicted"}}},
]


# --- code deps ---------------------------------------------------------------------------

# A DVC dep means "results may change": these modules (and packages) are imported by steps but
# cannot change a byte a stage writes, so they are not deps and editing them re-runs nothing.
# What they import still counts. tests/unit/test_not_deps.py pins this list and checks that each
# entry stays what its reason says; a module that starts to compute results must leave it.
NOT_DEPS: dict[str, str] = {
    # Bars and plain lines on stderr, and the --verbose switch (which only lets libraries' log
    # lines through). Standard library and rich only; writes to no file; its `track` passes the
    # items through unchanged.
    "edgeqat.progress": "progress output on stderr",
    # Hands each finished epoch's numbers (a copy) to whoever listens (the runner's live MLflow
    # logging, not a DVC output); a listener that raises is dropped, so it never stops the work.
    "edgeqat.workspace.observe": "epoch notifications for live logging",
    # Exception classes and their docstrings only: every message is written where it is raised
    # (a dep), and the class tree is pinned by the test, since an `except` picks by it.
    "edgeqat.errors": "error types",
    # How a step is run (CLI, DVC, KFP, CI, webhook): no step imports them (tests/unit/
    # test_layering.py), and that the same step gets the same configs and paths under every
    # runner is pinned by tests (test_stage_table.py), not by re-running stages. Listed so that
    # this stays a decision rather than an accident of the import graph.
    "edgeqat.adapters": "how a step is run",
}


def not_a_dep(module: str) -> bool:
    """Whether ``module`` is (in) an entry of :data:`NOT_DEPS`."""
    return any(module == m or module.startswith(m + ".") for m in NOT_DEPS)



def _module_file(module: str) -> Path | None:
    rel = module.split(".")[1:]
    base = PKG.joinpath(*rel)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _imported(path: Path) -> set[str]:
    """edgeqat modules ``path`` imports anywhere (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("edgeqat")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgeqat") and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from edgeqat.x import submodule`
    return found


def _named_by_table(module: str) -> list[str]:
    """Modules ``module`` imports by name from a table, or reads as a file, rather than by an
    import statement, so they are deps of every stage that imports ``module``: the readers and
    detectors of the data sources (:mod:`edgeqat.catalog.datasources`, loaded by the opener), the
    runtimes (:mod:`edgeqat.devices.runtimes.base`, loaded by
    :mod:`~edgeqat.devices.runtimes.registry`) and the runner a measurement sends to the device
    (:mod:`~edgeqat.devices.runtimes.measured` reads it as a file)."""
    if module == "edgeqat.devices.runtimes.measured":
        from edgeqat.devices.runtimes.measured import RUNNER

        return [".".join(RUNNER.relative_to(PKG.parent).with_suffix("").parts)]
    if module == "edgeqat.data.sources":
        from edgeqat.catalog.datasources import SOURCES

        refs = [ref for s in SOURCES.values() for ref in (s.reader, s.detect) if ref]
    elif module == "edgeqat.devices.runtimes.registry":
        from edgeqat.devices.runtimes.base import RUNTIMES

        refs = [ref for ref in RUNTIMES.values() if isinstance(ref, str)]
    else:
        return []
    return sorted({ref.partition(":")[0] for ref in refs})


def code_deps(module: str) -> list[Path]:
    """Files of every edgeqat module ``module`` imports, transitively, plus the data folders
    (profiles, published figures) of the packages among them; not the files of the modules in
    :data:`NOT_DEPS` (whose own imports are still followed)."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        f = _module_file(m)
        if f is None:
            continue
        seen[m] = f
        todo += _named_by_table(m)
        parts = m.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run first
        todo += sorted(_imported(f))
    files = {f for m, f in seen.items() if not not_a_dep(m)}
    for pkg in {f.parent for f in files}:
        for sub in pkg.iterdir():
            if sub.is_dir() and not (sub / "__init__.py").exists() and sub.name != "__pycache__" \
                    and not any(sub.glob("*.py")):
                files.add(sub)  # a data folder shipped with the package
    return sorted(files)


def _rel(path: Path) -> str:
    return path.relative_to(PKG.parents[1]).as_posix()  # relative to the repository root


# --- params ------------------------------------------------------------------------------


def _optional(key: str) -> bool:
    section, name = key.split(".")
    ann = Params.model_fields[section].annotation.model_fields[name].annotation  # type: ignore[union-attr]
    return typing.get_origin(ann) is typing.Union and type(None) in typing.get_args(ann)


def file_dep(key: str, params: Params) -> str | None:
    """The dep entry for a files-naming param: a template for a required key (so `dvc exp run
    -S` can change it), the literal path of an optional one when set, else None."""
    section, name = key.split(".")
    value = getattr(getattr(params, section), name)
    if not _optional(key):
        return "${" + key + "}"
    return None if value in (None, "") else str(value)


# --- dvc.yaml ----------------------------------------------------------------------------


def stage_entry(stage: Stage, params: Params) -> dict[str, Any]:
    deps: list[str] = []
    for p in stage.inputs:
        if p.dvc != "side" and p.path not in deps:
            deps.append(p.path)
    for fp in stage.file_params:
        dep = file_dep(fp.key, params)
        if dep is not None and dep not in deps:
            deps.append(dep)
    deps += [_rel(f) for f in code_deps(stage.step.split(":")[0])]
    outs: list[Any] = []
    metrics: list[Any] = []
    for p in stage.outputs:
        if p.dvc == "out":
            outs.append(p.path)
        elif p.dvc == "committed":
            outs.append({p.path: {"cache": False}})
        elif p.dvc == "metrics":
            metrics.append({p.path: {"cache": False}})
    entry: dict[str, Any] = {"cmd": f"edgeqat stage {stage.name}", "deps": deps, "params": stage_params(stage)}
    if outs:
        entry["outs"] = outs
    if metrics:
        entry["metrics"] = metrics
    return entry


def dvc_yaml(params: Params, table: tuple[Stage, ...] = STAGES) -> str:
    doc = {"stages": {s.name: stage_entry(s, params) for s in table}, "plots": PLOTS}
    return HEADER + yaml.safe_dump(doc, sort_keys=False, width=120)


def check_file_deps(stage: Stage, params: Params, dvc_file: Path) -> None:
    """Refuse to run a stage whose dvc.yaml does not track a file its params name: DVC would
    never re-run it when that file changes."""
    wanted = {fp.key: file_dep(fp.key, params) for fp in stage.file_params}
    wanted = {k: v for k, v in wanted.items() if v is not None and not v.startswith("${")}
    if not wanted or not dvc_file.is_file():
        return
    try:
        entry = (yaml.safe_load(dvc_file.read_text()) or {}).get("stages", {}).get(stage.name) or {}
    except yaml.YAMLError:
        return  # DVC itself reports a broken dvc.yaml
    deps = {str(d) for d in entry.get("deps") or []}
    for key, path in wanted.items():
        if path not in deps and "${" + key + "}" not in deps:
            raise ConfigError(f"{dvc_file}: stage {stage.name!r} does not list {path} ({key}) as a dependency, so DVC "
                              f"would not re-run it when that file changes; run `edgeqat dvc write` and commit dvc.yaml")

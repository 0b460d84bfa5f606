"""Import discipline the architecture relies on, by folder: adapters -> steps -> lifecycle ->
domain -> foundation, never back up; steps never import steps; the MLflow modules are three
named files of lifecycle/. A new module takes its folder's layer; a new folder must be placed
here, and only the foundation modules live at the package root."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "edgeqat"
ROOT = SRC.parents[1]

ROOT_MODULES = {"__init__", "config", "errors", "io", "progress", "tf_compat"}  # the foundation at the root
FOLDERS = {
    "foundation": {"catalog", "workspace"},  # what params.yaml can name; the stage table and its records
    "domain": {"data", "models", "quantization", "compression", "devices", "recommend", "reporting"},
    "lifecycle": {"lifecycle"},  # MLflow and promotion: may use the domain (gates read device profiles)
    "steps": {"steps"},
    "adapters": {"adapters"},
}
LEVEL = {"foundation": 0, "domain": 1, "lifecycle": 2, "steps": 3, "adapters": 4}
MODEL_CODE = "serving"  # the registered model's code: loaded by MLflow by path, imported by nothing


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] in ("components", "pipelines"):
        return "adapters"
    if len(parts) == 1 or (len(parts) == 2 and parts[1] in ROOT_MODULES):
        assert len(parts) == 1 or (SRC / f"{parts[1]}.py").is_file(), module
        return "foundation"
    head = parts[1]
    for name, folders in FOLDERS.items():
        if head in folders and (SRC / head).is_dir():
            return name
    raise AssertionError(f"{module}: in no layer; a root module must be foundation (ROOT_MODULES) and a new folder "
                         f"needs a line in test_layering.py's FOLDERS")


def modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        rel = p.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        if f".{MODEL_CODE}" not in name:
            out[name] = p
    return out


def imports(path: Path) -> set[str]:
    """edgeqat modules imported anywhere in the file (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("edgeqat.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgeqat") and not node.level:
            found.add(node.module)
    return found


def _violations(rule, found: dict[str, Path] | None = None) -> list[str]:
    bad = []
    for mod, path in (found or modules()).items():
        for imp in imports(path):
            target = "adapters" if imp.startswith(("edgeqat.components", "edgeqat.pipelines")) else layer(imp)
            if rule(mod, layer(mod), imp, target):
                bad.append(f"{mod} ({layer(mod)}) imports {imp} ({target})")
    return sorted(bad)


def test_imports_point_downwards_only():
    assert _violations(lambda m, lm, i, li: LEVEL[li] > LEVEL[lm]) == []


def test_steps_never_import_steps():
    assert _violations(lambda m, lm, i, li: lm == li == "steps" and m != i and i != "edgeqat.steps") == []


def test_only_foundation_modules_live_at_the_root():
    assert {p.stem for p in SRC.glob("*.py")} == ROOT_MODULES


def test_an_upward_import_is_caught(tmp_path):
    """The rule above fails on a domain module that imports lifecycle, or lifecycle a step."""
    (tmp_path / "a.py").write_text("from edgeqat.lifecycle.tracking import client_for\n")
    (tmp_path / "b.py").write_text("import edgeqat.steps.train\n")
    (tmp_path / "c.py").write_text("from edgeqat.io import log\n")
    found = {"edgeqat.reporting.a": tmp_path / "a.py", "edgeqat.lifecycle.b": tmp_path / "b.py",
             "edgeqat.catalog.c": tmp_path / "c.py"}
    assert _violations(lambda m, lm, i, li: LEVEL[li] > LEVEL[lm], found) == [
        "edgeqat.lifecycle.b (lifecycle) imports edgeqat.steps.train (steps)",
        "edgeqat.reporting.a (domain) imports edgeqat.lifecycle.tracking (lifecycle)"]


def test_every_module_has_a_layer():
    for mod in modules():
        layer(mod)


def test_components_and_pipelines_import_no_step_and_no_domain():
    # they are thin: the table, the KFP adapter and the generic runner do the work
    for folder in ("components", "pipelines"):
        for p in (ROOT / folder).glob("*.py"):
            for imp in imports(p):
                head = imp.split(".")[1]
                assert head not in ("steps", *FOLDERS["domain"]), (p, imp)


def _importers(pattern: str) -> set[str]:
    rx = re.compile(pattern, re.MULTILINE)
    return {str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if rx.search(p.read_text())}


def test_only_tf_compat_imports_tensorflow_and_keras():
    assert _importers(r"^\s*(import|from)\s+(tensorflow|tf_keras|keras|tensorflow_model_optimization)\b") == {"tf_compat.py"}


def test_only_the_mlflow_services_and_the_model_code_import_mlflow():
    # tracking.py (runs), live_run.py (the execution's run while stages work), registry.py (registry,
    # aliases, history, webhooks), and the pyfunc model's own code that MLflow loads by path
    assert _importers(r"^\s*(import|from)\s+mlflow\b") == {"lifecycle/tracking.py", "lifecycle/live_run.py",
                                                             "lifecycle/registry.py", "serving/tflite_pyfunc.py"}


def test_nothing_imports_the_model_code():
    assert not [m for m, p in modules().items() if any(i.startswith(f"edgeqat.{MODEL_CODE}") for i in imports(p))]


def test_steps_never_read_params_yaml():
    offenders = {p.name for p in (SRC / "steps").glob("*.py") if "params.yaml" in p.read_text() or "load_params" in p.read_text()}
    assert offenders == set()


def test_tf_compat_selects_legacy_keras_before_tensorflow_loads():
    import os

    from edgeqat import tf_compat  # noqa: F401

    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    from edgeqat.tf_compat import keras

    assert keras.__name__ == "tf_keras"

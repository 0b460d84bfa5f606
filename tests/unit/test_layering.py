"""Import discipline the architecture relies on: adapters -> steps -> services / domain ->
foundation, never back up; steps never import steps; services (MLflow) and the domain
(TensorFlow, LiteRT, TFLM) do not import each other."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "edgeqat"
ROOT = SRC.parents[1]

FOUNDATION = {"config", "errors", "io", "timings", "tf_compat", "provenance", "stages", "progress", "observe", "run_layout",
              "variants", "datasources", "__init__", "py"}
SERVICES = {"tracking", "live_run", "registry"}
DOMAIN = {"data", "models", "quantization", "compression", "devices", "recommend", "report", "report_html", "promotion",
          "managed"}
LEVEL = {"foundation": 0, "services": 1, "domain": 1, "steps": 2, "adapters": 3}
MODEL_CODE = "serving"  # the registered model's code: loaded by MLflow by path, imported by nothing


def layer(module: str) -> str:
    head = module.split(".")[1] if module.count(".") else "__init__"
    if head in FOUNDATION:
        return "foundation"
    if head in SERVICES:
        return "services"
    if head in DOMAIN:
        return "domain"
    if head == "steps":
        return "steps"
    if head in ("adapters", "components", "pipelines"):
        return "adapters"
    raise AssertionError(f"{module}: in no layer; add it to test_layering.py's map")


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


def _violations(rule) -> list[str]:
    bad = []
    for mod, path in modules().items():
        for imp in imports(path):
            if imp.startswith(("edgeqat.components", "edgeqat.pipelines")) or imp == "edgeqat":
                target = "adapters" if imp != "edgeqat" else "foundation"
            else:
                target = layer(imp)
            if rule(mod, layer(mod), imp, target):
                bad.append(f"{mod} ({layer(mod)}) imports {imp} ({target})")
    return sorted(bad)


def test_imports_point_downwards_only():
    assert _violations(lambda m, lm, i, li: LEVEL[li] > LEVEL[lm]) == []


def test_steps_never_import_steps():
    assert _violations(lambda m, lm, i, li: lm == li == "steps" and m != i and i != "edgeqat.steps") == []


def test_services_and_domain_do_not_import_each_other():
    assert _violations(lambda m, lm, i, li: {lm, li} == {"services", "domain"}) == []


def test_every_module_has_a_layer():
    for mod in modules():
        layer(mod)


def test_components_and_pipelines_import_no_step_and_no_domain():
    # they are thin: the table, the KFP adapter and the generic runner do the work
    for folder in ("components", "pipelines"):
        for p in (ROOT / folder).glob("*.py"):
            for imp in imports(p):
                head = imp.split(".")[1]
                assert head not in ("steps", *DOMAIN), (p, imp)


def _importers(pattern: str) -> set[str]:
    rx = re.compile(pattern, re.MULTILINE)
    return {str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if rx.search(p.read_text())}


def test_only_tf_compat_imports_tensorflow_and_keras():
    assert _importers(r"^\s*(import|from)\s+(tensorflow|tf_keras|keras|tensorflow_model_optimization)\b") == {"tf_compat.py"}


def test_only_the_mlflow_services_and_the_model_code_import_mlflow():
    # tracking.py (runs), live_run.py (the execution's run while stages work), registry.py (registry,
    # aliases, history, webhooks), and the pyfunc model's own code that MLflow loads by path
    assert _importers(r"^\s*(import|from)\s+mlflow\b") == {"tracking.py", "live_run.py", "registry.py",
                                                             "serving/tflite_pyfunc.py"}


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

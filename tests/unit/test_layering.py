"""Import discipline the architecture relies on."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "edgeqat"


def _importers(pattern: str) -> set[str]:
    rx = re.compile(pattern, re.MULTILINE)
    return {str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if rx.search(p.read_text())}


def test_only_tf_compat_imports_tensorflow_and_keras():
    assert _importers(r"^\s*(import|from)\s+(tensorflow|tf_keras|keras|tensorflow_model_optimization)\b") == {"tf_compat.py"}


def test_only_the_mlflow_services_import_mlflow():
    # tracking.py (runs) and registry.py (model registry, aliases, history, webhooks)
    assert _importers(r"^\s*(import|from)\s+mlflow\b") == {"tracking.py", "registry.py"}


def test_steps_never_read_params_yaml():
    offenders = {p.name for p in (SRC / "steps").glob("*.py") if "params.yaml" in p.read_text() or "load_params" in p.read_text()}
    assert offenders == set()


def test_tf_compat_selects_legacy_keras_before_tensorflow_loads():
    import os

    from edgeqat import tf_compat  # noqa: F401

    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    from edgeqat.tf_compat import keras

    assert keras.__name__ == "tf_keras"

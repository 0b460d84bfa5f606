"""A model trained on shuffled labels learns nothing: it is not registered, and the console,
report.html and the MLflow run say why (against a real `mlflow server` on 127.0.0.1).

The real stages run in one workspace laid out as DVC lays it (run_stage, in-process: one
TensorFlow import); the registering and the report are then run through the `edgeqat`
command as a user or DVC runs them.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import synthetic_images
from edgeqat.config import Params
from edgeqat.errors import GateFailed
from integration.conftest import BIN, run

pytestmark = pytest.mark.integration
MODEL = "chance-classifier"


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory, mlflow_server):
    """Every stage up to track on 4 balanced classes whose labels were shuffled: 400 images, a
    test split of 160, so chance (~0.25) stays far below the majority rate + 0.1 whatever the seed."""
    from edgeqat.adapters.runner import run_stage

    ws = tmp_path_factory.mktemp("shuffled")
    x, y = synthetic_images(400, size=8, classes=4, seed=3)
    y = np.random.default_rng(7).permutation(y)  # the pictures no longer say the class
    (ws / "data").mkdir()
    np.savez(ws / "data" / "shuffled.npz", x=x, y=y, class_names=np.array(["tl", "tr", "bl", "br"]))
    params = Params.model_validate({
        "prepare": {"source": "npz", "path": str(ws / "data" / "shuffled.npz"), "image_size": 8, "test_fraction": 0.4,
                    "calibration_size": 16},
        "train": {"alpha": 0.25, "epochs": 3, "batch_size": 32, "early_stopping_patience": 0},
        "convert": {"variants": ["fp32", "ptq_int8"]},
        "evaluate": {"headline": "ptq_int8", "latency_runs": 3, "warmup_runs": 0},
        "validate": {"model": "ptq_int8", "devices": ["rpi4"], "required_devices": [], "latency_runs": 2,
                     "emulate": False},
        "track": {"experiment": "chance"},
        "register": {"model_name": MODEL, "variant": "ptq_int8", "max_accuracy_drop": 1.0},
    })
    import yaml

    (ws / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
    env = {"MLFLOW_TRACKING_URI": mlflow_server}
    import os

    os.environ["MLFLOW_TRACKING_URI"] = mlflow_server  # track, run in-process, logs to the server
    try:
        for stage in ("prepare", "train", "convert", "evaluate", "validate", "report", "track"):
            run_stage(stage, params, ws)
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    return {"ws": ws, "params": params, "env": env, "url": mlflow_server}


def test_the_shuffled_model_is_at_chance_level(shuffled):
    import json

    s = json.loads((shuffled["ws"] / "reports" / "summary.json").read_text())
    assert 0.25 <= s["majority_rate"] < 0.3 and s["num_test"] == 160
    assert s["variants"]["ptq_int8"]["accuracy"] < s["majority_rate"] + 0.1
    assert json.loads((shuffled["ws"] / "metrics" / "headline.json").read_text())["gate_passed"] is False


def test_it_is_not_registered_and_the_console_says_why(shuffled):
    from mlflow.tracking import MlflowClient

    from edgeqat.steps.register import register

    ws, env = shuffled["ws"], shuffled["env"]
    with pytest.raises(GateFailed, match="chance"):
        register(shuffled["params"], workspace=ws, uri=shuffled["url"])
    proc = run([str(BIN / "edgeqat"), "stage", "register"], ws, env, check=False)
    assert proc.returncode == 1, proc.stderr  # a failed gate: CI goes red
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "not clearly above chance" in lines[0] and "most common class" in lines[0], lines
    # under DVC the same failure is an outcome: one line, exit 0, so `dvc exp run` keeps the experiment
    under = run([str(BIN / "edgeqat"), "stage", "register"], ws, {**env, "DVC_STAGE": "register"}, check=False)
    assert under.returncode == 0, under.stderr
    said = [ln for ln in under.stderr.splitlines() if ln.strip()]
    assert len(said) == 1 and said[0].startswith("register: GATE FAILED, nothing registered") and "chance" in said[0]
    client = MlflowClient(tracking_uri=shuffled["url"], registry_uri=shuffled["url"])
    assert client.search_model_versions(f"name='{MODEL}'") == []
    report = run([str(BIN / "edgeqat"), "report"], ws, env)
    assert "WARNING: chance level: ptq_int8 accuracy" in report.stdout


def test_report_html_and_the_mlflow_run_warn(shuffled):
    import json

    from mlflow.tracking import MlflowClient

    html = (shuffled["ws"] / "reports" / "report.html").read_text()
    assert '<p class="fail">WARNING: chance level: ptq_int8 accuracy' in html
    run_id = json.loads((shuffled["ws"] / "logs" / "mlflow_run.json").read_text())["run_id"]
    r = MlflowClient(tracking_uri=shuffled["url"]).get_run(run_id)
    assert r.data.tags["edgeqat.gate"] == "failed" and r.info.status == "FAILED"
    assert r.data.tags["edgeqat.warning.chance_level"].startswith("WARNING: chance level: ptq_int8")
    assert "**WARNING: chance level: ptq_int8" in r.data.tags["mlflow.note.content"]

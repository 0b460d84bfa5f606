"""`dvc exp run -S` switches the data source the DVC way (slow: a whole pipeline run), and the
execution's live MLflow run is named after the DVC experiment, holds a readable number of
metrics, and its registered version and LoggedModel point at each other."""

from __future__ import annotations

import json
import re

import pytest

from conftest import synthetic_images
from edgeqat.data.idx import write_idx
from edgeqat.workspace.stages import STAGES
from edgeqat.lifecycle.tracking import metric_history
from integration.conftest import BIN, make_pipeline_repo, run, stages_run, tiny_params

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_exp_run_switches_to_idx_files(tmp_path):
    repo = make_pipeline_repo(tmp_path / "proj", tiny_params())
    idx = repo / "data" / "site-idx"
    idx.mkdir()
    x, y = synthetic_images(120, size=12, classes=3)
    write_idx(x, y, idx / "train", gz=True)
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "pipeline"], repo)

    out = run([str(BIN / "dvc"), "exp", "run", "-S", "prepare.source=idx", "-S", "prepare.path=data/site-idx"], repo,
              {"EDGEQAT_LIVE_RUN": "1", "MLFLOW_TRACKING_URI": ""})  # the embedded store in the repo
    assert set(stages_run(out.stdout)) == {s.name for s in STAGES}  # a new data source re-runs every stage
    meta = json.loads((repo / "data" / "prepared" / "meta.json").read_text())
    assert meta["class_names"] == ["0", "1", "2"] and sum(meta["sizes"][s] for s in ("train", "val", "test")) == 120
    shown = run([str(BIN / "dvc"), "exp", "show", "--json"], repo)
    assert "prepare.source" in shown.stdout or "idx" in shown.stdout
    # the experiments and their headline numbers within 100 columns (each changed param adds one)
    table = run([str(BIN / "dvc"), "exp", "show", "--only-changed", "--drop", r"Created|.*/|prepare\..*"], repo,
                {"COLUMNS": "100"}).stdout
    print(f"\ndvc exp show --only-changed: {max(len(x.rstrip()) for x in table.splitlines())} columns\n{table}")
    assert max(len(x.rstrip()) for x in table.splitlines()) <= 100 and "accuracy" in table and "…" not in table
    exp_name = re.search(r"Ran experiment\(s\): (\S+)", out.stdout + out.stderr).group(1)
    check_the_run(repo, exp_name, epochs=json.loads((repo / "metrics" / "train.json").read_text())["epochs_run"])


# The tiny pipeline's run (the quick set's 3 variants, 3 devices; the baseline's and QAT's curves,
# loss and val_accuracy each): pinned, like the default's in tests/unit/test_run_layout.py;
# MLflow's system metrics come on top.
TINY_RUN_METRICS = {"headline": 3, "training": 4, "validation": 6, "variants": 6}


def check_the_run(repo, exp_name: str, epochs: int) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{repo / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.get_experiment_by_name("edgeqat")
    (mlrun,) = client.search_runs([exp.experiment_id])  # one run for the whole execution
    assert exp_name in mlrun.info.run_name and mlrun.data.tags["dvc_experiment"] == exp_name
    assert mlrun.info.status == "FINISHED"
    ours = [k for k in mlrun.data.metrics if not k.startswith("system/")]
    counted = {s: sum(k.split("/")[0] == s for k in ours) for s in TINY_RUN_METRICS}
    assert counted == TINY_RUN_METRICS and len(ours) == sum(TINY_RUN_METRICS.values())
    assert len(mlrun.data.metrics) <= 80, sorted(mlrun.data.metrics)
    assert len(metric_history(mlrun.info.run_id, "training/baseline/train.val_accuracy", uri)) == epochs
    assert all(v.startswith("finished") for k, v in mlrun.data.tags.items() if k.startswith("edgeqat.stage."))
    raw = json.loads(mlrun.inputs.dataset_inputs[0].dataset.source)["raw"]
    assert raw["path"] == "data/site-idx" and raw["source"] == "idx" and raw["dvc_hash"]  # from dvc.lock
    # the registered version and its LoggedModel name each other; the model page has params, metrics, dataset
    model_id = mlrun.data.tags["edgeqat.model.qat_int8"]
    version = client.search_model_versions(f"run_id='{mlrun.info.run_id}'")[0]
    assert version.source == f"models:/{model_id}"
    logged = client.get_logged_model(model_id)
    assert (version.name, str(version.version)) in [
        (m["name"], str(m["version"])) for m in json.loads(logged.tags["mlflow.modelVersions"])]
    assert logged.params["train.epochs"] == "2" and {m.key for m in logged.metrics} >= {"headline/accuracy"}
    assert {m.dataset_name for m in logged.metrics} == {"prepared"}

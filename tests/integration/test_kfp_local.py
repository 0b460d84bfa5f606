"""The committed, compiled pipeline end to end through kfp.local on tiny params, as a user
runs it (`edgeqat pipeline run --local`), logging to the same MLflow store as `dvc repro`."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from integration.conftest import BIN, REPO, run
from integration.conftest import tiny_params
from integration.kfp_runs import FAILING, WITH_MIXED, assert_gate_failed

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _run(cwd, params: str, check: bool = True, **env):
    """`edgeqat pipeline run --local` on the committed package, kfp.local's cache on (a later run in
    the same pipeline root reuses the compute tasks whose arguments did not change)."""
    (cwd / "params.yaml").write_text(params)
    t0 = time.monotonic()
    proc = run([str(BIN / "edgeqat"), "pipeline", "run", "--local", "--cache", "--params", "params.yaml",
                "--package", str(REPO / "pipelines" / "edge_pipeline.yaml"), "--pipeline-root", "kfp",
                "--out", "kfp_run.json", "--tag", "purpose=test"], cwd, {"MLFLOW_TRACKING_URI": "", **env}, check=check)
    return proc, json.loads((cwd / "kfp_run.json").read_text()), time.monotonic() - t0


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("kfp-local")
    proc, result, wall = _run(tmp_path, tiny_params(**WITH_MIXED), EDGEQAT_RECORD_CONFIGS=str(tmp_path / "configs"),
                              EDGEQAT_LIVE_RUN="1")
    print(f"\nkfp.local pipeline wall time: {wall:.1f} s")
    return tmp_path, proc, result


def test_local_run_of_the_compiled_pipeline(local_run):
    from mlflow.tracking import MlflowClient

    tmp_path, proc, result = local_run
    p = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert json.loads(proc.stdout)["run_id"] == result["run_id"]
    assert result["validation_passed"] is True and result["registered"] is True

    job = tmp_path / "kfp" / result["kfp_run_name"]
    assert job.is_dir() and result["outputs"] == str(job)
    tflite = job / "convert" / "tflite"
    for variant in p["convert"]["variants"]:
        assert (tflite / f"{variant}.tflite").stat().st_size > 0, variant
    assert (tflite / "model_card.json").is_file()
    summary = json.loads((job / "evaluate" / "evaluation").read_text())
    assert set(summary["variants"]) == set(p["convert"]["variants"])
    assert "| variant |" in (job / "evaluate" / "evaluation_report").read_text()
    executor_output = json.loads((job / "evaluate" / "executor_output.json").read_text())
    matrix = json.dumps(executor_output)
    assert "confusionMatrix" in matrix and "qat_int8.accuracy" in matrix
    validated = json.loads((job / "validate" / "summary").read_text())
    assert set(validated["devices"]) == set(p["validate"]["devices"]) and validated["validation_passed"] is True
    # register ran inside the dsl.If gate on validate's `passed` output
    assert json.loads((job / "register" / "registered").read_text())["model_name"] == p["register"]["model_name"]
    # every step received the configs the CLI (what dvc.yaml runs) gives it for the same params.yaml
    from edgeqat.adapters.runner import step_configs
    from edgeqat.config import load_params
    from edgeqat.workspace.stages import STAGES

    params = load_params(tmp_path / "params.yaml")
    for stage in STAGES:
        first, others = step_configs(stage, params)
        want = {"first": json.loads(first.model_dump_json()),
                **{k: json.loads(v.model_dump_json()) if hasattr(v, "model_dump_json") else v for k, v in others.items()}}
        assert json.loads((tmp_path / "configs" / f"{stage.name}.json").read_text()) == want, stage.name

    # One MLflow run, in the store `dvc repro` uses here (mlflow.db beside params), tagged with the KFP run.
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlrun = client.get_run(result["run_id"])
    assert mlrun.info.experiment_id == client.get_experiment_by_name(p["track"]["experiment"]).experiment_id
    tags = mlrun.data.tags
    assert tags["kfp_run_id"] == result["kfp_run_id"] and tags["kfp_run_name"] == result["kfp_run_name"]
    assert tags["orchestrator"] == "kubeflow" and tags["trigger"] == "local" and tags["purpose"] == "test"
    assert tags["data_sha256"] == summary["data_sha256"]
    assert mlrun.data.params["qat.epochs"] == "1" and mlrun.data.params["prepare.image_size"] == "8"
    for key in ("headline/accuracy", "variants/qat_int8.accuracy", "variants/qat_int8.size_bytes",
                "validation/cortex_m7.passed", "training/baseline/train.val_accuracy"):
        assert key in mlrun.data.metrics, key
    # one live run: every task logged to it while it worked, named after the KFP run
    assert mlrun.info.run_name == result["kfp_run_name"] and tags["edgeqat.execution"] == f"kfp-{result['kfp_run_id']}"
    assert all(tags.get(f"edgeqat.stage.{s.name}", "").startswith("finished") for s in STAGES), tags
    assert len(client.search_runs([mlrun.info.experiment_id])) == 1
    assert len([k for k in mlrun.data.metrics if not k.startswith("system/")]) <= 70
    epochs = len(client.get_metric_history(result["run_id"], "training/baseline/train.val_accuracy"))
    assert epochs == json.loads((job / "train" / "train_metrics").read_text())["epochs_run"]
    # one run holds the registered model: a LoggedModel of this run, which the version points at
    assert tags["edgeqat.model.qat_int8"] in {o.model_id for o in mlrun.outputs.model_outputs}


def test_a_failing_required_device_registers_nothing(local_run):
    """The gate's other branch, asserted from what kfp.local's output folders hold (its
    conditions have had bugs: kubeflow/pipelines PR #13313)."""
    tmp_path, _, _ = local_run
    proc, result, wall = _run(tmp_path, tiny_params(**FAILING), check=False)
    print(f"\nkfp.local failing-gate wall time (compute stages from the cache): {wall:.1f} s")
    assert_gate_failed(proc, result, f"sqlite:///{tmp_path / 'mlflow.db'}")

"""`dvc repro` of the real dvc.yaml in a scratch git repository, on tiny params."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from integration.conftest import BIN, REPO, make_pipeline_repo, run

# Eleven stages, four `dvc repro` runs, one process per stage: ~8 minutes on 2 cores, so it
# runs in the slow tier (make test-slow) to keep `make test` within its time budget.
pytestmark = [pytest.mark.integration, pytest.mark.slow]
TINY_VARIANTS = ("fp32", "ptq_int8", "qat_int8", "pqat_int8", "channel_pruned_qat_int8")


def tiny_params(**overrides) -> str:
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["prepare"].update(image_size=8)
    p["train"].update(alpha=0.25, epochs=2, batch_size=64, early_stopping_patience=0)
    # keep_float [] makes `mixed` the plain QAT model (no extra training); one variant per
    # producing stage keeps the conversions (~6 s each) few.
    p["qat"].update(epochs=1, keep_float=[])
    p["prune"].update(epochs=1, channel_epochs=1)
    p["convert"].update(variants=list(TINY_VARIANTS))
    p["evaluate"].update(latency_runs=5, warmup_runs=1)
    # Two epochs do not make an accurate model: gate on running and fitting, not accuracy.
    p["validate"].update(devices=["rpi4", "coral_edgetpu", "cortex_m7"], max_accuracy_drop=1.0, latency_runs=5,
                         emulate=False)
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        p[section][key] = value
    return yaml.safe_dump(p, sort_keys=False)


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([a-z_]+)'", output)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return make_pipeline_repo(tmp_path_factory.mktemp("dvc") / "proj", tiny_params())


def _runs(repo: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("edgeqat")
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])


def test_repro_runs_every_stage_then_nothing_then_only_what_changed(repo):
    env = {"MLFLOW_TRACKING_URI": ""}
    first = run([str(BIN / "dvc"), "repro"], repo, env)
    ran = stages_run(first.stdout)  # recommend, track, register follow validate in any order; qat and prune too
    assert ran[:2] == ["prepare", "train"] and sorted(ran[2:4]) == ["prune", "qat"]
    assert ran[4:8] == ["convert", "evaluate", "validate", "recommend"] and sorted(ran[8:]) == ["register", "track"]

    summary = json.loads((repo / "reports" / "summary.json").read_text())
    assert set(summary["variants"]) == set(TINY_VARIANTS)
    for name in TINY_VARIANTS:
        v = summary["variants"][name]
        assert {"accuracy", "size_bytes", "gzip_bytes", "latency_p50_ms", "agreement", "weight_sparsity"} <= set(v)
        assert (repo / "models" / "tflite" / f"{name}.tflite").is_file()
    assert (repo / "models" / "tflite" / "model_card.json").is_file()
    assert set(summary["devices"]) == {"rpi4", "coral_edgetpu", "cortex_m7"}
    assert summary["devices"]["cortex_m7"]["passed"] and summary["devices"]["cortex_m7"]["arena_bytes"] > 0
    assert (repo / "logs" / "tensorboard" / "qat" / "fake_quant").is_dir()

    second = run([str(BIN / "dvc"), "repro"], repo, env)
    assert stages_run(second.stdout) == []
    assert "up to date" in second.stdout

    shown = run([str(BIN / "dvc"), "metrics", "show", "--json"], repo, env)
    assert "qat_int8" in shown.stdout and "test_accuracy" in shown.stdout

    (repo / "params.yaml").write_text(tiny_params(**{"qat.epochs": 2}))
    third = run([str(BIN / "dvc"), "repro"], repo, env)
    ran = stages_run(third.stdout)
    assert ran[:5] == ["qat", "convert", "evaluate", "validate", "recommend"] and sorted(ran[5:]) == ["register", "track"]
    assert json.loads((repo / "metrics" / "qat.json").read_text())["epochs_run"] == 2
    # The register stage added a second version of the model to the local registry.
    assert json.loads((repo / "reports" / "registered.json").read_text())["version"] == "2"

    runs = _runs(repo)
    assert len(runs) == 2, "one MLflow run per pipeline execution that changed something"
    latest, earlier = runs[0], runs[1]
    assert latest.data.params["qat.epochs"] == "2" and earlier.data.params["qat.epochs"] == "1"
    # The new run carries every stage's metrics, although prepare and train were cached.
    assert set(earlier.data.metrics) == set(latest.data.metrics)
    for key in ("prepare.num_train", "train.test_accuracy", "qat.test_accuracy",
                "convert.qat_int8.size_bytes", "evaluate.qat_int8.accuracy"):
        assert key in latest.data.metrics
    assert latest.data.metrics["prepare.num_train"] == earlier.data.metrics["prepare.num_train"]
    assert latest.data.tags["data_sha256"] == json.loads((repo / "metrics" / "prepare.json").read_text())["data_sha256"]
    assert re.fullmatch(r"[0-9a-f]{40}", latest.data.tags["git_commit"])
    assert "validate.cortex_m7.passed" in latest.data.metrics

    # A required device that fails stops the pipeline at validate: nothing new is registered.
    (repo / "params.yaml").write_text(tiny_params(**{"qat.epochs": 2, "validate.model": "fp32",
                                                     "validate.required_devices": ["coral_edgetpu"]}))
    fourth = run([str(BIN / "dvc"), "repro"], repo, env, check=False)
    assert fourth.returncode != 0
    assert stages_run(fourth.stdout) == ["validate"]
    assert "validation failed on required device(s): coral_edgetpu" in fourth.stderr
    summary = json.loads((repo / "reports" / "summary.json").read_text())
    assert summary["validation_passed"] is False and "float ops" in " ".join(summary["devices"]["coral_edgetpu"]["reasons"])
    assert json.loads((repo / "reports" / "registered.json").read_text())["version"] == "2"


def test_plots_render(repo):
    if not (repo / "plots" / "train_history.csv").exists():
        pytest.skip("needs the pipeline run of the previous test")
    out = run([str(BIN / "dvc"), "plots", "show", "--json"], repo)
    data = json.loads(out.stdout)
    text = json.dumps(data)
    assert "Accuracy per epoch" in text and "Confusion matrix" in text

"""The track step against a real `mlflow server` process on 127.0.0.1."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from edgeqat.config import Params, TrackConfig
from edgeqat.errors import EdgeqatError
from edgeqat.steps.track import track
from integration.conftest import free_port

pytestmark = pytest.mark.integration
SHA = "ab" * 32


def _workspace(root: Path, started: datetime) -> Path:
    metrics, plots, reports = root / "metrics", root / "plots", root / "reports"
    for d in (metrics, plots, reports, root / "logs" / "timings", root / "data" / "prepared"):
        d.mkdir(parents=True)
    (metrics / "prepare.json").write_text(json.dumps({"num_train": 100, "data_sha256": SHA, "counts": {"train": {"a": 60}}}))
    (metrics / "evaluate.json").write_text(json.dumps({"qat_int8": {"accuracy": 0.97, "size_bytes": 1234}}))
    (reports / "evaluation.json").write_text(json.dumps({"variants": {"qat_int8": {"accuracy": 0.97, "size_bytes": 1234}}}))
    (plots / "train_history.csv").write_text("epoch,loss,accuracy,val_loss,val_accuracy\n1,1.0,0.5,1.1,0.4\n2,0.5,0.8,0.6,0.7\n")
    (reports / "summary.md").write_text("| variant |\n")
    (root / "data" / "prepared" / "meta.json").write_text(json.dumps({
        "data_sha256": SHA, "sizes": {"train": 100, "val": 20, "test": 30, "calib": 16}, "image_shape": [8, 8, 1],
        "class_names": ["a", "b"], "normalization": {"scheme": "zero_one"}}))
    for stage, start, secs in (("prepare", started, 5), ("evaluate", started + timedelta(seconds=60), 3)):
        (root / "logs" / "timings" / f"{stage}.json").write_text(json.dumps({
            "stage": stage, "execution": "dvc-1-2", "started_at": start.isoformat(),
            "ended_at": (start + timedelta(seconds=secs)).isoformat(), "seconds": secs,
            **({"qat_int8": {"latency_p50_ms": 0.5}} if stage == "evaluate" else {})}))
    return root


def test_track_logs_one_complete_run_to_a_real_server(mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    started = datetime.now(timezone.utc) - timedelta(minutes=10)
    ws = _workspace(tmp_path, started)
    params = Params(track=TrackConfig(experiment="it-track"))
    info = track(params, workspace=ws, uri=mlflow_server, extra_tags={"trigger": "test"})
    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(info["run_id"])
    assert run.info.status == "FINISHED"
    # measurements worth a chart are metrics, in the sections the UI lists; the rest is one table
    assert run.data.metrics["variants/qat_int8.accuracy"] == pytest.approx(0.97)
    assert not [k for k in run.data.metrics if k.startswith("prepare/")]  # counts and split sizes: the table
    table = json.loads(Path(client.download_artifacts(info["run_id"], "tables/stage_metrics.json", str(ws))).read_text())
    rows = {(r[0], r[1]): r[2] for r in table["data"]}
    assert rows[("prepare", "num_train")] == 100 and rows[("prepare", "counts.train.a")] == 60
    assert rows[("evaluate", "timings.qat_int8.latency_p50_ms")] == pytest.approx(0.5)  # from the timings
    assert run.data.params["qat.epochs"] == "2" and run.data.params["prepare.source"] == "digits"
    assert run.data.tags["data_sha256"] == SHA and run.data.tags["trigger"] == "test"
    assert "edgeqat pipeline run" in run.data.tags["mlflow.note.content"]  # the description
    # the UI opens the experiment in its model-training view, not the GenAI one
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    # the execution's real start (its first stage), not the moment track ran
    assert abs(run.info.start_time - int(started.timestamp() * 1000)) < 1000
    hist = client.get_metric_history(info["run_id"], "training/baseline/train.val_accuracy")
    assert [(m.step, m.value) for m in hist] == [(1, 0.4), (2, 0.7)]
    assert [a.path for a in client.list_artifacts(info["run_id"], "reports")] == ["reports/evaluation.json",
                                                                                   "reports/summary.md"]
    dataset = run.inputs.dataset_inputs[0].dataset
    assert dataset.digest == SHA[:36] and dataset.source_type == "dvc"
    assert json.loads(dataset.source)["path"] == "data/prepared"
    assert json.loads((ws / "logs" / "mlflow_run.json").read_text())["run_id"] == info["run_id"]
    tracked = json.loads((ws / "reports" / "tracked.json").read_text())
    assert run.data.tags["edgeqat.fingerprint"] == tracked["fingerprint"]

    again = track(params, workspace=ws, uri=mlflow_server, extra_tags={"trigger": "test"})
    assert again["run_id"] == info["run_id"] and again["reused"]  # the same execution is not logged twice


def test_unreachable_server_is_a_clear_error(tmp_path):
    ws = _workspace(tmp_path, datetime.now(timezone.utc))
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EdgeqatError, match=f"MLflow tracking server {url} is unreachable"):
        track(Params(), workspace=ws, uri=url)
    assert not (ws / "logs" / "mlflow_run.json").exists()

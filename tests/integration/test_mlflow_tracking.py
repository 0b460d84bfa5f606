"""The track step against a real `mlflow server` process on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeqat.config import Params, TrackConfig
from edgeqat.errors import EdgeqatError
from edgeqat.steps.track import track
from integration.conftest import free_port

pytestmark = pytest.mark.integration


def _stage_files(root: Path) -> dict[str, Path]:
    metrics, plots, reports = root / "metrics", root / "plots", root / "reports"
    for d in (metrics, plots, reports):
        d.mkdir(parents=True)
    (metrics / "prepare.json").write_text(json.dumps({"num_train": 100, "data_sha256": "abc123", "counts": {"train": {"a": 60}}}))
    (metrics / "evaluate.json").write_text(json.dumps({"qat_int8": {"accuracy": 0.97, "size_bytes": 1234}}))
    (plots / "train_history.csv").write_text("epoch,loss,accuracy,val_loss,val_accuracy\n1,1.0,0.5,1.1,0.4\n2,0.5,0.8,0.6,0.7\n")
    (reports / "summary.md").write_text("| variant |\n")
    return {"metrics": metrics, "plots": plots, "reports": reports}


def test_track_logs_one_complete_run_to_a_real_server(mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    f = _stage_files(tmp_path)
    info = track(TrackConfig(experiment="it-track"), Params(), f["metrics"], f["plots"], {"reports": f["reports"]},
                 tmp_path / "run.json", uri=mlflow_server, root=tmp_path, extra_tags={"trigger": "test"})
    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(info["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["prepare.num_train"] == 100
    assert run.data.metrics["prepare.counts.train.a"] == 60
    assert run.data.metrics["evaluate.qat_int8.accuracy"] == pytest.approx(0.97)
    assert run.data.params["qat.epochs"] == "2" and run.data.params["prepare.source"] == "digits"
    assert run.data.tags["data_sha256"] == "abc123" and run.data.tags["trigger"] == "test"
    hist = client.get_metric_history(info["run_id"], "train.curve.val_accuracy")
    assert [(m.step, m.value) for m in hist] == [(1, 0.4), (2, 0.7)]
    assert [a.path for a in client.list_artifacts(info["run_id"], "reports")] == ["reports/summary.md"]
    assert json.loads((tmp_path / "run.json").read_text())["run_id"] == info["run_id"]


def test_unreachable_server_is_a_clear_error(tmp_path):
    f = _stage_files(tmp_path)
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EdgeqatError, match=f"MLflow tracking server {url} is unreachable"):
        track(TrackConfig(), Params(), f["metrics"], f["plots"], {}, tmp_path / "run.json", uri=url, root=tmp_path)
    assert not (tmp_path / "run.json").exists()

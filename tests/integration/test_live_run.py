"""The live MLflow run of an execution, against a real `mlflow server` on 127.0.0.1: stages
typed by hand (`edgeqat stage ...`, one process each, as DVC runs them) log to one run while
they work, and a stage that raises marks it FAILED with the stage and the whole message."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from integration.conftest import BIN, run, tiny_params

pytestmark = pytest.mark.integration

TRAIN_EPOCHS, QAT_EPOCHS = 3, 6
# The tests on the workspace run prepare, train, qat and prune as processes (~2 min at a load of
# 5 on 2 cores): slow tier. The first-stage failure and the unreachable server stay fast (~5 s).
WITH_STAGES = pytest.mark.slow


def rest(url: str, path: str, **query: str) -> dict:
    """GET /api/2.0/mlflow/<path>: what a second process (the UI, a script) sees."""
    with urllib.request.urlopen(f"{url}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(query)}", timeout=10) as r:
        return json.loads(r.read())


def history(url: str, run_id: str, key: str) -> list[dict]:
    return rest(url, "metrics/get-history", run_id=run_id, metric_key=key).get("metrics", [])


def new_workspace(ws: Path, **overrides) -> Path:
    """A project folder as a user has it: params.yaml (tiny settings) in a git repository."""
    ws.mkdir(parents=True, exist_ok=True)
    p = yaml.safe_load(tiny_params(**overrides))
    p["track"]["experiment"] = "it-live"
    (ws / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    run(["git", "init", "-q"], ws)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init"], ws)
    return ws


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, mlflow_server):
    ws = new_workspace(tmp_path_factory.mktemp("live"), **{"train.epochs": TRAIN_EPOCHS, "qat.epochs": QAT_EPOCHS})
    env = {"MLFLOW_TRACKING_URI": mlflow_server, "EDGEQAT_LIVE_RUN": "1", "EDGEQAT_PROGRESS": "plain"}
    for stage in ("prepare", "train"):
        run([str(BIN / "edgeqat"), "stage", stage], ws, env)
    return {"root": ws, "env": env, "url": mlflow_server,
            "run_id": json.loads((ws / "logs" / "mlflow_live.json").read_text())["run_id"]}


@WITH_STAGES
def test_train_alone_gives_a_run_with_one_point_per_epoch(workspace):
    url, run_id = workspace["url"], workspace["run_id"]
    got = rest(url, "runs/get", run_id=run_id)["run"]
    assert got["info"]["status"] == "RUNNING"  # the execution goes on: later stages log here too
    tags = {t["key"]: t["value"] for t in got["data"]["tags"]}
    assert tags["edgeqat.stage.prepare"].startswith("finished") and tags["edgeqat.stage.train"].startswith("finished")
    params = {p["key"]: p["value"] for p in got["data"]["params"]}
    assert params["train.epochs"] == str(TRAIN_EPOCHS) and params["prepare.source"] == "digits"  # settings: params
    points = history(url, run_id, "training/baseline/train.val_accuracy")
    assert [int(m.get("step", 0)) for m in points] == list(range(1, TRAIN_EPOCHS + 1))
    assert len(history(url, run_id, "training/baseline/train.loss")) == TRAIN_EPOCHS


@WITH_STAGES
def test_points_appear_while_a_later_stage_still_runs(workspace):
    """qat runs in its own process; this one watches the REST API meanwhile."""
    url, run_id, ws = workspace["url"], workspace["run_id"], workspace["root"]
    log = open(ws / "qat.log", "w")
    import os

    proc = subprocess.Popen([str(BIN / "edgeqat"), "stage", "qat"], cwd=ws, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **workspace["env"]})
    seen: dict[int, float] = {}  # epoch -> when this process first saw its point
    stamps: dict[int, float] = {}  # epoch -> when the stage logged it (the epoch's end)
    train_during_qat = None
    while proc.poll() is None:
        now = time.time()
        for m in history(url, run_id, "training/qat/qat.loss"):
            step = int(m.get("step", 0))
            if step not in seen:
                seen[step], stamps[step] = now, int(m["timestamp"]) / 1000
        if train_during_qat is None:
            train_during_qat = len(history(url, run_id, "training/baseline/train.val_accuracy"))
        time.sleep(0.1)
    log.close()
    assert proc.returncode == 0, (ws / "qat.log").read_text()[-3000:]
    assert train_during_qat == TRAIN_EPOCHS  # the earlier stage's curve, readable during the later one
    assert seen, "no qat point was visible while qat ran"
    final = [int(m.get("step", 0)) for m in history(url, run_id, "training/qat/qat.loss")]
    assert final == list(range(1, QAT_EPOCHS + 1))
    delays = [seen[s] - stamps[s] for s in seen]
    print(f"\nepoch end -> point visible over REST: {len(delays)} of {QAT_EPOCHS} epochs seen while qat ran; "
          f"median {statistics.median(delays):.2f} s, max {max(delays):.2f} s")


@WITH_STAGES
def test_a_failing_later_stage_marks_the_executions_run_failed(workspace):
    url, run_id, ws = workspace["url"], workspace["run_id"], workspace["root"]
    model = ws / "models" / "fp32.keras"
    model.write_bytes(b"not a keras file " * 20)  # convert will not load it
    proc = run([str(BIN / "edgeqat"), "stage", "convert"], ws, workspace["env"], check=False)
    assert proc.returncode != 0
    error = next(line for line in proc.stderr.splitlines() if line.startswith("edgeqat: error: "))
    message = error.removeprefix("edgeqat: error: ")
    assert len(message) > 60  # a real message, not a stub
    got = rest(url, "runs/get", run_id=run_id)["run"]
    tags = {t["key"]: t["value"] for t in got["data"]["tags"]}
    assert got["info"]["status"] == "FAILED"
    note = tags["mlflow.note.content"]
    assert note.startswith("**Stage `convert` failed**") and message in note, note
    assert tags["edgeqat.failed_stage"] == "convert" and tags["edgeqat.stage.qat"].startswith("finished")


def test_a_failing_first_stage_opens_the_run_and_marks_it_failed_with_the_whole_message(mlflow_server, tmp_path):
    """The first stage of an execution creates its run; when it raises, the run is FAILED and its
    description names the stage and holds the whole message (prepare on a folder of no classes)."""
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "notes.txt").write_text("not a class folder")
    ws = new_workspace(tmp_path / "ws", **{"prepare.source": "folder", "prepare.path": str(tmp_path / "raw")})
    env = {"MLFLOW_TRACKING_URI": mlflow_server, "EDGEQAT_LIVE_RUN": "1", "EDGEQAT_PROGRESS": "plain"}
    proc = run([str(BIN / "edgeqat"), "stage", "prepare"], ws, env, check=False)
    assert proc.returncode != 0
    error = next(line for line in proc.stderr.splitlines() if line.startswith("edgeqat: error: "))
    message = error.removeprefix("edgeqat: error: ")
    assert str(tmp_path / "raw") in message and len(message) > 60  # a real message, not a stub
    run_id = json.loads((ws / "logs" / "mlflow_live.json").read_text())["run_id"]
    got = rest(mlflow_server, "runs/get", run_id=run_id)["run"]
    tags = {t["key"]: t["value"] for t in got["data"]["tags"]}
    assert got["info"]["status"] == "FAILED" and tags["edgeqat.failed_stage"] == "prepare"
    note = tags["mlflow.note.content"]
    assert note.startswith("**Stage `prepare` failed**") and message in note, note
    params = {p["key"]: p["value"] for p in got["data"]["params"]}
    assert params["prepare.source"] == "folder"  # logged at the start, before the stage raised


def test_an_unreachable_server_costs_one_line_and_no_failure(tmp_path):
    from integration.conftest import free_port

    ws = new_workspace(tmp_path / "ws")
    env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}", "EDGEQAT_LIVE_RUN": "1", "EDGEQAT_PROGRESS": "plain"}
    t0 = time.monotonic()
    proc = run([str(BIN / "edgeqat"), "stage", "prepare"], ws, env)
    took = time.monotonic() - t0
    lines = [x for x in proc.stderr.splitlines() if "live MLflow logging off" in x]
    assert len(lines) == 1 and "unreachable" in lines[0], proc.stderr
    assert (ws / "data" / "prepared" / "meta.json").is_file()
    print(f"\nprepare with an unreachable MLflow server: {took:.1f} s")

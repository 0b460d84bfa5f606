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


def rest(url: str, path: str, **query: str) -> dict:
    """GET /api/2.0/mlflow/<path>: what a second process (the UI, a script) sees."""
    with urllib.request.urlopen(f"{url}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(query)}", timeout=10) as r:
        return json.loads(r.read())


def history(url: str, run_id: str, key: str) -> list[dict]:
    return rest(url, "metrics/get-history", run_id=run_id, metric_key=key).get("metrics", [])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, mlflow_server):
    ws = tmp_path_factory.mktemp("live")
    p = yaml.safe_load(tiny_params(**{"train.epochs": TRAIN_EPOCHS, "qat.epochs": QAT_EPOCHS}))
    p["track"]["experiment"] = "it-live"
    (ws / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    run(["git", "init", "-q"], ws)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init"], ws)
    env = {"MLFLOW_TRACKING_URI": mlflow_server, "EDGEQAT_LIVE_RUN": "1", "EDGEQAT_PROGRESS": "plain"}
    for stage in ("prepare", "train"):
        run([str(BIN / "edgeqat"), "stage", stage], ws, env)
    return {"root": ws, "env": env, "url": mlflow_server,
            "run_id": json.loads((ws / "logs" / "mlflow_live.json").read_text())["run_id"]}


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


def test_a_failing_stage_marks_the_run_failed_with_the_stage_and_the_whole_message(workspace):
    url, run_id, ws = workspace["url"], workspace["run_id"], workspace["root"]
    model = ws / "models" / "fp32.keras"
    model.write_bytes(b"not a keras file " * 20)  # prune will not load it
    proc = run([str(BIN / "edgeqat"), "stage", "prune"], ws, workspace["env"], check=False)
    assert proc.returncode != 0
    error = next(line for line in proc.stderr.splitlines() if line.startswith("edgeqat: error: "))
    message = error.removeprefix("edgeqat: error: ")
    assert len(message) > 60  # a real message, not a stub
    got = rest(url, "runs/get", run_id=run_id)["run"]
    tags = {t["key"]: t["value"] for t in got["data"]["tags"]}
    assert got["info"]["status"] == "FAILED"
    note = tags["mlflow.note.content"]
    assert note.startswith("**Stage `prune` failed**") and message in note, note
    assert tags["edgeqat.failed_stage"] == "prune" and tags["edgeqat.stage.qat"].startswith("finished")


def test_an_unreachable_server_costs_one_line_and_no_failure(workspace, tmp_path):
    from integration.conftest import free_port

    ws = workspace["root"]
    env = {**workspace["env"], "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}
    t0 = time.monotonic()
    proc = run([str(BIN / "edgeqat"), "stage", "prepare", "--prepared", str(tmp_path / "prepared"),
                "--prepare-metrics", str(tmp_path / "m.json"), "--prepare-timings", str(tmp_path / "t.json")], ws, env)
    took = time.monotonic() - t0
    lines = [x for x in proc.stderr.splitlines() if "live MLflow logging off" in x]
    assert len(lines) == 1 and "unreachable" in lines[0], proc.stderr
    assert (tmp_path / "prepared" / "meta.json").is_file()
    print(f"\nprepare with an unreachable MLflow server: {took:.1f} s")

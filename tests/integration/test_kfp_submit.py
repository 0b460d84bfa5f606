"""`edgeqat pipeline submit` / `schedule` as a user types them, against a loopback HTTP
server that records what the real kfp.Client sends (no cluster), and against nothing."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from integration.conftest import BIN, REPO, free_port, run
from integration.conftest import tiny_params

pytestmark = pytest.mark.integration


class _Recorder(BaseHTTPRequestHandler):
    requests: list[dict] = []
    status = 200

    def _reply(self, body: dict, status: int | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status or self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, method: str) -> dict:
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n)) if n else None
        entry = {"method": method, "path": self.path, "body": body, "auth": self.headers.get("Authorization")}
        type(self).requests.append(entry)
        return entry

    def do_GET(self):  # noqa: N802
        self._record("GET")
        if self.status != 200:
            return self._reply({"error": "forbidden", "code": 7}, self.status)
        if self.path.startswith("/apis/v2beta1/experiments"):
            return self._reply({"experiments": [{"experiment_id": "exp-1", "display_name": "retrain-exp"}],
                                "total_size": 1})
        self._reply({})

    def do_POST(self):  # noqa: N802
        entry = self._record("POST")
        if self.status != 200:
            return self._reply({"error": "forbidden", "code": 7}, self.status)
        if self.path.startswith("/apis/v2beta1/runs"):
            return self._reply({"run_id": "run-1", **(entry["body"] or {})})
        if self.path.startswith("/apis/v2beta1/recurringruns"):
            return self._reply({"recurring_run_id": "rr-1", **(entry["body"] or {})})
        if self.path.startswith("/apis/v2beta1/experiments"):
            return self._reply({"experiment_id": "exp-1", **(entry["body"] or {})})
        self._reply({})

    def log_message(self, *args):
        pass


@pytest.fixture()
def kfp_api():
    _Recorder.requests, _Recorder.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder
    server.shutdown()
    server.server_close()


@pytest.fixture()
def params_file(tmp_path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(tiny_params(**{"qat.epochs": 3}))
    return path


IMAGE = "registry.example/team/edgeqat:0.1.0"


def _cli(args: list[str], cwd: Path, token: str | None = "s3cret", check: bool = True, image: str = IMAGE):
    env = {"KFP_BEARER_TOKEN": token or "", "MLFLOW_TRACKING_URI": "", "KF_PIPELINES_SA_TOKEN_PATH": "",
           "EDGEQAT_IMAGE": image}
    return run([str(BIN / "edgeqat"), "pipeline", *args], cwd, env, check=check)


def _posted(recorder, prefix: str) -> dict:
    posts = [r for r in recorder.requests if r["method"] == "POST" and r["path"].startswith(prefix)]
    assert len(posts) == 1, recorder.requests
    return posts[0]


def test_submit_sends_package_parameters_and_experiment(kfp_api, params_file, tmp_path):
    host, rec = kfp_api
    package = tmp_path / "compiled.yaml"
    _cli(["compile", "--out", str(package), "--image", "registry.example/team/edgeqat:7"], tmp_path, image="")
    out = _cli(["submit", "--host", host, "--params", str(params_file), "--package", str(package),
                "--experiment", "retrain-exp", "--run-name", "nightly-1", "--mlflow-uri", "http://mlflow.example:5000",
                "--tag", "trigger=test"], tmp_path)
    assert json.loads(out.stdout)["run_id"] == "run-1"
    post = _posted(rec, "/apis/v2beta1/runs")
    body = post["body"]
    assert post["auth"] == "Bearer s3cret"
    assert body["display_name"] == "nightly-1"
    assert body["experiment_id"] == "exp-1"
    assert body["pipeline_spec"] == yaml.safe_load(package.read_text())
    executors = body["pipeline_spec"]["deploymentSpec"]["executors"].values()
    assert {e["container"]["image"] for e in executors} == {"registry.example/team/edgeqat:7"}
    sent = body["runtime_config"]["parameters"]
    assert sent["qat__epochs"] == 3 and sent["prepare__image_size"] == 8
    assert sent["train__from_model"] == "" and sent["convert__variants"][0] == "fp32"
    assert sent["mlflow_tracking_uri"] == "http://mlflow.example:5000"
    assert sent["run_tags"]["trigger"] == "test"
    gets = [r["path"] for r in rec.requests if r["method"] == "GET"]
    assert any("retrain-exp" in p for p in gets), gets  # the experiment was looked up by name


def test_schedule_sends_a_recurring_run_with_the_cron(kfp_api, params_file, tmp_path):
    host, rec = kfp_api
    out = _cli(["schedule", "--host", host, "--cron", "0 3 * * 1", "--params", str(params_file),
                "--experiment", "retrain-exp", "--name", "weekly", "--mlflow-uri", "http://mlflow.example:5000"],
               tmp_path)
    assert json.loads(out.stdout)["recurring_run_id"] == "rr-1"
    body = _posted(rec, "/apis/v2beta1/recurringruns")["body"]
    assert body["display_name"] == "weekly"
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert body["experiment_id"] == "exp-1"
    assert int(body["max_concurrency"]) == 1
    assert body["runtime_config"]["parameters"]["qat__epochs"] == 3
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "edgeqat"
    executors = body["pipeline_spec"]["deploymentSpec"]["executors"].values()
    assert {e["container"]["image"] for e in executors} == {IMAGE}  # from EDGEQAT_IMAGE


def test_nothing_that_names_an_image_no_cluster_can_pull_is_sent(kfp_api, params_file, tmp_path):
    host, rec = kfp_api
    committed = REPO / "pipelines" / "edge_pipeline.yaml"  # carries the never-pushed placeholder
    for args, image in ((["submit", "--package", str(committed)], IMAGE), (["submit"], ""),
                        (["schedule", "--cron", "0 3 * * 1"], "")):
        proc = _cli([*args, "--host", host, "--params", str(params_file), "--mlflow-uri", "http://m:5000"],
                    tmp_path, check=False, image=image)
        assert proc.returncode == 2, proc.stderr
        line = proc.stderr.strip().splitlines()
        assert len(line) == 1 and ("placeholder image" in line[0] or "no component image" in line[0]), proc.stderr
        assert "make image" in line[0]
    assert rec.requests == []


def test_unreachable_host_is_a_clear_error(params_file, tmp_path):
    host = f"http://127.0.0.1:{free_port()}"
    for args in (["submit"], ["schedule", "--cron", "0 3 * * 1"]):
        proc = _cli([*args, "--host", host, "--params", str(params_file), "--mlflow-uri", "http://m:5000"],
                    tmp_path, check=False)
        assert proc.returncode == 2, proc.stderr
        assert f"Kubeflow Pipelines at {host} is unreachable" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_refused_request_is_a_clear_error(kfp_api, params_file, tmp_path):
    host, rec = kfp_api
    rec.status = 403
    proc = _cli(["submit", "--host", host, "--params", str(params_file), "--mlflow-uri", "http://m:5000"],
                tmp_path, token="wrong", check=False)
    assert proc.returncode == 2
    assert f"Kubeflow Pipelines at {host} refused the request (403" in proc.stderr
    assert not [r for r in rec.requests if r["method"] == "POST"]


def test_cluster_run_needs_a_reachable_mlflow_server(kfp_api, params_file, tmp_path):
    host, rec = kfp_api
    proc = _cli(["submit", "--host", host, "--params", str(params_file)], tmp_path, check=False)
    assert proc.returncode == 2 and "needs an MLflow server" in proc.stderr
    assert rec.requests == []

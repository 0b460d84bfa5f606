"""Hostile input against real servers (issue 27): a registry version written by an attacker,
slow and greedy HTTP clients, two receivers on one folder, credentials in the tracking URI,
and a copied workspace. A real `mlflow server` on 127.0.0.1 and the real `edgeqat` command
(and `edgeqat webhook serve` process); every socket stays on loopback, every wait is bounded.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from integration.conftest import BIN, free_port, run, stop_process_group
from yaml_bomb import params_with_alias_bomb

pytestmark = pytest.mark.integration

SECRET = "a-webhook-secret-of-24ch"


def edgeqat(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    return subprocess.run([str(BIN / "edgeqat"), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def one_line_refusal(proc: subprocess.CompletedProcess, *named: str) -> str:
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr and proc.stderr.count("edgeqat: error:") == 1, proc.stderr[-3000:]
    for n in named:
        assert n in proc.stderr, f"{n!r} not in:\n{proc.stderr[-3000:]}"
    return proc.stderr


def workspace(root: Path, model_name: str, **register) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["register"].update(model_name=model_name, **register)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


# --- an attacker's model version: paths from the registry stay in their folder ---------------


def written(root: Path) -> list[Path]:
    """Files named like the payload anywhere under ``root`` but the attacker's own upload."""
    return [p for p in root.rglob("PWNED_BY_CARD*") if "payloads" not in p.relative_to(root).parts]


def attacker_version(url: str, name: str, file: str, tmp: Path, card_dir: str = "a/b") -> str:
    """What someone with registry access can create with the MLflow client: a version whose
    model card names ``file``, with a sha256 tag (and gate tags) matching the bytes shipped."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url, url)
    payload = b"TFL3 not really a model: PWNED"
    sha = hashlib.sha256(payload).hexdigest()
    src = tmp / "payloads" / uuid.uuid4().hex[:8]  # the attacker's side: not the deploy host's files
    arts = src / "artifacts"
    (arts / card_dir).mkdir(parents=True)
    target = (arts / card_dir / file).resolve() if not os.path.isabs(file) else None
    if target is not None and arts.resolve() in target.parents:  # the bytes the card points at, in the download
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(payload)
    (arts / card_dir / "model_card.json").write_text(json.dumps({"variants": {"qat_int8": {"file": file, "sha256": sha}}}))
    run = client.create_run(client.create_experiment(f"attacker-{uuid.uuid4().hex[:8]}"))
    client.log_artifacts(run.info.run_id, str(src), "model")
    try:
        client.create_registered_model(name)
    except Exception:  # noqa: BLE001 - exists already
        pass
    mv = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id,
                                     tags={"sha256": sha, "accuracy": "1.0", "accuracy_drop": "0"})
    return str(mv.version)


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink"])
def test_export_of_a_card_naming_a_path_outside_is_refused(mlflow_server, tmp_path, case):
    name = f"hostile-{case}-{uuid.uuid4().hex[:6]}"
    ws = workspace(tmp_path / "ws", name)
    outside = tmp_path / "outside"
    outside.mkdir()
    deploy = ws / "deploy"
    deploy.mkdir()
    file = {"dotdot": "../../PWNED_BY_CARD.tflite", "absolute": str(outside / "PWNED_BY_CARD.tflite"),
            "symlink": "sub/PWNED_BY_CARD.tflite"}[case]
    if case == "symlink":
        (deploy / "sub").symlink_to(outside, target_is_directory=True)
    version = attacker_version(mlflow_server, name, file, tmp_path)
    proc = edgeqat("export", "--version", version, "--out", "deploy", cwd=ws, env={"MLFLOW_TRACKING_URI": mlflow_server})
    why = {"dotdot": "leads outside it", "absolute": "is an absolute path", "symlink": "through a symlink"}[case]
    one_line_refusal(proc, f"{name} version {version}: model_card.json variants.qat_int8.file", repr(file), why)
    assert not written(tmp_path), "the file was written"
    assert sorted(p.name for p in deploy.iterdir()) == (["sub"] if case == "symlink" else [])


def test_the_receiver_refuses_an_attackers_champion_and_keeps_serving(mlflow_server, tmp_path):
    name = f"hostile-rcv-{uuid.uuid4().hex[:6]}"
    ws = workspace(tmp_path / "ws", name, required_devices=[])
    version = attacker_version(mlflow_server, name, "../../PWNED_BY_CARD.tflite", tmp_path)
    from mlflow.tracking import MlflowClient

    MlflowClient(mlflow_server, mlflow_server).set_registered_model_alias(name, "champion", version)
    with Served(ws, mlflow_server, ws / "deploy") as rcv:
        rcv.wait_for_log("reconcile (start)")
        assert rcv.health() < 1.0
    log = rcv.log.read_text()
    assert f"{name} version {version}: model_card.json variants.qat_int8.file" in log and "refused" in log, log
    assert "Traceback" not in log
    assert not written(tmp_path)


# --- the receiver process: bounded against slow and greedy clients ---------------------------


class Served:
    """`edgeqat webhook serve` as a user runs it, on a free loopback port, stopped on exit."""

    def __init__(self, ws: Path, url: str, deploy: Path, *extra: str) -> None:
        self.ws, self.url, self.deploy, self.extra = ws, url, deploy, extra
        self.port = free_port()
        self.log = ws / f"receiver-{self.port}.log"

    def __enter__(self) -> "Served":
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "edgeqat"), "webhook", "serve", "--port", str(self.port), "--deploy-dir", str(self.deploy),
                 "--reconcile-interval", "0", *self.extra], cwd=self.ws, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "MLFLOW_TRACKING_URI": self.url, "EDGEQAT_WEBHOOK_SECRET": SECRET},
                start_new_session=True)
        self.wait_for_log("listening on")
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process_group(self.proc)

    def wait_for_log(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} from the receiver:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def health(self, source: str = "127.0.0.1", timeout: float = 5.0) -> float:
        """Seconds until /health answered 200 (a fresh connection each time)."""
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout, source_address=(source, 0)) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        assert data.split(b" ", 2)[1:2] == [b"200"], data[:200]
        return time.monotonic() - t0


@pytest.fixture
def receiver(mlflow_server, tmp_path):
    name = f"nothing-{uuid.uuid4().hex[:6]}"
    ws = workspace(tmp_path / "ws", name)
    with Served(ws, mlflow_server, ws / "deploy", "--request-deadline", "3") as rcv:
        rcv.model_name = name
        yield rcv


def deliver(port: int, name: str, delivery_id: str) -> tuple[float, int, str]:
    """MLflow's delivery of ``champion`` moving on ``name``, signed with the receiver's secret:
    (seconds to the answer, status, the answer's message)."""
    import http.client

    from edgeqat.adapters.webhook.server import sign

    body = json.dumps({"entity": "model_version_alias", "action": "created", "timestamp": "now",
                       "data": {"name": name, "alias": "champion", "version": "1"}}).encode()
    ts = str(int(time.time()))
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/", body, {"X-MLflow-Signature": sign(SECRET, delivery_id, ts, body),
                                         "X-MLflow-Timestamp": ts, "X-MLflow-Delivery-Id": delivery_id,
                                         "Content-Type": "application/json"})
        res = conn.getresponse()
        answer = json.loads(res.read())
        return time.monotonic() - t0, res.status, answer["message"]
    finally:
        conn.close()


class Trickle:
    """``n`` slowloris clients from 127.0.0.2, each sending one header line every ``every``
    seconds and never finishing; one the server cuts connects again, until :meth:`stop`."""

    def __init__(self, port: int, n: int, every: float) -> None:
        self.port, self.every = port, every
        self.halt, self.lock = threading.Event(), threading.Lock()
        self.open, self.cut = 0, []  # connections open now; lifetimes of those the server closed
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(n)]

    def __enter__(self) -> "Trickle":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        for t in self.threads:
            t.join(15)

    def _client(self) -> None:
        while not self.halt.is_set():
            started = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=10,
                                              source_address=("127.0.0.2", 0)) as s:
                    with self.lock:
                        self.open += 1
                    try:
                        if self._trickle(s):
                            return  # stopped by us, not cut
                    finally:
                        with self.lock:
                            self.open -= 1
            except OSError:
                pass  # reset while sending: cut as well
            with self.lock:
                self.cut.append(time.monotonic() - started)
            time.sleep(0.1)

    def _trickle(self, s: socket.socket) -> bool:
        """True when stopped, False when the server closed the connection."""
        s.sendall(b"POST / HTTP/1.1\r\n")
        n = 0
        while not self.halt.is_set():
            s.settimeout(self.every)
            try:
                if s.recv(1) == b"":
                    return False
            except socket.timeout:
                pass
            s.sendall(f"X-Slow-{n}: {'a' * 20}\r\n".encode())
            n += 1
        return True


def test_health_and_signed_deliveries_are_served_through_a_30_connection_trickle(receiver, record_property):
    """Issue 27 finding 3: 16 slow clients held /health and MLflow's signed deliveries for 60 s.
    Here 30 trickle for 8 s, reconnecting when cut (a 3 s whole-request deadline): /health is
    probed every 0.1 s, and two signed deliveries and a replay arrive in the middle of it."""
    latencies, delivered, ids = [], [], [f"trickle-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with Trickle(receiver.port, 30, every=1.0) as trickle:
        time.sleep(0.5)
        t0 = time.monotonic()
        while (now := time.monotonic()) < t0 + 8:
            if len(delivered) < 2 and now - t0 >= (1.5, 5.0)[len(delivered)]:  # before and after the first cut
                open_now = trickle.open
                delivered.append((open_now, *deliver(receiver.port, receiver.model_name, ids[len(delivered)])))
            latencies.append(receiver.health(timeout=5))
            time.sleep(0.1)
        replay = deliver(receiver.port, receiver.model_name, ids[0])
    hi, p50 = max(latencies), statistics.median(latencies)
    record_property("health_max_s", hi)
    record_property("health_p50_s", p50)
    record_property("delivery_s", [d[1] for d in delivered])
    print(f"/health during a 30-connection trickle: {len(latencies)} probes, max {hi * 1000:.1f} ms, "
          f"median {p50 * 1000:.1f} ms; signed deliveries answered in "
          + ", ".join(f"{d[1] * 1000:.1f} ms ({d[0]} slow connections open)" for d in delivered))
    assert hi < 1.0, latencies
    for open_now, seconds, status, body in delivered:
        assert open_now >= 20, delivered  # the trickle was really holding connections then
        assert (status, body) == (200, "queued") and seconds < 1.0, delivered
    assert replay[1:] == (200, "duplicate delivery, ignored"), replay  # the receiver kept both ids
    state = json.loads((receiver.deploy / ".edgeqat-receiver.json").read_text())
    assert set(ids) <= set(state["deliveries"]), state
    assert len(trickle.cut) >= 30 and max(trickle.cut) < 3 + 2.5, trickle.cut  # the whole-request deadline
    log = receiver.log.read_text()
    assert log.count("request not complete within 3 s") >= 30, log[-2000:]
    assert "Traceback" not in log, log[-3000:]


def test_one_client_holds_at_most_32_connections(receiver):
    held = [socket.create_connection(("127.0.0.1", receiver.port), timeout=5, source_address=("127.0.0.2", 0))
            for _ in range(40)]
    try:
        time.sleep(0.5)  # well within the 3 s request deadline: the 32 it accepted are still open
        readable, _, _ = select.select(held, [], [], 0.2)
        dropped = sum(s.recv(1) == b"" for s in readable)
        assert dropped == 8 and len(readable) == 8, (dropped, len(readable))
        assert receiver.health() < 1.0  # another client is still served
    finally:
        for s in held:
            s.close()
    receiver.wait_for_log("127.0.0.2: over 32 connections from one client")


def test_a_second_receiver_on_the_same_deploy_folder_is_refused(receiver):
    proc = edgeqat("webhook", "serve", "--port", str(free_port()), "--deploy-dir", str(receiver.deploy), cwd=receiver.ws,
                   env={"MLFLOW_TRACKING_URI": receiver.url, "EDGEQAT_WEBHOOK_SECRET": SECRET}, timeout=120)
    one_line_refusal(proc, str(receiver.deploy), "in use by another receiver", f"pid {receiver.proc.pid}")
    assert receiver.health() < 1.0


# --- an alias bomb in params.yaml: refused before DVC parses it --------------------------------
# DVC reads params.yaml with its own YAML loader (dvc status held it 25 s at 2 GB, then was killed),
# so the entry points that run DVC check the file with edgeqat's loader first.

# `edgeqat ...` with an audit hook appending every command it starts to the file argv[1].
WATCHED = ("import sys; log = open(sys.argv.pop(1), 'a'); "
           "sys.addaudithook(lambda e, a: e == 'subprocess.Popen' and print(a[1], file=log, flush=True)); "
           "sys.argv[0] = 'edgeqat'; from edgeqat.adapters.cli.app import main; main()")


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if ".git" not in p.relative_to(root).parts}


@pytest.fixture(scope="module")
def bombed_repo(tmp_path_factory) -> Path:
    """A git + DVC repository with this project's dvc.yaml and the bomb in params.yaml, committed."""
    repo = tmp_path_factory.mktemp("bombed")
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    (repo / "params.yaml").write_text(params_with_alias_bomb())
    env = {"DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "a bombed params.yaml"]):
        run(cmd, repo, env=env)
    return repo


@pytest.mark.parametrize("entry", ["ci run", "make pipeline"])
def test_an_alias_bomb_in_params_is_refused_before_dvc_starts(bombed_repo, tmp_path, entry):
    repo = bombed_repo
    started, site = tmp_path / "started.txt", tmp_path / "dvc-site-cache"
    if entry == "ci run":
        cmd = [sys.executable, "-c", WATCHED, str(started), "ci", "run", "--no-commit"]
    else:  # the venv is up to date (-o): only the pipeline's own commands run
        cmd = ["make", "--no-print-directory", "-f", str(REPO / "Makefile"), f"VENV={BIN.parent}", "-o",
               str(BIN / "edgeqat"), "pipeline"]
    # as a user's shell runs it: not as a sub-make of `make test` (whose MAKEFLAGS and MAKELEVEL would leak in)
    env = {**{k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")},
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_SITE_CACHE_DIR": str(site)}
    if entry == "make pipeline":
        dry = subprocess.run([*cmd, "-n"], cwd=repo, env=env, capture_output=True, text=True, check=True).stdout
        assert dry.splitlines()[0] == f"{BIN / 'edgeqat'} check-params", dry  # before `dvc remote`, `dvc pull`, `dvc repro`
    before = _files(repo)
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # a DVC that got the file would hang: its group is killed
    t0 = time.monotonic()
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        stop_process_group(proc)
        raise AssertionError(f"`{entry}` still running after 30 s: the bomb reached a YAML parser") from None
    seconds = time.monotonic() - t0
    print(f"{entry}: alias bomb refused in {seconds:.1f} s")
    refusal = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    one_line_refusal(refusal, "params.yaml", "expands through YAML aliases", "alias bomb")
    assert seconds < 10, seconds
    # DVC never ran: nothing it writes when it opens the repository (.dvc/tmp/lock, its site cache)
    assert _files(repo) == before, sorted(_files(repo) - before)
    assert not site.exists()
    if entry == "ci run":  # and edgeqat started no command at all
        assert not started.exists() or not started.read_text().strip(), started.read_text()


# --- secrets: a tracking URI with credentials works and is never printed -----------------------


def _with_credentials(url: str) -> str:
    return url.replace("http://", "http://alice:pw-SECRET@")


def test_a_tracking_uri_with_credentials_works_and_is_never_printed(mlflow_server, tmp_path):
    ws = workspace(tmp_path / "ws", "edgeqat-classifier")
    (ws / "metrics").mkdir()
    (ws / "metrics" / "train.json").write_text(json.dumps({"test_accuracy": 0.9, "run": uuid.uuid4().hex}))
    (ws / "reports").mkdir()
    (ws / "reports" / "notes.json").write_text("{}")
    env = {"MLFLOW_TRACKING_URI": _with_credentials(mlflow_server)}
    proc = edgeqat("stage", "track", cwd=ws, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]  # on 08117f3: "unreachable", with the password
    assert "View experiment at" not in proc.stdout and "View run" not in proc.stdout, proc.stdout
    history = edgeqat("history", "--json", cwd=ws, env=env)  # MLflow's own error, relayed: the server is named
    one_line_refusal(history, "alice:***@", "edgeqat-classifier not found")
    printed = proc.stdout + proc.stderr + history.stdout + history.stderr
    assert "alice:***@" in proc.stderr and "pw-SECRET" not in printed, printed
    leaked = [str(p) for p in ws.rglob("*") if p.is_file() and b"pw-SECRET" in p.read_bytes()]
    assert not leaked
    assert json.loads((ws / "logs" / "mlflow_run.json").read_text())["tracking_uri"] == \
        _with_credentials(mlflow_server).replace("pw-SECRET", "***")


def test_an_unreachable_server_with_credentials_is_named_without_them(tmp_path):
    ws = workspace(tmp_path / "ws", "edgeqat-classifier")
    port = free_port()
    proc = edgeqat("history", cwd=ws, env={"MLFLOW_TRACKING_URI": f"http://alice:pw-SECRET@127.0.0.1:{port}"})
    one_line_refusal(proc, f"http://alice:***@127.0.0.1:{port} is unreachable")
    assert "pw-SECRET" not in proc.stdout + proc.stderr
    assert not (ws / "logs").exists() or not any(b"pw-SECRET" in p.read_bytes() for p in (ws / "logs").rglob("*.log"))


# --- register after register.variant changed ---------------------------------------------------


def test_register_after_a_variant_change_says_to_track_again(mlflow_server, tmp_path):
    """The run `track` logged holds qat_int8; register.variant now says ptq_float16."""
    from importlib import resources

    from mlflow.tracking import MlflowClient

    ws = workspace(tmp_path / "ws", f"variant-{uuid.uuid4().hex[:6]}", variant="ptq_float16")
    raw = yaml.safe_load((ws / "params.yaml").read_text())
    raw["validate"]["model"] = "ptq_float16"  # the registered file is the validated one (check-params)
    (ws / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    blob = (resources.files("tflite_micro") / "python" / "tflite_micro" / "sine_float.tflite").read_bytes()
    (ws / "models" / "tflite").mkdir(parents=True)
    (ws / "models" / "tflite" / "ptq_float16.tflite").write_bytes(blob)
    sha = hashlib.sha256(blob).hexdigest()
    (ws / "models" / "tflite" / "model_card.json").write_text(json.dumps(
        {"variants": {v: {"file": f"{v}.tflite", "sha256": sha} for v in ("ptq_float16", "qat_int8")}}))
    (ws / "reports").mkdir()
    row = {"accuracy": 0.9, "size_bytes": len(blob)}
    experiment, fp = f"variant-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    (ws / "reports" / "summary.json").write_text(json.dumps(
        {"validation_passed": True, "variants": {"fp32": row, "ptq_float16": row, "qat_int8": row}}))
    (ws / "reports" / "tracked.json").write_text(json.dumps({"experiment": experiment, "fingerprint": fp}))
    client = MlflowClient(mlflow_server)
    run = client.create_run(client.create_experiment(experiment),
                            tags={"edgeqat.fingerprint": fp, "edgeqat.model.qat_int8": "m-1"})
    proc = edgeqat("stage", "register", cwd=ws, env={"MLFLOW_TRACKING_URI": mlflow_server})
    one_line_refusal(proc, "register.variant 'ptq_float16'", run.info.run_id, "(it has: qat_int8)",
                     "edgeqat stage track")  # on 08117f3: KeyError 'edgeqat.model.ptq_float16', exit 1
    assert not (ws / "logs" / "registered.json").exists()


# --- the embedded store moves with the workspace --------------------------------------------


def test_a_copied_workspace_keeps_its_artifacts_to_itself(tmp_path):
    a = workspace(tmp_path / "a", "edgeqat-classifier")
    (a / "metrics").mkdir()
    (a / "metrics" / "train.json").write_text(json.dumps({"test_accuracy": 0.9}))
    (a / "reports").mkdir()
    (a / "reports" / "notes.json").write_text('{"workspace": "a"}')
    env = {"MLFLOW_TRACKING_URI": ""}  # the embedded store: <workspace>/mlflow.db + mlartifacts/
    first = edgeqat("stage", "track", cwd=a, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    b = tmp_path / "b"
    shutil.copytree(a, b, symlinks=True)
    (b / "metrics" / "train.json").write_text(json.dumps({"test_accuracy": 0.8}))  # a new execution in the copy
    (b / "reports" / "notes.json").write_text('{"workspace": "b"}')
    a_before = sorted(str(p.relative_to(a)) for p in (a / "mlartifacts").rglob("*"))
    second = edgeqat("stage", "track", cwd=b, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert sorted(str(p.relative_to(a)) for p in (a / "mlartifacts").rglob("*")) == a_before  # nothing written to a
    assert "moved or copied from" in second.stderr, second.stderr
    shutil.rmtree(a)  # and b works without a: every run's artifacts are read from b
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{b / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("edgeqat").experiment_id])
    assert len(runs) == 2
    for r in runs:
        assert r.info.artifact_uri.startswith((b / "mlartifacts").as_uri()), r.info.artifact_uri
        local = client.download_artifacts(r.info.run_id, "reports/notes.json", str(tmp_path / r.info.run_id[:8]))
        assert json.loads(Path(local).read_text())["workspace"] in ("a", "b")

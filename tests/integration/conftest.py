"""Real processes for integration tests: an `mlflow server` on 127.0.0.1, and a scratch
git + DVC repository holding this project's pipeline definition."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require(reason: str | None, what: str) -> None:
    """Skip with ``reason`` when a setup step (make arm64, make sshd) has not run here; under CI
    (CI=true), whose .ci/run runs them first, that is a failure instead."""
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} unavailable under CI: {reason}")
    pytest.skip(reason)


def run(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


def start_mlflow_server(root: Path, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Start `mlflow server` on a free loopback port, in its own process group (it forks workers)."""
    port = free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})},
    )
    log.close()  # the child keeps its own descriptor
    return proc, f"http://127.0.0.1:{port}"


def wait_until_up(proc: subprocess.Popen, url: str, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)


def stop_process_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=3)  # mlflow 3.17 takes ~30 s to stop gracefully; a test store needs no grace
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real tracking server with a SQLite registry store, served on loopback only."""
    root = tmp_path_factory.mktemp("mlflow-server")
    proc, url = start_mlflow_server(root)
    try:
        wait_until_up(proc, url, root / "server.log")
        yield url
    finally:
        stop_process_group(proc)


def stages_run(output: str) -> list[str]:
    """The stages `dvc repro` / `dvc exp run` ran, in order, from its output."""
    import re

    return re.findall(r"Running stage '([a-z_]+)'", output)


TINY_VARIANTS = ("fp32", "ptq_int8", "qat_int8", "pqat_int8", "channel_pruned_qat_int8")


def tiny_params(**overrides) -> str:
    """params.yaml for a whole pipeline in minutes: 8x8 images, a couple of epochs, five variants;
    ``overrides`` by dotted key (``**{"qat.epochs": 2}``)."""
    import yaml

    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["prepare"].update(image_size=8)
    p["train"].update(alpha=0.25, epochs=2, batch_size=64, early_stopping_patience=0)
    # keep_float [] makes `mixed` the plain QAT model (no extra training); one variant per
    # producing stage keeps the conversions (~6 s each) few.
    p["qat"].update(epochs=1, keep_float=[])
    p["prune"].update(epochs=1, channel_epochs=1)
    p["convert"].update(variants=list(TINY_VARIANTS))
    p["evaluate"].update(latency_runs=5, warmup_runs=1)
    # Two epochs do not make an accurate model: gate on running and fitting, not accuracy (nor on
    # beating chance: tests/integration/test_chance_level.py and test_readme_own_data.py do).
    p["validate"].update(devices=["rpi4", "coral_edgetpu", "cortex_m7"], max_accuracy_drop=1.0, latency_runs=5,
                         emulate=False)
    p["register"].update(chance_margin=0.0)
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        p[section][key] = value
    return yaml.safe_dump(p, sort_keys=False)


def make_pipeline_repo(dest: Path, params: str) -> Path:
    """A fresh git + DVC repo with this project's dvc.yaml and the given params.yaml."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(REPO / name, dest / name)
    shutil.copytree(REPO / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(REPO / "data" / "raw", dest / "data" / "raw")
    (dest / "params.yaml").write_text(params)
    run(["git", "init", "-q"], dest)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init"], dest)
    run([str(BIN / "dvc"), "init", "-q"], dest)
    run([str(BIN / "dvc"), "config", "core.analytics", "false"], dest)
    return dest

"""The compiled pipeline run the way a cluster runs it: `make image`, then every task in a
container of that image through kfp.local's DockerRunner (`edgeqat pipeline run --local --docker`),
artifacts only through the pipeline root, MLflow only through a real `mlflow server` on 127.0.0.1.
Then both branches of validate's gate, asserted from what the runner's output folders hold
(kfp.local has had bugs in conditions: kubeflow/pipelines PR #13313).

Needs a Docker engine (`make docker` as root); CI starts one. Lean on purpose: 8x8 digits, one
epoch per fine-tune, one variant per stage that makes models, so every component still runs."""

from __future__ import annotations

import json
import os
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from integration.conftest import BIN, REPO, run, tiny_params
from integration.kfp_runs import FAILING, assert_gate_failed, ran, task_logs
from edgeqat.adapters.kfp.codegen import PARAMS_TASK
from edgeqat.workspace.stages import STAGES

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IMAGE_PYTHON = "/opt/venv/bin/python3"  # the image's venv (Dockerfile); this machine's is elsewhere
BROWSERS = ("chromium", "chromium-browser", "chromedriver", "google-chrome", "firefox")  # make browser's, and others
VARIANTS = ["fp32", "qat_int8", "mixed", "pqat_int8", "cqat_int8"]  # one from each stage that makes models; mixed for the gate


def lean_params(**overrides) -> str:
    p = yaml.safe_load(tiny_params(**overrides))
    p["train"].update(epochs=1)
    p["prune"].update(epochs=1, pqat_epochs=1, channel_epochs=1, qat_epochs=1)
    p["cluster"].update(epochs=1, qat_epochs=1)
    p["convert"]["variants"] = VARIANTS
    p["qat"]["keep_float"] = ["@last"]  # mixed keeps a float head: the failing gate's variant
    p["validate"].update(devices=["rpi4", "cortex_m7", "coral_edgetpu"])
    return yaml.safe_dump(p, sort_keys=False)


def _engine() -> None:
    import docker

    try:
        docker.from_env().ping()
    except docker.errors.DockerException as err:
        if os.environ.get("CI"):
            pytest.fail(f"no Docker engine in CI: .ci/run starts one (make docker): {err}")
        pytest.skip(f"no Docker engine here (make docker, as root): {err}")


@pytest.fixture(scope="module")
def image() -> str:
    """`make image`, as a user runs it; the tag it recorded."""
    _engine()
    t0 = time.monotonic()
    run(["make", "image"], REPO)
    print(f"\nmake image: {time.monotonic() - t0:.0f} s")
    return (REPO / ".cache" / "edgeqat-image").read_text().strip()


def test_the_image_holds_no_dev_extra_and_no_browser(image):
    """Only what the components need: none of the dev extra's test tools, no browser or driver.
    psutil is in the dev extra but also a runtime dependency (of DVC), so it is not looked for.
    edgeqat itself must be found: the probe can see what is installed."""
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    dev_only = sorted({Requirement(d).name for d in dev} - {"psutil"})
    probe = ("import importlib.metadata as md, shutil\n"
             "def has(d):\n"
             "    try:\n        return bool(md.distribution(d))\n"
             "    except md.PackageNotFoundError:\n        return False\n"
             f"print(sorted(d for d in {[*dev_only, 'edgeqat']!r} if has(d)), "
             f"sorted(b for b in {BROWSERS!r} if shutil.which(b)))")
    proc = subprocess.run(["docker", "run", "--rm", "--network", "none", image, "python3", "-c", probe],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "['edgeqat'] []", f"dev extra or browser in {image}: {proc.stdout}"
    assert "pytest" in dev_only and "selenium" in dev_only  # what the check above must not find


def pipeline_run(cwd: Path, params: str, *args: str, check: bool = True):
    """`edgeqat pipeline run --local` in ``cwd`` (pipeline root cwd/kfp, kfp.local's cache on)."""
    cwd.mkdir(exist_ok=True)
    (cwd / "params.yaml").write_text(params)
    t0 = time.monotonic()
    proc = run([str(BIN / "edgeqat"), "pipeline", "run", "--local", "--cache", "--params", "params.yaml",
                "--pipeline-root", "kfp", "--out", "result.json", *args], cwd,
               {"MLFLOW_TRACKING_URI": "", "EDGEQAT_IMAGE": ""}, check=check)
    result = json.loads((cwd / "result.json").read_text())
    return proc, result, time.monotonic() - t0


@pytest.fixture(scope="module")
def docker_run(image, mlflow_server, tmp_path_factory):
    """The passing pipeline in containers; its pipeline root (and cache) is shared with the gate test."""
    cwd = tmp_path_factory.mktemp("docker-run")
    proc, result, wall = pipeline_run(cwd, lean_params(), "--docker", "--image", image,
                                      "--mlflow-uri", mlflow_server, "--tag", "purpose=docker-test")
    print(f"\ndocker pipeline wall time: {wall:.0f} s")
    return cwd, proc, result


def test_every_task_runs_in_the_image_and_logs_to_the_mlflow_server(docker_run, image, mlflow_server):
    from mlflow.tracking import MlflowClient

    cwd, proc, result = docker_run
    job = Path(result["outputs"])
    tasks = {PARAMS_TASK} | {s.name for s in STAGES}  # the params task validates what track and register get
    assert ran(job) == tasks
    logs = task_logs(proc.stderr)
    assert set(logs) == tasks
    assert f"Found image '{image}'" in logs[PARAMS_TASK] and "finished with status SUCCESS" in logs[PARAMS_TASK]
    for stage in STAGES:
        log = logs[stage.name]
        assert f"Found image '{image}'" in log, stage.name  # run in a container of the image just built
        # the task's own first line: the Python that ran it is the image's, as uid 1000 (not root)
        assert f"kfp component {stage.name}: {IMAGE_PYTHON} (edgeqat" in log and "uid 1000)" in log, log[-3000:]
        assert f"Task '{stage.name}' finished with status SUCCESS" in log, stage.name
    assert (job / "train" / "fp32_model").stat().st_uid == 1000  # written by the container's user
    for variant in VARIANTS:
        assert (job / "convert" / "tflite" / f"{variant}.tflite").stat().st_size > 0, variant

    client = MlflowClient(tracking_uri=mlflow_server)
    assert result["tracking_uri"] == mlflow_server
    mlrun = client.get_run(result["run_id"])
    assert mlrun.info.status == "FINISHED" and result["validation_passed"] is True and result["registered"] is True
    tags = mlrun.data.tags
    assert tags["kfp_runner"] == "docker" and tags["purpose"] == "docker-test"
    assert tags["kfp_run_name"] == job.name and tags["orchestrator"] == "kubeflow"
    assert "variants/qat_int8.accuracy" in mlrun.data.metrics  # the run layout of docs/registry.md
    name = yaml.safe_load((cwd / "params.yaml").read_text())["register"]["model_name"]
    registered = json.loads((job / "register" / "registered").read_text())
    version = client.get_model_version(name, str(registered["version"]))
    assert version.run_id == result["run_id"]
    assert client.list_artifacts(result["run_id"]), "no artifacts reached the server's store"


def test_a_failing_required_device_in_containers_registers_nothing(docker_run, image, mlflow_server):
    cwd, _, _ = docker_run
    proc, result, wall = pipeline_run(cwd, lean_params(**FAILING), "--docker", "--image", image,
                                      "--mlflow-uri", mlflow_server, check=False)
    print(f"\ndocker failing-gate pipeline wall time (compute stages from the cache): {wall:.0f} s")
    assert_gate_failed(proc, result, mlflow_server)
    for stage in STAGES:  # the tasks that ran this time ran in the image too
        if stage.name in ran(Path(result["outputs"])):
            assert f"kfp component {stage.name}: {IMAGE_PYTHON}" in task_logs(proc.stderr)[stage.name]

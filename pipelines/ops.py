"""Compile, run locally (kfp.local), submit and schedule the edgeqat pipeline.

``edgeqat pipeline ...`` (src/edgeqat/adapters/cli/pipeline.py) calls these; kfp is imported here,
never by ``edgeqat --help``. Request building is kept apart from sending
(``run_request``/``schedule_request``) so what a submit would send can be checked.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from edgeqat.config import Params
from edgeqat.errors import EdgeqatError
from edgeqat.io import log, read_json, write_text
from edgeqat.adapters.kfp.params import kfp_name, to_pipeline_values
from edgeqat.adapters.run_params import default_params

PACKAGE = Path(__file__).resolve().parent / "edge_pipeline.yaml"
TOKEN_ENV = "KFP_BEARER_TOKEN"  # a bearer token (e.g. from `gcloud auth print-access-token` or an OIDC proxy)
SA_TOKEN_ENV = "KF_PIPELINES_SA_TOKEN_PATH"  # a projected service-account token file (in-cluster)


def compile_pipeline(out: str | Path = PACKAGE, *, image: str | None = None,
                     data_from_uri: bool = False, model_from_uri: bool = False, components: Any = None,
                     accelerator: str | None = None) -> Path:
    """Compile the pipeline to ``out`` (written atomically); ``image`` replaces the components' image
    (the CLI resolves it: edgeqat.adapters.kfp.images); ``components``: name -> component, instead of
    the installed edgeqat.components.generated; ``accelerator``: a resource name (nvidia.com/gpu)
    the training stages each request one of."""
    from kfp import compiler

    from edgeqat.components import BASE_IMAGE
    from edgeqat.pipelines.edge_pipeline import build_pipeline

    with tempfile.TemporaryDirectory(prefix="edgeqat-compile-") as tmp:
        path = Path(tmp) / "pipeline.yaml"
        pipeline = build_pipeline(data_from_uri, model_from_uri, components=components, accelerator=accelerator)
        compiler.Compiler().compile(pipeline, str(path))
        text = path.read_text()
    if image and image != BASE_IMAGE:
        text = text.replace(f"image: {BASE_IMAGE}\n", f"image: {image}\n")
    write_text(out, text)
    return Path(out)


def pipeline_arguments(params: Params, *, mlflow_tracking_uri: str = "", run_tags: dict[str, str] | None = None,
                       data_uri: str | None = None, pretrained_model_uri: str | None = None) -> dict[str, Any]:
    """Every params key (KFP-encoded) plus the runtime parameters, as a run's arguments.

    A key set away from its default that no component takes yet is refused rather than
    silently ignored.
    """
    from edgeqat.pipelines.edge_pipeline import unwired_keys

    values, defaults = to_pipeline_values(params), to_pipeline_values(default_params())
    ignored = [k for k in unwired_keys() if values[kfp_name(k)] != defaults[kfp_name(k)]]
    if ignored:
        raise EdgeqatError(f"{', '.join(ignored)}: not wired into the Kubeflow pipeline yet (run it with DVC: dvc repro)")
    args: dict[str, Any] = {**values, "mlflow_tracking_uri": mlflow_tracking_uri,
                            "run_tags": dict(run_tags or {})}
    if data_uri:
        args["data_uri"] = data_uri
    if pretrained_model_uri:
        args["pretrained_model_uri"] = pretrained_model_uri
    return args


# --- local ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """kfp.local streams every task's log to stdout; keep stdout for the command's result."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def run_local(params: Params, *, package: str | Path | None = None, pipeline_root: str | Path = "kfp_local",
              root: str | Path = ".", run_tags: dict[str, str] | None = None, docker: bool = False,
              image: str | None = None, mlflow_tracking_uri: str | None = None, cache: bool = False) -> dict[str, Any]:
    """The whole compiled pipeline through kfp.local.

    By default each task is a subprocess of this Python (SubprocessRunner). With ``docker`` each
    runs in a container of the image the package names (``image`` when compiling it here), through
    DockerRunner, as a cluster runs it (edgeqat.adapters.kfp.containers says what that requires).
    Logs to ``mlflow_tracking_uri``, else the DVC path's store (``MLFLOW_TRACKING_URI`` or
    ``root``'s mlflow.db). Returns the MLflow run info, the KFP run id, the task outputs folder,
    whether validate passed its required devices and whether register ran. ``cache``: reuse the
    outputs of a compute task that ran before in this pipeline root with the same image, command
    and arguments (kfp.local's cache, ``<pipeline root>/.kfp_cache``; track and register always
    run). Its key does not cover edgeqat's code or the image's content: not across code changes.
    """
    from kfp import components, local

    from edgeqat.workspace.provenance import git_info
    from edgeqat.lifecycle.tracking import get_run, tracking_uri

    pipeline_root = Path(pipeline_root).resolve()
    uri = mlflow_tracking_uri or tracking_uri(root)
    if docker:
        from edgeqat.adapters.kfp.containers import container_params, server_uri

        uri, params = server_uri(uri), container_params(params, pipeline_root, root)
    with contextlib.ExitStack() as stack:
        if package is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="edgeqat-kfp-"))
            package = compile_pipeline(Path(tmp) / "edge_pipeline.yaml", image=image)
        runner = _docker_runner(package, pipeline_root) if docker else local.SubprocessRunner(use_venv=False)
        pipe = components.load_component_from_file(str(package))
        local.init(runner=runner, pipeline_root=str(pipeline_root), raise_on_error=True, enable_caching=cache)
        tags = {**git_info(root), "trigger": "local", "kfp_runner": "docker" if docker else "subprocess",
                **(run_tags or {})}
        args = pipeline_arguments(params, mlflow_tracking_uri=uri, run_tags=tags)
        t0 = time.monotonic()
        with warnings.catch_warnings(), _stdout_to_stderr():
            # The component image is not a python:* image (it has its own Python at /opt/venv).
            warnings.filterwarnings("ignore", message=".*non-Python base image.*")
            # the stage table's CPU/memory requests are for a cluster; kfp.local ignores them
            warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
            try:
                task = pipe(**args)
            except RuntimeError as err:
                raise EdgeqatError(f"kfp.local pipeline run failed: {err}") from None
    run_info_path = Path(task.output.path)
    job_dir = run_info_path.parents[1]  # <pipeline_root>/<kfp run name>/track/run_info
    if docker:
        from edgeqat.adapters.kfp.containers import unfinished_tasks

        if unfinished := unfinished_tasks(job_dir):
            raise EdgeqatError(f"kfp.local pipeline run {job_dir.name}: {', '.join(unfinished)} did not finish in "
                               "its container (no executor output; its log is above)")
    info = read_json(run_info_path)
    mlrun = get_run(info["run_id"], info["tracking_uri"])
    tags = mlrun.data.tags
    result = {**info, "kfp_run_id": tags["kfp_run_id"], "kfp_run_name": tags["kfp_run_name"],
              "outputs": str(job_dir), "seconds": round(time.monotonic() - t0, 1), "status": mlrun.info.status,
              "validation_passed": tags.get("edgeqat.gate") != "failed",  # track's verdict on the required devices
              "registered": (job_dir / "register" / "executor_output.json").is_file()}  # dsl.If ran it
    log(f"pipeline: kfp.local run {result['kfp_run_name']} finished in {result['seconds']} s "
        f"({'containers' if docker else 'subprocesses'}); "
        f"MLflow run {info['run_id']} tagged kfp_run_id={result['kfp_run_id']}")
    return result


def _docker_runner(package: str | Path, pipeline_root: Path) -> Any:
    """A DockerRunner for ``package``'s image, its pipeline root prepared for the container's user."""
    from kfp import local

    from edgeqat.adapters.kfp.containers import check_image, prepare_pipeline_root, runner_args
    from edgeqat.adapters.kfp.images import package_images

    for image in sorted(package_images(package)):
        check_image(image)
    return local.DockerRunner(**runner_args(prepare_pipeline_root(pipeline_root)))


# --- cluster -------------------------------------------------------------------------------


def kfp_cron(expr: str) -> str:
    """Standard 5-field cron (``0 3 * * 1``) -> KFP's 6-field form with seconds (``0 0 3 * * 1``)."""
    fields = expr.split()
    if len(fields) == 5:
        return " ".join(["0", *fields])
    if len(fields) == 6:
        return " ".join(fields)
    raise EdgeqatError(f"--cron {expr!r}: expected 5 fields (minute hour day month weekday), e.g. '0 3 * * 1'")


@dataclass
class RunRequest:
    """What submit/schedule send: the package, the arguments, names and (schedule) the cron."""

    package: Path
    arguments: dict[str, Any]
    experiment: str
    name: str
    cron: str | None = None
    max_concurrency: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def run_request(params: Params, package: Path, *, experiment: str, name: str, mlflow_tracking_uri: str,
                run_tags: dict[str, str] | None = None, data_uri: str | None = None,
                pretrained_model_uri: str | None = None, cron: str | None = None) -> RunRequest:
    if not mlflow_tracking_uri.startswith(("http://", "https://")):
        raise EdgeqatError(
            f"MLflow tracking URI {mlflow_tracking_uri or '(unset)'!r}: a cluster run needs an MLflow server its "
            "pods can reach; pass --mlflow-uri http://... or set MLFLOW_TRACKING_URI")
    args = pipeline_arguments(params, mlflow_tracking_uri=mlflow_tracking_uri, run_tags=run_tags,
                              data_uri=data_uri, pretrained_model_uri=pretrained_model_uri)
    return RunRequest(package=Path(package), arguments=args, experiment=experiment, name=name,
                      cron=kfp_cron(cron) if cron else None)


def _auth() -> dict[str, Any]:
    token = os.environ.get(TOKEN_ENV)
    if token:
        return {"existing_token": token}
    path = os.environ.get(SA_TOKEN_ENV)
    if path:
        from kfp.client import ServiceAccountTokenVolumeCredentials

        if not Path(path).is_file():
            raise EdgeqatError(f"{SA_TOKEN_ENV}={path}: token file not found")
        return {"credentials": ServiceAccountTokenVolumeCredentials(path)}
    return {}


def check_host(host: str, timeout: float = 10.0) -> None:
    """Fail fast, with the host named, when nothing answers (kfp.Client would retry for minutes)."""
    if not host.startswith(("http://", "https://")):
        raise EdgeqatError(f"--host {host!r}: expected the KFP API URL, e.g. https://kubeflow.example.com/pipeline")
    req = urllib.request.Request(f"{host.rstrip('/')}/apis/v2beta1/healthz")
    token = os.environ.get(TOKEN_ENV)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            raise EdgeqatError(f"Kubeflow Pipelines at {host} refused the request ({err.code} {err.reason}); "
                               f"set {TOKEN_ENV} or {SA_TOKEN_ENV}") from None
        # Other statuses: some gateways do not route healthz; let the real call decide.
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise EdgeqatError(f"Kubeflow Pipelines at {host} is unreachable ({reason})") from None


@contextlib.contextmanager
def _client_errors(host: str) -> Iterator[None]:
    try:
        with contextlib.redirect_stdout(sys.stderr):  # kfp.Client prints links; stdout is for our result
            yield
    except EdgeqatError:
        raise
    except Exception as err:  # kfp_server_api.ApiException, urllib3 errors: say which host and why
        status = getattr(err, "status", None)
        if status is not None:
            body = (getattr(err, "body", "") or "").strip()[:500]
            raise EdgeqatError(f"Kubeflow Pipelines at {host} refused the request ({status} "
                               f"{getattr(err, 'reason', '')}): {body}") from None
        raise EdgeqatError(f"Kubeflow Pipelines at {host}: request failed ({type(err).__name__}: {err})") from None


def client(host: str) -> Any:
    import kfp

    check_host(host)
    with _client_errors(host):
        return kfp.Client(host=host, **_auth())


def submit(host: str, req: RunRequest) -> dict[str, str]:
    kfp_client = client(host)
    with _client_errors(host):
        result = kfp_client.create_run_from_pipeline_package(
            str(req.package), arguments=req.arguments, run_name=req.name, experiment_name=req.experiment)
    log(f"pipeline: submitted run {result.run_id} ({req.name}) to {host}, experiment {req.experiment!r}")
    return {"run_id": result.run_id, "host": host, "experiment": req.experiment}


def schedule(host: str, req: RunRequest) -> dict[str, str]:
    if not req.cron:
        raise EdgeqatError("schedule: a cron expression is required (--cron '0 3 * * 1')")
    kfp_client = client(host)
    with _client_errors(host):
        exp = kfp_client.create_experiment(name=req.experiment)
        job = kfp_client.create_recurring_run(
            experiment_id=exp.experiment_id, job_name=req.name, cron_expression=req.cron,
            pipeline_package_path=str(req.package), params=req.arguments,
            max_concurrency=req.max_concurrency, enable_caching=False)
    rid = getattr(job, "recurring_run_id", None) or getattr(job, "id", "")
    log(f"pipeline: scheduled {req.name!r} ({req.cron}) on {host} as recurring run {rid}")
    return {"recurring_run_id": rid, "host": host, "experiment": req.experiment, "cron": req.cron}


def save_result(path: str | Path | None, result: dict[str, Any]) -> None:
    if path is not None:
        write_text(path, json.dumps(result, indent=2, sort_keys=True) + "\n")

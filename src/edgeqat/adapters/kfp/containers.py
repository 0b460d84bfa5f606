"""Running the compiled pipeline's tasks in the component image on this machine
(``kfp.local.DockerRunner``), under the constraints a cluster puts on them.

A task's container sees one folder of this machine: the pipeline root, bind-mounted at the same
path. So every artifact travels through it, a file a params key names must lie inside it, and
MLflow must be a server the container can reach (a SQLite file or ./mlruns on this machine would
be a different, empty store inside the container). The container runs as a non-root user, as the
image declares, and the pipeline root is made writable for that user.

Network: ``network_mode="host"``. A server on 127.0.0.1 (the only address servers here bind to)
is the container's own loopback on Docker's bridge network; on the host's network it is this
machine's, as a cluster's in-cluster service URL would be.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgeqat.config import Params
from edgeqat.errors import EdgeqatError

IMAGE_UID = 1000  # the image's `edgeqat` user (Dockerfile)
NETWORK = "host"


def server_uri(uri: str) -> str:
    """The MLflow tracking URI, which must be a server: containers share no file with this machine
    but the pipeline root."""
    if uri.startswith(("http://", "https://")):
        return uri
    raise EdgeqatError(
        f"MLflow tracking URI {uri or '(unset)'!r}: the docker runner's containers cannot reach a store that is "
        "a file on this machine (each would log to its own empty copy); start `mlflow server --host 127.0.0.1 "
        "--port 5000` and pass --mlflow-uri http://127.0.0.1:5000 (or set MLFLOW_TRACKING_URI)")


def _used_file_params(params: Params) -> dict[str, str]:
    """The file-naming params keys that are set and read (a built-in source reads no prepare.path)."""
    from edgeqat.catalog.datasources import needs_path
    from edgeqat.workspace.stages import STAGES

    used = {}
    for key in dict.fromkeys(fp.key for s in STAGES for fp in s.file_params):
        if key == "prepare.path" and not needs_path(params.prepare.source):
            continue
        section, name = key.split(".")
        value = getattr(getattr(params, section), name)
        if value not in (None, ""):
            used[key] = str(value)
    return used


def container_params(params: Params, pipeline_root: Path, cwd: str | Path = ".") -> Params:
    """``params`` with every file it names as an absolute path, each checked to lie in the
    pipeline root (the one folder the containers see, at the same path)."""
    root = Path(pipeline_root).resolve()
    update: dict[str, dict[str, str]] = {}
    for key, value in _used_file_params(params).items():
        path = (Path(cwd) / value).resolve()
        if not path.is_relative_to(root):
            raise EdgeqatError(f"{key}={value}: a path on this machine, outside the pipeline root {root}, the only "
                               "folder the docker runner's containers see; copy it into the pipeline root and "
                               "name it there (or run without --docker)")
        section, name = key.split(".")
        update.setdefault(section, {})[name] = str(path)
    if not update:
        return params
    return params.model_copy(update={s: getattr(params, s).model_copy(update=v) for s, v in update.items()})


def prepare_pipeline_root(pipeline_root: Path) -> str:
    """Create the pipeline root and give it to the user the containers run as; returns that user
    (``uid:gid``). Run by root: the image's non-root user. Run by another user: that user, so the
    outputs stay theirs."""
    pipeline_root.mkdir(parents=True, exist_ok=True)
    if os.getuid() != 0:
        return f"{os.getuid()}:{os.getgid()}"
    os.chown(pipeline_root, IMAGE_UID, IMAGE_UID)
    return f"{IMAGE_UID}:{IMAGE_UID}"


def runner_args(user: str) -> dict[str, Any]:
    """``kfp.local.DockerRunner(**runner_args)``: passed on to docker's ``containers.run``."""
    args: dict[str, Any] = {"network_mode": NETWORK, "user": user}
    if not user.startswith(f"{IMAGE_UID}:"):
        args["environment"] = {"HOME": "/tmp"}  # a uid the image has no home for
    return args


def check_image(image: str) -> None:
    """The image must already be in the local engine: kfp.local would otherwise try to pull it."""
    try:
        import docker
    except ImportError:  # pragma: no cover - mlflow and kfp's DockerRunner depend on it
        raise EdgeqatError("the docker runner needs the `docker` Python package: pip install docker") from None
    try:
        client = docker.from_env()
    except docker.errors.DockerException as err:
        raise EdgeqatError(f"no Docker engine answers ({err}); start one (`make docker` as root)") from None
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise EdgeqatError(f"image {image} is not in the local Docker engine: build it with `make image` "
                           "(or name another with --image)") from None
    except docker.errors.DockerException as err:
        raise EdgeqatError(f"the Docker engine could not inspect image {image}: {err}") from None
    finally:
        client.close()


def unfinished_tasks(job_dir: Path) -> list[str]:
    """Tasks of a run whose folder holds no executor output. kfp.local's DockerRunner reports a
    container it could no longer find (auto-removed) as succeeded; the executor writes this file
    last, so its absence means the task did not finish."""
    return sorted(d.name for d in job_dir.iterdir() if d.is_dir() and not (d / "executor_output.json").is_file())

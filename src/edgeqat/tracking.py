"""MLflow runs: the only module (with registry.py, later) that imports mlflow.

One pipeline execution = one run, logged in one go from the files the stages wrote,
so the run is complete even when DVC skipped cached stages.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable

from edgeqat.errors import EdgeqatError

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"


def tracking_uri(root: str | Path = ".") -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite store in ``root`` (git-ignored)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(root).resolve() / DEFAULT_DB}"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as resp:
            resp.read()
    except (urllib.error.URLError, OSError) as err:
        raise EdgeqatError(f"MLflow tracking server {uri} is unreachable ({err}); start it or set MLFLOW_TRACKING_URI") from None


def _experiment_id(client: Any, name: str, uri: str, root: Path) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:"):
        # Keep artifacts beside the embedded store rather than in the caller's cwd.
        location = (root / DEFAULT_ARTIFACTS).resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


def log_run(
    *,
    experiment: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    curves: dict[str, list[tuple[int, float]]],
    tags: dict[str, str],
    artifacts: Iterable[tuple[Path, str]],
    run_name: str | None = None,
    uri: str | None = None,
    root: str | Path = ".",
) -> dict[str, str]:
    """Create one finished run; returns its ids and URI. ``curves`` become stepped metrics."""
    import time

    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    root = Path(root)
    uri = uri or tracking_uri(root)
    check_reachable(uri)
    client = MlflowClient(tracking_uri=uri)
    exp_id = _experiment_id(client, experiment, uri, root)
    run = client.create_run(exp_id, tags=tags, run_name=run_name)
    rid = run.info.run_id
    try:
        now = int(time.time() * 1000)
        plist = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        mlist = [Metric(k, float(v), now, 0) for k, v in sorted(metrics.items())]
        for key, points in sorted(curves.items()):
            mlist += [Metric(key, float(v), now, int(step)) for step, v in points]
        for i in range(0, max(len(plist), 1), 100):  # MLflow caps params per batch at 100
            client.log_batch(rid, params=plist[i : i + 100])
        for i in range(0, len(mlist), 1000):
            client.log_batch(rid, metrics=mlist[i : i + 1000])
        for path, dest in artifacts:
            if path.is_dir():
                _log_folder(client, rid, path, dest)
            elif path.is_file():
                client.log_artifact(rid, str(path), dest or None)
        client.set_terminated(rid, "FINISHED")
    except BaseException:
        client.set_terminated(rid, "FAILED")
        raise
    return {"run_id": rid, "experiment_id": exp_id, "tracking_uri": uri}


def _log_folder(client: Any, rid: str, folder: Path, dest: str) -> None:
    """Log a folder's files, never the temporary leftovers of an interrupted write."""
    from edgeqat.io import is_temp_leftover, remove_stale_temps

    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        remove_stale_temps(here)  # a killed stage's leftovers: cleaned on the next run
        dirnames[:] = sorted(d for d in dirnames if not is_temp_leftover(d))
        rel = here.relative_to(folder).as_posix()
        sub = dest if rel == "." else f"{dest}/{rel}" if dest else rel
        for f in sorted(filenames):
            if not is_temp_leftover(f):
                client.log_artifact(rid, str(here / f), sub or None)


def get_run(run_id: str, uri: str) -> Any:
    """The run as MLflow stores it (params, metrics, tags): for tests and reports."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri).get_run(run_id)


def metric_history(run_id: str, key: str, uri: str) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    return [(m.step, m.value) for m in MlflowClient(tracking_uri=uri).get_metric_history(run_id, key)]

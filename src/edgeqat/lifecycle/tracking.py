"""MLflow runs: with registry.py, the only module that imports mlflow.

One pipeline execution = one run: :class:`RunWriter` opens it with the execution's real
start time, the track step logs params, metrics, curves, the input dataset, artifacts and
(through the registry service) the models into it, and it is closed with the real end
time and a status. A run is found again by a tag (the execution's fingerprint), so logging
the same execution twice reuses its run.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from edgeqat.errors import EdgeqatError
from edgeqat.io import REDACTED, log, redact
from edgeqat.progress import verbose


def quiet_mlflow() -> None:
    """MLflow's INFO lines (database set-up, input-example checks), its warnings and its tqdm
    bars off, before mlflow is imported (it reads these once); --verbose keeps them."""
    if verbose():
        return
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")  # mlflow's loggers and alembic's
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # "View run at": edgeqat prints pages itself
    for name in ("mlflow", "alembic", "sqlalchemy", "huey"):  # already set up if mlflow was imported first
        if logging.getLogger(name).level < logging.ERROR:
            logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(mlflow|pydantic|sqlalchemy|alembic)(\.|$)")


quiet_mlflow()  # this module and registry.py are the ones that import mlflow

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
NOTE_TAG = "mlflow.note.content"  # what the UI shows as the run's description
FINGERPRINT_TAG = "edgeqat.fingerprint"  # identifies an execution by what it produced
# The MLflow 3 UI opens an experiment in its GenAI view unless told it holds model training.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
MODEL_TAG = "edgeqat.model."  # + a logged model's name -> its model id


def tracking_uri(root: str | Path = ".") -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite store in ``root`` (git-ignored)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(root).resolve() / DEFAULT_DB}"


def stored_uri(uri: str) -> str:
    """The URI as files keep it (logs/mlflow_run.json, export.json): credentials redacted."""
    return redact(uri)


def usable_uri(stored: str | None, root: str | Path = ".") -> str:
    """A URI read back from a file: with redacted credentials, ``MLFLOW_TRACKING_URI`` if it is
    the same server (its credentials never left the environment)."""
    here = tracking_uri(root)
    if not stored or (REDACTED in stored and redact(here) == stored):
        return here
    if REDACTED in stored:
        raise EdgeqatError(f"{stored}: its credentials are not kept in files; set MLFLOW_TRACKING_URI to it")
    return stored


def _probe(uri: str) -> urllib.request.Request:
    """GET <server>/health, with the URI's user info as HTTP basic auth (urllib cannot take it in the URL)."""
    parts = urllib.parse.urlsplit(uri)
    host = parts.netloc.rpartition("@")[2]
    url = urllib.parse.urlunsplit((parts.scheme, host, f"{parts.path.rstrip('/')}/health", "", ""))
    req = urllib.request.Request(url)
    user = parts.username or os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = parts.password if parts.username is not None else os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user is not None:
        pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password or '')}"
        req.add_header("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())
    return req


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(_probe(uri), timeout=timeout) as resp:
            resp.read()
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise EdgeqatError(f"MLflow tracking server {redact(uri)} is unreachable ({redact(str(err))}); start it or set "
                           "MLFLOW_TRACKING_URI") from None


@contextlib.contextmanager
def mlflow_prints() -> Any:
    """What MLflow writes to stdout meanwhile: dropped, or with --verbose shown with URLs redacted."""
    caught = io.StringIO()
    try:
        with contextlib.redirect_stdout(caught):
            yield
    finally:
        if verbose() and caught.getvalue():
            sys.stdout.write(redact(caught.getvalue()))


# Where MLflow keeps artifact locations: rewritten together when a workspace moves.
_LOCATION_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                     ("logged_models", "artifact_location"), ("model_versions", "source"),
                     ("model_versions", "storage_location"))


def relocate_embedded_store(uri: str, root: str | Path = ".") -> int:
    """The embedded store (``<root>/mlflow.db``) keeps absolute artifact paths; after the
    workspace was copied or moved they still lead to the old ``mlartifacts/``, so a copy would
    write into the original's. Point every location under an old workspace at this one (its
    ``mlartifacts/`` came along with the copy). Returns the rows changed; other stores: 0."""
    import sqlite3

    here = Path(root).resolve()
    db = here / DEFAULT_DB
    if uri != f"sqlite:///{db}" or not db.is_file():
        return 0
    con = sqlite3.connect(db)
    try:
        tables = {t for (t,) in con.execute("select name from sqlite_master where type='table'")}
        if "experiments" not in tables:
            return 0
        olds = set()
        for (loc,) in con.execute("select artifact_location from experiments where artifact_location is not null"):
            path = Path(urllib.parse.unquote(urllib.parse.urlsplit(loc).path)) if loc.startswith("file:") else Path(loc)
            if path.name == DEFAULT_ARTIFACTS and path.parent != here:
                olds.add(path.parent)
        changed = 0
        for old in sorted(olds):
            for folder in (DEFAULT_ARTIFACTS, "mlruns"):  # mlruns: MLflow's own Default experiment
                for a, b in (((old / folder).as_uri(), (here / folder).as_uri()), (str(old / folder), str(here / folder))):
                    for table, col in _LOCATION_COLUMNS:
                        if table in tables:
                            changed += con.execute(
                                f"update {table} set {col} = ? || substr({col}, ?) where substr({col}, 1, ?) = ? "
                                f"and (length({col}) = ? or substr({col}, ? + 1, 1) = '/')",
                                (b, len(a) + 1, len(a), a, len(a), len(a))).rowcount
        con.commit()
    finally:
        con.close()
    if olds:
        log(f"{db}: the workspace was moved or copied from {', '.join(map(str, sorted(olds)))}: {changed} artifact "
            f"location(s) now point to {here / DEFAULT_ARTIFACTS}")
    return changed


def open_store(uri: str, root: str | Path = ".") -> None:
    """Before a step talks to MLflow: a server must answer; a moved embedded store is re-pointed."""
    check_reachable(uri)
    relocate_embedded_store(uri, root)


def client_for(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(client: Any, name: str, uri: str, root: Path) -> str:
    """The experiment's id, created if missing. Two first runs may race to create it: the
    loser's create fails (MLflow reports the unique constraint in several ways), so look again."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        for k, v in EXPERIMENT_KIND.items():
            if exp.tags.get(k) is None:
                set_experiment_tag(client, exp.experiment_id, k, v)
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:"):
        # Keep artifacts beside the embedded store rather than in the caller's cwd.
        location = (root / DEFAULT_ARTIFACTS).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
    except MlflowException as err:
        for _ in range(20):
            exp = client.get_experiment_by_name(name)
            if exp is not None:
                return exp.experiment_id
            time.sleep(0.1)
        raise EdgeqatError(f"MLflow at {redact(uri)}: creating experiment {name!r}: {err.message}") from None


# MLflow's UI loads a saved view of an experiment's runs table from this experiment tag (+ a key)
# when its URL says ?viewStateShareKey=<key>; edgeqat's links open that view.
VIEW_TAG = "mlflow.sharedViewState."
VIEW_KEY = "edgeqat"


def set_experiment_tag(client: Any, experiment_id: str, key: str, value: str) -> None:
    """Set an experiment tag unless it already holds ``value``. Two first executions may set the
    same new tag at once, and MLflow's SQL store then refuses the second insert (a unique
    constraint), so a refusal is followed by a look: the other writer's value is as good."""
    from mlflow.exceptions import MlflowException

    for attempt in range(3):
        if client.get_experiment(experiment_id).tags.get(key) == value:
            return
        try:
            client.set_experiment_tag(experiment_id, key, value)
            return
        except MlflowException:
            if attempt == 2:
                raise
            time.sleep(0.1)


def set_runs_view(client: Any, experiment_id: str, view: dict[str, Any]) -> None:
    """Save the runs table's columns as the experiment's ``edgeqat`` view (once per change)."""
    set_experiment_tag(client, experiment_id, VIEW_TAG + VIEW_KEY, json.dumps(view, sort_keys=True))


def experiment_page(uri: str, experiment_id: str, ui: str | None = None) -> str:
    """The experiment's runs table in the MLflow UI, with edgeqat's columns."""
    base = redact(ui or (uri if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000")).rstrip("/")
    return f"{base}/#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}"


def find_run(uri: str, experiment: str, tag: str, value: str, root: str | Path = ".") -> Any | None:
    """The newest run of ``experiment`` whose tag ``tag`` equals ``value`` (None if none)."""
    open_store(uri, root)  # the first call of a step: fail at once, not after the client's retries
    client = client_for(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{tag}` = '{value}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def _ms(t: datetime | None) -> int:
    return int((t.timestamp() if t else time.time()) * 1000)


class RunWriter:
    """One run being written; ``with`` closes it FAILED if anything raises before :meth:`finish`."""

    def __init__(self, *, uri: str, experiment: str, run_name: str, tags: dict[str, str],
                 start: datetime | None = None, root: str | Path = ".") -> None:
        open_store(uri, root)
        self.uri, self.root = uri, Path(root)
        self.client = client_for(uri)
        self.experiment_id = ensure_experiment(self.client, experiment, uri, self.root)
        run = self.client.create_run(self.experiment_id, start_time=_ms(start), tags=tags, run_name=run_name)
        self.run_id, self.artifact_uri = run.info.run_id, run.info.artifact_uri
        self.finished = False

    @classmethod
    def resume(cls, *, uri: str, run_id: str, root: str | Path = ".") -> "RunWriter":
        """An existing run (the execution's live run) to complete."""
        open_store(uri, root)
        self = cls.__new__(cls)
        self.uri, self.root, self.client = uri, Path(root), client_for(uri)
        run = self.client.get_run(run_id)
        self.run_id, self.artifact_uri = run.info.run_id, run.info.artifact_uri
        self.experiment_id, self.finished = run.info.experiment_id, False
        return self

    def metric_keys(self) -> set[str]:
        return set(self.client.get_run(self.run_id).data.metrics)

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None and not self.finished:
            with mlflow_prints():
                self.client.set_terminated(self.run_id, "FAILED")

    def log_params(self, params: dict[str, Any]) -> None:
        """The params the run does not hold yet: a live run's stages logged theirs as they started
        (MLflow's params are immutable; a KFP task may have seen an artifact path for a file param)."""
        from mlflow.entities import Param

        have = self.client.get_run(self.run_id).data.params
        plist = [Param(k, str(v)[:6000]) for k, v in sorted(params.items()) if k not in have]
        for i in range(0, len(plist), 100):  # MLflow caps params per batch at 100
            self.client.log_batch(self.run_id, params=plist[i:i + 100])

    def log_metrics(self, metrics: dict[str, float], curves: dict[str, list[tuple[int, float]]] | None = None, *,
                    model_id: str | None = None, dataset: tuple[str, str] | None = None) -> None:
        """``model_id``/``dataset`` (name, digest): link the values to a LoggedModel and the input
        dataset, so the model's page lists them."""
        from mlflow.entities import Metric

        now = _ms(None)
        link = {"model_id": model_id, **({"dataset_name": dataset[0], "dataset_digest": dataset[1][:36]} if dataset else {})}
        mlist = [Metric(k, float(v), now, 0, **link) for k, v in sorted(metrics.items())]
        for key, points in sorted((curves or {}).items()):
            mlist += [Metric(key, float(v), now, int(step)) for step, v in points]
        for i in range(0, len(mlist), 1000):
            self.client.log_batch(self.run_id, metrics=mlist[i:i + 1000])

    def log_model_params(self, model_id: str, params: dict[str, Any]) -> None:
        """The settings the LoggedModel was made with (its page's Parameters)."""
        items = sorted((k, str(v)[:6000]) for k, v in params.items())
        for i in range(0, len(items), 100):
            self.client.log_model_params(model_id, dict(items[i:i + 100]))

    def log_table(self, data: dict[str, list[Any]], artifact_file: str) -> None:
        """A table artifact (MLflow shows it as a table)."""
        with mlflow_prints():
            self.client.log_table(self.run_id, data=data, artifact_file=artifact_file)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in sorted(tags.items())])

    def describe(self, markdown: str) -> None:
        self.client.set_tag(self.run_id, NOTE_TAG, markdown)

    def log_dataset(self, *, name: str, digest: str, source_type: str, source: dict[str, Any],
                    profile: dict[str, Any], schema: dict[str, Any], context: str = "training") -> None:
        """The run's input dataset: ``digest`` is the data's checksum (MLflow keeps 36 characters)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        ds = Dataset(name=name, digest=digest[:36], source_type=source_type, source=json.dumps(source, sort_keys=True),
                     schema=json.dumps(schema, sort_keys=True), profile=json.dumps(profile, sort_keys=True))
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(ds, tags=[InputTag("mlflow.data.context", context)])])

    def log_artifacts(self, items: Iterable[tuple[Path, str]]) -> None:
        for path, dest in items:
            if path.is_dir():
                _log_folder(self.client, self.run_id, path, dest)
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path), dest or None)

    def finish(self, status: str = "FINISHED", end: datetime | None = None) -> None:
        with mlflow_prints():  # its "View run / View experiment at" lines: edgeqat prints the run's page itself
            self.client.set_terminated(self.run_id, status, end_time=_ms(end))
        self.finished = True

    def info(self) -> dict[str, str]:
        return {"run_id": self.run_id, "experiment_id": self.experiment_id, "tracking_uri": self.uri}


def log_run(*, experiment: str, params: dict[str, Any], metrics: dict[str, float],
            curves: dict[str, list[tuple[int, float]]], tags: dict[str, str], artifacts: Iterable[tuple[Path, str]],
            run_name: str | None = None, uri: str | None = None, root: str | Path = ".") -> dict[str, str]:
    """One finished run in one call (for callers that have nothing else to add to it)."""
    root = Path(root)
    with RunWriter(uri=uri or tracking_uri(root), experiment=experiment, run_name=run_name or "edgeqat", tags=tags,
                   root=root) as run:
        run.log_params(params)
        run.log_metrics(metrics, curves)
        run.log_artifacts(artifacts)
        run.finish()
    return run.info()


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


def append_to_description(uri: str, run_id: str, line: str) -> None:
    """Add a line to the run's description (once)."""
    client = client_for(uri)
    note = client.get_run(run_id).data.tags.get(NOTE_TAG, "")
    if line not in note:
        client.set_tag(run_id, NOTE_TAG, (note.rstrip() + "\n\n" + line).strip())


def run_page(uri: str, experiment_id: str, run_id: str, ui: str | None = None) -> str:
    """The run's page in the MLflow UI: the tracking server itself, or ``ui`` (where `mlflow ui`
    serves a local store)."""
    base = redact(ui or (uri if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000")).rstrip("/")
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def get_run(run_id: str, uri: str) -> Any:
    """The run as MLflow stores it (params, metrics, tags): for tests and reports."""
    return client_for(uri).get_run(run_id)


def metric_history(run_id: str, key: str, uri: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client_for(uri).get_metric_history(run_id, key)]

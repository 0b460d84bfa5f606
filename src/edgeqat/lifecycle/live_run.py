"""The execution's MLflow run, written while a stage works (with tracking.py and registry.py,
the modules that import mlflow).

An execution (one ``dvc repro``/``dvc exp run``, one KFP run, a chain of ``edgeqat stage``
commands) has one run, tagged ``edgeqat.execution = <key>``: the first stage that runs creates
it, each later stage (another process, under DVC or KFP) finds it by that tag. Two stages that
start at once (parallel KFP tasks) may both create one: the earliest run wins and the other is
deleted.

Everything goes through one background thread, so a stage never waits for MLflow while it
works: the run is found or created there, then params, per-epoch metrics, tags and the system
metrics monitor follow in order. The stage waits only at its end (:meth:`LiveRun.close`,
bounded). The first MLflow error switches the live logging of this stage off with one line on
stderr; the stage itself carries on, and ``track`` completes the run from the files.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from edgeqat.io import log, redact
from edgeqat.lifecycle.tracking import NOTE_TAG, client_for, ensure_experiment, open_store  # noqa: I001 - quiets MLflow

EXECUTION_TAG = "edgeqat.execution"
STAGE_TAG = "edgeqat.stage."  # + stage name: running | finished in N s | failed
FAILED_STAGE_TAG = "edgeqat.failed_stage"
MAX_NOTE = 7500  # MLflow keeps 8000 characters of a tag; a longer description goes to an artifact
SYSTEM_METRICS_SECONDS = 10.0


def _safe(value: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.:" else "_" for c in value)[:250]


def _load_mlflow(uri: str) -> Any:
    """The client, made on the calling (main) thread: the worker must not import MLflow's modules
    while the step imports others of them (two threads in MLflow's circular imports see
    half-initialised modules). Its store is built here too (local only: no request is sent)."""
    import mlflow.entities  # noqa: F401
    import mlflow.utils.autologging_utils  # noqa: F401 - the system metrics monitor's logger
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor  # noqa: F401

    client = client_for(uri)
    client._tracking_client.store  # noqa: B018 - builds the REST or SQL store now
    return client


class Session:
    """Synchronous MLflow calls of the worker thread (one client, one experiment)."""

    def __init__(self, uri: str, experiment: str, root: Path, client: Any) -> None:
        open_store(uri, root)
        self.uri, self.client = uri, client
        self.experiment_id = ensure_experiment(self.client, experiment, uri, root)

    def find(self, execution: str) -> Any | None:
        """The execution's run (the earliest, if a race made two)."""
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{EXECUTION_TAG}` = '{_safe(execution)}'",
                                       order_by=["attributes.start_time ASC"], max_results=10)
        return min(runs, key=lambda r: (r.info.start_time, r.info.run_id)) if runs else None

    def create(self, execution: str, run_name: str, tags: Mapping[str, str]) -> Any:
        run = self.client.create_run(self.experiment_id, run_name=run_name,
                                     tags={**tags, EXECUTION_TAG: _safe(execution)})
        winner = self.find(execution)
        if winner is not None and winner.info.run_id != run.info.run_id:  # another stage created it first
            self.client.delete_run(run.info.run_id)
            return winner
        return run

    def get(self, run_id: str) -> Any:
        return self.client.get_run(run_id)


class LiveRun:
    """One stage's live logging into its execution's run (see the module's docstring).

    ``resolve(session)`` runs first on the worker: it returns the run (found or created), or None
    (nothing to log into); ``on_open(info)`` is told the run when there is one."""

    def __init__(self, *, uri: str, experiment: str, root: str | Path,
                 resolve: Callable[[Session], Any | None], on_open: Callable[[dict[str, str]], None] | None = None,
                 system_metrics: bool = True) -> None:
        self.uri, self.experiment, self.root = uri, experiment, Path(root)
        self.run_id: str | None = None
        self.info: dict[str, str] = {}
        self.off = False  # after the first error: nothing more is sent
        self._resolve, self._on_open, self._system = resolve, on_open, system_metrics
        self._session: Session | None = None
        self._monitor: Any = None
        self._steps: dict[str, int] = {}  # curve key -> last step logged (a repeated fine-tune continues)
        self._queue: queue.Queue = queue.Queue()
        self._opened = threading.Event()
        try:
            self._client = _load_mlflow(uri)
        except Exception as err:  # noqa: BLE001 - a bad URI: one line, never a failed stage
            self._give_up(err)
            self._opened.set()
            return
        self._thread = threading.Thread(target=self._work, name="edgeqat-live-run", daemon=True)
        self._thread.start()

    # --- the worker --------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            self._session = Session(self.uri, self.experiment, self.root, self._client)
            run = self._resolve(self._session)
            if run is not None:
                self.run_id = run.info.run_id
                self.info = {"run_id": self.run_id, "experiment_id": run.info.experiment_id,
                             "run_name": run.info.run_name or "", "tracking_uri": self.uri}
                if self._on_open is not None:
                    self._on_open(self.info)
                if self._system:
                    self._start_monitor()
        except Exception as err:  # noqa: BLE001 - unreachable, refused, misconfigured: one line, never a failed stage
            self._give_up(err)
        finally:
            self._opened.set()
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if isinstance(item, threading.Event):
                    item.set()
                elif not self.off and self.run_id is not None:
                    item(self._session.client, self.run_id)  # never redirect stdout here: the step's thread prints
            except Exception as err:  # noqa: BLE001
                self._give_up(err)
            finally:
                self._queue.task_done()

    def _give_up(self, err: BaseException) -> None:
        if not self.off:
            self.off = True
            text = " ".join(str(getattr(err, "message", None) or err).split())[:300]
            log(f"live MLflow logging off for this stage ({redact(self.uri)}): {type(err).__name__}: {redact(text)}")

    def _start_monitor(self) -> None:
        try:
            import psutil  # noqa: F401 - MLflow's monitor needs it
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
        except ImportError:
            return
        self._monitor = SystemMetricsMonitor(self.run_id, sampling_interval=SYSTEM_METRICS_SECONDS,
                                             resume_logging=True, tracking_uri=self.uri)
        self._monitor.start()

    def submit(self, fn: Callable[[Any, str], None]) -> None:
        """Queue ``fn(client, run_id)`` for the worker (in order, after the run is open)."""
        if not self.off:
            self._queue.put(fn)

    # --- what a stage logs --------------------------------------------------------------------

    def wait_open(self, timeout: float) -> str | None:
        """The run id once the worker found or created it (None: none, or not within ``timeout``)."""
        self._opened.wait(timeout)
        return None if self.off else self.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params the run does not hold yet (a key logged earlier keeps its value: MLflow's params
        are immutable, and a KFP task may see a path where DVC saw a name)."""
        def send(client: Any, run_id: str) -> None:
            from mlflow.entities import Param

            have = client.get_run(run_id).data.params
            todo = [Param(k, str(v)[:6000]) for k, v in sorted(params.items()) if k not in have]
            for i in range(0, len(todo), 100):
                client.log_batch(run_id, params=todo[i:i + 100])
        self.submit(send)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0, at: float | None = None) -> None:
        stamp = int((at if at is not None else time.time()) * 1000)

        def send(client: Any, run_id: str) -> None:
            from mlflow.entities import Metric

            batch = [Metric(k, float(v), stamp, step) for k, v in sorted(metrics.items())]
            for i in range(0, len(batch), 1000):
                client.log_batch(run_id, metrics=batch[i:i + 1000])
        if metrics:
            self.submit(send)

    def log_curve_points(self, points: Mapping[str, float], epoch: int, at: float, first_epoch: bool) -> None:
        """One epoch's points, step = epoch; a fine-tune that starts again under the same key
        (``first_epoch`` with points already logged: a recommend search) continues where the last
        one stopped."""
        by_step: dict[int, dict[str, float]] = {}
        for key, value in points.items():
            if first_epoch and key in self._steps:
                self._steps[key + "#offset"] = self._steps[key]
            step = epoch + self._steps.get(key + "#offset", 0)
            self._steps[key] = step
            by_step.setdefault(step, {})[key] = value
        for step, values in by_step.items():
            self.log_metrics(values, step=step, at=at)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        def send(client: Any, run_id: str) -> None:
            from mlflow.entities import RunTag

            client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in sorted(tags.items())])
        self.submit(send)

    @staticmethod
    def describe_now(client: Any, run_id: str, markdown: str, full_text: str | None = None,
                     artifact: str = "failure.txt") -> None:
        """Set the run's description (on the worker); a text too long for a tag goes whole into
        ``artifact`` and the description says so, so nothing is cut unannounced."""
        note = markdown
        if len(note) > MAX_NOTE:
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / artifact
                path.write_text(full_text or markdown)
                client.log_artifact(run_id, str(path))
            note = note[:MAX_NOTE - 200].rsplit("\n", 1)[0] + f"\n\n(the whole text is the artifact `{artifact}`)"
        client.set_tag(run_id, NOTE_TAG, note)

    def terminate(self, status: str) -> None:
        def send(client: Any, run_id: str) -> None:
            self._stop_monitor()
            client.set_terminated(run_id, status)
        self.submit(send)

    def _stop_monitor(self) -> None:
        if self._monitor is not None:
            monitor, self._monitor = self._monitor, None
            monitor.finish()

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far was sent (False: not within ``timeout``)."""
        if self.off and not hasattr(self, "_thread"):
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float) -> bool:
        """Send what is queued (within ``timeout``), stop the monitor and the thread."""
        self.submit(lambda client, run_id: self._stop_monitor())
        ok = self.flush(timeout)
        self._queue.put(None)
        if not ok and not self.off:
            log(f"live MLflow logging: {redact(self.uri)} did not take this stage's last updates within "
                f"{timeout:.0f} s; track logs them from the files")
        return ok

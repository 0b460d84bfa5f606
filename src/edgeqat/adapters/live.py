"""The live MLflow run, as the stage runner sees it: which execution a stage belongs to, and
what the stage logs while it works (the step itself knows nothing of MLflow).

An execution is named by who runs it:

- Kubeflow (kfp.local or a cluster): the KFP run (``kfp-<run id>``); the run is named after the
  KFP run;
- ``EDGEQAT_EXECUTION`` (set it to group commands yourself), named ``EDGEQAT_RUN_NAME``;
- DVC: the ``dvc repro`` / ``dvc exp run`` process (:func:`edgeqat.workspace.timings.execution_id`);
  under ``dvc exp run`` the run is named after the experiment (``DVC_EXP_NAME``), under
  ``edgeqat ci run`` after the trigger and commit (``EDGEQAT_RUN_NAME``);
- ``edgeqat stage <name>`` typed by hand: the run recorded in ``logs/mlflow_live.json`` (a side
  file, no DVC output) while it is still running and has not seen this stage yet; else a new one.

The first stage that runs creates the run; ``track`` and ``register`` only join one (track
completes it; with none, it logs the execution from the files as before). Each stage logs its
params as it starts, one point per epoch of every fine-tune (step = epoch), its status, the
system metrics, and on success the run metrics its outputs hold (:mod:`edgeqat.lifecycle.run_layout`).
A stage that raises marks the run FAILED, and its description names the stage and the whole
error. ``EDGEQAT_LIVE_RUN=0`` turns all of it off (the test suite does, except where it tests it).
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from edgeqat.config import Params
from edgeqat.workspace.stages import ALL, STAGES, Stage, stage_params

LIVE_ENV = "EDGEQAT_LIVE_RUN"
EXECUTION_ENV = "EDGEQAT_EXECUTION"
RUN_NAME_ENV = "EDGEQAT_RUN_NAME"
FLUSH_ENV = "EDGEQAT_LIVE_FLUSH_SECONDS"
LIVE_FILE = "logs/mlflow_live.json"


def enabled() -> bool:
    return os.environ.get(LIVE_ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def _flush_seconds() -> float:
    try:
        return float(os.environ.get(FLUSH_ENV, "30"))
    except ValueError:
        return 30.0


@dataclass
class Runtime:
    """What an orchestrator knows that params do not: where MLflow is, which run this is."""

    uri: str | None = None
    experiment: str | None = None
    kfp_run_id: str = ""
    kfp_run_name: str = ""
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Execution:
    key: str
    name: str
    tags: dict[str, str]
    by_hand: bool = False  # may continue the run recorded in logs/mlflow_live.json


def execution(params: Params, root: Path, runtime: Runtime) -> Execution:
    from edgeqat.workspace.provenance import PIPELINE_OUTPUTS, git_info
    from edgeqat.workspace.timings import execution_id

    git = git_info(root, ignore=PIPELINE_OUTPUTS)
    commit = git.get("git_commit", "unknown")[:8]
    default_name = f"{params.train.model}-{commit}"
    tags = {**git, **{k: str(v) for k, v in runtime.tags.items()}}
    if runtime.kfp_run_id:
        tags.update({"orchestrator": "kubeflow", "kfp_run_id": runtime.kfp_run_id, "kfp_run_name": runtime.kfp_run_name})
        return Execution(f"kfp-{runtime.kfp_run_id}", runtime.kfp_run_name or default_name, tags)
    named = os.environ.get(RUN_NAME_ENV) or ""
    if os.environ.get(EXECUTION_ENV):
        return Execution(os.environ[EXECUTION_ENV], named or default_name, tags)
    dvc = execution_id()
    if dvc is not None:
        exp = os.environ.get("DVC_EXP_NAME") or ""
        tags["orchestrator"] = "dvc"
        if exp:
            tags["dvc_experiment"] = exp
        return Execution(dvc, named or exp or default_name, tags)
    return Execution(f"cli-{uuid.uuid4().hex[:12]}", named or default_name, tags, by_hand=True)


def _dotted(params: Params, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(params, section), name)


def _status_note(tags: Mapping[str, str], table: tuple[Stage, ...], title: str = "edgeqat execution in progress") -> str:
    from edgeqat.lifecycle.live_run import STAGE_TAG

    rows = [f"| {s.name} | {tags[STAGE_TAG + s.name]} |" for s in table if STAGE_TAG + s.name in tags]
    return "\n".join([f"**{title}**", "", "| stage | status |", "|---|---|", *rows])


class StageWatch:
    """One stage's live logging: ``start()`` before the step, then ``succeeded`` or ``failed``,
    then ``close()``. Every method is a no-op when live logging is off or MLflow is unreachable."""

    def __init__(self, stage: Stage, params: Params, root: Path, runtime: Runtime | None = None,
                 table: tuple[Stage, ...] = STAGES) -> None:
        self.stage, self.params, self.root, self.table = stage, params, root, table
        self.runtime = runtime or Runtime()
        self.live: Any = None
        self.execution: Execution | None = None
        self.joins_only = stage.sections == (ALL,)  # track, register: complete or annotate a run, never start one
        self.started = time.monotonic()

    # --- set-up -------------------------------------------------------------------------------

    def start(self) -> "StageWatch":
        if not enabled():
            return self
        try:
            self._start()
        except Exception as err:  # noqa: BLE001 - live logging never stops a stage
            from edgeqat.io import log

            log(f"live MLflow logging off for this stage: {type(err).__name__}: {err}")
            self.live = None
        return self

    def _start(self) -> None:
        from edgeqat.lifecycle.tracking import tracking_uri

        if self.runtime.kfp_run_id and not (self.runtime.uri or os.environ.get("MLFLOW_TRACKING_URI")):
            return  # a KFP task's scratch folder is no store to keep a run in
        uri = self.runtime.uri or tracking_uri(self.root)
        experiment = self.runtime.experiment or self.params.track.experiment
        self.execution = ex = execution(self.params, self.root, self.runtime)
        from edgeqat.lifecycle.live_run import STAGE_TAG, LiveRun

        def resolve(session: Any) -> Any:
            if ex.by_hand:
                self._continue_recorded(session, ex, STAGE_TAG)
            run = session.find(ex.key)
            if run is None and not self.joins_only:
                run = session.create(ex.key, ex.name, ex.tags)
            return run

        self.live = LiveRun(uri=uri, experiment=experiment, root=self.root, resolve=resolve, on_open=self._remember,
                            system_metrics=not self.joins_only)
        self.live.set_tags({STAGE_TAG + self.stage.name: "running since " + _now()})
        if not self.joins_only:
            self.live.log_params({k: _dotted(self.params, k) for k in stage_params(self.stage)})
        self._update_note()

    def _continue_recorded(self, session: Any, ex: Execution, stage_tag: str) -> None:
        """By hand: keep adding to the run of the last `edgeqat stage` commands while it runs
        and has not seen this stage (a stage run again starts a new execution)."""
        from edgeqat.io import read_json

        path = self.root / LIVE_FILE
        try:
            rec = read_json(path) if path.is_file() else {}
            run = session.get(rec["run_id"]) if rec.get("run_id") and rec.get("execution") else None
        except Exception:  # noqa: BLE001 - a stale or foreign record: start afresh
            return
        if run is not None and run.info.status == "RUNNING" and run.info.experiment_id == session.experiment_id \
                and stage_tag + self.stage.name not in run.data.tags:
            ex.key = rec["execution"]

    def _remember(self, info: dict[str, str]) -> None:
        from edgeqat.io import write_json
        from edgeqat.lifecycle.tracking import stored_uri

        if self.execution is not None:
            write_json(self.root / LIVE_FILE, {**info, "tracking_uri": stored_uri(info["tracking_uri"]),
                                              "execution": self.execution.key, "stage": self.stage.name})

    def _update_note(self) -> None:
        """While the run is running, its description is the table of its stages' status."""
        table = self.table

        def send(client: Any, run_id: str) -> None:
            from edgeqat.lifecycle.tracking import NOTE_TAG

            run = client.get_run(run_id)
            if run.info.status == "RUNNING":
                client.set_tag(run_id, NOTE_TAG, _status_note(run.data.tags, table))
        self.live.submit(send)

    # --- while the step works -----------------------------------------------------------------

    def epoch(self, fine_tune: str, epoch: int, logs: Mapping[str, float]) -> None:
        """A listener for :mod:`edgeqat.workspace.observe`: the epoch's points, at the moment it ended."""
        from edgeqat.lifecycle.run_layout import curve_points

        if self.live is not None:  # epoch 1 again: the same fine-tune once more (a recommend search)
            self.live.log_curve_points(curve_points(self.stage.name, fine_tune, logs), epoch, time.time(), epoch == 1)

    def run_for_step(self) -> dict[str, Any]:
        """What a step that completes the run (track) receives: the run, if one is live."""
        run_id = self.live.wait_open(_flush_seconds()) if self.live is not None else None
        ex = self.execution or execution(self.params, self.root, self.runtime)  # named even when not live
        return {"run_id": run_id, "run_name": ex.name, "tags": {**ex.tags, "edgeqat.execution": ex.key}}

    # --- the end ------------------------------------------------------------------------------

    def succeeded(self, paths: Mapping[str, Path]) -> None:
        if self.live is None:
            return
        from edgeqat.lifecycle.live_run import STAGE_TAG
        from edgeqat.lifecycle.run_layout import from_outputs

        self.live.log_metrics(from_outputs({p.name: paths[p.name] for p in self.stage.outputs if p.name in paths}))
        self.live.set_tags({STAGE_TAG + self.stage.name: f"finished in {time.monotonic() - self.started:.1f} s"})
        self._update_note()

    def failed(self, err: BaseException) -> None:
        """The run FAILED (KILLED when interrupted); its description: the stage and the whole error."""
        if self.live is None:
            return
        from edgeqat.io import redact
        from edgeqat.lifecycle.live_run import FAILED_STAGE_TAG, STAGE_TAG
        from edgeqat.lifecycle.tracking import NOTE_TAG

        interrupted = isinstance(err, (KeyboardInterrupt, SystemExit))
        seconds = time.monotonic() - self.started
        what = "was interrupted" if interrupted else "failed"
        reason = redact(f"{type(err).__name__}: {err}".rstrip(": "))
        head = f"**Stage `{self.stage.name}` {what}** after {seconds:.1f} s:\n\n```\n{reason}\n```"
        self.live.set_tags({STAGE_TAG + self.stage.name: f"{what} after {seconds:.1f} s", FAILED_STAGE_TAG: self.stage.name})
        table = self.table
        stage_name = self.stage.name

        def send(client: Any, run_id: str) -> None:
            run = client.get_run(run_id)
            before = _status_note(run.data.tags, table, "The execution's stages") if run.info.status == "RUNNING" \
                else run.data.tags.get(NOTE_TAG, "")
            live.describe_now(client, run_id, f"{head}\n\n---\n\n{before}".rstrip(),
                              full_text=f"stage {stage_name} {what}:\n{reason}\n")
        live = self.live
        live.submit(send)
        live.terminate("KILLED" if interrupted else "FAILED")

    def close(self) -> None:
        if self.live is not None:
            self.live.close(_flush_seconds())


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%H:%M:%S UTC")

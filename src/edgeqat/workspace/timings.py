"""Wall times and other run-varying figures, kept out of everything DVC hashes.

A stage's outputs must be a function of its inputs, so that re-running it with the same
inputs leaves ``dvc.lock`` (and git) untouched and DVC skips the stages after it. Wall
times and latencies measured on this host vary from run to run, so the stage runner writes
them to ``logs/timings/<stage>.json`` beside the outputs: never a DVC output, read by the
report and logged to MLflow by ``track``.

Each record names its *execution*: all the stages of one ``dvc repro`` share the id of that
``dvc`` process, so ``track`` can give the MLflow run the real start time of the execution
even when DVC skipped some of its stages.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeqat.io import read_json, write_json

TIMINGS_DIR = "logs/timings"


def _proc_stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time in clock ticks) of a Linux process, from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces
    return int(fields[1]), fields[19]


def _cmdline(pid: int) -> list[str]:
    try:
        return [a for a in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0") if a]
    except OSError:
        return []


def execution_id() -> str | None:
    """The id of the ``dvc`` process that runs this stage (``dvc-<pid>-<start>``), else None.

    DVC runs each stage command in a shell under its own process and sets ``DVC_STAGE``;
    the first ancestor whose command line runs dvc is the execution."""
    if not os.environ.get("DVC_STAGE"):
        return None
    pid = os.getppid()
    for _ in range(8):
        stat = _proc_stat(pid)
        if stat is None:
            return None
        argv = _cmdline(pid)
        if any(Path(a).name == "dvc" or a.endswith("/dvc/__main__.py") for a in argv[:3]) or argv[1:3] == ["-m", "dvc"]:
            return f"dvc-{pid}-{stat[1]}"
        pid = stat[0]
        if pid <= 1:
            return None
    return None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def write_stage_timings(root: str | Path, stage: str, started: datetime, ended: datetime,
                        extra: dict[str, Any] | None = None, path: str | Path | None = None) -> Path:
    record = {
        "stage": stage,
        "execution": execution_id(),
        "started_at": started.isoformat(timespec="milliseconds"),
        "ended_at": ended.isoformat(timespec="milliseconds"),
        "seconds": round((ended - started).total_seconds(), 2),
        **(extra or {}),
    }
    return write_json(Path(path) if path else Path(root) / TIMINGS_DIR / f"{stage}.json", record)


def read_record(path: str | Path) -> dict[str, Any] | None:
    """One stage's timings record, or None (missing or unreadable: they are only timings)."""
    try:
        rec = read_json(path) if Path(path).is_file() else None
    except Exception:  # noqa: BLE001 - a damaged timing file must never fail a stage
        return None
    return rec if isinstance(rec, dict) and "started_at" in rec else None


def read_timings(folder: str | Path) -> dict[str, dict[str, Any]]:
    """Every stage's record in ``folder`` (unreadable ones skipped)."""
    out = {}
    for f in sorted(Path(folder).glob("*.json")):
        rec = read_record(f)
        if rec is not None:
            out[rec.get("stage", f.stem)] = rec
    return out


def execution_window(records: dict[str, dict[str, Any]], execution: str | None) -> tuple[datetime, datetime] | None:
    """(first start, last end) of the stages of one execution: ``execution`` if given, else the
    execution of the most recently finished stage."""
    if not records:
        return None
    if execution is None or not any(r.get("execution") == execution for r in records.values()):
        execution = max(records.values(), key=lambda r: r["ended_at"]).get("execution")
    mine = [r for r in records.values() if r.get("execution") == execution]
    return (min(datetime.fromisoformat(r["started_at"]) for r in mine),
            max(datetime.fromisoformat(r["ended_at"]) for r in mine))


# --- host latency kept with the results ------------------------------------------------------
# DVC skips evaluate in a fresh clone (its outputs are committed), so the clone has no timings.
# evaluate therefore also keeps reports/host_latency.json: committed with the results, never a
# DVC output, and rewritten only when a measured model or the measuring settings change, so a
# forced re-run of the same models leaves it (and git) untouched. It is in the shape of the
# evaluate timings record (what edgeqat.reporting.tables.with_latency reads), plus what it measured.
HOST_LATENCY = "reports/host_latency.json"  # the host_latency port's path (a label here: evaluate needs no table)


def host_latency_record(measured: dict[str, Any], shas: dict[str, str], settings: dict[str, Any],
                        previous: str | Path | None) -> dict[str, Any]:
    """This run's latency record, or the previous one when it measured the same model files
    (same sha256 each) with the same settings: then the committed figures stand."""
    fresh = {**measured, "settings": settings,
             **{n: {**measured[n], "sha256": s} for n, s in shas.items() if isinstance(measured.get(n), dict)}}
    if previous is not None and Path(previous).is_file():
        try:
            old = read_json(previous)
        except Exception:  # noqa: BLE001 - a damaged record is simply measured again
            old = None
        if isinstance(old, dict) and old.get("settings") == settings and {
                n: (old.get(n) or {}).get("sha256") for n in shas} == shas and \
                {k for k, v in old.items() if isinstance(v, dict) and "sha256" in v} == set(shas):
            return old
    return fresh


def record_label(path: str | Path | None) -> str | None:
    """How a committed table names the host latency record at ``path``: its place in the
    project (the same in every clone), or None when there is no record there."""
    if path is None or not Path(path).is_file():
        return None
    return HOST_LATENCY if Path(path).as_posix().endswith(HOST_LATENCY) else Path(path).name


def latest_latency(evaluate_timings: str | Path, host_latency: str | Path) -> dict[str, Any] | None:
    """Host latency for the table: this clone's last evaluate run (its timings record), else
    the record committed with the results (``reports/host_latency.json``), else None."""
    timed = read_record(evaluate_timings)
    if timed:
        return timed
    path = Path(host_latency)
    try:
        rec = read_json(path) if path.is_file() else None
    except Exception:  # noqa: BLE001 - only figures for the table
        return None
    return {**rec, "source": HOST_LATENCY} if isinstance(rec, dict) else None

"""Reading what a kfp.local run did from the runner's own output: its task folders and its log.
kfp.local's conditions have had bugs (kubeflow/pipelines PR #13313), so the gate's tests assert
which tasks actually ran rather than trusting the run's status."""

from __future__ import annotations

import json
import re
from pathlib import Path

from edgeqat.workspace.stages import ALL, STAGES

# The registered (and so validated) variant on a required device it cannot run on: `mixed` keeps
# its last layer float (WITH_MIXED), which an int8-only TPU cannot run. preflight passes it (it
# judges the QAT family as the int8 graph before any training), so the gate fails at validate.
WITH_MIXED = {"convert.variants": ["fp32", "ptq_int8", "qat_int8", "mixed"], "qat.keep_float": ["@last"]}
FAILING = {**WITH_MIXED, "validate.model": "mixed", "register.variant": "mixed", "validate.required_devices": ["coral_edgetpu"]}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def task_logs(stderr: str) -> dict[str, str]:
    """Each task's streamed log, from kfp.local's output (it runs one task at a time)."""
    plain = ANSI.sub("", stderr)
    starts = list(re.finditer(r"Executing task '([a-z_-]+)'", plain))
    return {m.group(1): plain[m.end(): starts[i + 1].start() if i + 1 < len(starts) else len(plain)]
            for i, m in enumerate(starts)}


def ran(job: Path) -> set[str]:
    """Tasks that finished in this run, from the runner's own output folder: the executor writes
    executor_output.json last; a task the gate skipped (or the cache answered) has no folder."""
    return {d.name for d in job.iterdir() if (d / "executor_output.json").is_file()}


def assert_gate_failed(proc, result, mlflow_uri: str) -> None:
    """validate and track ran, register did not, the MLflow run is FAILED: from the runner's folders."""
    from mlflow.tracking import MlflowClient

    assert proc.returncode == 1, proc.stderr[-3000:]  # a failed gate: an outcome, not bad input (2)
    assert "a required device failed" in proc.stderr.strip().splitlines()[-1]
    job = Path(result["outputs"])
    done = ran(job)
    assert "register" not in done and not (job / "register").exists()  # never started
    # validate and what reads its section ran again, and every task that ran says so in its own
    # log (which others kfp.local's cache answered depends on the runner: not pinned here)
    assert {s.name for s in STAGES if "validate" in s.sections or s.sections == (ALL,)} - {"register"} <= done, done
    logs = task_logs(proc.stderr)
    assert set(logs) == done and all(f"Task '{t}' finished with status SUCCESS" in logs[t] for t in done)
    summary = json.loads((job / "validate" / "summary").read_text())
    assert summary["validation_passed"] is False and summary["required_devices"] == ["coral_edgetpu"]
    assert summary["devices"]["coral_edgetpu"]["passed"] is False
    mlrun = MlflowClient(tracking_uri=mlflow_uri).get_run(result["run_id"])
    assert mlrun.info.status == "FAILED" and mlrun.data.tags["edgeqat.gate"] == "failed"
    assert result["validation_passed"] is False and result["registered"] is False

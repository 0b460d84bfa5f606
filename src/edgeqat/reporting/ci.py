"""The CI run's Markdown report (``ci-report.md``, the job summary, the commit comment): pure
text from what the run found. Running things (git, dvc, the registry) is
:mod:`edgeqat.adapters.ci`'s job; it hands the results here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from edgeqat.reporting.tables import summary_markdown


@dataclass
class CiRun:
    """What a CI run did, as its report tells it."""

    stages_run: list[str] = field(default_factory=list)
    refreshed: list[str] = field(default_factory=list)
    refresh_note: str = ""  # why --refresh-data had nothing to refresh
    pulled: bool = False
    pushed: bool = False
    seconds: float = 0.0
    gate_failure: str = ""


def metrics_diff_text(base: str, table: str, returncode: int, error: str) -> str:
    """The `dvc metrics diff BASE --md` section: its table, that nothing changed, or why it failed."""
    rows = [line for line in table.splitlines()[2:] if line.strip()]
    if returncode != 0:
        return f"`dvc metrics diff {base}` failed: {error.strip()[-500:]}"
    return table if rows else f"No metric changed against `{base}`."


def _tag_row(label: str, v: Optional[dict[str, Any]], devices: list[str]) -> str:
    if v is None:
        return f"| {label} | – | – | – | – | – | {' | '.join('–' for _ in devices)} |"
    t = v["tags"]

    def num(k: str, fmt: str) -> str:
        x = t.number(k)
        return "–" if x is None else format(x, fmt)

    def verdict(d: str) -> str:
        found = t.verdict(d)
        return "–" if found is None else "PASS" if found.passed else "FAIL"

    cells = [f"{label} (v{v['version']})", num("accuracy", ".4f"), num("accuracy_drop", "+.4f"),
             num("size_bytes", ",.0f"), num("gzip_bytes", ",.0f"), "yes" if t.gates_passed else "no"]
    return "| " + " | ".join(cells + [verdict(d) for d in devices]) + " |"


def versions_table(challenger: tuple[str, Optional[dict[str, Any]]],
                   champion: tuple[str, Optional[dict[str, Any]]]) -> str:
    """Two registered versions side by side, each given as (alias, its version record with
    ``version`` and ``tags`` read through the version-tag schema, a
    :class:`~edgeqat.lifecycle.version_tags.VersionTags`; or None): accuracy, size, gates and
    every device's verdict."""
    versions = [v for _, v in (challenger, champion) if v]
    devices = sorted({d for v in versions for d in v["tags"].devices or ()})
    head = "| | accuracy | drop vs fp32 | size (bytes) | gzip (bytes) | gates | " + " | ".join(devices) + " |"
    sep = "|" + "---|" * (6 + len(devices))
    lines = [head.replace("|  |", "|"), sep, _tag_row(*challenger, devices), _tag_row(*champion, devices)]
    if champion[1] is None:
        lines.append("\nNo champion yet: promote one with `edgeqat promote VERSION` or in the MLflow UI.")
    return "\n".join(lines)


def ci_markdown(run: CiRun, *, trigger: str, commit: str, base: str, metrics: str,
                summary: Optional[dict[str, Any]] = None, registered: Optional[tuple[str, str]] = None,
                recommended: tuple[tuple[str, str], ...] = ()) -> str:
    """The whole report of a run ``trigger`` started at ``commit`` (short; '?' when unknown),
    compared with ``base``. ``metrics``: :func:`metrics_diff_text`; ``summary``: summary.json with
    its host latency, when there is one; ``registered``: (model name, :func:`versions_table`) of
    the pipeline's model and ``recommended`` the same for each per-device model."""
    ran = ", ".join(run.stages_run) if run.stages_run else "none (everything up to date)"
    parts = [f"# edgeqat CI: {trigger} at `{commit}`", "",
             f"Stages run: {ran}. Data refreshed: {', '.join(run.refreshed) or 'no'}"
             f"{f' ({run.refresh_note})' if run.refresh_note else ''}. "
             f"DVC remote: {'pulled' if run.pulled else 'none'}{', pushed' if run.pushed else ''}. "
             f"Took {run.seconds:.0f} s.", ""]
    if run.gate_failure:
        kind = "Device gate" if "required device" in run.gate_failure else "Gate"
        parts += [f"**{kind} FAILED**: {run.gate_failure}", ""]
    parts += [f"## Metrics against `{base}`", "", metrics, ""]
    if summary is not None:
        parts += ["## Results", "", summary_markdown(summary).replace("# edgeqat summary\n", "").strip(), ""]
    if registered:
        name, table = registered
        parts += [f"## Challenger vs champion: `{name}`", "", table, ""]
        for name, table in recommended:
            parts += [f"### `{name}`", "", table, ""]
    return "\n".join(parts).rstrip() + "\n"


def kubeflow_markdown(trigger: str, commit: str, host: str, run_id: str) -> str:
    """The report of a run handed to a Kubeflow cluster: where it went (the rest happens there)."""
    return (f"# edgeqat CI: {trigger} at `{commit}`\n\nSubmitted to Kubeflow at {host}: "
            f"run `{run_id}` in experiment `edgeqat`. Its MLflow run, registration and report "
            "happen in the cluster.\n")

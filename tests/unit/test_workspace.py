"""The Workspace: every named port of the stage table resolved under one root. Steps that read
the whole workspace (track, register) read it by port name, so a port moved in the table is
followed and a name the stage does not declare fails instead of reading nothing; the stage
runner writes the metrics a step returns."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from edgeqat.config import Params
from edgeqat.workspace.stages import PREPARED, STAGES, Stage, UnknownPort, Workspace, metrics, stage

SRC = Path(__file__).resolve().parents[2]


def _moved(table: tuple[Stage, ...], name: str, path: str) -> tuple[Stage, ...]:
    """The table with port ``name`` at another path, wherever it is read or written."""
    def move(ports):
        return tuple(replace(p, path=path) if p.name == name else p for p in ports)

    return tuple(replace(s, inputs=move(s.inputs), outputs=move(s.outputs)) for s in table)


def test_every_port_resolves_to_its_table_path_and_an_unknown_name_fails(tmp_path):
    ws = Workspace(tmp_path)
    for s in STAGES:
        for p in (*s.inputs, *s.outputs):
            assert ws.path(p.name) == tmp_path / p.path
    assert ws.path("summary") == tmp_path / "reports" / "summary.json"
    with pytest.raises(UnknownPort, match=r"no port 'sumary' in the stage table \(ports: .*summary"):
        ws.path("sumary")
    assert Workspace(tmp_path, overrides={"summary": tmp_path / "x.json"}).path("summary") == tmp_path / "x.json"


def test_a_stage_workspace_resolves_only_that_stages_ports(tmp_path):
    """What the runner gives track: a file it does not declare (no DVC dep) cannot be read."""
    ws = Workspace(tmp_path, stage=stage("track"))
    assert ws.path("summary") == tmp_path / "reports" / "summary.json"
    with pytest.raises(UnknownPort, match="no port 'qat_model' in stage track"):
        ws.path("qat_model")  # an output of qat that track does not list among its inputs


def test_track_source_reads_only_ports_its_stage_declares():
    """Every ws.path("...") / port name track and register use is one of their stage's ports."""
    for name in ("track", "register"):
        text = (SRC / "src" / "edgeqat" / "steps" / f"{name}.py").read_text()
        used = set(re.findall(r'ws\.path\("([a-z0-9_]+)"\)', text))
        used |= set(re.findall(r'^\S.*= \(?\("([a-z0-9_]+)", ', text, re.M))  # (port, ...) constants
        declared = Workspace(Path("."), stage=stage(name)).ports()
        assert used and used <= set(declared), (name, used - set(declared))


def test_track_follows_a_moved_summary_instead_of_logging_an_empty_one(tmp_path):
    """If the summary's path changes in the table, track reads it there: its headline metrics and
    fingerprint come from the moved file (before the Workspace, track read reports/summary.json
    by hand and found nothing)."""
    from edgeqat.steps.track import fingerprint, run_metrics

    table = _moved(STAGES, "summary", "results/validation.json")
    ws = Workspace(tmp_path, table, stage=stage("track", table))
    assert ws.path("summary") == tmp_path / "results" / "validation.json"
    summary = {"validated_model": "qat_int8", "variants": {"qat_int8": {"accuracy": 0.9, "size_bytes": 2048}},
               "devices": {"rpi4": {"passed": True}}, "required_devices": ["rpi4"], "passed": True}
    ws.path("summary").parent.mkdir(parents=True)
    ws.path("summary").write_text(json.dumps(summary))
    got = run_metrics(ws)
    assert got and any(k.startswith("headline/") for k in got), got
    before = fingerprint(Params(), ws, {})
    ws.path("summary").write_text(json.dumps({**summary, "passed": False}))
    assert fingerprint(Params(), ws, {}) != before  # the moved file is part of the execution's identity


def _meta(root: Path) -> Path:
    prepared = root / "prepared-in"
    prepared.mkdir()
    (prepared / "meta.json").write_text(json.dumps({"class_names": ["a", "b", "c"], "sizes": {"train": 3}}))
    return prepared


def test_the_runner_writes_the_metrics_the_step_returns(tmp_path):
    """The toy stage's step is given no metrics path; metrics/toy.json holds what it returned,
    without the run-varying timings."""
    from edgeqat.adapters.runner import run_stage
    from toy_stage import TABLE

    result = run_stage("toy", Params(), tmp_path, table=TABLE, overrides={"prepared": _meta(tmp_path)})
    ws = Workspace(tmp_path, TABLE)
    assert json.loads(ws.path("toy_metrics").read_text()) == result == {"classes": 3}
    assert "started_at" in json.loads(ws.path("toy_timings").read_text())


def peek(cfg, *, workspace: Workspace) -> dict:
    """A step that reads its workspace by port name (as track does), then reaches past it."""
    classes = len(json.loads((workspace.path("prepared") / "meta.json").read_text())["class_names"])
    workspace.path("fp32_model")
    return {"classes": classes}


def test_a_workspace_step_gets_its_stages_ports_and_no_others(tmp_path):
    from edgeqat.adapters.runner import run_stage

    s = Stage("peek", f"{__name__}:peek", ("prepare",), inputs=(PREPARED,), outputs=(metrics("peek"),), workspace=True)
    with pytest.raises(UnknownPort, match="no port 'fp32_model' in stage peek"):
        run_stage(s, Params(), tmp_path, table=(s,), overrides={"prepared": _meta(tmp_path)})
    assert not (tmp_path / "metrics" / "peek.json").exists()  # a failed step leaves no metrics


def test_no_adapter_branches_on_a_stage_name():
    """What differs per stage is a field of Stage (run_tags, pipeline_result, kfp_only_outputs)."""
    files = [*(SRC / "src" / "edgeqat" / "adapters").rglob("*.py"), *(SRC / "pipelines").glob("*.py")]
    found = [f"{f.relative_to(SRC)}:{i}" for f in files for i, line in enumerate(f.read_text().splitlines(), 1)
             if re.search(r"""\b(stage|s)\.name (==|!=|in) ["'(]""", line)]
    assert not found, found

"""Run one stage of the table in a workspace: the one call path shared by the CLI (what DVC
runs) and the KFP components, so a step receives the same configs and paths either way."""

from __future__ import annotations

import importlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from edgeqat.config import Params
from edgeqat.workspace.stages import ALL, STAGES, Stage, Workspace
from edgeqat.workspace.timings import write_stage_timings

RECORD_ENV = "EDGEQAT_RECORD_CONFIGS"  # a folder: each stage writes the configs it was given (tests)


def step_function(stage: Stage) -> Callable[..., Any]:
    module, _, func = stage.step.partition(":")
    return getattr(importlib.import_module(module), func)


def step_configs(stage: Stage, params: Params) -> tuple[Any, dict[str, Any]]:
    """The first argument and the config keywords a stage's step receives (its single keys too)."""
    if stage.sections == (ALL,):
        return params, {}
    first, *others = stage.sections
    kwargs = {s: getattr(params, s) for s in others}
    for key in stage.keys:
        section, name = key.split(".")
        kwargs[name] = getattr(getattr(params, section), name)
    return getattr(params, first), kwargs


def stage_workspace(stage: Stage, root: Path, table: tuple[Stage, ...],
                    overrides: Mapping[str, str | Path | None] | None = None) -> Workspace:
    """The stage's ports under ``root``, with the paths given instead of the table's."""
    return Workspace(root, table, stage, {k: Path(v) for k, v in (overrides or {}).items() if v is not None})


def port_paths(ws: Workspace) -> dict[str, Path]:
    return {name: ws.path(name) for name in ws.ports()}


def input_paths(stage: Stage, params: Params, root: Path, paths: Mapping[str, Path]) -> dict[str, Path]:
    """What the stage reads: its input ports and the files its params name (``prepare.path``)."""
    found = {p.name: paths[p.name] for p in stage.inputs}
    for fp in stage.file_params:
        section, key = fp.key.split(".")
        value = getattr(getattr(params, section), key, None)
        if value:
            found[fp.key] = root / value
    return found


def check_outputs(stage: Stage, params: Params, root: Path, paths: Mapping[str, Path],
                  protect: Mapping[str, Path] | None = None) -> None:
    """Before the step runs: no output may replace the workspace, an input, or a folder that
    no stage wrote (:func:`edgeqat.io.check_output`); ``protect``: more files to keep (params)."""
    from edgeqat.io import check_output

    inputs = {**input_paths(stage, params, root, paths), **(protect or {})}
    for port in stage.outputs:
        dest = paths[port.name]
        known = dest.resolve() == (root / port.path).resolve()  # the table's path: a DVC out of this stage
        check_output(dest, what=f"stage {stage.name}: output {port.name}", is_dir=port.is_dir, inputs=inputs,
                     workspace=root, known=known)


def _record(stage: Stage, first: Any, configs: dict[str, Any]) -> None:
    folder = os.environ.get(RECORD_ENV)
    if not folder:
        return
    from edgeqat.io import write_json

    dump = {"first": json.loads(first.model_dump_json()),
            **{k: json.loads(v.model_dump_json()) if hasattr(v, "model_dump_json") else v for k, v in configs.items()}}
    write_json(Path(folder) / f"{stage.name}.json", dump)


def _write_returned(stage: Stage, paths: Mapping[str, Path], result: Any) -> None:
    """The metrics the step returned -> its stage's returned port (metrics/<stage>.json)."""
    from edgeqat.io import write_json

    for port in stage.outputs:
        if port.returned:
            write_json(paths[port.name], result)


def _watched(stage: Stage, params: Params, root: Path, paths: Mapping[str, Path], table: tuple[Stage, ...],
             runtime: Any, first: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The step call, watched: live MLflow logging around it, every epoch heard, a failure recorded.
    Returns the step's metrics (written to its returned port first) and the run-varying figures
    it returned under ``timings``."""
    import inspect

    from edgeqat.adapters.live import StageWatch
    from edgeqat.workspace.observe import observing

    fn = step_function(stage)
    watch = StageWatch(stage, params, root, runtime, table).start()
    try:
        if "live_run" in inspect.signature(fn).parameters:
            kwargs["live_run"] = watch.run_for_step()
        with observing(watch.epoch):
            result = fn(first, **kwargs) or {}
        timings = result.pop("timings", {}) if isinstance(result, dict) else {}
        _write_returned(stage, paths, result)
        watch.succeeded(paths)
        return result, timings
    except BaseException as err:
        watch.failed(err)
        raise
    finally:
        watch.close()


def run_stage(stage: Stage | str, params: Params, root: str | Path = ".", *,
              overrides: Mapping[str, str | Path | None] | None = None, extra: Mapping[str, Any] | None = None,
              table: tuple[Stage, ...] = STAGES, protect: Mapping[str, Path] | None = None,
              runtime: Any = None) -> dict[str, Any]:
    """Call the stage's step with its configs and the workspace paths of its ports; write the
    run-varying figures it returns under ``timings`` to its timings file. Returns the metrics.

    Outputs are checked first (:func:`check_outputs`); an output folder written away from
    the table's path gets :data:`edgeqat.io.OUTPUT_MARKER`, so the next run may replace it.
    The dict the step returns (less ``timings``) is written to the stage's returned port
    (``metrics/<stage>.json``). A stage marked ``workspace`` gets its :class:`Workspace` as
    ``workspace=`` instead of one keyword per port.
    Meanwhile the stage logs to its execution's live MLflow run (:mod:`edgeqat.adapters.live`;
    ``runtime``: what KFP says about it); a step that takes ``live_run`` (track) gets that run."""
    from edgeqat.workspace.stages import stage as find

    stage = find(stage, table) if isinstance(stage, str) else stage
    root = Path(root)
    ws = stage_workspace(stage, root, table, overrides)
    paths = port_paths(ws)
    check_outputs(stage, params, root, paths, protect)
    first, kwargs = step_configs(stage, params)
    if stage.workspace:
        kwargs["workspace"] = ws
    else:
        kwargs.update({p.step_arg: paths[p.name] for p in (*stage.inputs, *stage.outputs) if p.step_arg})
    kwargs.update(extra or {})
    keys = {k.split(".")[1] for k in stage.keys}
    _record(stage, first, {k: v for k, v in kwargs.items() if hasattr(v, "model_dump_json") or k in keys})
    started = datetime.now(timezone.utc)
    result, timings = _watched(stage, params, root, paths, table, runtime, first, kwargs)
    from edgeqat.io import mark_output

    for port in stage.outputs:
        if port.is_dir and paths[port.name].resolve() != (root / port.path).resolve():
            mark_output(paths[port.name], stage.name)
    timing_port = f"{stage.name}_timings"
    if timing_port in paths:
        write_stage_timings(root, stage.name, started, datetime.now(timezone.utc), timings, paths[timing_port])
    return result

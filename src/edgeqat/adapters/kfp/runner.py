"""What every generated KFP component body calls: lay the input artifacts out as the DVC
workspace, run the stage there (the same :func:`~edgeqat.adapters.runner.run_stage` the CLI
runs), and hand the outputs back as artifacts.

A component receives the keys of its params sections as ``<section>__<key>`` parameters;
they become typed configs here (errors name the dotted key). A stage that receives every
section (track, register) gets the whole :class:`~edgeqat.config.Params` the pipeline was
started with, as one JSON document: the params task (:func:`run_params`) validates the
pipeline's parameters once, the way the CLI and CI load a params file
(:mod:`edgeqat.adapters.run_params`), and hands that document on.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

from edgeqat.adapters.kfp.codegen import PARAMS_JSON, takes_all
from edgeqat.adapters.kfp.params import dotted_name, from_pipeline_values, kinds, section_config
from edgeqat.adapters.run_params import checked, parse_run_params
from edgeqat.config import Params
from edgeqat.errors import ConfigError
from edgeqat.workspace.stages import STAGES, Stage, Workspace

PIPELINE_PARAMETERS = "pipeline parameters"


def run_params(values: Mapping[str, Any]) -> str:
    """The params task's body: the pipeline's parameters (``<section>__<key>``, KFP-encoded) as
    one params document, validated and checked as a params file is, in JSON."""
    k = kinds()
    params = from_pipeline_values({name: v for name, v in values.items() if name in k}, PIPELINE_PARAMETERS)
    return checked(params, PIPELINE_PARAMETERS).model_dump_json()


def params_from_json(text: str, source: str) -> Params:
    """The inverse of :func:`run_params`, for the stages that take the whole params."""
    try:
        raw = json.loads(text)
    except (TypeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{source}: {PARAMS_JSON} is not a JSON params document ({err})") from None
    return parse_run_params(raw, source)


def params_of(stage: Stage, values: Mapping[str, Any]) -> Params:
    """The stage's configs from its component arguments: every section validated on its own,
    or all of them together (cross-section rules included) for a stage that receives them all."""
    if takes_all(stage):
        return params_from_json(values[PARAMS_JSON], f"{stage.name} component")
    k = kinds()
    given = {name: v for name, v in values.items() if name in k}
    by_section: dict[str, dict[str, Any]] = {}
    for name, v in given.items():
        section, key = dotted_name(name).split(".")
        by_section.setdefault(section, {})[key] = v
    configs = {s: section_config(s, vals) for s, vals in by_section.items()}
    return Params.model_construct(**configs)  # sections validated one by one; the rest default


def _link_tree(src: Path, dest: Path) -> None:
    """``src`` (file or folder) at ``dest``, hard-linked where possible: real folders, so a walk
    of the workspace (track logs folders) sees every file."""
    dest.parent.mkdir(parents=True, exist_ok=True)

    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    if src.is_dir():
        shutil.copytree(src, dest, copy_function=link, dirs_exist_ok=True)
    elif src.is_file():
        link(str(src), str(dest))


def _confusion(csv_path: Path, class_names: list[str]) -> tuple[list[str], list[list[int]]]:
    import csv

    index = {c: i for i, c in enumerate(class_names)}
    matrix = [[0] * len(class_names) for _ in class_names]
    with open(csv_path, newline="") as fh:
        for row in csv.DictReader(fh):
            matrix[index[row["actual"]]][index[row["predicted"]]] += 1
    return list(class_names), matrix


def log_metrics(artifact: Any, metrics: Mapping[str, Any]) -> int:
    """Every numeric leaf of a step's metrics dict -> ``artifact.log_metric(dotted key, value)``."""
    from edgeqat.io import flatten

    n = 0
    for key, value in sorted(flatten(dict(metrics)).items()):
        if isinstance(value, (bool, int, float)):
            artifact.log_metric(key, float(value))
            n += 1
    return n


def run_component(name: str, args: Mapping[str, Any], table: tuple[Stage, ...] | str = STAGES) -> Any:
    """``table``: the stage table, or "module:attribute" naming one (a stage added outside edgeqat)."""
    import importlib

    import edgeqat
    from edgeqat.adapters.runner import run_stage
    from edgeqat.io import log, read_json, write_json
    from edgeqat.workspace.stages import stage as find

    if isinstance(table, str):
        module, _, attr = table.partition(":")
        table = getattr(importlib.import_module(module), attr)
    stage = find(name, table)
    # Which Python runs the task (the image's /opt/venv, or this machine's for kfp.local's
    # SubprocessRunner): the first line of every task's log.
    log(f"kfp component {name}: {sys.executable} (edgeqat {edgeqat.__version__}, uid {os.getuid()})")
    params = params_of(stage, args)  # train.trust_model_code among them: run_stage hands it to the step
    overrides: dict[str, Any] = {}
    for fp in stage.file_params:  # an imported artifact (cluster runs) replaces the local path
        artifact = args.get(fp.importer) if fp.importer else None
        if artifact is not None:
            overrides[fp.key] = artifact.path
    if overrides:
        update = {}
        for key, value in overrides.items():
            section, field = key.split(".")
            update[section] = getattr(params, section).model_copy(update={field: value})
        params = params.model_copy(update=update)
    extra: dict[str, Any] = {}
    run_tags = {str(k): str(v) for k, v in (args.get("run_tags") or {}).items()}
    if "mlflow_tracking_uri" in args and takes_all(stage):  # track and register take it as a keyword
        extra["uri"] = args["mlflow_tracking_uri"] or None
    if stage.run_tags:
        extra["extra_tags"] = {"orchestrator": "kubeflow", "kfp_run_id": args.get("kfp_run_id", ""),
                               "kfp_run_name": args.get("kfp_run_name", ""), **run_tags}
    from edgeqat.adapters.live import Runtime

    runtime = Runtime(uri=args.get("mlflow_tracking_uri") or None, experiment=args.get("mlflow_experiment") or None,
                      kfp_run_id=str(args.get("kfp_run_id") or ""), kfp_run_name=str(args.get("kfp_run_name") or ""),
                      tags=run_tags)

    with tempfile.TemporaryDirectory(prefix=f"edgeqat-{stage.name}-") as tmp:
        ws = Path(tmp)
        for port in stage.inputs:
            if port.kfp and args.get(port.name) is not None:
                _link_tree(Path(args[port.name].path), ws / port.path)
        result = run_stage(stage, params, ws, extra=extra, table=table, runtime=runtime)
        for port in stage.outputs:
            if port.kfp and args.get(port.name) is not None:
                produced = ws / port.path
                if not produced.exists():
                    raise FileNotFoundError(f"stage {stage.name} wrote no {port.path} (output {port.name!r})")
                _link_tree(produced, Path(args[port.name].path))
                if port.kind == "Metrics":
                    log_metrics(args[port.name], result)
        paths = Workspace(ws, table)
        if "headline_confusion" in args and paths.path("confusion").is_file():
            names = read_json(paths.path("evaluation"))["class_names"]
            labels, matrix = _confusion(paths.path("confusion"), names)
            args["headline_confusion"].log_confusion_matrix(labels, matrix)
            # The matrix lives in the artifact's metadata; a file at its path too, because kfp.local's
            # cache takes an output whose file is missing for a stale entry and re-runs the task.
            write_json(Path(args["headline_confusion"].path), {"labels": labels, "matrix": matrix})
    if stage.returns_passed:
        return bool(result.get("passed"))
    return None

"""The edgeqat pipeline as a KFP v2 DAG, built from the stage table (the same stages as dvc.yaml).

Each stage's task takes its params keys from the pipeline parameters of the same names
(``qat.epochs`` <-> ``qat__epochs``, encoded by ``edgeqat.adapters.kfp.params``) and each of
its inputs from the task whose output has the same name, so the edges follow from the table.
A stage that receives every section (track, register) takes instead the output of the
``params`` task, which validates all the parameters once and hands them on as one JSON
document (``params_json``).
Besides the params, runtime parameters (names without ``__``) say where MLflow is, which tags
the run gets, and (in the import variants) the artifact URIs.

Input data and a user's pretrained model: on ``kfp.local`` the tasks read ``prepare.path`` /
``train.from_model`` as local paths, as DVC does. On a cluster local paths mean nothing, so
``build_pipeline(data_from_uri=True, model_from_uri=True)`` adds ``dsl.importer`` tasks fed by
the ``data_uri`` / ``pretrained_model_uri`` parameters. An importer cannot take an empty URI
on a cluster, and kfp.local cannot run ``dsl.OneOf`` over artifacts: hence a variant per input
rather than a runtime switch.

Resources: each task requests and is limited to its stage's ``resources`` (the stage table);
the training stages also request an accelerator when compiled with one (``--gpu``).

The gate: a stage with ``gate = "validate.passed"`` (register) runs inside ``dsl.If`` on
validate's single bool output, so a model that fails a required device is never registered;
track runs either way and logs the verdicts, marking the run failed.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Model

from edgeqat.adapters.kfp.codegen import (PARAMS_JSON, PARAMS_RESOURCES, PARAMS_TASK, RUNTIME, component_keys,
                                          stage_keys, takes_all)
from edgeqat.adapters.kfp.params import PYTHON_TYPES, dotted_keys, kfp_name, kinds, to_pipeline_values
from edgeqat.adapters.run_params import default_params
from edgeqat.workspace.stages import STAGES, Stage

PIPELINE_NAME = "edgeqat"
DESCRIPTION = "Keras image model -> QAT -> int8 TensorFlow Lite variants, validated on device profiles, logged to MLflow."

# name -> (type, default); never contain "__", so they cannot collide with params keys.
RUNTIME_PARAMETERS: dict[str, tuple[type, Any]] = {
    "mlflow_tracking_uri": (str, ""),  # "" = the task's MLFLOW_TRACKING_URI or its local default
    "run_tags": (dict, {}),  # extra MLflow tags (git commit, trigger) from whoever starts the run
}
IMPORT_PARAMETERS: dict[str, tuple[type, Any]] = {
    "data_uri": (str, inspect.Parameter.empty),  # raw data for prepare (folder/file per prepare.source)
    "pretrained_model_uri": (str, inspect.Parameter.empty),  # the user's FP32 model: skips training
}
IMPORTERS = {"raw_data": ("data_uri", Dataset), "pretrained_model": ("pretrained_model_uri", Model)}


def _signature(data_from_uri: bool, model_from_uri: bool) -> inspect.Signature:
    kw = inspect.Parameter.POSITIONAL_OR_KEYWORD
    defaults = to_pipeline_values(default_params())
    wanted = {"data_uri": data_from_uri, "pretrained_model_uri": model_from_uri}
    extra = {n: v for n, v in IMPORT_PARAMETERS.items() if wanted[n]}  # required: they come first
    extra.update(RUNTIME_PARAMETERS)
    params = [inspect.Parameter(n, kw, default=d, annotation=t) for n, (t, d) in extra.items()]
    params += [inspect.Parameter(n, kw, default=defaults[n], annotation=PYTHON_TYPES[k]) for n, k in kinds().items()]
    return inspect.Signature(params, return_annotation=Artifact)


def unwired_keys(table: tuple[Stage, ...] = STAGES) -> list[str]:
    """params keys no stage takes (a key added to config.py whose section no stage receives)."""
    taken = {k for s in table for k in stage_keys(s)}
    return [k for k in dotted_keys() if k not in taken]


def _default_components() -> dict[str, Any]:
    from edgeqat.components.generated import COMPONENTS

    return COMPONENTS


def set_resources(task: Any, stage: Stage | None, accelerator: str | None = None) -> None:
    """The stage's CPU and memory requests and limits, and one ``accelerator`` (a Kubernetes
    resource name such as nvidia.com/gpu) for a stage that trains, when one is asked for.
    ``stage`` None: the params task's."""
    r = stage.resources if stage is not None else PARAMS_RESOURCES
    task.set_cpu_request(r.cpu_request).set_cpu_limit(r.cpu_limit)
    task.set_memory_request(r.memory_request).set_memory_limit(r.memory_limit)
    if accelerator and r.accelerator:
        task.set_accelerator_type(accelerator).set_accelerator_limit(1)


def build_pipeline(data_from_uri: bool = False, model_from_uri: bool = False, *,
                   table: tuple[Stage, ...] = STAGES, components: dict[str, Any] | None = None,
                   accelerator: str | None = None) -> Callable:
    """The pipeline function (a KFP GraphComponent); the default is what edge_pipeline.yaml holds.
    ``accelerator``: the resource name the training stages each request one of (none by default)."""
    signature = _signature(data_from_uri, model_from_uri)
    components = components if components is not None else _default_components()
    wanted = {"raw_data": data_from_uri, "pretrained_model": model_from_uri}

    def edgeqat(*values: Any) -> Artifact:  # KFP passes one channel per parameter, in signature order
        args = dict(zip(signature.parameters, values))
        produced: dict[str, Any] = {}  # output name -> the channel of the task that writes it
        imported: dict[str, Any] = {}  # importer name -> its artifact channel
        tasks: dict[str, Any] = {}
        final = None
        params_json = None  # the whole params, validated once, for the stages that take every section
        if any(takes_all(s) for s in table):  # depends on no task: a cluster runs it at once
            params_task = components[PARAMS_TASK](**{kfp_name(k): args[kfp_name(k)] for k in dotted_keys()})
            set_resources(params_task, None, accelerator)
            params_json = params_task.output
        for stage in table:
            kwargs = {kfp_name(k): args[kfp_name(k)] for k in component_keys(stage)}
            if takes_all(stage):
                kwargs[PARAMS_JSON] = params_json
            kwargs.update({p.name: produced[p.name] for p in stage.inputs if p.kfp})
            for fp in stage.file_params:
                if fp.importer and wanted.get(fp.importer):
                    if fp.importer not in imported:  # one importer task, whichever stages read it
                        uri_param, cls = IMPORTERS[fp.importer]
                        imported[fp.importer] = dsl.importer(artifact_uri=args[uri_param], artifact_class=cls,
                                                             reimport=False).output
                    kwargs[fp.importer] = imported[fp.importer]
            for name, _ in RUNTIME:
                kwargs[name] = {"kfp_run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                                "kfp_run_name": dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                                "mlflow_experiment": args.get("track__experiment")}.get(name, args.get(name))
            if stage.gate:
                gate_stage = stage.gate.split(".")[0]
                with dsl.If(tasks[gate_stage].outputs["Output"] == True, name=f"{gate_stage}-passed"):  # noqa: E712 (KFP condition)
                    task = components[stage.name](**kwargs)
            else:
                task = components[stage.name](**kwargs)
            set_resources(task, stage, accelerator)
            task.set_caching_options(stage.cached)  # False: it writes to MLflow, never skip it
            tasks[stage.name] = task
            for p in stage.outputs:
                if p.kfp:
                    produced[p.name] = task.outputs[p.name]
            if stage.pipeline_result:  # the run's MLflow run
                final = task.outputs[stage.pipeline_result]
            elif final is None:  # else the first artifact
                final = next((task.outputs[p.name] for p in stage.outputs if p.kfp), None)
        return final

    edgeqat.__signature__ = signature  # type: ignore[attr-defined]
    return dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)(edgeqat)


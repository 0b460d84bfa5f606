"""The edgeqat pipeline as a KFP v2 DAG, the same stages as dvc.yaml:
prepare -> train -> (qat, prune) -> convert -> evaluate -> validate -> recommend -> track -> register.

Pipeline parameters are generated from ``edgeqat.config.Params``, one per params.yaml key,
named and encoded by ``edgeqat.kfp_params`` (``qat.epochs`` <-> ``qat__epochs``, null <->
``""``, lists as lists), defaults = the code defaults = params.yaml. Besides them, the
runtime parameters below (names without ``__``) carry what is not a parameter of the
model: where MLflow is, extra run tags, and (in the import variant) the artifact URIs.

Input data and a user's pretrained model: on ``kfp.local`` the components read
``prepare.path`` / ``train.from_model`` as local paths, as DVC does. On a cluster local
paths mean nothing, so ``build_pipeline(data_from_uri=True, model_from_uri=True)`` adds
``dsl.importer`` tasks fed by the ``data_uri`` / ``pretrained_model_uri`` parameters
(``edgeqat pipeline submit --data-uri gs://... --model-uri gs://...`` compiles that
variant). An importer cannot take an empty URI on a cluster, and kfp.local cannot run
``dsl.OneOf`` over artifacts, hence a variant per input rather than a runtime switch.

The gate: validate's ``passed`` output (every ``validate.required_devices`` passed) feeds a
``dsl.If`` around ``register``, so a model that fails a required device is never
registered. Unlike ``dvc repro``, where the failing validate stage stops the run, track
still runs here and logs the verdicts to MLflow: a failed run stays visible.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Model

from edgeqat.components.convert import convert
from edgeqat.components.evaluate import evaluate
from edgeqat.components.prepare import prepare
from edgeqat.components.prune import prune
from edgeqat.components.qat import qat
from edgeqat.components.recommend import recommend
from edgeqat.components.register import register
from edgeqat.components.track import track
from edgeqat.components.train import train
from edgeqat.components.validate import validate
from edgeqat.config import Params
from edgeqat.kfp_params import PYTHON_TYPES, kinds, nest, to_pipeline_values

PIPELINE_NAME = "edgeqat"
DESCRIPTION = "Keras image model -> QAT -> int8 TensorFlow Lite variants, evaluated through LiteRT and logged to MLflow."

# name -> (type, default); never contain "__", so they cannot collide with params keys.
RUNTIME_PARAMETERS: dict[str, tuple[type, Any]] = {
    "mlflow_tracking_uri": (str, ""),  # "" = the task's MLFLOW_TRACKING_URI or its local default
    "run_tags": (dict, {}),  # extra MLflow tags (git commit, trigger) from whoever starts the run
}
IMPORT_PARAMETERS: dict[str, tuple[type, Any]] = {
    "data_uri": (str, inspect.Parameter.empty),  # raw data for prepare (folder/file per prepare.source)
    "pretrained_model_uri": (str, inspect.Parameter.empty),  # the user's FP32 model: skips training
}


def _signature(data_from_uri: bool, model_from_uri: bool) -> inspect.Signature:
    kw = inspect.Parameter.POSITIONAL_OR_KEYWORD
    defaults = to_pipeline_values(Params())
    wanted = {"data_uri": data_from_uri, "pretrained_model_uri": model_from_uri}
    extra = {n: v for n, v in IMPORT_PARAMETERS.items() if wanted[n]}  # required: they come first
    extra.update(RUNTIME_PARAMETERS)
    params = [inspect.Parameter(n, kw, default=d, annotation=t) for n, (t, d) in extra.items()]
    params += [inspect.Parameter(n, kw, default=defaults[n], annotation=PYTHON_TYPES[k]) for n, k in kinds().items()]
    return inspect.Signature(params, return_annotation=Artifact)


# The component of each params section: its parameters are that section's keys.
STAGES = {"prepare": prepare, "train": train, "qat": qat, "prune": prune, "convert": convert,
          "evaluate": evaluate, "validate": validate, "recommend": recommend, "track": track, "register": register}


def component_keys(component: Any) -> set[str]:
    return set(component.component_spec.inputs or {})


def unwired_keys() -> list[str]:
    """params keys no component takes (a section or key added to config.py but not here)."""
    from edgeqat.kfp_params import dotted_keys

    return [k for k in dotted_keys()
            if k.split(".")[0] not in STAGES or k.split(".")[1] not in component_keys(STAGES[k.split(".")[0]])]


def _section(p: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    accepted = component_keys(STAGES[name])
    return {k: v for k, v in p.get(name, {}).items() if k in accepted}


def build_pipeline(data_from_uri: bool = False, model_from_uri: bool = False) -> Callable:
    """The pipeline function (a KFP GraphComponent); the default is what edge_pipeline.yaml holds."""
    signature = _signature(data_from_uri, model_from_uri)

    def edgeqat(*values: Any) -> Artifact:  # KFP passes one channel per parameter, in signature order
        args = dict(zip(signature.parameters, values))
        p = nest(args)
        data = {}
        if data_from_uri:
            data["raw_data"] = dsl.importer(artifact_uri=args["data_uri"], artifact_class=Dataset, reimport=False).output
        prep = prepare(**_section(p, "prepare"), **data)
        prepared = prep.outputs["prepared"]

        pretrained = {}
        if model_from_uri:
            pretrained["pretrained_model"] = dsl.importer(
                artifact_uri=args["pretrained_model_uri"], artifact_class=Model, reimport=False).output
        fp32 = train(prepared=prepared, **_section(p, "train"), **pretrained)
        fp32_model = fp32.outputs["fp32_model"]

        quant = qat(prepared=prepared, fp32_model=fp32_model, **_section(p, "qat"))
        pruned = prune(prepared=prepared, fp32_model=fp32_model, **_section(p, "prune"))
        conv = convert(prepared=prepared, fp32_model=fp32_model, qat_model=quant.outputs["qat_model"],
                       mixed_model=quant.outputs["mixed_model"], pqat_model=pruned.outputs["pqat_model"],
                       channel_pruned_model=pruned.outputs["channel_pruned_model"], **_section(p, "convert"))
        ev = evaluate(prepared=prepared, tflite=conv.outputs["tflite"], fp32_model=fp32_model, **_section(p, "evaluate"))
        val = validate(prepared=prepared, tflite=conv.outputs["tflite"], fp32_model=fp32_model,
                       evaluation=ev.outputs["summary"], **_section(p, "validate"))
        rec = recommend(prepared=prepared, tflite=conv.outputs["tflite"], fp32_model=fp32_model,
                        qat_model=quant.outputs["qat_model"], prune_config=pruned.outputs["Output"],
                        **_section(p, "recommend"))
        rec.after(val)  # as in dvc.yaml: recommend only once the registered model was validated
        trk = track(
            prepare_metrics=prep.outputs["metrics"], train_metrics=fp32.outputs["metrics"],
            qat_metrics=quant.outputs["metrics"], prune_metrics=pruned.outputs["metrics"],
            convert_metrics=conv.outputs["metrics"], evaluate_metrics=ev.outputs["metrics"],
            validate_metrics=val.outputs["metrics"], devices_report=val.outputs["devices_report"],
            recommend_metrics=rec.outputs["metrics"], recommendation=rec.outputs["report"],
            train_history=fp32.outputs["history"], qat_history=quant.outputs["history"],
            confusion=ev.outputs["confusion"], fp32_model=fp32_model, qat_model=quant.outputs["qat_model"],
            mixed_model=quant.outputs["mixed_model"], pqat_model=pruned.outputs["pqat_model"],
            channel_pruned_model=pruned.outputs["channel_pruned_model"], tflite=conv.outputs["tflite"],
            summary=val.outputs["summary"], report=val.outputs["report"], sensitivity=quant.outputs["sensitivity"],
            sensitivity_report=quant.outputs["sensitivity_report"], pareto=ev.outputs["pareto"],
            prepare_config=prep.outputs["Output"], train_config=fp32.outputs["Output"],
            qat_config=quant.outputs["Output"], prune_config=pruned.outputs["Output"],
            convert_config=conv.outputs["Output"], evaluate_config=ev.outputs["Output"],
            validate_config=val.outputs["section"], recommend_config=rec.outputs["Output"],
            **_section(p, "track"), mlflow_tracking_uri=args["mlflow_tracking_uri"],
            kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, kfp_run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            run_tags=args["run_tags"],
        )
        trk.set_caching_options(False)  # it writes to MLflow: never skip it
        with dsl.If(val.outputs["Output"] == True, name="required-devices-passed"):  # noqa: E712 (a KFP condition)
            reg = register(tflite=conv.outputs["tflite"], fp32_model=fp32_model, summary=val.outputs["summary"],
                           recommended=rec.outputs["recommended"], recommendation=rec.outputs["report"],
                           all_params=trk.outputs["Output"], mlflow_tracking_uri=args["mlflow_tracking_uri"],
                           **_section(p, "register"))
            reg.set_caching_options(False)
        return trk.outputs["run_info"]

    edgeqat.__signature__ = signature  # type: ignore[attr-defined]
    return dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)(edgeqat)


edge_pipeline = build_pipeline()

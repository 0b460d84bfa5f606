"""The KFP lightweight components, written as Python source from the stage table.

KFP ships a lightweight component as the source text of its function, so the components
must exist as source: :func:`components_source` writes one ``@dsl.component`` per stage
whose signature is the stage's ports (``Input``/``Output`` artifacts), its params keys
(``<section>__<key>``, as the pipeline names them) and where MLflow is and which KFP run this
is (every stage logs to the run's live MLflow run). Every body is the same two lines: hand ``locals()`` to
:func:`edgeqat.adapters.kfp.runner.run_component`. ``edgeqat generate`` writes
``components/generated.py``; a test fails when it is stale.

A stage that receives every section (track, register) takes no key one by one: it takes
``params_json``, the whole params as the ``params`` component validated them once from the
pipeline's parameters (:data:`PARAMS_TASK`). The other stages keep their own keys, so a
change to a key they do not read leaves their cache entries valid, as it leaves DVC's.
"""

from __future__ import annotations

from edgeqat.adapters.kfp.params import PYTHON_TYPES, dotted_keys, kfp_name, kinds
from edgeqat.workspace.stages import ALL, LIGHT, STAGES, Stage, stage_params

# What every stage needs besides params: where MLflow is and which run this is, so each task
# logs to the KFP run's live MLflow run (edgeqat.adapters.live); the experiment is track.experiment.
RUNTIME = (("mlflow_tracking_uri", "str"), ("mlflow_experiment", "str"), ("run_tags", "dict"),
           ("kfp_run_id", "str"), ("kfp_run_name", "str"))
# The task that turns the pipeline's parameters into one validated params document (JSON), and
# the parameter that carries it to the stages receiving every section; its resources.
PARAMS_TASK = "params"
PARAMS_JSON = "params_json"
PARAMS_RESOURCES = LIGHT

HEADER = '''"""Kubeflow Pipelines components, one per stage and the params task: GENERATED from
src/edgeqat/workspace/stages.py by `edgeqat generate` (a test fails when this file is stale). Do not edit:
every stage's body hands its arguments to edgeqat.adapters.kfp.runner.run_component, which runs
the same step as DVC; the params task's to run_params, which validates them once."""

from typing import Optional

from kfp import dsl
from kfp.dsl import {kinds}

from edgeqat.components import BASE_IMAGE
'''


def stage_keys(stage: Stage) -> list[str]:
    """The dotted params keys a stage depends on: the same as its dvc.yaml params."""
    return stage_params(stage)


def takes_all(stage: Stage) -> bool:
    """Whether the stage receives every section, as :data:`PARAMS_JSON` from the params task."""
    return stage.sections == (ALL,)


def component_keys(stage: Stage) -> list[str]:
    """The dotted params keys a stage's component takes one by one (none when it takes them all)."""
    return [] if takes_all(stage) else stage_keys(stage)


def _key_lines(keys: list[str]) -> list[str]:
    k = kinds()
    return [f"    {kfp_name(key)}: {PYTHON_TYPES[k[kfp_name(key)]].__name__}," for key in keys]


def kfp_inputs(stage: Stage) -> list:
    return [p for p in stage.inputs if p.kfp]


def kfp_outputs(stage: Stage) -> list:
    return [p for p in stage.outputs if p.kfp]


def component_source(stage: Stage, table_ref: str | None = None) -> str:
    """``table_ref`` ("module:attribute"): the table the stage is found in at run time, when it is
    not edgeqat's own (a test adding a stage)."""
    required = [f"    {p.name}: Input[{p.kind}]," for p in kfp_inputs(stage)]
    required += [f"    {p.name}: Output[{p.kind}]," for p in kfp_outputs(stage)]
    required += [f"    {name}: Output[{kind}]," for name, kind in stage.kfp_only_outputs]
    required += [f"    {PARAMS_JSON}: str,"] if takes_all(stage) else _key_lines(component_keys(stage))
    required += [f"    {name}: {typ}," for name, typ in RUNTIME]
    optional = [f"    {fp.importer}: Optional[Input[{fp.kind}]] = None," for fp in stage.file_params if fp.importer]
    returns = "bool" if stage.returns_passed else "None"
    return "\n".join([
        "@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)",
        f"def {stage.name}(",
        *required, *optional,
        f") -> {returns}:",
        f'    """{stage.doc}"""',
        "    from edgeqat.adapters.kfp.runner import run_component",
        "",
        f"    return run_component({stage.name!r}, locals()" + (f", table={table_ref!r})" if table_ref else ")"),
    ]) + "\n"


def params_component_source() -> str:
    """The params task: every pipeline parameter in, the whole params validated once (cross-section
    rules and device names included) out, as JSON for the stages that take them all."""
    return "\n".join([
        "@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)",
        f"def {PARAMS_TASK}(",
        *_key_lines(dotted_keys()),
        ") -> str:",
        '    """The pipeline\'s parameters as one params document, validated as a params.yaml is."""',
        "    from edgeqat.adapters.kfp.runner import run_params",
        "",
        "    return run_params(locals())",
    ]) + "\n"


def components_source(table: tuple[Stage, ...] = STAGES, table_ref: str | None = None) -> str:
    """Every stage's component, and the params task's when a stage takes every section;
    ``COMPONENTS`` maps their names (the params task first) to them."""
    if any(s.name == PARAMS_TASK for s in table):
        raise ValueError(f"stage name {PARAMS_TASK!r} is taken by the KFP task that validates the params")
    names = ([PARAMS_TASK] if any(takes_all(s) for s in table) else []) + [s.name for s in table]
    used = {p.kind for s in table for p in (*kfp_inputs(s), *kfp_outputs(s))}
    used |= {kind for s in table for _, kind in s.kfp_only_outputs}
    used |= {fp.kind for s in table for fp in s.file_params if fp.importer}
    header = HEADER.format(kinds=", ".join(sorted(used | {"Input", "Output"})))
    sources = ([params_component_source()] if PARAMS_TASK in names else []) + [component_source(s, table_ref) for s in table]
    listed = ", ".join(map(repr, names))
    return header + "".join("\n\n" + src for src in sources) + \
        f"\n\nCOMPONENTS = {{name: globals()[name] for name in ({listed},)}}\n"

"""The KFP lightweight components, written as Python source from the stage table.

KFP ships a lightweight component as the source text of its function, so the components
must exist as source: :func:`components_source` writes one ``@dsl.component`` per stage
whose signature is the stage's ports (``Input``/``Output`` artifacts), its params keys
(``<section>__<key>``, as the pipeline names them) and where MLflow is and which KFP run this
is (every stage logs to the run's live MLflow run). Every body is the same two lines: hand ``locals()`` to
:func:`edgeqat.adapters.kfp.runner.run_component`. ``edgeqat generate`` writes
``components/generated.py``; a test fails when it is stale.
"""

from __future__ import annotations

from edgeqat.adapters.kfp.params import PYTHON_TYPES, kfp_name, kinds
from edgeqat.stages import STAGES, Stage, stage_params

# What every stage needs besides params: where MLflow is and which run this is, so each task
# logs to the KFP run's live MLflow run (edgeqat.adapters.live); the experiment is track.experiment.
RUNTIME = (("mlflow_tracking_uri", "str"), ("mlflow_experiment", "str"), ("run_tags", "dict"),
           ("kfp_run_id", "str"), ("kfp_run_name", "str"))

HEADER = '''"""Kubeflow Pipelines components, one per stage: GENERATED from src/edgeqat/stages.py by
`edgeqat generate` (a test fails when this file is stale). Do not edit: every body hands its
arguments to edgeqat.adapters.kfp.runner.run_component, which runs the same step as DVC."""

from typing import Optional

from kfp import dsl
from kfp.dsl import {kinds}

from edgeqat.components import BASE_IMAGE
'''


def stage_keys(stage: Stage) -> list[str]:
    """The dotted params keys a stage's component takes: the same as its dvc.yaml params."""
    return stage_params(stage)


def kfp_inputs(stage: Stage) -> list:
    return [p for p in stage.inputs if p.kfp]


def kfp_outputs(stage: Stage) -> list:
    return [p for p in stage.outputs if p.kfp]


def component_source(stage: Stage, table_ref: str | None = None) -> str:
    """``table_ref`` ("module:attribute"): the table the stage is found in at run time, when it is
    not edgeqat's own (a test adding a stage)."""
    k = kinds()
    required = [f"    {p.name}: Input[{p.kind}]," for p in kfp_inputs(stage)]
    required += [f"    {p.name}: Output[{p.kind}]," for p in kfp_outputs(stage)]
    required += [f"    {name}: Output[{kind}]," for name, kind in stage.kfp_only_outputs]
    required += [f"    {kfp_name(key)}: {PYTHON_TYPES[k[kfp_name(key)]].__name__}," for key in stage_keys(stage)]
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


def components_source(table: tuple[Stage, ...] = STAGES, table_ref: str | None = None) -> str:
    names = ", ".join(repr(s.name) for s in table)
    used = {p.kind for s in table for p in (*kfp_inputs(s), *kfp_outputs(s))}
    used |= {kind for s in table for _, kind in s.kfp_only_outputs}
    used |= {fp.kind for s in table for fp in s.file_params if fp.importer}
    header = HEADER.format(kinds=", ".join(sorted(used | {"Input", "Output"})))
    return header + "".join("\n\n" + component_source(s, table_ref) for s in table) + \
        f"\n\nCOMPONENTS = {{name: globals()[name] for name in ({names},)}}\n"

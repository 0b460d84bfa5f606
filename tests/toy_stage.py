"""A stage added the way a contributor would: one step function and one table entry, nothing
else. tests/unit/test_stage_table.py checks it reaches the CLI, dvc.yaml, the compiled KFP
pipeline and a kfp.local run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeqat.config import Params, PrepareConfig
from edgeqat.io import read_json, write_json
from edgeqat.workspace.stages import ALL, PREPARED, STAGES, Port, Stage, metrics, stage, timings


def count_classes(cfg: PrepareConfig, prepared: Path, toy_report: Path, *, variants: list[str]) -> dict[str, Any]:
    """The prepared split sizes, per class count: a stand-in for any new analysis stage.
    ``variants``: one key of another section (convert.variants), as a stage's ``keys`` pass it.
    The metrics it returns are written to its metrics port by the stage runner."""
    meta = read_json(Path(prepared) / "meta.json")
    report = {"classes": len(meta["class_names"]), "sizes": meta["sizes"], "seed": cfg.seed, "variants": variants}
    write_json(toy_report, report)
    return {"classes": report["classes"]}


TOY = Stage("toy", "toy_stage:count_classes", ("prepare",), keys=("convert.variants",), inputs=(PREPARED,),
            outputs=(Port("toy_report", "reports/toy.json", dvc="committed"), metrics("toy"), timings("toy")),
            doc="Count the prepared classes (a toy stage).")
TABLE = STAGES + (TOY,)  # the whole pipeline plus the new stage
MINI = (stage("prepare"), TOY)  # what the kfp.local run needs of it


def echo_params(params: Params, *, prepared: Path, toy_params: Path, uri: str | None = None) -> dict[str, Any]:
    """A stage that receives every section, as track and register do: writes the params it was given."""
    write_json(toy_params, {"params": params.model_dump(mode="json"), "uri": uri})
    return {}


# Receives the whole Params: on KFP, as the params task's one JSON document.
TOY_ALL = Stage("toy_all", "toy_stage:echo_params", (ALL,), inputs=(PREPARED,),
                outputs=(Port("toy_params", "reports/toy_params.json", dvc="committed"),),
                doc="Write the params it received (a toy stage taking every section).")
MINI_ALL = (stage("prepare"), TOY_ALL)

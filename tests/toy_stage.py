"""A stage added the way a contributor would: one step function and one table entry, nothing
else. tests/unit/test_stage_table.py checks it reaches the CLI, dvc.yaml, the compiled KFP
pipeline and a kfp.local run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeqat.config import PrepareConfig
from edgeqat.io import read_json, write_json
from edgeqat.stages import PREPARED, STAGES, Port, Stage, metrics, stage, timings


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

"""Every file that follows from the stage table, as text: dvc.yaml, the KFP components'
source and the compiled pipeline. `edgeqat generate` writes them; a test compares."""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgeqat.config import Params
from edgeqat.stages import STAGES, Stage


def generated_files(params: Params, table: tuple[Stage, ...] = STAGES, root: str | Path = ".") -> dict[Path, str]:
    from edgeqat.adapters.dvc import dvc_yaml
    from edgeqat.adapters.kfp.codegen import components_source

    root = Path(root)
    out = {root / "dvc.yaml": dvc_yaml(params, table),
           root / "components" / "generated.py": components_source(table)}
    if table is STAGES:  # the compiled pipeline is built from the installed components
        from edgeqat.pipelines.ops import compile_pipeline

        with tempfile.TemporaryDirectory() as tmp:
            out[root / "pipelines" / "edge_pipeline.yaml"] = compile_pipeline(Path(tmp) / "p.yaml").read_text()
    return out

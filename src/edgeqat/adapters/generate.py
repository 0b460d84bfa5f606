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
    source = components_source(table)
    out = {root / "dvc.yaml": dvc_yaml(params, table), root / "components" / "generated.py": source}
    if table is STAGES:  # compiled from the components just generated, not the installed ones
        from edgeqat.pipelines.ops import compile_pipeline

        with tempfile.TemporaryDirectory() as tmp:
            comps = _load_components(Path(tmp) / "generated_components.py", source)
            out[root / "pipelines" / "edge_pipeline.yaml"] = compile_pipeline(Path(tmp) / "p.yaml",
                                                                             components=comps).read_text()
    return out


def _load_components(path: Path, source: str) -> dict:
    """Import generated component source from a file (KFP reads a component's source back)."""
    import importlib.util

    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.COMPONENTS

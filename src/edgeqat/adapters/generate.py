"""Every file that follows from the stage table or the committed results, as text: dvc.yaml,
the KFP components' source and the compiled pipeline; and the results table between the
README's markers, from ``reports/summary.json``. `edgeqat generate` writes them; a test compares."""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgeqat.config import Params
from edgeqat.workspace.stages import STAGES, Stage, Workspace


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
    readme = readme_with_results(root)
    if readme is not None:
        out[root / "README.md"] = readme
    return out


README_BEGIN = "<!-- results table: generated from reports/summary.json by `edgeqat generate`; do not edit -->"
README_END = "<!-- end of results table -->"


def readme_with_results(root: Path) -> str | None:
    """README.md with the table between its markers rebuilt from reports/summary.json (None when
    either is missing: a project without the markers keeps its README as it is)."""
    import json

    from edgeqat.reporting.tables import results_table

    readme, summary = root / "README.md", Workspace(root).path("summary")
    if not (readme.is_file() and summary.is_file()):
        return None
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        return None
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_BEGIN}\n{results_table(json.loads(summary.read_text()))}{README_END}{tail}"


def _load_components(path: Path, source: str) -> dict:
    """Import generated component source from a file (KFP reads a component's source back)."""
    import importlib.util

    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.COMPONENTS

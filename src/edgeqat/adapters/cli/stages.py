"""`edgeqat stage <name>` (what dvc.yaml runs), one command per stage of the table, and
`edgeqat dvc write|check` (dvc.yaml generated from the table).

Each stage command has ``--params`` and one option per port of the stage (``--fp32-model
PATH``), defaulting to the table's workspace path, and runs :func:`run_stage`. Nothing heavy
is imported until a command runs. Under DVC (``DVC_STAGE`` set) a failed gate
(:class:`~edgeqat.errors.GateFailed`) is printed in one line and the command exits 0, so
``dvc exp run`` keeps the experiment; run directly, it exits 1.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Optional

import typer

from edgeqat.errors import GateFailed
from edgeqat.workspace.stages import STAGES, Stage

STAGE_HELP = "Run one pipeline stage (what dvc.yaml calls); paths default to the stage table's."


def _option(port_name: str) -> str:
    return "--" + port_name.replace("_", "-")


def _command(stage: Stage, table: tuple[Stage, ...]):
    ports = {p.name: p for p in (*stage.inputs, *stage.outputs)}
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("params", kw, annotation=Path, default=typer.Option(
        Path("params.yaml"), "--params", help="Parameters file (one section per stage)."))]
    for name, port in ports.items():
        params.append(inspect.Parameter(name, kw, annotation=Optional[Path], default=typer.Option(
            None, _option(name), help=f"default: {port.path}")))
    if stage.run_tags:
        params.append(inspect.Parameter("tag", kw, annotation=list[str], default=typer.Option(
            [], "--tag", help="Extra MLflow run tag KEY=VALUE (repeatable).")))

    def command(**kwargs: Any) -> None:
        from edgeqat.adapters.run_params import load_run_params
        from edgeqat.adapters.runner import run_stage

        params_file = kwargs.pop("params")
        p = load_run_params(params_file)
        extra = {}
        if "tag" in kwargs:
            from edgeqat.workspace.provenance import parse_tags

            extra["extra_tags"] = parse_tags(kwargs.pop("tag"))
        if os.environ.get("DVC_STAGE"):  # under `dvc repro`: its dvc.yaml must track the files params name
            from edgeqat.adapters.dvc import check_file_deps

            check_file_deps(stage, p, Path(os.environ.get("DVC_ROOT", ".")) / "dvc.yaml")
        try:
            run_stage(stage, p, Path("."), overrides=kwargs, extra=extra, table=table, protect={"--params": params_file})
        except GateFailed as err:
            if not os.environ.get("DVC_STAGE"):
                raise  # exit 1: `make pipeline`, `edgeqat ci run` and scripts see the failure
            # Under `dvc repro` / `dvc exp run` a failed gate is a result, not a crash: the stage
            # succeeds so DVC keeps the experiment with its metrics and verdicts.
            typer.echo(f"{stage.name}: GATE FAILED, nothing registered; the results are kept (dvc exp show): {err}",
                       err=True)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = stage.doc
    command.__name__ = f"stage_{stage.name}"
    return command


def install(stage_app: typer.Typer, app: typer.Typer, table: tuple[Stage, ...] = STAGES) -> None:
    for s in table:
        stage_app.command(s.name, help=s.doc)(_command(s, table))

    @app.command("generate")
    def generate(params: Path = typer.Option(Path("params.yaml"), "--params"),
                 check: bool = typer.Option(False, "--check", help="Only say (exit 1) if a generated file is stale.")) -> None:
        """Write what follows from the stage table: dvc.yaml, components/generated.py and the
        compiled pipelines/edge_pipeline.yaml (run in the repository, after editing the table)."""
        from edgeqat.adapters.generate import generated_files
        from edgeqat.config import load_params
        from edgeqat.io import write_text

        stale = []
        for path, text in generated_files(load_params(params), table).items():
            if path.is_file() and path.read_text() == text:
                continue
            stale.append(path)
            if not check:
                write_text(path, text)
        verb = "stale" if check else "written"
        typer.echo("\n".join(f"{p}: {verb}" for p in stale) or "everything generated is up to date")
        if check and stale:
            raise typer.Exit(1)

    dvc = typer.Typer(no_args_is_help=True, help="dvc.yaml, generated from the stage table and params.yaml.")
    app.add_typer(dvc, name="dvc")

    @dvc.command("write")
    def dvc_write(params: Path = typer.Option(Path("params.yaml"), "--params"),
                  out: Path = typer.Option(Path("dvc.yaml"), "--out")) -> None:
        """Write dvc.yaml from the stage table (after changing it, or a files-naming param)."""
        from edgeqat.adapters.dvc import dvc_yaml
        from edgeqat.config import load_params
        from edgeqat.io import write_text

        write_text(out, dvc_yaml(load_params(params), table))
        typer.echo(f"{out}: written ({len(table)} stages)")

    @dvc.command("check")
    def dvc_check(params: Path = typer.Option(Path("params.yaml"), "--params"),
                  file: Path = typer.Option(Path("dvc.yaml"), "--file")) -> None:
        """Exit 1 when dvc.yaml differs from what `edgeqat dvc write` would write."""
        from edgeqat.adapters.dvc import dvc_yaml
        from edgeqat.config import load_params

        want = dvc_yaml(load_params(params), table)
        if not file.is_file() or file.read_text() != want:
            typer.echo(f"{file}: out of date with the stage table and {params}; run `edgeqat dvc write`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{file}: up to date")

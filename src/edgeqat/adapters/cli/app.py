"""The `edgeqat` command: thin adapter from argv (and DVC stages) to the step functions.

Nothing heavy is imported at module level, so `edgeqat --help` stays fast; TensorFlow
loads only inside the stages that need it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from edgeqat.adapters.cli.output import JsonOpt, echo_json
from edgeqat.errors import EdgeqatError

app = typer.Typer(
    no_args_is_help=True,  # --install-completion / --show-completion: Typer's shell completion
    # Unexpected errors are one line + a log file (edgeqat.adapters.cli.failure); --verbose shows them.
    pretty_exceptions_enable=False,
    help="edgeqat: Keras image model -> validated int8 TensorFlow Lite, as a reproducible DVC/MLflow pipeline.",
)
stage = typer.Typer(no_args_is_help=True, help="Run one pipeline stage (what dvc.yaml calls).")
app.add_typer(stage, name="stage")

from edgeqat.adapters.cli.pipeline import app as _pipeline_app  # noqa: E402  (imports no kfp)

app.add_typer(_pipeline_app, name="pipeline")

ParamsOpt = typer.Option(Path("params.yaml"), "--params", help="Parameters file (one section per stage).")


def _print_version(value: bool) -> None:
    if value:
        from edgeqat import __version__

        typer.echo(f"edgeqat {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", help="Show what TensorFlow, MLflow and the other libraries print, "
                                 "and the full traceback of an unexpected error (also: EDGEQAT_VERBOSE=1)."),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    """Options for every command (main() reads --verbose before the command runs)."""
    if verbose:  # the libraries, loaded later, read it from the environment (edgeqat.progress.verbose)
        from edgeqat.progress import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"


from edgeqat.adapters.cli.stages import install as _install_stage_commands  # noqa: E402

_install_stage_commands(stage, app)

from edgeqat.adapters.cli.ci import install as _install_ci_commands  # noqa: E402

_install_ci_commands(app)


@app.command("check-params")
def check_params(params: Path = ParamsOpt, as_json: bool = JsonOpt) -> None:
    """Validate a parameters file without running anything (exit 2 naming what is wrong)."""
    from edgeqat.adapters.run_params import load_run_params

    p = load_run_params(params)
    if as_json:  # the parameters with every default filled in
        echo_json({"params": str(params), "ok": True, "resolved": json.loads(p.model_dump_json())})
    else:
        typer.echo(f"{params}: ok")


@app.command("ui")
def ui_cmd(
    port: int = typer.Option(5000, "--port", help="Port of the UI on 127.0.0.1."),
    print_only: bool = typer.Option(False, "--print", help="Only print how to open the UI and the pages, start nothing."),
) -> None:
    """Start the MLflow UI on this project's runs and models (127.0.0.1), and print the pages to open."""
    import shutil
    import subprocess

    from edgeqat.io import read_json, redact
    from edgeqat.lifecycle.tracking import experiment_page, relocate_embedded_store, run_page, tracking_uri

    uri = tracking_uri()
    relocate_embedded_store(uri)  # a copied workspace: the UI then finds its own artifacts
    embedded = uri.startswith("sqlite:")
    ui = f"http://127.0.0.1:{port}" if embedded else None
    from edgeqat.workspace.stages import Workspace

    last = Workspace(Path(".")).path("mlflow_run")
    pages = []
    if last.is_file():
        info = read_json(last)
        pages = [f"runs:     {experiment_page(info['tracking_uri'], info['experiment_id'], ui)}",
                 f"last run: {run_page(info['tracking_uri'], info['experiment_id'], info['run_id'], ui)}"]
    if not embedded:  # a tracking server is its own UI
        typer.echo(f"runs are logged to {redact(uri)}: open it in a browser")
        typer.echo("\n".join(pages))
        return
    command = [shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow", "ui",
               "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)]
    if print_only:
        typer.echo(f"mlflow {' '.join(command[1:])}   # then open {ui}")
        typer.echo("\n".join(pages))
        return
    typer.echo(f"MLflow UI on {ui} (Ctrl-C stops it)" + ("\n" + "\n".join(pages) if pages else ""))
    try:
        raise typer.Exit(subprocess.call(command))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


from edgeqat.adapters.cli.registry import install as _install_registry_commands  # noqa: E402

_install_registry_commands(app, stage)

from edgeqat.adapters.cli.devices import install as _install_device_commands  # noqa: E402

_install_device_commands(app, stage)

from edgeqat.adapters.cli.recommend import install as _install_recommend_commands  # noqa: E402

_install_recommend_commands(app, stage)

from edgeqat.adapters.cli.report import install as _install_report_command  # noqa: E402

_install_report_command(app)

from edgeqat.adapters.cli.data import install as _install_data_commands  # noqa: E402

_install_data_commands(app)


def command() -> typer.core.TyperGroup:
    """The click command tree, with plain help (:mod:`edgeqat.adapters.cli.help`)."""
    from edgeqat.adapters.cli.help import tidy

    return tidy(typer.main.get_command(app))


def main() -> None:
    argv = sys.argv[1:]
    try:
        command()(prog_name="edgeqat")
    except EdgeqatError as err:
        from edgeqat.io import redact

        print(f"edgeqat: error: {redact(str(err))}", file=sys.stderr)
        sys.exit(getattr(err, "exit_code", 2))  # 2: bad input; GateFailed: 1, like a failing test
    except Exception as err:  # noqa: BLE001 - the last resort: one line and a log, never a raw dump
        from edgeqat.adapters.cli import failure
        from edgeqat.io import no_space, redact

        full = no_space(err)
        if full is not None:  # a write outside edgeqat's own (a library's file): still one line, no log to fill
            where = f"{full.filename}: " if full.filename else ""
            print(f"edgeqat: error: {where}no space left on the device ({full.strerror}); free some space and run "
                  "again", file=sys.stderr)
            sys.exit(2)

        if failure.verbose(argv):
            import traceback

            print(redact(traceback.format_exc()), file=sys.stderr, end="")
        print(redact(failure.report(typer.main.get_command(app), argv, err)), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

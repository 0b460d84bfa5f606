"""`edgeqat ci run`: what every CI workflow calls (edgeqat.adapters.ci)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from edgeqat.adapters.cli.output import JsonOpt, echo_json


def install(app: typer.Typer) -> None:
    ci = typer.Typer(no_args_is_help=True, help="The CI entry point: pull, repro, push, register, report.")
    app.add_typer(ci, name="ci")

    @ci.command("run")
    def ci_run(
        refresh_data: bool = typer.Option(False, "--refresh-data", help="`dvc update` imported data first (scheduled retraining)."),
        push: bool = typer.Option(True, "--push/--no-push", help="dvc push the outputs to the default remote."),
        commit: bool = typer.Option(True, "--commit/--no-commit", help="Commit dvc.lock and the results when they changed."),
        push_git: bool = typer.Option(False, "--push-git", help="git push that commit."),
        report: Path = typer.Option(Path("ci-report.md"), "--report", help="Where to write the Markdown report."),
        trigger: Optional[str] = typer.Option(None, help="What started the run (default: $GITHUB_EVENT_NAME or manual)."),
        github: bool = typer.Option(False, "--github", help="Also post the report: job summary and commit comment."),
        params: Path = typer.Option(Path("params.yaml"), "--params"),
        as_json: bool = JsonOpt,
    ) -> None:
        """pull -> repro -> push -> register a challenger -> report (exit 1 when the device gate fails)."""
        from edgeqat.adapters.ci import run_ci

        res = run_ci(".", params_file=str(params), refresh_data=refresh_data, push=push, commit=commit,
                     push_git=push_git, report=report, trigger=trigger, github=github)
        if as_json:
            echo_json({**dataclasses.asdict(res), "exit_code": res.exit_code})
        else:
            typer.echo(str(res.report))
        if res.exit_code:
            raise typer.Exit(res.exit_code)

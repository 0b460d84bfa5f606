"""CLI commands of the model registry: `stage register`, promote, history, rollback, export, webhook.

Kept apart from cli.py (which calls :func:`install`) so the registry's commands live in one
place; like the rest of the CLI, nothing heavy is imported until a command runs. The
tracking server is ``MLFLOW_TRACKING_URI`` (else the local SQLite store).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from edgeqat.adapters.cli.output import Col, JsonOpt, WideOpt, echo_json, show, table
from edgeqat.errors import EdgeqatError


def _params(path: Path):
    from edgeqat.adapters.run_params import load_run_params

    return load_run_params(path)


def _registry():
    from edgeqat.lifecycle.registry import Registry

    return Registry()


HISTORY_COLS = (Col("at"), Col("alias"), Col("action"), Col("version", "right"), Col("previous", "right"), Col("by", text=True),
                Col("reason", text=True))


def _history_table(events: list[dict], wide: bool):
    from edgeqat.lifecycle.promotion import history_rows

    if not events:
        return "no alias moves recorded yet"
    rows = history_rows(events)
    if not wide:  # 2025-05-01T09:30:12.345+00:00 -> 2025-05-01 09:30:12 (UTC, as recorded)
        rows = [[r[0][:19].replace("T", " "), *r[1:]] for r in rows]
    return table(HISTORY_COLS, rows, wide)


def install(app: typer.Typer, stage: typer.Typer) -> None:
    params_opt = typer.Option(Path("params.yaml"), "--params", help="Parameters file (the register section).")
    model_opt = typer.Option(None, "--model", help="Registered model: register.model_name (default) or a "
                                                   "per-device <model_name>-<device>.")

    @app.command("promote")
    def promote_cmd(
        version: str = typer.Argument(..., help="Model version number."),
        alias: str = typer.Option("champion", help="Alias to move."),
        force: bool = typer.Option(False, "--force", help="Promote although a gate fails (needs --reason)."),
        reason: Optional[str] = typer.Option(None, help="Why: recorded in the promotion history."),
        by: Optional[str] = typer.Option(None, help="Who (default: your user name)."),
        model: Optional[str] = model_opt,
        params: Path = params_opt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Move an alias (default `champion`) to VERSION after checking the gates (a per-device model's on its own device)."""
        from edgeqat.lifecycle.promotion import promote

        cfg = _params(params).register
        name = model or cfg.model_name
        res = promote(_registry(), cfg, name, version, alias, force=force, reason=reason, by=by)
        if as_json:
            echo_json({"model": name, **res})
        elif res["action"] == "unchanged":
            typer.echo(f"{name}: {alias} is already version {version}")
        else:
            typer.echo(f"{name}: {alias} -> version {version} (was {res['previous'] or 'unset'})"
                       + (f"; FORCED past: {'; '.join(res['reasons'])}" if res["reasons"] else ""))

    @app.command("history")
    def history_cmd(
        alias: Optional[str] = typer.Option(None, help="Only this alias."),
        model: Optional[str] = typer.Option(None, "--model", help="Only this registered model (default: "
                                            "register.model_name and each of its per-device models)."),
        params: Path = params_opt,
        wide: bool = WideOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Every alias move (and refusal) recorded for edgeqat's registered models."""
        from edgeqat.lifecycle.managed import discover

        reg, base = _registry(), _params(params).register.model_name
        # a missing model: the registry says so
        names = [model] if model else [m.name for m, _ in discover(reg, base)] or [base]
        history = {name: [h for h in reg.history(name) if alias is None or h.get("alias") == alias] for name in names}
        if as_json:
            echo_json(history)
            return
        out: list = []
        for name, events in history.items():
            out += [f"{name}:" if len(names) > 1 else "", _history_table(events, wide)]
        show(*out[1 if len(names) == 1 else 0:], wide=wide)

    @app.command("rollback")
    def rollback_cmd(
        alias: str = typer.Option("champion"),
        reason: Optional[str] = typer.Option(None),
        by: Optional[str] = typer.Option(None),
        model: Optional[str] = model_opt,
        params: Path = params_opt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Move `champion` back to the version that held it before the current one."""
        from edgeqat.lifecycle.managed import resolve
        from edgeqat.lifecycle.promotion import rollback

        reg, base = _registry(), _params(params).register.model_name
        name = resolve(reg, base, model or base).name  # only edgeqat's models: their history is ours
        res = rollback(reg, name, alias, reason=reason, by=by)
        if as_json:
            echo_json({"model": name, **res})
        else:
            typer.echo(f"{name}: {alias} -> version {res['version']} (was {res['previous'] or 'unset'})")

    @app.command("export")
    def export_cmd(
        out: Optional[Path] = typer.Option(None, "--out", help="Folder to write the .tflite and model_card.json to "
                                           "(default: register.deploy_dir, or <deploy_dir>/<device>/ for a per-device model)."),
        alias: str = typer.Option("champion", help="Alias to export."),
        version: Optional[str] = typer.Option(None, help="A version number instead of an alias."),
        device: Optional[str] = typer.Option(None, "--device", help="An Ethos-U profile: ship Vela's compiled file "
                                             "(default: a per-device model's own device)."),
        model: Optional[str] = model_opt,
        params: Path = params_opt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Download the promoted .tflite and its model card; verify the registered sha256."""
        from edgeqat.lifecycle.managed import resolve
        from edgeqat.lifecycle.export import export

        p = _params(params)
        reg = _registry()
        m = resolve(reg, p.register.model_name, model or p.register.model_name)
        res = export(reg, m.name, out or m.folder(p.register.deploy_dir), alias=None if version else alias,
                     version=version, device=device or m.device, profiles_dir=p.validate.profiles_dir)
        if as_json:
            echo_json({"model": m.name, **res})
        else:
            typer.echo(f"{res['file']} ({m.name} version {res['version']}, {res['variant']}, sha256 {res['sha256']})")

    webhook = typer.Typer(no_args_is_help=True, help="React to alias moves made in the MLflow UI.")
    app.add_typer(webhook, name="webhook")

    @webhook.command("serve")
    def webhook_serve(
        host: str = typer.Option("127.0.0.1", help="Interface to listen on (loopback by default)."),
        port: int = typer.Option(8765),
        deploy_dir: Optional[Path] = typer.Option(None, help="Export folder (default: register.deploy_dir); "
                                                  "per-device models go to <deploy_dir>/<device>/."),
        alias: str = typer.Option("champion"),
        reconcile_interval: float = typer.Option(30.0, "--reconcile-interval", min=0,
                                                 help="Seconds between checks of every watched alias against what "
                                                      "was deployed (0: only at start)."),
        request_deadline: float = typer.Option(10.0, "--request-deadline", min=0.1,
                                               help="Seconds a client has to send a whole request (headers and "
                                                    "body); slower ones are closed."),
        params: Path = params_opt,
    ) -> None:
        """Receive MLflow's signed webhooks; gate, export or revert each move of `champion` of
        register.model_name and its per-device models, and catch up on moves made while it was down."""
        from edgeqat.io import log
        from edgeqat.adapters.webhook.server import SECRET_ENV, Receiver, check_secret, make_server

        p = _params(params)
        cfg = p.register
        secret = check_secret(os.environ.get(SECRET_ENV, ""), "serve")
        receiver = Receiver(_registry(), cfg, deploy_dir or Path(cfg.deploy_dir), alias,
                            profiles_dir=p.validate.profiles_dir)
        server = make_server(receiver, secret, host, port, deadline=request_deadline)
        log(f"webhook: listening on http://{host}:{server.server_address[1]}/ for {cfg.model_name}[-<device>]@{alias}"
            f" (reconcile {'every %g s' % reconcile_interval if reconcile_interval else 'at start only'})")
        receiver.start(reconcile_interval)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
            receiver.close()

    @webhook.command("install")
    def webhook_install(
        url: str = typer.Option("http://127.0.0.1:8765/", help="Where `edgeqat webhook serve` listens."),
        name: str = typer.Option("edgeqat-champion"),
        params: Path = params_opt,
    ) -> None:
        """Register the webhook (model_version_alias.created and .deleted, HMAC-signed) with the tracking server."""
        from edgeqat.adapters.webhook.server import EVENTS, SECRET_ENV, check_secret

        _params(params)
        secret = check_secret(os.environ.get(SECRET_ENV, ""), "install")
        reg = _registry()
        if not reg.uri.startswith(("http://", "https://")):
            raise EdgeqatError(f"webhook install: {reg.uri} is not a tracking server; webhooks need `mlflow server` "
                               "(set MLFLOW_TRACKING_URI=http://...)")
        res = reg.install_webhook(name, url, secret, EVENTS)
        typer.echo(f"webhook {name} {res['action']} ({res['webhook_id']}): {', '.join(EVENTS)} -> {url}")

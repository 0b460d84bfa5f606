"""CLI of the per-device recommendation: `recommend --device ...` and `stage recommend` (dvc.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeqat.adapters.cli.output import Col, JsonOpt, WideOpt, echo_json, show, table
from edgeqat.workspace.stages import Workspace

WS = Workspace(Path("."))  # the table's paths, relative to where the command runs


CHOICE_COLS = (Col("device"), Col("chosen"), Col("strategy", wide=True, text=True),
               Col("val acc", "right", wide_header="accuracy (val: chosen on)"),
               Col("test acc", "right", wide_header="accuracy (test: reported)"),
               Col("drop", "right", wide_header="test drop vs FP32", drop=1), Col("size B", "right"),
               Col("arena B", "right", drop=2), Col("latency ms", "right"), Col("tried", "right", wide=True), Col("skipped", "right", wide=True),
               Col("reason", wide=True, text=True))


def choice_rows(devices: dict) -> list[list]:
    """One row of CHOICE_COLS per device of recommendation.json (narrow, the reason prints below)."""
    from edgeqat.reporting.recommendation import latency_cell

    def fmt(v, f):
        return "–" if v is None else format(v, f)

    rows = []
    for dev, r in devices.items():
        c = next((c for c in r["candidates"] if c["candidate"] == r["chosen"]), {})
        t = r.get("test") or {}
        rows.append([dev, r["chosen"] or "NO MODEL FITS", c.get("strategy"), fmt(c.get("accuracy"), ".4f"),
                     fmt(t.get("accuracy"), ".4f"), fmt(t.get("accuracy_drop"), "+.4f"), fmt(c.get("size_bytes"), ","),
                     fmt(c.get("arena_bytes"), ","),
                     latency_cell(c) if c else "–", len(r["candidates"]), len(r["skipped"]), r["reason"]])
    return rows


def install(app: typer.Typer, stage: typer.Typer) -> None:
    @app.command("recommend")
    def recommend_cmd(
        device: list[str] = typer.Option(..., "--device", "-d", help="Profile name or YAML file (repeatable)."),
        budget_accuracy_drop: Optional[float] = typer.Option(None, help="Max accuracy loss vs FP32 (default: params)."),
        max_minutes: Optional[float] = typer.Option(None, help="Bound on the whole search (default: params)."),
        params: Path = typer.Option(Path("params.yaml"), "--params"),
        data: Path = typer.Option(WS.path("prepared"), "--data"),
        models: Path = typer.Option(WS.path("tflite"), help="The converted variants and their model card."),
        fp32: Path = typer.Option(WS.path("fp32_model")),
        qat: Path = typer.Option(WS.path("qat_model")),
        out: Path = typer.Option(WS.path("recommended"), help="Chosen .tflite per device + recommended.json."),
        report: Path = typer.Option(WS.path("recommendation"), help="Folder for recommendation.{json,md} and plots."),
        profiles_dir: Optional[Path] = typer.Option(None, "--profiles-dir"),
        wide: bool = WideOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Search the compression strategies for each device; exit 1 when a device gets no model."""
        from edgeqat.adapters.run_params import load_run_params
        from edgeqat.steps.recommend import recommend

        p = load_run_params(params)
        cfg = p.recommend.model_copy(update={k: v for k, v in (("budget_accuracy_drop", budget_accuracy_drop),
                                                                ("max_minutes", max_minutes)) if v is not None})
        m = recommend(cfg, data, models, fp32, qat if qat.is_file() else None, report, out, prune=p.prune,
                      validate=p.validate, devices=device, profiles_dir=profiles_dir, force=True,
                      per_channel=p.convert.per_channel, trust_model_code=p.train.trust_model_code)
        from edgeqat.io import read_json

        rec = read_json(report / "recommendation.json")
        if as_json:
            echo_json(rec)
        else:
            rows = choice_rows(rec["devices"])
            show(table(CHOICE_COLS, rows, wide), *([] if wide else [f"  {r[0]}: {r[-1]}" for r in rows]), wide=wide)
        if m["devices_with_a_model"] < len(device):
            raise typer.Exit(1)


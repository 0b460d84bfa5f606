"""`edgeqat report`: the comparison table of the last evaluation (and the device verdicts)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import typer

from edgeqat.adapters.cli.output import Col, JsonOpt, WideOpt, echo_json, show, table
from edgeqat.errors import EdgeqatError
from edgeqat.workspace.stages import Workspace

WS = Workspace(Path("."))  # the table's paths, relative to where the command runs

# By report.COLUMNS key: short headers, and what only --wide shows, so the table fits 100 columns.
VARIANT_COLS = {
    "variant": Col("variant"),
    "accuracy": Col("accuracy", "right"),
    "accuracy_delta": Col("Δ acc", "right", drop=1),
    "agreement": Col("agree", "right", drop=5),
    "size_bytes": Col("bytes", "right"),
    "size_ratio": Col("vs ref", "right", wide=True),
    "gzip_bytes": Col("gzip", "right", drop=4),
    "latency_p50_ms": Col("p50 ms", "right"),
    "latency_p90_ms": Col("p90 ms", "right", wide=True),
    "speedup": Col("speed", "right", drop=3),
    "weight_sparsity": Col("sparse", "right", drop=2),
    "weight_values_per_channel": Col("w/ch", "right", wide=True),
    "integer_only": Col("int8", "right"),
}
# By report.DEVICE_COLUMNS; narrow, a failing device's reasons print under the table.
DEVICE_COLS = (Col("device"), Col("req"), Col("verdict"), Col("runtime", wide=True), Col("accuracy", "right"),
               Col("est. ms", "right"), Col("arena", "right", drop=1), Col("stored", "right", wide=True),
               Col("QEMU aarch64", text=True, drop=2), Col("reasons", wide=True, text=True))


def render(summary: dict[str, Any], wide: bool) -> list[Any]:
    from edgeqat.reporting.tables import DEVICE_COLUMNS, device_rows, pareto_text, storage_rows, summary_intro, variant_table

    columns, rows = variant_table(summary)
    out: list[Any] = [summary_intro(summary, code=""), table([replace(VARIANT_COLS[k], wide_header=t) for k, t in columns], rows, wide)]
    if pareto_text(summary):
        out.append(pareto_text(summary))
    if summary.get("storage"):  # what each device keeps: the flatbuffer, or Vela's encoded flash
        head, srows = storage_rows(summary)
        # narrow: one flatbuffer column and each Ethos-U's flash; --wide adds Vela's cycles
        # too narrow: gzip goes first, then the devices from the last one
        cols = [Col(h.split(" ")[0], "left" if i == 0 else "right", wide=h.endswith(" cycles"), wide_header=h,
                    drop=1 if h.startswith("gzip") else (1 + i if i > 1 else 0)) for i, h in enumerate(head)]
        out += ["", "Bytes stored: the flatbuffer on LiteRT/TFLM, Vela-encoded on each Ethos-U, gzip for a download",
                table(cols, srows, wide)]
    if summary.get("devices"):
        drows = device_rows(summary)
        cols = [replace(c, wide_header=t) for c, t in zip(DEVICE_COLS, DEVICE_COLUMNS)]
        out += ["", f"Devices: {summary.get('validated_model', '?')} (est. ms: the profile's speed model, or Vela's)",
                table(cols, drows, wide)]
        if not wide:
            out += [f"  {r[0]}: {r[-1]}" for r in drows if r[2] == "FAIL"]
    return out


def install(app: typer.Typer) -> None:
    @app.command("report")
    def report_cmd(summary: Path = typer.Option(WS.path("summary")),
                   timings: Optional[Path] = typer.Option(
                       None, help=f"Host latency record [default: {WS.path('evaluate_timings')}, the last evaluate run "
                       f"here, else {WS.path('host_latency')}, committed with the results]."),
                   params: Path = typer.Option(Path("params.yaml"), "--params",
                                               help="register.variant and register.chance_margin, for the chance warning."),
                   wide: bool = WideOpt, as_json: bool = JsonOpt) -> None:
        """Print the comparison table of the last evaluation, with host latency, and warn when the
        registered variant is at chance level."""
        from edgeqat.config import RegisterConfig, load_params
        from edgeqat.io import read_json
        from edgeqat.lifecycle.run_gate import chance_warning
        from edgeqat.reporting.tables import with_latency
        from edgeqat.workspace.timings import latest_latency

        if not summary.is_file():
            raise EdgeqatError(f"{summary}: not found; run the pipeline first (dvc repro)")
        data = read_json(summary)
        cfg = load_params(params).register if params.is_file() else RegisterConfig()
        try:
            measured = (read_json(timings) if timings.is_file() else None) if timings is not None else \
                latest_latency(WS.path("evaluate_timings"), WS.path("host_latency"))
            data = with_latency(data, measured)
            rendered = render(data, wide)
            warning = chance_warning(data, cfg.variant, cfg.chance_margin)
        except (AttributeError, KeyError, TypeError, ValueError) as err:  # valid JSON, but not a summary
            raise EdgeqatError(f"{summary}: not an edgeqat summary ({type(err).__name__}: {err}); rerun the pipeline") from None
        if as_json:
            echo_json({**data, "warnings": [warning] if warning else []})
        else:
            show(*rendered, *([warning] if warning else []), wide=wide)

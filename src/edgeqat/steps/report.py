"""report: the run's outputs -> reports/report.html (one self-contained page), its figures as
PNGs (logged to MLflow with the reports), and metrics/headline.json (the validated model's few
numbers that `dvc metrics show/diff` and `dvc exp show` compare, within 100 columns, and
``gate_passed``: whether the model may be registered, so an experiment whose gate failed says
so in `dvc exp show`; every variant's numbers are in metrics/evaluate.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeqat.config import EvaluateConfig, RegisterConfig, ValidateConfig
from edgeqat.devices.profiles import resolve_profiles
from edgeqat.errors import DataError
from edgeqat.io import log, read_json, write_bytes, write_json, write_text
from edgeqat.lifecycle.run_gate import chance_warning, registry_gate
from edgeqat.reporting.tables import with_latency
from edgeqat.reporting.html import budgets, render
from edgeqat.reporting.plots import confusion_figure, curves_figure, devices_figure, png_bytes
from edgeqat.lifecycle.run_layout import dvc_headline


def report(
    cfg: EvaluateConfig,
    summary_json: str | Path,
    devices_json: str | Path,
    train_history: str | Path,
    qat_history: str | Path,
    confusion_csv: str | Path,
    pareto_png: str | Path,
    recommendation_dir: str | Path,
    html_out: str | Path,
    figures_dir: str | Path,
    headline_path: str | Path,
    host_latency_json: str | Path | None = None,
    *,
    validate: ValidateConfig,
    register: RegisterConfig | None = None,
) -> dict[str, Any]:
    summary_json = Path(summary_json)
    if not summary_json.is_file():
        raise DataError(f"{summary_json}: not found; run the validate stage first")
    summary = read_json(summary_json)
    details = read_json(devices_json).get(summary.get("validated_model", ""), {}) if Path(devices_json).is_file() else {}
    profiles = {p.name: p for p in resolve_profiles(list(summary.get("devices") or {}), extra_dir=validate.profiles_dir)}
    rows = budgets(summary.get("devices") or {}, details, profiles)
    figs = {"curves": curves_figure({"train": Path(train_history), "qat": Path(qat_history)}),
            "confusion": confusion_figure(Path(confusion_csv), summary.get("class_names", []), cfg.headline),
            "devices": devices_figure(summary.get("devices") or {}, rows)}
    pngs = {k: png_bytes(f) for k, f in figs.items() if f is not None}
    figures_dir = Path(figures_dir)
    for k, blob in pngs.items():
        write_bytes(figures_dir / f"{k}.png", blob)
    import base64

    embedded = {k: base64.b64encode(b).decode() for k, b in pngs.items()}
    if Path(pareto_png).is_file():
        embedded["pareto"] = base64.b64encode(Path(pareto_png).read_bytes()).decode()
    rec_file = Path(recommendation_dir) / "recommendation.json"
    register = register or RegisterConfig()
    # the variant register will register: validate's (its stand-in when register.variant was not
    # built; check-params makes the two settings equal)
    registered = summary.get("validated_model") or register.variant
    warning = chance_warning(summary, registered, register.chance_margin)
    if warning:
        log(f"report: {warning}")
    # the latency committed with the results: it changes only with the models (edgeqat.workspace.timings)
    latency = read_json(host_latency_json) if host_latency_json and Path(host_latency_json).is_file() else None
    html = render(with_latency(summary, latency), figures=embedded, budget_rows=rows,
                  recommendation=read_json(rec_file) if rec_file.is_file() else None, warning=warning)
    write_text(html_out, html)
    head = dvc_headline(summary, gate_passed=not registry_gate(summary, registered, register.chance_margin))
    write_json(headline_path, head)
    log(f"report: {html_out} ({len(html) // 1024} KiB, {len(embedded)} figures)")
    return head

"""How an execution reads in MLflow: which numbers are metrics, under which names.

Settings are params (every params.yaml key); metrics are measurements, and only the ones worth
a chart. The MLflow UI makes one section per key prefix (everything before the last ``/``) and
orders sections alphabetically, so the names put what a person looks for first:

=====================  ===========================================================  =======
section                keys                                                         default
=====================  ===========================================================  =======
``headline``           the validated model's accuracy, KiB and devices passed:      3
                       one row of charts, so the curves start on the first screen
``training/<what>``    one curve per fine-tune and column, step = epoch: the FP32   23
                       ``baseline`` (the train stage) first, then ``cluster``,
                       ``prune``, ``qat`` (``training/prune/pqat.val_accuracy``)
``validation``         ``<device>.passed`` (1/0) per validated device, the          14
                       accuracy drop vs the reference, devices, gate passed (1/0)
``variants``           ``<variant>.accuracy`` and ``<variant>.size_bytes``          22
``system``             MLflow's system metrics (its own tab)                        ~8
=====================  ===========================================================  =======

Everything else a stage measured (per-class counts, Vela cycles, clustering facts, wall
times) goes into one table artifact (:func:`metrics_table`), and the same numbers stay in
``metrics/<stage>.json``. :data:`MAX_METRICS` caps the sections above: past it the lowest
groups (variants, then validation) stay in the table only. Standard library only.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

HEADLINE = "headline"
TRAINING = "training"
VALIDATION = "validation"
VARIANTS = "variants"
# Columns of a training epoch worth a chart; the others stay in plots/<stage>_history.csv.
CURVE_COLUMNS = ("loss", "val_accuracy", "sparsity")
# edgeqat's own metrics on a run (MLflow adds its ~8 system metrics beside them).
MAX_METRICS = 70


# The run page's first screen holds one row of three charts, then the first curves.
RUN_HEADLINE = ("accuracy", "size_kib", "devices_passed")
# Curve sections are named for what they train; the FP32 baseline's sorts first.
CURVE_SECTION = {"train": "baseline"}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text.split(" (")[0].strip()).strip("_") or "fit"


def curve_key(stage: str, fine_tune: str, column: str) -> str:
    """``training/<stage>/<fine-tune>.<column>``: the stage names the section (the train stage's
    is ``baseline``), the fine-tune (as the step named its training run) and the column the chart."""
    return f"{TRAINING}/{CURVE_SECTION.get(stage, _slug(stage))}/{_slug(fine_tune)}.{column}"


def curve_points(stage: str, fine_tune: str, logs: Mapping[str, float]) -> dict[str, float]:
    """An epoch's logs -> {curve key: value} for the charted columns."""
    return {curve_key(stage, fine_tune, c): float(logs[c]) for c in CURVE_COLUMNS if c in logs}


def history_curves(plots_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """``<stage>_history.csv`` (written by train, qat, prune: their first fine-tune, named as
    the stage) -> the same keys the live logging uses, stepped by epoch."""
    out: dict[str, list[tuple[int, float]]] = {}
    for f in sorted(Path(plots_dir).glob("*_history.csv")):
        stage = f.stem.removesuffix("_history")
        with open(f, newline="") as fh:
            for row in csv.DictReader(fh):
                for col in CURVE_COLUMNS:
                    if row.get(col) not in ("", None):
                        out.setdefault(curve_key(stage, stage, col), []).append((int(row["epoch"]), float(row[col])))
    return out


def headline(summary: Mapping[str, Any], gate_passed: bool | None = None) -> dict[str, float]:
    """The validated model's few numbers: what the runs table and `dvc metrics show` compare.
    ``gate_passed``: the registry's verdict (:func:`edgeqat.lifecycle.run_gate.registry_gate`, which adds
    the chance-level check); by default, the device gate's."""
    variants = summary.get("variants") or {}
    model = summary.get("validated_model") or summary.get("headline")
    row = variants.get(model) or {}
    ref = variants.get(summary.get("reference", "fp32")) or {}
    out: dict[str, float] = {}
    if "accuracy" in row:
        out["accuracy"] = round(float(row["accuracy"]), 4)
        if "accuracy" in ref:
            out["accuracy_drop"] = round(float(ref["accuracy"]) - float(row["accuracy"]), 4)
    if "size_bytes" in row:
        out["size_kib"] = round(float(row["size_bytes"]) / 1024, 1)
    devices = summary.get("devices") or {}
    if devices:
        out["devices_passed"] = sum(bool(d.get("passed")) for d in devices.values())
        out["devices"] = len(devices)
    if gate_passed is None and summary.get("validation_passed") is not None:
        gate_passed = bool(summary["validation_passed"])
    if gate_passed is not None:
        out["gate_passed"] = 1.0 if gate_passed else 0.0
    return out


def dvc_headline(summary: Mapping[str, Any], gate_passed: bool) -> dict[str, Any]:
    """metrics/headline.json: the validated model's accuracy, KiB and devices passed, and
    ``gate_passed`` (whether it may be registered, so a kept experiment whose gate failed says
    so in `dvc exp show`): `dvc metrics show` fits 100 columns. The test split's size rides
    along: accuracies on different test splits do not compare. (The drop vs FP32 and how many
    devices were validated are in the MLflow run, ``validation/``, and reports/summary.json.)"""
    head = headline(summary)
    keys = ("accuracy", "size_kib", "devices_passed")
    return {**{k: head[k] for k in keys if k in head}, "gate_passed": bool(gate_passed),
            "test_images": summary.get("num_test")}


def variant_metrics(evaluation: Mapping[str, Any]) -> dict[str, float]:
    """``variants/<variant>.accuracy`` and ``.size_bytes`` from evaluate's (or validate's) summary."""
    out: dict[str, float] = {}
    for name, row in sorted((evaluation.get("variants") or {}).items()):
        for key in ("accuracy", "size_bytes"):
            if isinstance(row.get(key), (int, float)):
                out[f"{VARIANTS}/{name}.{key}"] = float(row[key])
    return out


def validation_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    return {f"{VALIDATION}/{dev}.passed": 1.0 if v.get("passed") else 0.0
            for dev, v in sorted((summary.get("devices") or {}).items())}


def summary_metrics(summary: Mapping[str, Any], gate_passed: bool | None = None) -> dict[str, float]:
    """Every run metric that reports/summary.json (validate's output) holds: the headline's
    three, the rest of the headline numbers under validation."""
    head = headline(summary, gate_passed)
    return {**{f"{HEADLINE if k in RUN_HEADLINE else VALIDATION}/{k}": float(v) for k, v in head.items()},
            **validation_metrics(summary), **variant_metrics(summary)}


def from_outputs(paths: Mapping[str, Path]) -> dict[str, float]:
    """The run metrics a stage's outputs hold, by output port: evaluate's ``evaluation`` (the
    variants), validate's ``summary`` (the devices). The headline waits for track, which links
    it to the logged model."""
    from edgeqat.io import read_json

    out: dict[str, float] = {}
    for port, pick in (("evaluation", variant_metrics), ("summary", validation_metrics)):
        path = paths.get(port)
        if path is not None and Path(path).is_file():
            data = read_json(path)
            if isinstance(data, dict):
                out.update(pick(data))
    return out


def within_budget(metrics: Mapping[str, float], curve_keys: Iterable[str] = ()) -> tuple[dict[str, float], list[str]]:
    """(the metrics to log, the keys left to the table): headline first, then the curves
    (``curve_keys``, already on the run), validation, variants, until :data:`MAX_METRICS`."""
    room = MAX_METRICS - len(set(curve_keys))
    order = (f"{HEADLINE}/", f"{TRAINING}/", f"{VALIDATION}/", f"{VARIANTS}/", "")
    ranked = sorted(metrics, key=lambda k: next(i for i, p in enumerate(order) if k.startswith(p)))
    keep = ranked[:max(room, 0)]
    return {k: float(metrics[k]) for k in keep}, [k for k in ranked if k not in set(keep)]


def metrics_table(stage_metrics: Mapping[str, Mapping[str, Any]],
                  timings: Mapping[str, Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Every number a stage measured, one row each (stage, key, value): the run's table
    artifact. ``stage_metrics``: metrics/<stage>.json by stage; ``timings``: logs/timings."""
    from edgeqat.io import flatten

    rows: list[tuple[str, str, Any]] = []
    for stage, data in sorted(stage_metrics.items()):
        for k, v in flatten(dict(data)).items():
            if isinstance(v, (bool, int, float)) or isinstance(v, str):
                rows.append((stage, k, v))
    for stage, rec in sorted(timings.items()):
        body = {k: v for k, v in rec.items() if k not in ("stage", "execution", "started_at", "ended_at")}
        for k, v in flatten(body).items():
            if isinstance(v, (bool, int, float)):
                rows.append((stage, f"timings.{k}", v))
    return {"stage": [r[0] for r in rows], "key": [r[1] for r in rows],
            "value": [v if isinstance(v, str) else float(v) for _, _, v in rows]}

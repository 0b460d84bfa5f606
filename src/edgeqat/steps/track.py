"""track: log the whole pipeline execution to MLflow as one run, from the workspace the stages wrote.

One run holds everything: every params key, every stage's metrics under the same keys each
time, one section per stage (``train/test_accuracy``, ``evaluate/qat_int8.accuracy``), the host timings, the
training curves, the prepared data as the run's input dataset, the reports and models as
artifacts, and the registered variant (and each device's recommended model) as LoggedModels
that ``register`` then points versions at. It starts when the execution's first stage
started and ends now. A run whose required device failed, or whose registered variant is at
chance level (:func:`edgeqat.report.registry_gate`), is still logged, marked FAILED with its
verdicts and, for chance level, a warning tag and a warning atop its description, so it stays
visible; register then refuses the model.

Re-tracking the same execution (same params, same results) reuses its run: an execution is
identified by a fingerprint of what it produced (``reports/tracked.json``, a DVC output
that is the same bytes on every machine), so ``make demo`` or CI can always ensure that the
current results are in the current MLflow store without logging them twice.
"""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeqat import __version__
from edgeqat.config import Params
from edgeqat.errors import DataError
from edgeqat.io import CARD_NAME, contained, flatten, log, read_json, variant_file, write_json
from edgeqat.provenance import PIPELINE_OUTPUTS, git_info
from edgeqat.report import chance_warning, ordered_variants, registry_gate
from edgeqat.timings import TIMINGS_DIR, execution_id, execution_window, read_timings
from edgeqat.variants import stand_in

# What a run's results are made of: the files whose bytes identify the execution.
FINGERPRINTED = ("metrics", "reports/summary.json", "models/tflite/" + CARD_NAME,
                 "reports/recommendation/recommendation.json", "models/recommended/recommended.json")


def numeric_leaves(data: dict[str, Any], prefix: str) -> tuple[dict[str, float], dict[str, str]]:
    nums: dict[str, float] = {}
    strings: dict[str, str] = {}
    for k, v in flatten(data, prefix).items():
        if isinstance(v, (bool, int, float)):
            nums[k] = float(v)
        elif isinstance(v, str):
            strings[k] = v
    return nums, strings


# MLflow's UI groups a run's metrics by the prefix before "/": one section per stage.
SEP = "/"
# Per-class and per-file counts of the split: dozens of keys that compare nothing across runs
# (they are in metrics/prepare.json, logged with the run's files).
NOT_METRICS = ("prepare/counts.", "prepare/split_files.")


def numeric_metrics(metrics_dir: Path, skip: set[str]) -> tuple[dict[str, float], dict[str, str]]:
    """Every numeric leaf of metrics/<stage>.json as '<stage>/<dotted key>'; strings come back apart."""
    nums: dict[str, float] = {}
    strings: dict[str, str] = {}
    for f in sorted(metrics_dir.glob("*.json")):
        if f.stem in skip:
            continue
        data = read_json(f)
        if not isinstance(data, dict):
            raise DataError(f"{f}: expected a JSON object of metrics, got {type(data).__name__}")
        n, s = numeric_leaves(data, f"{f.stem}{SEP}")
        nums.update({k: v for k, v in n.items() if not k.startswith(NOT_METRICS)})
        strings.update(s)
    return nums, strings


def timing_metrics(records: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Host timings under the stage's own keys: ``evaluate/qat_int8.latency_p50_ms``, ``train/seconds``."""
    out: dict[str, float] = {}
    for stage, rec in records.items():
        body = {k: v for k, v in rec.items() if k not in ("stage", "execution", "started_at", "ended_at")}
        out.update(numeric_leaves(body, f"{stage}{SEP}")[0])
    return out


def curves(plots_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """<stage>_history.csv -> '<stage>/curve.<column>' stepped by epoch."""
    out: dict[str, list[tuple[int, float]]] = {}
    for f in sorted(plots_dir.glob("*_history.csv")):
        stage = f.stem.removesuffix("_history")
        with open(f, newline="") as fh:
            for row in csv.DictReader(fh):
                for col, val in row.items():
                    if col != "epoch" and val not in ("", None):
                        out.setdefault(f"{stage}{SEP}curve.{col}", []).append((int(row["epoch"]), float(val)))
    return out


def fingerprint(params: Params, root: Path, extra: dict[str, str]) -> str:
    """sha256 over the params, the run tags given, and the bytes of the execution's results."""
    h = hashlib.sha256(json.dumps({"params": params.model_dump(mode="json"), "tags": extra}, sort_keys=True).encode())
    for rel in FINGERPRINTED:
        p = root / rel
        files = sorted(p.glob("*.json")) if p.is_dir() else [p] if p.is_file() else []
        for f in files:
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def _models(params: Params, root: Path) -> list[dict[str, Any]]:
    """The .tflite files to log as models: the registered variant, then each device's recommendation."""
    tflite_dir = root / "models" / "tflite"
    out = []
    if (tflite_dir / CARD_NAME).is_file():
        card = read_json(tflite_dir / CARD_NAME)
        variant = stand_in(params.register.variant, card)  # what register will register
        if variant in card.get("variants", {}):
            out.append({"name": variant, "tflite": variant_file(tflite_dir, card, variant),
                        "card": {**{k: v for k, v in card.items() if k != "variants"},
                                 "variants": {variant: card["variants"][variant]}}})
        rec_dir = root / "models" / "recommended"
        chosen = read_json(rec_dir / "recommended.json") if (rec_dir / "recommended.json").is_file() else {}
        for device, entry in sorted(chosen.items()):
            tfl = contained(rec_dir, entry["file"], f"{rec_dir / 'recommended.json'}: {device}.file")
            if tfl.is_file():
                out.append({"name": f"recommended-{device}", "tflite": tfl, "device": device, "strategy": entry["strategy"],
                            # the entry holds the facts recommend read from the file (its outputs,
                            # weights, I/O), which the served model relies on; export verifies the sha256
                            "card": {**{k: v for k, v in card.items() if k != "variants"},
                                     "variants": {device: {**entry, "file": tfl.name, "sha256": _sha(tfl)}}}})
    return out


def _description(summary: dict[str, Any], gate: str, warning: str = "") -> str:
    lines = ["**edgeqat pipeline run**", ""]
    if warning:
        lines += [f"**{warning}**", ""]
    if summary.get("variants"):
        lines += ["| variant | accuracy | size (bytes) | gzip (bytes) | integer-only |", "|---|---|---|---|---|"]
        for name, r in ordered_variants(summary):
            lines.append(f"| {name} | {r.get('accuracy', float('nan')):.4f} | {r.get('size_bytes', 0):,} | "
                         f"{r.get('gzip_bytes', 0):,} | {'yes' if r.get('integer_only') else 'no'} |")
    devices = summary.get("devices") or {}
    if devices:
        passed = sum(bool(v.get("passed")) for v in devices.values())
        lines += ["", f"Devices: {passed}/{len(devices)} pass for `{summary.get('validated_model', '?')}`."]
    lines += ["", f"Gate: {gate}"]
    return "\n".join(lines)


def _dataset(root: Path, commit: str) -> dict[str, Any] | None:
    meta_path = root / "data" / "prepared" / "meta.json"
    if not meta_path.is_file():
        return None
    meta = read_json(meta_path)
    return {"name": "prepared", "digest": meta["data_sha256"], "source_type": "dvc",
            "source": {"path": "data/prepared", "git_commit": commit, "data_sha256": meta["data_sha256"]},
            "profile": {f"num_{k}": v for k, v in meta.get("sizes", {}).items()},
            "schema": {"image_shape": meta.get("image_shape"), "class_names": meta.get("class_names"),
                       "normalization": (meta.get("normalization") or {}).get("scheme")}}


def track(params: Params, *, root: str | Path = ".", uri: str | None = None,
          extra_tags: dict[str, str] | None = None) -> dict[str, Any]:
    from edgeqat.registry import log_tflite_model
    from edgeqat.tracking import (FINGERPRINT_TAG, MODEL_TAG, RunWriter, check_reachable, find_run, stored_uri,
                                  tracking_uri)

    cfg, root, extra = params.track, Path(root), dict(extra_tags or {})
    uri = uri or tracking_uri(root)
    summary = read_json(root / "reports" / "summary.json") if (root / "reports" / "summary.json").is_file() else {}
    nums, strings = numeric_metrics(root / "metrics", skip={"track"})  # bad files fail before MLflow is touched
    fp = fingerprint(params, root, extra)
    tracked = {"experiment": cfg.experiment, "fingerprint": fp, "models": [m["name"] for m in _models(params, root)]}
    check_reachable(uri)
    existing = find_run(uri, cfg.experiment, FINGERPRINT_TAG, fp, root)
    if existing is not None:
        info = {"run_id": existing.info.run_id, "experiment_id": existing.info.experiment_id, "tracking_uri": uri}
        log(f"track: this execution is already MLflow run {info['run_id']} in {cfg.experiment!r} at {uri}")
        write_json(root / "logs" / "mlflow_run.json", {**info, "tracking_uri": stored_uri(uri)})
        write_json(root / "reports" / "tracked.json", tracked)
        return {**info, "reused": True}

    records = read_timings(root / TIMINGS_DIR)
    nums.update(timing_metrics(records))
    window = execution_window(records, execution_id())
    git = git_info(root, ignore=PIPELINE_OUTPUTS)
    card_file = root / "models" / "tflite" / CARD_NAME
    variant = stand_in(params.register.variant, read_json(card_file)) if card_file.is_file() else params.register.variant
    gate_text = registry_gate(summary, variant, params.register.chance_margin)
    warning = chance_warning(summary, variant, params.register.chance_margin)
    tags = {**git, "edgeqat_version": __version__, FINGERPRINT_TAG: fp,
            "edgeqat.gate": "failed" if gate_text else "passed", **extra}
    if gate_text:
        tags["edgeqat.gate.reasons"] = gate_text[:5000]
    if warning:
        tags["edgeqat.warning.chance_level"] = warning[:5000]
    if f"prepare{SEP}data_sha256" in strings:
        tags["data_sha256"] = strings[f"prepare{SEP}data_sha256"]
    artifacts = [(root / "reports", "reports"), (root / "plots", "plots")]
    if cfg.log_models:
        artifacts.append((root / "models", "models"))
    if (root / "logs" / "tensorboard").is_dir():
        artifacts.append((root / "logs" / "tensorboard", "tensorboard"))

    with RunWriter(uri=uri, experiment=cfg.experiment, tags=tags, root=root, start=window[0] if window else None,
                   run_name=f"{params.train.model}-{git.get('git_commit', 'unknown')[:8]}") as run:
        run.log_params(flatten(json.loads(params.model_dump_json())))
        run.log_metrics(nums, curves(root / "plots"))
        ds = _dataset(root, git.get("git_commit", "unknown"))
        if ds is not None:
            run.log_dataset(**ds)
        run.log_artifacts(artifacts)
        for m in _models(params, root):
            tags_m = {k: m[k] for k in ("device", "strategy") if k in m}
            logged = log_tflite_model(uri, run.experiment_id, run.run_id, m["name"], m["tflite"], m["card"],
                                      {**tags_m, "sha256": _sha(m["tflite"])})
            run.set_tags({MODEL_TAG + m["name"]: logged["model_id"]})
        run.describe(_description(summary, gate_text or "passed", warning))
        run.finish("FAILED" if gate_text else "FINISHED", datetime.now(timezone.utc))
    info = run.info()
    log(f"track: MLflow run {info['run_id']} in experiment {cfg.experiment!r} at {uri}"
        + (" (marked FAILED: its gate failed)" if gate_text else ""))
    if warning:
        log(f"track: {warning}")
    write_json(root / "logs" / "mlflow_run.json", {**info, "tracking_uri": stored_uri(uri)})
    write_json(root / "reports" / "tracked.json", tracked)
    return {**info, "metrics_logged": len(nums), "reused": False}


def _sha(path: Path) -> str:
    from edgeqat.io import sha256_file

    return sha256_file(path)

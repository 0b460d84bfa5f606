"""track: complete the execution's MLflow run, from the workspace the stages wrote.

The first stage of the execution started the run and each stage logged to it as it worked
(:mod:`edgeqat.adapters.live`): params, one point per epoch of every fine-tune, its status, the
system metrics. track completes it: every params key, the curves and measurements of the
stages DVC skipped as cached (from their files), the headline numbers (linked to the logged
model and the dataset), the input dataset with its lineage (the raw data's DVC hash, its
source, the prepared split's digest), one table artifact with every number any stage
measured, the reports and models as artifacts, and the registered variant (and each device's
recommended model) as LoggedModels that ``register`` then points versions at. The run's
metrics follow :mod:`edgeqat.lifecycle.run_layout` (at most :data:`~edgeqat.lifecycle.run_layout.MAX_METRICS`),
so the MLflow UI opens on the headline and the training curves. A run whose required device
failed, or whose registered variant is at chance level (:func:`edgeqat.lifecycle.run_gate.registry_gate`),
is marked FAILED with its verdicts and, for chance level, a warning tag and a warning atop its
description, so it stays visible; register then refuses the model.

Without a live run (live logging off, or everything cached), track creates the run itself,
from the execution's real start. Re-tracking the same execution (same params, same results)
reuses its run: an execution is identified by a fingerprint of what it produced
(``reports/tracked.json``, a DVC output that is the same bytes on every machine), so ``make
demo`` or CI can always ensure that the current results are in the current MLflow store
without logging them twice.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeqat import __version__
from edgeqat.config import Params
from edgeqat.errors import DataError
from edgeqat.io import CARD_NAME, contained, flatten, log, read_json, variant_file, write_json
from edgeqat.workspace.provenance import PIPELINE_OUTPUTS, git_info
from edgeqat.lifecycle.run_gate import chance_warning, registry_gate
from edgeqat.reporting.tables import ordered_variants
from edgeqat.lifecycle.run_layout import HEADLINE, history_curves, metrics_table, summary_metrics, variant_metrics, within_budget
from edgeqat.workspace.stages import Workspace, workspace as as_workspace
from edgeqat.workspace.timings import execution_id, execution_window, read_timings
from edgeqat.catalog.variants import stand_in

# Track reads its workspace by port name (its inputs in the stage table); folders are named by
# a port they hold (the folder of headline.json holds every stage's metrics).
METRICS_DIR, TIMINGS_DIR, CURVES_DIR = "headline", "prepare_timings", "train_history"
# Folders logged whole as artifacts: (a port in it, artifact folder).
ARTIFACT_DIRS = (("summary", "reports"), ("confusion", "plots"))
MODELS_DIR, TENSORBOARD_DIR = ("fp32_model", "models"), ("train_tensorboard", "tensorboard")
# What a run's results are made of: the files whose bytes identify the execution (a folder of
# metrics, or a file in a port's folder).
FINGERPRINTED = ((METRICS_DIR, None), ("summary", ""), ("tflite", CARD_NAME),
                 ("recommendation", "recommendation.json"), ("recommended", "recommended.json"))
TABLE_ARTIFACT = "tables/stage_metrics.json"  # every number any stage measured: stage, key, value


def stage_metrics(metrics_dir: Path, skip: set[str]) -> dict[str, dict[str, Any]]:
    """metrics/<stage>.json by stage (bad files fail before MLflow is touched)."""
    out = {}
    for f in sorted(metrics_dir.glob("*.json")):
        if f.stem in skip:
            continue
        data = read_json(f)
        if not isinstance(data, dict):
            raise DataError(f"{f}: expected a JSON object of metrics, got {type(data).__name__}")
        out[f.stem] = data
    return out


def run_metrics(ws: Workspace, gate_passed: bool | None = None) -> dict[str, float]:
    """What the finished run holds besides the curves (headline, validation, variants);
    ``gate_passed``: the registry's verdict (by default, the device gate's)."""
    summary_file, evaluation_file = ws.path("summary"), ws.path("evaluation")
    out: dict[str, float] = {}
    if evaluation_file.is_file():
        out.update(variant_metrics(read_json(evaluation_file)))
    if summary_file.is_file():
        out.update(summary_metrics(read_json(summary_file), gate_passed))
    return out


def fingerprint(params: Params, ws: Workspace, extra: dict[str, str]) -> str:
    """sha256 over the params, the run tags given, and the bytes of the execution's results."""
    h = hashlib.sha256(json.dumps({"params": params.model_dump(mode="json"), "tags": extra}, sort_keys=True).encode())
    root = ws.root
    for port, name in FINGERPRINTED:
        p = ws.path(port).parent if name is None else ws.path(port) / name if name else ws.path(port)
        files = sorted(p.glob("*.json")) if p.is_dir() else [p] if p.is_file() else []
        for f in files:
            name_of = f.relative_to(root) if f.is_relative_to(root) else f  # a path given instead of the table's
            h.update(name_of.as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def _models(params: Params, ws: Workspace) -> list[dict[str, Any]]:
    """The .tflite files to log as models: the registered variant, then each device's recommendation."""
    tflite_dir = ws.path("tflite")
    out = []
    if (tflite_dir / CARD_NAME).is_file():
        card = read_json(tflite_dir / CARD_NAME)
        variant = stand_in(params.register.variant, card)  # what register will register
        if variant in card.get("variants", {}):
            out.append({"name": variant, "tflite": variant_file(tflite_dir, card, variant),
                        "card": {**{k: v for k, v in card.items() if k != "variants"},
                                 "variants": {variant: card["variants"][variant]}}})
        rec_dir = ws.path("recommended")
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


def _dataset(params: Params, ws: Workspace, commit: str) -> dict[str, Any] | None:
    """The run's input dataset: the prepared split (its digest), traced to the raw data
    (source, path, DVC hash from the .dvc file or dvc.lock, what it was imported from)."""
    from edgeqat.workspace.provenance import raw_data_lineage

    meta_path = ws.path("prepared") / "meta.json"
    if not meta_path.is_file():
        return None
    meta = read_json(meta_path)
    raw = raw_data_lineage(params.prepare.source, params.prepare.path, ws.root)
    return {"name": "prepared", "digest": meta["data_sha256"], "source_type": "dvc",
            "source": {"path": ws.port("prepared").path, "git_commit": commit, "data_sha256": meta["data_sha256"], "raw": raw},
            "profile": {**{f"num_{k}": v for k, v in meta.get("sizes", {}).items()},
                        **({"raw_dvc_hash": raw["dvc_hash"]} if raw.get("dvc_hash") else {})},
            "schema": {"image_shape": meta.get("image_shape"), "class_names": meta.get("class_names"),
                       "normalization": (meta.get("normalization") or {}).get("scheme")}}


def _runs_table_view(experiment_columns: list[str]) -> dict[str, Any]:
    """The experiment's runs table as edgeqat opens it (MLflow's shared-view tag): accuracy,
    size, devices and the gate verdict beside the run name."""
    return {"selectedColumns": experiment_columns, "columnOrder": experiment_columns,
            "orderByKey": "attributes.start_time", "orderByAsc": False}


RUNS_TABLE_COLUMNS = [f"metrics.`{HEADLINE}/accuracy`", f"metrics.`{HEADLINE}/size_kib`",
                      f"metrics.`{HEADLINE}/devices_passed`", "tags.`edgeqat.gate`", "attributes.`Models`"]


def track(params: Params, *, workspace: Workspace | str | Path = ".", uri: str | None = None,
          extra_tags: dict[str, str] | None = None, live_run: dict[str, Any] | None = None) -> dict[str, Any]:
    """``workspace``: the track stage's ports (from the stage runner), or the folder that holds
    them; ``live_run`` (from the stage runner): the execution's live run to complete
    (``run_id``), else the name and tags a new run gets."""
    from edgeqat.lifecycle.registry import log_tflite_model
    from edgeqat.lifecycle.tracking import (FINGERPRINT_TAG, MODEL_TAG, RunWriter, check_reachable, find_run, set_runs_view,
                                  stored_uri, tracking_uri)

    ws = as_workspace(workspace, "track")
    cfg, root, extra = params.track, ws.root, dict(extra_tags or {})
    live = live_run or {}
    uri = uri or tracking_uri(root)
    summary = read_json(ws.path("summary")) if ws.path("summary").is_file() else {}
    per_stage = stage_metrics(ws.path(METRICS_DIR).parent, skip={"track"})  # bad files fail before MLflow is touched
    card_file = ws.path("tflite") / CARD_NAME
    variant = stand_in(params.register.variant, read_json(card_file)) if card_file.is_file() else params.register.variant
    gate_text = registry_gate(summary, variant, params.register.chance_margin)
    warning = chance_warning(summary, variant, params.register.chance_margin)
    wanted = run_metrics(ws, gate_passed=not gate_text if summary else None)
    fp = fingerprint(params, ws, extra)
    tracked = {"experiment": cfg.experiment, "fingerprint": fp, "models": [m["name"] for m in _models(params, ws)]}
    check_reachable(uri)
    existing = None if live.get("run_id") else find_run(uri, cfg.experiment, FINGERPRINT_TAG, fp, root)
    if existing is not None:
        info = {"run_id": existing.info.run_id, "experiment_id": existing.info.experiment_id, "tracking_uri": uri}
        log(f"track: this execution is already MLflow run {info['run_id']} in {cfg.experiment!r} at {uri}")
        write_json(ws.path("mlflow_run"), {**info, "tracking_uri": stored_uri(uri)})
        write_json(ws.path("tracked"), tracked)
        return {**info, "reused": True}

    records = read_timings(ws.path(TIMINGS_DIR).parent)
    window = execution_window(records, execution_id())
    git = git_info(root, ignore=PIPELINE_OUTPUTS)
    tags = {**git, **(live.get("tags") or {}), "edgeqat_version": __version__, FINGERPRINT_TAG: fp,
            "edgeqat.gate": "failed" if gate_text else "passed", **extra}
    if gate_text:
        tags["edgeqat.gate.reasons"] = gate_text[:5000]  # whole in the description
    if warning:
        tags["edgeqat.warning.chance_level"] = warning[:5000]
    if per_stage.get("prepare", {}).get("data_sha256"):
        tags["data_sha256"] = str(per_stage["prepare"]["data_sha256"])
    artifacts = [(ws.path(port).parent, name) for port, name in ARTIFACT_DIRS]
    if cfg.log_models:
        artifacts.append((ws.path(MODELS_DIR[0]).parent, MODELS_DIR[1]))
    if ws.path(TENSORBOARD_DIR[0]).parent.is_dir():
        artifacts.append((ws.path(TENSORBOARD_DIR[0]).parent, TENSORBOARD_DIR[1]))

    name = live.get("run_name") or f"{params.train.model}-{git.get('git_commit', 'unknown')[:8]}"
    if live.get("run_id"):
        writer = RunWriter.resume(uri=uri, run_id=live["run_id"], root=root)
        writer.set_tags(tags)
    else:
        writer = RunWriter(uri=uri, experiment=cfg.experiment, tags=tags, root=root,
                           start=window[0] if window else None, run_name=name)
    with writer as run:
        set_runs_view(run.client, run.experiment_id, _runs_table_view(RUNS_TABLE_COLUMNS))
        run.log_params(flatten(json.loads(params.model_dump_json())))
        have = run.metric_keys()
        curves = {k: v for k, v in history_curves(ws.path(CURVES_DIR).parent).items() if k not in have}  # stages DVC skipped
        curve_keys = {k for k in have if k.startswith("training/")} | set(curves)
        keep, left = within_budget(wanted, curve_keys)
        run.log_metrics({k: v for k, v in keep.items() if k not in have and not k.startswith(f"{HEADLINE}/")}, curves)
        if left:
            log(f"track: {len(left)} metric(s) past the run's budget are in {TABLE_ARTIFACT} only")
        run.log_table(metrics_table(per_stage, records), TABLE_ARTIFACT)
        ds = _dataset(params, ws, git.get("git_commit", "unknown"))
        if ds is not None:
            run.log_dataset(**ds)
        run.log_artifacts(artifacts)
        registered_model = None
        for m in _models(params, ws):
            tags_m = {k: m[k] for k in ("device", "strategy") if k in m}
            logged = log_tflite_model(uri, run.experiment_id, run.run_id, m["name"], m["tflite"], m["card"],
                                      {**tags_m, "sha256": _sha(m["tflite"])})
            run.set_tags({MODEL_TAG + m["name"]: logged["model_id"]})
            if m["name"] == variant:
                registered_model = logged["model_id"]
                run.log_model_params(registered_model, flatten(json.loads(params.model_dump_json())))
        # The headline, linked to the registered variant's LoggedModel and the dataset (its model page shows them).
        heads = {k: v for k, v in keep.items() if k.startswith(f"{HEADLINE}/") and k not in have}
        run.log_metrics(heads, model_id=registered_model, dataset=(ds["name"], ds["digest"]) if ds else None)
        run.describe(_description(summary, gate_text or "passed", warning))
        run.finish("FAILED" if gate_text else "FINISHED", datetime.now(timezone.utc))
    info = run.info()
    log(f"track: MLflow run {info['run_id']} in experiment {cfg.experiment!r} at {uri}"
        + (" (marked FAILED: its gate failed)" if gate_text else ""))
    if warning:
        log(f"track: {warning}")
    write_json(ws.path("mlflow_run"), {**info, "tracking_uri": stored_uri(uri)})
    write_json(ws.path("tracked"), tracked)
    return {**info, "metrics_logged": len(run.metric_keys()), "reused": False}


def _sha(path: Path) -> str:
    from edgeqat.io import sha256_file

    return sha256_file(path)

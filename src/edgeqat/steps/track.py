"""track: log the whole pipeline execution to MLflow from the files the stages wrote."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from edgeqat import __version__
from edgeqat.config import Params, TrackConfig
from edgeqat.errors import DataError
from edgeqat.io import log, read_json, write_json
from edgeqat.provenance import git_info


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def numeric_metrics(metrics_dir: Path, skip: set[str]) -> tuple[dict[str, float], dict[str, str]]:
    """Every numeric leaf of metrics/<stage>.json as '<stage>.<dotted key>'; strings come back apart."""
    nums: dict[str, float] = {}
    strings: dict[str, str] = {}
    for f in sorted(metrics_dir.glob("*.json")):
        if f.stem in skip:
            continue
        data = read_json(f)
        if not isinstance(data, dict):
            raise DataError(f"{f}: expected a JSON object of metrics, got {type(data).__name__}")
        for k, v in flatten(data, f"{f.stem}.").items():
            if isinstance(v, bool):
                nums[k] = float(v)
            elif isinstance(v, (int, float)):
                nums[k] = float(v)
            elif isinstance(v, str):
                strings[k] = v
    return nums, strings


def curves(plots_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """<stage>_history.csv -> '<stage>.curve.<column>' stepped by epoch."""
    out: dict[str, list[tuple[int, float]]] = {}
    for f in sorted(plots_dir.glob("*_history.csv")):
        stage = f.stem.removesuffix("_history")
        with open(f, newline="") as fh:
            for row in csv.DictReader(fh):
                for col, val in row.items():
                    if col != "epoch" and val not in ("", None):
                        out.setdefault(f"{stage}.curve.{col}", []).append((int(row["epoch"]), float(val)))
    return out


def track(
    cfg: TrackConfig,
    params: Params,
    metrics_dir: str | Path,
    plots_dir: str | Path,
    artifacts: dict[str, str | Path],
    out_json: str | Path | None = None,
    *,
    uri: str | None = None,
    root: str | Path = ".",
    extra_tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    from edgeqat.tracking import log_run

    metrics_dir, plots_dir = Path(metrics_dir), Path(plots_dir)
    nums, strings = numeric_metrics(metrics_dir, skip={"track"})
    tags = {**git_info(root), "edgeqat_version": __version__, **(extra_tags or {})}
    if "prepare.data_sha256" in strings:
        tags["data_sha256"] = strings["prepare.data_sha256"]
    param_dict = flatten(json.loads(params.model_dump_json()))
    files = [(Path(p), dest) for dest, p in artifacts.items() if cfg.log_models or dest not in ("models", "tflite")]
    info = log_run(
        experiment=cfg.experiment,
        params=param_dict,
        metrics=nums,
        curves=curves(plots_dir),
        tags=tags,
        artifacts=files,
        run_name=f"{params.train.model}-{tags.get('git_commit', 'unknown')[:8]}",
        uri=uri,
        root=root,
    )
    log(f"track: MLflow run {info['run_id']} in experiment {cfg.experiment!r} at {info['tracking_uri']}")
    if out_json is not None:
        write_json(out_json, info)
    return {**info, "metrics_logged": len(nums)}

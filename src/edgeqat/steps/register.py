"""register: the evaluated .tflite -> a new MLflow model version with its lineage, alias `challenger`.

The version carries tags for where it came from (git commit, data checksums, a hash of
every parameter) and what it measured (accuracy, drop vs FP32, size, latency, each
device's verdict), and the comparison table as its description. It gets `challenger`
when it passes the gates; `champion` moves only under ``register.auto_promote`` and
only when the new version beats the champion with every gate passing. Every version is
registered, passing or not, so a failed run stays traceable.

MLflow unreachable: a clear :class:`EdgeqatError` before anything is written; the
pipeline's other outputs are never touched by this step.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from edgeqat import __version__
from edgeqat.config import Params, RegisterConfig
from edgeqat.errors import DataError, ModelError
from edgeqat.io import CARD_NAME, log, read_json, sha256_file, write_json
from edgeqat.provenance import git_info
from edgeqat.report import summary_markdown


def params_sha256(params: Params) -> str:
    return hashlib.sha256(json.dumps(params.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def dvc_checksums(lock: str | Path | None) -> dict[str, str]:
    """The md5s DVC recorded for the prepare stage's input data and prepared splits."""
    if lock is None or not Path(lock).is_file():
        return {}
    try:
        stage = (yaml.safe_load(Path(lock).read_text()) or {}).get("stages", {}).get("prepare", {})
    except yaml.YAMLError:
        return {}
    out = {}
    deps, outs = stage.get("deps") or [], stage.get("outs") or []
    if deps and "md5" in deps[0]:
        out["dvc_raw_md5"] = str(deps[0]["md5"])
    if outs and "md5" in outs[0]:
        out["dvc_data_md5"] = str(outs[0]["md5"])
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def version_tags(cfg: RegisterConfig, params: Params, summary: dict[str, Any], entry: dict[str, Any],
                 sha: str, root: Path, lock: str | Path | None) -> dict[str, str]:
    row = summary["variants"][cfg.variant]
    ref_name = summary.get("reference", "fp32")
    ref = summary["variants"].get(ref_name, {})
    tags = {
        **git_info(root), **dvc_checksums(lock),
        "edgeqat_version": __version__, "params_sha256": params_sha256(params), "variant": cfg.variant,
        "data_sha256": str(summary.get("data_sha256", "unknown")), "sha256": sha,
        "integer_only": _fmt(entry.get("integer_only", row.get("integer_only"))),
    }
    for key in ("accuracy", "size_bytes", "gzip_bytes", "latency_p50_ms"):
        if key in row:
            tags[key] = _fmt(row[key])
    if "accuracy" in ref and "accuracy" in row:
        tags["reference"] = ref_name
        tags["reference_accuracy"] = _fmt(ref["accuracy"])
        tags["accuracy_drop"] = _fmt(round(float(ref["accuracy"]) - float(row["accuracy"]), 6))
    devices = summary.get("devices") or {}
    if devices:
        tags["devices"] = ",".join(sorted(devices))
    if "required_devices" in summary:  # what the validate stage gated on
        tags["required_devices"] = ",".join(summary["required_devices"])
    for dev, verdict in sorted(devices.items()):
        tags[f"device.{dev}.passed"] = _fmt(bool(verdict.get("passed")))
        reasons = verdict.get("reasons") or []
        if reasons:
            tags[f"device.{dev}.reasons"] = "; ".join(map(str, reasons))[:4000]
    return tags


def description(summary: dict[str, Any], cfg: RegisterConfig, reasons: list[str]) -> str:
    text = summary_markdown(summary)
    devices = summary.get("devices") or {}
    if devices:
        text += "\n| device | passed | reasons |\n|---|---|---|\n"
        for dev, v in sorted(devices.items()):
            text += f"| {dev} | {'yes' if v.get('passed') else 'no'} | {'; '.join(map(str, v.get('reasons') or [])) or '–'} |\n"
    text += f"\nRegistered variant: `{cfg.variant}`. Gates: " + ("all passed." if not reasons else "FAILED: " + "; ".join(reasons))
    return text


def _converge_challenger(reg: Any, name: str) -> str | None:
    """Point `challenger` at the newest version that passed its gates (safe under concurrent runs:
    every registering run ends with this check, so the last one to finish leaves it right)."""
    from edgeqat.promotion import CHALLENGER, record_move

    passing = [v["version"] for v in reg.all_versions(name) if v["tags"].get("gates.passed") == "true"]
    if not passing:
        return None
    best = max(passing, key=int)
    current = reg.alias_version(name, CHALLENGER)
    if current != best:
        record_move(reg, name, CHALLENGER, best, {"action": "register", "previous": current,
                                                  "by": "register step (a concurrent run finished first)"})
    return best


def register(
    cfg: RegisterConfig,
    params: Params,
    models_dir: str | Path,
    fp32_model: str | Path | None,
    summary_path: str | Path,
    out_json: str | Path | None = None,
    *,
    lock: str | Path | None = "dvc.lock",
    uri: str | None = None,
    root: str | Path = ".",
) -> dict[str, Any]:
    from edgeqat.promotion import CHALLENGER, CHAMPION, record_move, compare, static_gates, whoami
    from edgeqat.registry import Registry, single_variant_card

    models_dir, root = Path(models_dir), Path(root)
    card_file = models_dir / CARD_NAME
    if not card_file.is_file():
        raise ModelError(f"{card_file}: not found; run convert first")
    card = read_json(card_file)
    if cfg.variant not in card.get("variants", {}):
        raise ModelError(f"{card_file}: no variant {cfg.variant!r} (register.variant); has: {', '.join(sorted(card.get('variants', {})))}")
    entry = card["variants"][cfg.variant]
    tflite = models_dir / entry["file"]
    if not tflite.is_file():
        raise ModelError(f"{tflite}: not found (listed in {card_file})")
    sha = sha256_file(tflite)
    if entry.get("sha256") and entry["sha256"] != sha:
        raise ModelError(f"{tflite}: sha256 {sha} differs from {card_file}'s {entry['sha256']}; re-run convert")
    summary_path = Path(summary_path)
    if not summary_path.is_file():
        raise DataError(f"{summary_path}: not found; run evaluate first")
    summary = read_json(summary_path)
    if cfg.variant not in summary.get("variants", {}):
        raise DataError(f"{summary_path}: no evaluation of variant {cfg.variant!r} (register.variant)")

    tags = version_tags(cfg, params, summary, entry, sha, root, lock)
    reasons = static_gates(tags, cfg)
    tags["gates.passed"] = "true" if not reasons else "false"
    if reasons:
        tags["gates.reasons"] = "; ".join(reasons)[:4000]

    reg = Registry(uri, root)  # fails clearly here if MLflow is unreachable, before any write
    name = cfg.model_name
    reg.ensure_model(name, "edgeqat: int8 TFLite classifiers (pyfunc over LiteRT), one version per validated run")
    row = summary["variants"][cfg.variant]
    run = reg.log_model_run(
        experiment=cfg.experiment,
        run_name=f"{name}-{cfg.variant}-{tags.get('git_commit', 'unknown')[:8]}",
        tflite=tflite, card=single_variant_card(card, cfg.variant), fp32_model=Path(fp32_model) if fp32_model else None,
        params={k: v for k, v in json.loads(params.register.model_dump_json()).items()},
        metrics={k: float(row[k]) for k in ("accuracy", "size_bytes", "gzip_bytes", "latency_p50_ms") if k in row},
        tags={**{k: v for k, v in tags.items() if not k.startswith("device.")}, "edgeqat.model_name": name},
        extra_files=[(summary_path, "reports"), (summary_path.with_suffix(".md"), "reports")],
    )
    version = reg.create_version(name, run["source"], run["run_id"], {**tags, "mlflow_run_id": run["run_id"]},
                                 description(summary, cfg, reasons))
    log(f"register: {name} version {version} ({cfg.variant}, accuracy {row.get('accuracy', float('nan')):.4f}, "
        f"{'gates passed' if not reasons else 'gates FAILED: ' + '; '.join(reasons)})")

    result: dict[str, Any] = {"model_name": name, "version": version, "run_id": run["run_id"], "tracking_uri": reg.uri,
                              "gates_passed": not reasons, "gate_reasons": reasons, "sha256": sha,
                              "challenger": False, "champion": False}
    by = f"register step ({whoami()})"
    if not reasons:
        previous = reg.alias_version(name, CHALLENGER)
        record_move(reg, name, CHALLENGER, version, {"action": "register", "previous": previous, "by": by})
        result["challenger"] = _converge_challenger(reg, name) == version
    if cfg.auto_promote:
        champion = reg.alias_version(name, CHAMPION)
        why = reasons + compare(tags, reg.version(name, champion) if champion else None, cfg, strict=True)
        if why:
            log(f"register: champion stays {champion or 'unset'}: " + "; ".join(why))
        else:
            record_move(reg, name, CHAMPION, version, {"action": "auto", "previous": champion, "by": by,
                                                       "reason": f"register.auto_promote: beats champion on {cfg.promote_metric}"})
            result["champion"] = True
            log(f"register: {name} version {version} is the new champion (was {champion or 'unset'})")
    if out_json is not None:
        write_json(out_json, result)
    return result


def register_recommended(
    cfg: RegisterConfig,
    params: Params,
    models_dir: str | Path,
    recommended_dir: str | Path,
    recommendation_json: str | Path,
    *,
    uri: str | None = None,
    root: str | Path = ".",
) -> dict[str, Any]:
    """Each device's recommended model (``edgeqat recommend``) -> a version of its own registered
    model, ``<register.model_name>-<device>``, alias ``challenger``. One registered model per
    device because promotion is per device: the Cortex-M7 champion and the Pi 4 champion are
    different files with different lifecycles. A device where nothing fits registers nothing."""
    from edgeqat.promotion import CHALLENGER, record_move, whoami
    from edgeqat.quantization.runtime import load_interpreter, tensor_summary
    from edgeqat.registry import Registry

    report = read_json(recommendation_json) if Path(recommendation_json).is_file() else {}
    if not report.get("enabled"):
        return {}
    base = read_json(Path(models_dir) / CARD_NAME)
    reg = Registry(uri, root)
    out: dict[str, Any] = {}
    for device, r in report["devices"].items():
        if not r.get("chosen"):
            log(f"register: {device}: nothing registered ({r['reason']})")
            out[device] = None
            continue
        tflite = Path(recommended_dir) / f"{device}.tflite"
        if not tflite.is_file():
            raise ModelError(f"{tflite}: not found (listed in {recommendation_json}); re-run the recommend stage")
        row = next(c for c in r["candidates"] if c["candidate"] == r["chosen"])
        it = load_interpreter(tflite)
        entry = {"file": tflite.name, "size_bytes": tflite.stat().st_size, "sha256": sha256_file(tflite),
                 "integer_only": bool(row["integer_only"]), "input": tensor_summary(it.get_input_details()[0]),
                 "output": tensor_summary(it.get_output_details()[0])}
        # The pyfunc finds its card entry by the file's stem: key it by device, the strategy beside it.
        card = {**{k: v for k, v in base.items() if k != "variants"},
                "variants": {device: {**entry, "strategy": r["chosen"]}}}
        name = f"{cfg.model_name}-{device}"
        reg.ensure_model(name, f"edgeqat: the model recommended for device profile {device!r}")
        tags = {**git_info(Path(root)), "edgeqat_version": __version__, "params_sha256": params_sha256(params),
                "device": device, "strategy": r["chosen"], "reason": r["reason"][:4000], "sha256": entry["sha256"],
                "integer_only": _fmt(entry["integer_only"]), "gates.passed": "true", "edgeqat.model_name": name}
        metrics = {k: float(row[k]) for k in ("accuracy", "size_bytes", "arena_bytes", "latency_ms_estimate")
                   if row.get(k) is not None}
        run = reg.log_model_run(experiment=cfg.experiment, run_name=f"{name}-{r['chosen']}", tflite=tflite, card=card,
                                fp32_model=None, params={"device": device, "strategy": r["chosen"]}, metrics=metrics,
                                tags=tags, extra_files=[(Path(recommendation_json), "reports")])
        version = reg.create_version(name, run["source"], run["run_id"], {**tags, "mlflow_run_id": run["run_id"]},
                                     f"Recommended for `{device}`: {r['reason']}")
        previous = reg.alias_version(name, CHALLENGER)
        record_move(reg, name, CHALLENGER, version, {"action": "register", "previous": previous,
                                                    "by": f"register step ({whoami()})"})
        log(f"register: {name} version {version} ({r['chosen']}) is the challenger for {device}")
        out[device] = {"model_name": name, "version": version}
    return out

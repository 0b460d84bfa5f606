"""register: the tracked run's models -> new MLflow model versions, alias ``challenger``.

The version points at the LoggedModel that ``track`` logged in the execution's run, so the
run page lists its registered models and the version page links back to the run. It carries
tags for where it came from (git commit, data checksum, a hash of every parameter, the run)
and what it measured (accuracy, drop vs FP32, size, host latency, each device's verdict), and
the comparison table as its description. It gets ``challenger`` when it passes the gates;
``champion`` moves only under ``register.auto_promote`` and only when the new version beats the
champion with every gate passing. A version that fails a gate is still registered, so it
stays traceable.

Each device's recommended model (``recommend.enabled``) is registered as its own model,
``<register.model_name>-<device>``, with the same tags and through the same gates, its own
device as the required one: promotion is per device. Its device verdict and accuracy are those
of the recommend stage's validation of that very file on that device (the test split; the
file's sha256 is checked against the one validated), so its gate can fail like the main one.

When a required device failed at validate, or the registered variant does not beat the test
split's majority-class rate by ``register.chance_margin`` (a model that learned nothing),
nothing is registered and the step raises :class:`~edgeqat.errors.GateFailed` (exit status 1)
naming the device and budget, or the rates; the run is already tracked, marked failed. Under
DVC the stage command reports that in one line and exits 0, so the experiment is kept
(:mod:`edgeqat.adapters.cli.stages`). Registering the same execution twice reuses its versions.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

from edgeqat import __version__
from edgeqat.config import Params, RegisterConfig
from edgeqat.errors import DataError, EdgeqatError, GateFailed, ModelError
from edgeqat.io import CARD_NAME, contained, log, read_json, sha256_file, write_json
from edgeqat.workspace.provenance import PIPELINE_OUTPUTS, git_info
from edgeqat.lifecycle.run_gate import registry_gate
from edgeqat.lifecycle.version_tags import MAX_TAG, VersionTags, device_fields, gate_outcome, measurements
from edgeqat.reporting.tables import summary_markdown, with_latency
from edgeqat.workspace.stages import Workspace, workspace as as_workspace
from edgeqat.catalog.variants import stand_in

MANAGED = {"edgeqat.managed": "true"}  # registered-model tag: the webhook receiver watches these


def params_sha256(params: Params) -> str:
    return hashlib.sha256(json.dumps(params.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def lineage_tags(params: Params, root: Path, run_id: str, data_sha256: str, sha: str) -> dict[str, str]:
    return {**git_info(root, ignore=PIPELINE_OUTPUTS), "edgeqat_version": __version__, "params_sha256": params_sha256(params),
            "data_sha256": data_sha256, "sha256": sha, "mlflow_run_id": run_id}


def version_tags(cfg: RegisterConfig, summary: dict[str, Any], entry: dict[str, Any]) -> dict[str, str]:
    """What the main model's version measured: its row of the table and its device verdicts."""
    row = summary["variants"][cfg.variant]
    ref_name = summary.get("reference", "fp32")
    fields: dict[str, Any] = measurements(row, summary["variants"].get(ref_name, {}), ref_name)
    if summary.get("devices"):  # the devices validate required; without that record, every one it validated
        required = summary["required_devices"] if "required_devices" in summary else sorted(summary["devices"])
        fields.update(device_fields(summary["devices"], list(required)))
    return VersionTags(variant=cfg.variant, integer_only=entry.get("integer_only", row.get("integer_only")),
                       model_name=cfg.model_name, **fields).to_tags()


def recommended_tags(device: str, chosen: dict[str, Any], entry: dict[str, Any], measured: dict[str, Any],
                     summary: dict[str, Any], model_name: str) -> dict[str, str]:
    """What a device's recommended model measured: the recommend stage's choice (``chosen``: its
    report entry) and that file's validation on the device (``entry["validation"]``)."""
    verdict = entry["validation"]
    ref_name = summary.get("reference", "fp32")
    reference = summary.get("variants", {}).get(ref_name, {})
    return VersionTags(variant=chosen["chosen"], strategy=chosen["chosen"], device=device,
                       reason=chosen["reason"][:MAX_TAG], integer_only=bool(entry.get("integer_only")),
                       model_name=model_name, accuracy_split=verdict.get("split", "test"),
                       **measurements(measured, reference, ref_name), **device_fields({device: verdict}, [device])).to_tags()


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
    from edgeqat.lifecycle.promotion import CHALLENGER, record_move

    passing = [v["version"] for v in reg.all_versions(name) if VersionTags.from_tags(v["tags"]).gates_passed]
    if not passing:
        return None
    best = max(passing, key=int)
    current = reg.alias_version(name, CHALLENGER)
    if current != best:
        record_move(reg, name, CHALLENGER, best, {"action": "register", "previous": current,
                                                  "by": "register step (a concurrent run finished first)"})
    return best


def _register_one(reg: Any, cfg: RegisterConfig, name: str, model_id: str, run_id: str, tags: dict[str, str],
                  describe: str, model_tags: dict[str, str], model_description: str) -> dict[str, Any]:
    """Create (or find, for an execution registered before) the version; challenger when it passes."""
    from edgeqat.lifecycle.gates import static_gates
    from edgeqat.lifecycle.promotion import CHALLENGER, record_move, whoami

    reasons = static_gates(tags, cfg)
    tags = {**tags, **VersionTags(**gate_outcome(reasons)).to_tags()}
    reg.ensure_model(name, model_description, {**MANAGED, **model_tags})
    version = reg.find_version(name, run_id, tags["sha256"])
    new = version is None
    if new:
        version = reg.create_version(name, model_id, run_id, tags, describe)
    result = {"model_name": name, "version": version, "run_id": run_id, "new": new, "gates_passed": not reasons,
              "gate_reasons": reasons, "sha256": tags["sha256"], "challenger": False, "champion": False}
    if new and not reasons:
        previous = reg.alias_version(name, CHALLENGER)
        record_move(reg, name, CHALLENGER, version, {"action": "register", "previous": previous,
                                                     "by": f"register step ({whoami()})"})
    if not reasons:
        result["challenger"] = _converge_challenger(reg, name) == version
    log(f"register: {name} version {version}{'' if new else ' (already registered for this run)'}: "
        + ("gates passed" if not reasons else "gates FAILED: " + "; ".join(reasons)))
    return result


def _auto_promote(reg: Any, cfg: RegisterConfig, name: str, result: dict[str, Any], tags: dict[str, str]) -> None:
    from edgeqat.lifecycle.gates import CHAMPION, compare
    from edgeqat.lifecycle.promotion import record_move, whoami

    champion = reg.alias_version(name, CHAMPION)
    why = result["gate_reasons"] + compare(tags, reg.version(name, champion) if champion else None, cfg, strict=True)
    if why:
        log(f"register: champion stays {champion or 'unset'}: " + "; ".join(why))
        return
    record_move(reg, name, CHAMPION, result["version"], {
        "action": "auto", "previous": champion, "by": f"register step ({whoami()})",
        "reason": f"register.auto_promote: beats champion on {cfg.promote_metric}"})
    result["champion"] = True
    log(f"register: {name} version {result['version']} is the new champion (was {champion or 'unset'})")


def _find_run(params: Params, ws: Workspace, uri: str) -> Any:
    from edgeqat.lifecycle.tracking import FINGERPRINT_TAG, find_run

    tracked_file, root = ws.path("tracked"), ws.root
    if not tracked_file.is_file():
        raise DataError(f"{tracked_file}: not found; run the track stage first")
    tracked = read_json(tracked_file)
    run = find_run(uri, tracked.get("experiment", params.track.experiment), FINGERPRINT_TAG, tracked["fingerprint"], root)
    if run is None:
        raise EdgeqatError(f"{tracked_file}: this execution is not tracked in the MLflow store at {uri}; "
                           "run `edgeqat stage track` first")
    return run


def register(params: Params, *, workspace: Workspace | str | Path = ".", uri: str | None = None) -> dict[str, Any]:
    """``workspace``: the register stage's ports (from the stage runner), or the folder that holds them."""
    from edgeqat.lifecycle.registry import Registry
    from edgeqat.workspace.timings import latest_latency
    from edgeqat.lifecycle.tracking import MODEL_TAG, stored_uri, tracking_uri

    ws = as_workspace(workspace, "register")
    cfg, root = params.register, ws.root
    uri = uri or tracking_uri(root)
    summary_path, card_file = ws.path("summary"), ws.path("tflite") / CARD_NAME
    if not summary_path.is_file():
        raise DataError(f"{summary_path}: not found; run the pipeline first (dvc repro)")
    summary = read_json(summary_path)
    if not card_file.is_file():
        raise ModelError(f"{card_file}: not found; run convert first")
    card = read_json(card_file)
    variant = stand_in(cfg.variant, card)
    if variant != cfg.variant:
        log(f"register: {cfg.variant} was not built (convert says why); registering {variant} in its place")
        cfg = cfg.model_copy(update={"variant": variant})
    gate = registry_gate(summary, cfg.variant, cfg.chance_margin)  # a required device failed, or chance level
    if gate:
        raise GateFailed(gate)
    if cfg.variant not in card.get("variants", {}) or cfg.variant not in summary.get("variants", {}):
        raise ModelError(f"{card_file}: no converted and evaluated variant {cfg.variant!r} (register.variant); has: "
                         f"{', '.join(sorted(card.get('variants', {})))}")
    validated = summary.get("validated_model")
    if validated is not None and validated != cfg.variant:  # its device tags would be another file's verdicts
        raise ModelError(f"{summary_path}: validate validated {validated!r} but register.variant is {cfg.variant!r}; "
                         "set validate.model and register.variant to the same variant and re-run validate")
    entry = card["variants"][cfg.variant]
    tflite = contained(card_file.parent, entry["file"], f"{card_file}: variants.{cfg.variant}.file")
    sha = sha256_file(tflite)
    if entry.get("sha256") and entry["sha256"] != sha:
        raise ModelError(f"{tflite}: sha256 {sha} differs from {card_file}'s {entry['sha256']}; re-run convert")

    chosen = recommended_validations(ws)  # every per-device file is the one validated, before any write
    reg = Registry(uri, root)  # fails clearly here if MLflow is unreachable, before any write
    run = _find_run(params, ws, uri)
    run_id, run_tags = run.info.run_id, run.data.tags
    summary = with_latency(summary, latest_latency(ws.path("evaluate_timings"), ws.path("host_latency")))
    data_sha = str(summary.get("data_sha256", "unknown"))

    tags = {**lineage_tags(params, root, run_id, data_sha, sha), **version_tags(cfg, summary, entry)}
    model_id = run_tags.get(MODEL_TAG + cfg.variant)
    if model_id is None:  # register.variant changed since track ran
        logged = sorted(k[len(MODEL_TAG):] for k in run_tags if k.startswith(MODEL_TAG))
        raise EdgeqatError(f"register.variant {cfg.variant!r} was not logged with the tracked run {run_id} (it has: "
                           f"{', '.join(logged) or 'no model'}); run `edgeqat stage track` again, then register")
    main = _register_one(reg, cfg, cfg.model_name, model_id, run_id, tags,
                         description(summary, cfg, []), {},
                         "edgeqat: int8 TFLite classifiers (pyfunc over LiteRT), one version per validated run")
    if main["new"] and cfg.auto_promote:
        _auto_promote(reg, cfg, cfg.model_name, main, tags)
    result = {**main, "tracking_uri": stored_uri(uri), "recommended": register_recommended(reg, params, ws, run, summary,
                                                                                        chosen)}
    _point_run_at_versions(uri, run, [main, *[r for r in result["recommended"].values() if r]])
    write_json(ws.path("registered"), result)
    return result


def _point_run_at_versions(uri: str, run: Any, registered: list[dict[str, Any]]) -> None:
    """The run's description ends with links to the versions registered from it."""
    from edgeqat.lifecycle.tracking import append_to_description

    links = [f"[{r['model_name']} version {r['version']}](#/models/{r['model_name']}/versions/{r['version']})"
             for r in registered]
    append_to_description(uri, run.info.run_id, "Registered: " + ", ".join(links))


def _recommendation(ws: Workspace) -> tuple[Path, dict[str, Any]]:
    """The recommend stage's report file and its content (empty when it wrote none)."""
    report_file = ws.path("recommendation") / "recommendation.json"
    return report_file, read_json(report_file) if report_file.is_file() else {}


def recommended_validations(ws: Workspace) -> dict[str, Any]:
    """recommended.json's entries, each checked to carry the device validation of the very file
    registered (its sha256); empty when the recommendation is off."""
    report_file, report = _recommendation(ws)
    if not report.get("enabled"):
        return {}
    chosen_file = ws.path("recommended") / "recommended.json"
    chosen = read_json(chosen_file) if chosen_file.is_file() else {}
    for device, r in sorted(report["devices"].items()):
        if not r.get("chosen"):
            continue
        tflite = ws.path("recommended") / f"{device}.tflite"
        if not tflite.is_file():
            raise ModelError(f"{tflite}: not found (listed in {report_file}); re-run the recommend stage")
        verdict = chosen.get(device, {}).get("validation")
        sha = sha256_file(tflite)
        if not verdict or verdict.get("sha256") != sha:
            raise ModelError(f"{tflite}: no device validation of this file in {chosen_file} (sha256 {sha}); re-run "
                             "the recommend stage")
    return chosen


def register_recommended(reg: Any, params: Params, ws: Workspace, run: Any, summary: dict[str, Any],
                         chosen: dict[str, Any]) -> dict[str, Any]:
    """Each device's recommended model -> a version of ``<register.model_name>-<device>``, tagged
    with the verdict and test accuracy of its validation on that device (``chosen``: checked by
    :func:`recommended_validations`)."""
    report_file, report = _recommendation(ws)
    if not report.get("enabled"):
        return {}
    from edgeqat.lifecycle.gates import gate_config
    from edgeqat.lifecycle.tracking import MODEL_TAG

    cfg, run_id = params.register, run.info.run_id
    out: dict[str, Any] = {}
    for device, r in sorted(report["devices"].items()):
        if not r.get("chosen"):
            log(f"register: {device}: nothing registered ({r['reason']})")
            out[device] = None
            continue
        tflite = ws.path("recommended") / f"{device}.tflite"
        model_id = run.data.tags.get(f"{MODEL_TAG}recommended-{device}")
        if model_id is None:
            raise ModelError(f"{tflite}: not logged with the run (listed in {report_file}); re-run the track stage")
        entry = chosen[device]
        verdict = entry["validation"]
        blob = tflite.read_bytes()
        # What the device validation measured on the test split, not the search's validation-split figures.
        measured = {"accuracy": verdict["accuracy"], "size_bytes": len(blob),
                    "gzip_bytes": len(gzip.compress(blob, compresslevel=9, mtime=0))}
        name = f"{cfg.model_name}-{device}"
        tags = {**lineage_tags(params, ws.root, run_id, str(summary.get("data_sha256", "unknown")), verdict["sha256"]),
                **recommended_tags(device, r, entry, measured, summary, name)}
        out[device] = _register_one(
            reg, gate_config(cfg, device), name, model_id, run_id, tags, f"Recommended for `{device}` ({r['chosen']}): {r['reason']}",
            {"edgeqat.device": device, "edgeqat.base_model": cfg.model_name},
            f"edgeqat: the model recommended for device profile {device!r}")
    return out

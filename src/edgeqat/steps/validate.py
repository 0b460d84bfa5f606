"""validate: the converted models on every device profile -> reports/summary.{json,md} with verdicts.

Reads the evaluate stage's table (``reports/evaluation.json``), runs ``validate.model``
(the variant the pipeline registers) and any ``validate.variants`` on each profile in
``validate.devices``, and writes the table again with ``devices.<profile>`` verdicts for
``validate.model`` (and a ``device_matrix`` for every validated variant), and ``storage``: for
every converted variant on every device, the bytes that device stores (the flatbuffer on
LiteRT/TFLM, Vela's encoded flash and its cycles on Ethos-U: :mod:`edgeqat.devices.storage`). The returned
metrics say whether every ``validate.required_devices`` passed. A failure does not stop the
pipeline here: track still logs the run (marked failed, with the verdicts) and register
refuses to register the model, naming the device and budget; on Kubeflow the same ``passed``
gates register. Latencies timed on this host go to the stage's timings, not its outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


from edgeqat.config import ValidateConfig
from edgeqat.devices.calibration import calibration_file
from edgeqat.devices.profiles import resolve_profiles
from edgeqat.devices.eval_data import check_model_takes_data, load_eval_data
from edgeqat.devices.storage import storage_table
from edgeqat.devices.validate import validate_on_device, verdict_line
from edgeqat.errors import ModelError
from edgeqat.io import CARD_NAME, log, read_json, variant_file, write_json, write_text
from edgeqat.progress import bar
from edgeqat.lifecycle.run_gate import gate_failure
from edgeqat.reporting.tables import summary_markdown
from edgeqat.workspace.timings import record_label
from edgeqat.catalog.variants import stand_in


def _slim(v: dict[str, Any]) -> dict[str, Any]:
    """The fields summary.json keeps per device (devices.json keeps everything)."""
    keys = ("passed", "reasons", "title", "runtime", "latency_ms_estimate", "arena_bytes", "model_bytes",
            "stored_bytes", "stored_measure", "interpreter_bytes", "accuracy", "agreement", "notes", "latency_ms",
            "latency_source", "latency_extrapolated", "latency_gated", "latency_measured_on", "latency_proxy")
    out = {k: v[k] for k in keys if k in v}
    x86 = v.get("x86_evidence") or {}
    if x86:  # this host's x86 run of an x86 profile, shown beside the figure that gates
        out["x86_evidence"] = {k: x86[k] for k in ("host_p50_ms", "threads", "host_cpu", "latency_ms", "label") if k in x86}
    band = (v.get("latency_estimate") or {}).get("error_band") or {}
    if band.get("median_rel_error") is not None:
        out["latency_error_band"] = {k: band[k] for k in ("median_rel_error", "max_rel_error", "heldout_points")}
    m = v.get("measured") or {}
    if m:  # a measurement on the device: where, when, on what (the figures are the device's, not this host's)
        out["measured"] = {k: m[k] for k in ("ran", "check", "why", "device", "where", "date", "cpu", "machine", "runtime",
                                             "runtime_version", "p50_ms", "p90_ms", "runs", "peak_rss_bytes") if k in m}
        if "parity" in m:
            out["measured"]["parity_within_tolerance"] = m["parity"].get("within_tolerance")
    if "emulation" in v:
        e = v["emulation"]
        out["emulation"] = {k: e[k] for k in ("ran", "why", "error", "bit_exact", "top1_agreement", "cpu", "within_tolerance",
                                              "first_difference") if k in e}
    return out


def split_measured(verdict: dict[str, Any]) -> dict[str, Any]:
    """Pop what was timed on this host (LiteRT/TFLM latency, QEMU's) out of a verdict: it varies
    from run to run, so it goes to the stage's timings, not to its outputs."""
    measured = {k: verdict.pop(k) for k in ("host_latency_ms",) if k in verdict}
    emu = verdict.get("emulation") or {}
    if "emulated_latency_ms_p50" in emu:
        measured["emulated_latency_ms_p50"] = emu.pop("emulated_latency_ms_p50")
    return measured


def validate(
    cfg: ValidateConfig,
    prepared: str | Path,
    tflite_dir: str | Path,
    fp32_model: str | Path | None,
    evaluation_json: str | Path,
    summary_json: str | Path,
    summary_md: str | Path | None = None,
    devices_json: str | Path | None = None,
    host_latency_json: str | Path | None = None,
    *,
    trust_model_code: bool = False,
) -> dict[str, Any]:
    """``trust_model_code``: the run's trust decision for the FP32 reference model's file.
    ``host_latency_json``: evaluate's host latency record, read only to name it in summary.md
    (whose table leaves latency out), never to change a verdict."""
    tflite_dir = Path(tflite_dir)
    card_file = tflite_dir / CARD_NAME
    if not card_file.is_file():
        raise ModelError(f"{tflite_dir}: no {CARD_NAME}; run the convert stage first")
    card = read_json(card_file)
    model = stand_in(cfg.model, card)
    if model != cfg.model:
        log(f"validate: {cfg.model} was not built (convert says why); validating {model} in its place")
        cfg = cfg.model_copy(update={"model": model})
    names = [cfg.model] + [v for v in cfg.variants if v != cfg.model and v not in card.get("not_built", {})]
    for name in names:
        if name not in card["variants"]:
            raise ModelError(f"validate: variant {name!r} was not converted (have: {', '.join(sorted(card['variants']))})")
    profiles = resolve_profiles(cfg.devices, extra_dir=cfg.profiles_dir)
    data = load_eval_data(prepared, fp32_model, trust_code=trust_model_code)
    full: dict[str, dict[str, Any]] = {}
    measured: dict[str, dict[str, Any]] = {}
    vela_cache: dict = {}  # one Vela compile per (file, NPU) for the verdicts and the storage table
    for name in names:
        check_model_takes_data(variant_file(tflite_dir, card, name), data, prepared)
    with bar("validate", total=len(names) * len(profiles)) as progress:
        for name in names:
            path = variant_file(tflite_dir, card, name)
            full[name], measured[name] = {}, {}
            for prof in profiles:
                progress.start(f"{name} on {prof.name} ({prof.title})")
                verdict = validate_on_device(
                    path, prof, data, latency_runs=cfg.latency_runs, max_accuracy_drop=cfg.max_accuracy_drop,
                    emulate=cfg.emulate, emulate_samples=cfg.emulate_samples,
                    parity_samples=cfg.parity_samples, vela_cache=vela_cache,
                    gate_on_extrapolated=cfg.gate_on_extrapolated, calibration=calibration_file(cfg.profiles_dir))
                progress.done(f"{name} on {prof.name}: {verdict_line(verdict)}")
                measured[name][prof.name] = split_measured(verdict)
                full[name][prof.name] = verdict
    summary = read_json(evaluation_json)
    summary["validated_model"] = cfg.model
    summary["required_devices"] = list(cfg.required_devices)
    summary["devices"] = {d: {**_slim(v), "required": d in cfg.required_devices} for d, v in full[cfg.model].items()}
    summary["device_matrix"] = {n: {d: bool(v["passed"]) for d, v in per.items()} for n, per in full.items()}
    failed = [d for d in cfg.required_devices if not full[cfg.model][d]["passed"]]
    log(f"validate: the size every variant takes on every device ({len(card['variants'])} x {len(profiles)})")
    summary["storage"] = storage_table({n: variant_file(tflite_dir, card, n) for n in card["variants"]}, profiles,
                                       vela_cache)
    summary["validation_passed"] = not failed
    if failed:  # the run is still tracked; register refuses it (edgeqat.lifecycle.run_gate.gate_failure)
        log("validate: " + gate_failure(summary))
    write_json(summary_json, summary)
    if summary_md is not None:
        write_text(summary_md, summary_markdown(summary, latency_record=record_label(host_latency_json)))
    if devices_json is not None:
        write_json(devices_json, full)
    metrics: dict[str, Any] = {"passed": not failed, "failed_required": failed,
                               "devices_passed": sum(v["passed"] for v in full[cfg.model].values()),
                               "devices": len(profiles)}
    for d, v in full[cfg.model].items():
        metrics[d] = {k: v[k] for k in ("passed", "latency_ms_estimate", "latency_ms", "arena_bytes", "accuracy")
                      if v.get(k) is not None}
    # Vela's stored bytes (flash or DRAM) and cycles of every variant (the flatbuffer sizes are evaluate's size_bytes)
    metrics["vela_figures"] = {n: {d: {s["measure"].removeprefix("vela_") + "_bytes": s["bytes"], "cycles": s["cycles"]}
                                   for d, s in per.items() if s["measure"].startswith("vela") and s["bytes"] is not None}
                               for n, per in summary["storage"].items()}
    metrics["vela_figures"] = {n: per for n, per in metrics["vela_figures"].items() if per}
    return {**metrics, "timings": {"devices": measured}}

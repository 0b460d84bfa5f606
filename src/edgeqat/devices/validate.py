"""One model on one device profile: does it run, fit, stay accurate and meet the budget?

For each profile the model runs on that device's runtime -- LiteRT with the profile's
threads and XNNPACK setting, or TensorFlow Lite Micro with the arena it really needs --
and, for ARM Linux profiles that ask for it, on the aarch64 build of LiteRT under QEMU.
The verdict lists every reason it fails. The latency budget is checked against the best
figure there is (:mod:`edgeqat.devices.latency_gate`): measured on the device itself when its
profile says how to reach it (``connect:``, :mod:`edgeqat.devices.on_device`), else Vela's
performance model or the profile's estimate. LiteRT latency timed in this process is reported
but never gated on (an x86 host is not the device).

Microcontroller profiles: budgets readable from the file (model bytes vs flash, the
largest op's activations vs SRAM) fail before TFLM starts. TFLM then runs in a child
process (:func:`edgeqat.devices.tflm.run_tflm`) on a bounded sample (``parity_samples``)
whose int8 outputs must equal LiteRT's bit for bit; accuracy on the whole split comes from
LiteRT, computed once per model and shared by every profile (``EvalData.cache``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeqat.devices import latency_gate, parity
from edgeqat.devices.profiles import DeviceProfile
from edgeqat.devices.runtimes.base import RunContext
from edgeqat.devices.runtimes.registry import runtime_for
from edgeqat.devices.speed import estimate_latency
from edgeqat.devices.workload import Workload, analyze
from edgeqat.errors import ModelError


@dataclass
class EvalData:
    """Normalised test images, their labels, and the reference model's top-1 on them."""

    images: np.ndarray
    labels: Optional[np.ndarray] = None
    reference_preds: Optional[np.ndarray] = None
    # model sha256 -> LiteRT's raw outputs on ``images``: one full-split pass per model, not per device
    cache: dict = field(default_factory=dict, repr=False, compare=False)


def check_tflite_file(path: str | Path) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: .tflite file not found")
    blob = p.read_bytes()
    if len(blob) < 8 or blob[4:8] != b"TFL3":
        raise ModelError(f"{p}: not a TFLite flatbuffer (no 'TFL3' file identifier; corrupt or another format)")
    return blob


def validate_on_device(model: str | Path, prof: DeviceProfile, data: Optional[EvalData] = None, *,
                       latency_runs: int = 50, max_accuracy_drop: Optional[float] = None,
                       emulate: bool = True, emulate_samples: int = 16, parity_samples: int = 256,
                       tflm_timeout_s: float = 300.0, vela_cache: Optional[dict] = None,
                       gate_on_extrapolated: bool = True, calibration: Optional[str | Path] = None) -> dict[str, Any]:
    """``vela_cache``: a dict shared by calls that may compile the same file for the same NPU.
    ``calibration``: the project's measured-rows file (:mod:`edgeqat.devices.calibration`):
    estimates fit this device's rows first, and a measurement on the device adds its row.
    ``emulate_samples`` images also go to a connected device for the parity check."""
    from edgeqat.devices.calibration import read_rows

    path = Path(model)
    runtime = runtime_for(prof)
    blob = check_tflite_file(path)
    work: Workload = analyze(blob)
    measured_rows = read_rows(calibration)  # before this run adds its own
    reasons: list[str] = []
    notes: list[str] = []
    misses: dict[str, dict[str, float]] = {}  # budget -> {needed, available}: how far from fitting
    v: dict[str, Any] = {"device": prof.name, "title": prof.title, "runtime": prof.runtime, "threads": prof.threads,
                         "model": str(path), "model_bytes": len(blob), "workload": work.as_dict(),
                         # the size the device's own budget is checked against (edgeqat.devices.storage)
                         "stored_measure": "flatbuffer" if runtime.stores_flatbuffer else "vela",
                         "stored_bytes": len(blob) if runtime.stores_flatbuffer else None}

    # Ops: the profile's op set, and integer-only targets reject every float op.
    if isinstance(prof.supported_ops, list):
        bad = sorted(op for op in work.ops if op not in set(prof.supported_ops))
        if bad:
            reasons.append(f"unsupported ops on {prof.name}: {', '.join(bad)}")
    if prof.int8_only and work.float_ops:
        reasons.append(f"{prof.name} runs integer ops only; float ops: {', '.join(sorted(set(work.float_ops)))}")
    if prof.int8_only and work.int16_ops:
        reasons.append(f"{prof.name} runs int8 ops only; int16 ops: {', '.join(sorted(set(work.int16_ops)))}")

    # Flash/storage for the model itself: the flatbuffer as it is (Ethos-U: Vela's encoding, below).
    if runtime.stores_flatbuffer and prof.flash_bytes is not None and len(blob) > prof.flash_bytes:
        reasons.append(f"model {len(blob):,} bytes > flash {prof.flash_bytes:,} bytes")
        misses["flash"] = {"needed": len(blob), "available": prof.flash_bytes}

    # Run it on the device's runtime.
    ctx = RunContext(path, blob, prof, work, data, latency_runs=latency_runs, parity_samples=parity_samples,
                     tflm_timeout_s=tflm_timeout_s, emulate_samples=emulate_samples, vela_cache=vela_cache,
                     calibration=calibration, v=v, reasons=reasons, misses=misses, notes=notes)
    outputs = runtime.run(ctx)

    # Accuracy through that runtime, and agreement with the reference model.
    if outputs is not None and data is not None:
        preds = np.argmax(outputs, axis=-1)
        if data.labels is not None:
            v["accuracy"] = float(np.mean(preds == data.labels))
        if data.reference_preds is not None:
            v["agreement"] = float(np.mean(preds == data.reference_preds))
            if data.labels is not None:
                ref_acc = float(np.mean(data.reference_preds == data.labels))
                v["reference_accuracy"] = ref_acc
                drop = ref_acc - v.get("accuracy", ref_acc)
                if max_accuracy_drop is not None and drop > max_accuracy_drop:
                    reasons.append(f"accuracy {v['accuracy']:.4f} is {drop:.4f} below the reference "
                                   f"{ref_acc:.4f} (> validate.max_accuracy_drop {max_accuracy_drop})")
                    misses["accuracy_drop"] = {"needed": drop, "available": max_accuracy_drop}

    # Latency on the target: measured, x86 evidence or an estimate (unless the runtime gave its own).
    if not runtime.own_latency:
        est = estimate_latency(prof, work, measured_rows)
        v["latency_estimate"] = est
        v["latency_ms_estimate"] = est.get("latency_ms_estimate")
        latency_gate.choose(v, est, gate_on_extrapolated)
        if est.get("note") and v["latency_source"] != latency_gate.MEASURED:
            notes.append(est["note"])
        latency_gate.check_budget(prof, v, reasons, misses, notes)

    # Emulated ARM: the aarch64 LiteRT build on QEMU, compared with the x86 run.
    if prof.emulation == "qemu-aarch64" and outputs is not None:
        v["emulation"] = _emulate(path, prof, data, outputs, emulate, emulate_samples)
        reasons += emulation_reasons(v["emulation"])

    v["notes"] = notes
    v["reasons"] = reasons
    # Budgets missed by a margin; any other reason (an op, a failed run) is not a matter of degree.
    v["misses"] = misses
    v["hard_failure"] = len(reasons) > len(misses)
    v["passed"] = not reasons
    return v


def verdict_line(v: dict[str, Any]) -> str:
    """PASS, or FAIL (the reasons): a verdict in one line."""
    return "PASS" if v["passed"] else "FAIL (" + "; ".join(v["reasons"]) + ")"


def emulation_reasons(emu: dict[str, Any]) -> list[str]:
    """The emulated aarch64 run gates: outputs beyond the parity tolerance of the x86 run's, or a
    run that crashed, fail the device (bit-exactness is why it runs); not set up is a skip."""
    if emu.get("ran") and not emu.get("within_tolerance", True):
        return [parity.describe(emu, "the emulated aarch64 run")]
    if emu.get("error"):
        return [f"the emulated aarch64 run could not run: {emu['error']}"]
    return []


def _emulate(path: Path, prof: DeviceProfile, data: Optional[EvalData], x86_out: np.ndarray,
             emulate: bool, n: int) -> dict[str, Any]:
    if not emulate:
        return {"ran": False, "why": "emulation off (validate.emulate: false)"}
    from edgeqat.devices import qemu

    why = qemu.qemu_available()
    if why is not None:
        return {"ran": False, "why": why}
    from edgeqat.quantization.runtime import TFLiteClassifier, quantize_input

    clf = TFLiteClassifier(path, num_threads=1)
    images = data.images[:n] if data is not None else np.zeros((1, *clf.inp["shape"][1:]), np.float32)
    raw = np.stack([quantize_input(x[None], clf.inp)[0] for x in images])
    # Compare raw output tensors: bit-exactness is a property of the integer outputs.
    x86_raw = []
    for x in raw:
        clf.it.set_tensor(clf.inp["index"], x[None])
        clf.it.invoke()
        x86_raw.append(clf.it.get_tensor(clf.out["index"])[0].copy())
    try:
        res = qemu.run_on_qemu(path, raw, cpu=prof.qemu_cpu, threads=1)
    except RuntimeError as err:  # the aarch64 build crashed or hung on this model: the check could not run
        return {"ran": False, "why": "the emulated run failed", "error": str(err).splitlines()[0]}
    arm = res.outputs.reshape(len(raw), -1)
    cmp = {**parity.compare(np.stack(x86_raw), arm), **qemu.compare_outputs(np.stack(x86_raw), arm)}
    return {"ran": True, "cpu": res.cpu, "machine": res.machine, **cmp,
            "emulated_latency_ms_p50": float(np.median(res.latency_ms)) if res.latency_ms else None,
            "note": "QEMU latency is not device latency"}

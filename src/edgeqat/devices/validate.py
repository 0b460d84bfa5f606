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

import hashlib
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeqat.devices import latency_gate, parity
from edgeqat.devices.parity import PARITY_MAX_DIFF
from edgeqat.devices.profiles import DeviceProfile
from edgeqat.devices.speed import estimate_latency
from edgeqat.devices.storage import stores_flatbuffer, vela_stored
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


def tflm_op_names() -> set[str]:
    text = (resources.files("edgeqat.devices") / "data" / "tflm_ops.txt").read_text()
    return {ln.strip().upper() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _percentiles(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {}
    return {f"p{q}": float(np.percentile(ms, q)) for q in (50, 90, 99)}


def _run_litert(path: Path, prof: DeviceProfile, data: Optional[EvalData], latency_runs: int) -> dict[str, Any]:
    from edgeqat.quantization.runtime import TFLiteClassifier

    before = _rss_bytes()
    clf = TFLiteClassifier(path, num_threads=prof.threads, xnnpack=prof.xnnpack)
    images = data.images if data is not None else np.zeros((1, *clf.inp["shape"][1:]), np.float32)
    outputs = np.stack([clf(x) for x in images])
    mem = max(_rss_bytes() - before, 0)  # host RSS growth: interpreter, arena and weights
    for i in range(min(5, latency_runs)):
        clf.timed_invoke(images[i % len(images)])
    ms = [clf.timed_invoke(images[i % len(images)]) for i in range(latency_runs)]
    return {"outputs": outputs, "latency_ms": ms, "memory_bytes": mem}


def _litert_reference(path: Path, blob: bytes, data: EvalData) -> tuple[np.ndarray, np.ndarray]:
    """LiteRT's own kernels (no XNNPACK) on every image: raw output tensors and float outputs."""
    from edgeqat.quantization.runtime import TFLiteClassifier, dequantize_output, quantize_input

    key = hashlib.sha256(blob).hexdigest()
    if key not in data.cache:
        clf = TFLiteClassifier(path, num_threads=1, xnnpack=False)
        raw = []
        for x in data.images:
            clf.it.set_tensor(clf.inp["index"], quantize_input(x[None], clf.inp))
            clf.it.invoke()
            raw.append(clf.it.get_tensor(clf.out["index"]).reshape(-1).copy())
        r = np.stack(raw)
        data.cache[key] = (r, dequantize_output(r, clf.out))
    return data.cache[key]


def _run_on_tflm(path: Path, blob: bytes, prof: DeviceProfile, work: Workload, data: Optional[EvalData],
                 latency_runs: int, parity_samples: int, timeout_s: float, v: dict, reasons: list[str],
                 misses: dict, notes: list[str]) -> Optional[np.ndarray]:
    """Arena checks and the TFLM run; returns the full-split outputs to score (LiteRT's, once
    TFLM has matched them on the sample), or None when it did not run or did not match."""
    from edgeqat.devices.tflm import run_tflm

    lower = work.peak_op_activation_bytes
    v["arena_lower_bound_bytes"] = lower
    if prof.sram_bytes is not None and lower > prof.sram_bytes:
        reasons.append(f"arena needs at least {lower:,} bytes ({work.peak_op}'s input + output activations) "
                       f"> SRAM {prof.sram_bytes:,} bytes available")
        misses["sram"] = {"needed": lower, "available": prof.sram_bytes}
    if "flash" in misses or "sram" in misses:
        v["tflm"] = {"ran": False, "why": "a budget checked from the file already fails"}
        notes.append("TFLite Micro not started: " + " and ".join(sorted(k for k in misses)) + " already over budget")
        return None
    sample = data.images[:parity_samples] if data is not None else None
    run = run_tflm(path, sample, timed_runs=min(latency_runs, 20), timeout_s=timeout_s)
    v["tflm"] = {"ran": True, "loaded": run.loaded, "crashed": run.crashed}
    v["arena_bytes"] = run.arena_bytes
    v["arena_label"] = ("recorded by TFLM's allocator with its reference kernels (host build); "
                        f"{prof.speed_model.kernel_library} builds differ by their scratch buffers: an estimate there")
    if not run.loaded:
        if run.crashed is None:  # TFLM refused it: name the ops, from its message or its registered-op list
            lacking = run.unsupported_ops or sorted(op for op in work.ops if op not in tflm_op_names())
            if lacking:
                reasons.append(f"ops TFLite Micro lacks: {', '.join(lacking)}")
        reasons.append(f"TFLite Micro could not run it: {run.error}")
        return None
    v["host_latency_ms"] = {**_percentiles(run.latency_ms), "runtime": "tflm reference kernels, x86 host",
                            "source": "measured (on this host, not the device)"}
    if prof.sram_bytes is not None and run.arena_bytes is not None and run.arena_bytes > prof.sram_bytes:
        reasons.append(f"arena needs {run.arena_bytes:,} bytes > SRAM {prof.sram_bytes:,} bytes available")
        misses["sram"] = {"needed": run.arena_bytes, "available": prof.sram_bytes}
    if data is None or run.outputs_raw is None:
        return None
    ref_raw, ref_out = _litert_reference(path, blob, data)
    n = len(run.outputs_raw)
    mine, theirs = run.outputs_raw.reshape(n, -1).astype(np.int64), ref_raw[:n].reshape(n, -1).astype(np.int64)
    same = np.all(mine == theirs, axis=1)
    diff = int(np.max(np.abs(mine - theirs)))
    flips = int(np.sum(np.argmax(mine, axis=1) != np.argmax(theirs, axis=1)))
    v["parity"] = {"samples": n, "bit_exact": bool(same.all()), "mismatched": int((~same).sum()), "max_abs_diff": diff,
                   "top1_mismatched": flips, "against": "LiteRT builtin kernels (no XNNPACK)"}
    # Measured: TFLM's FULLY_CONNECTED requantization rounds differently from LiteRT's on a few
    # inputs, off by a unit or two. That leaves LiteRT's accuracy valid for the device as long as no
    # top-1 changes; anything larger, or a changed top-1, means it is not.
    if flips or diff > PARITY_MAX_DIFF:
        reasons.append(f"TFLite Micro outputs differ from LiteRT's on {int((~same).sum())} of {n} images "
                       f"(max |diff| {diff} in raw output units, top-1 changed on {flips}): "
                       "accuracy from LiteRT would not hold on the device")
        return None
    if not same.all():
        notes.append(f"TFLite Micro vs LiteRT: {int((~same).sum())} of {n} outputs differ by at most {diff} raw unit(s) (rounding), "
                     "no top-1 changed")
    v["accuracy_source"] = (f"LiteRT on all {len(data.images)} images; TFLite Micro matched it on the first {n} "
                            f"({'bit for bit' if same.all() else f'within {diff} raw unit(s), same top-1'})")
    return ref_out


def _run_on_vela(path: Path, blob: bytes, prof: DeviceProfile, work: Workload, data: Optional[EvalData],
                 v: dict, reasons: list[str], misses: dict, notes: list[str],
                 vela_cache: Optional[dict] = None) -> Optional[np.ndarray]:
    """Vela's compile and performance model against the profile's budgets; accuracy from
    LiteRT on the host (the NPU is not emulated; it runs the same int8 arithmetic)."""
    from edgeqat.devices.vela import compile_cached

    cfg = prof.vela
    res = compile_cached(path, cfg, dict(work.ops), vela_cache)
    v["vela"] = res.as_dict()
    src = "vendor performance model (vela)"
    v["latency_estimate"] = {"label": src, "source": src, "kernel_library": f"Ethos-U ({cfg.accelerator_config}, Vela)",
                             "runtime": "ethos-u", "latency_ms_estimate": res.inference_ms}
    v["latency_ms_estimate"] = v["latency_ms"] = res.inference_ms
    v["latency_source"], v["latency_extrapolated"], v["latency_gated"] = src, False, True
    if not res.ran:
        reasons.append(f"{prof.name}: no Vela figures: {res.error}")
        return None
    v["sram_bytes_used"], v["flash_bytes_used"] = res.sram_bytes, res.flash_bytes
    # what the device keeps: Vela's encoding in the weights' memory, not the flatbuffer
    v["stored_measure"], v["stored_bytes"] = vela_stored(res)
    if res.cpu_ops > cfg.max_cpu_ops:
        reasons.append(f"{res.cpu_ops} operator(s) fall back to the CPU ({', '.join(res.cpu_op_names) or 'unnamed'}); "
                       f"{prof.name} allows {cfg.max_cpu_ops}")
        misses["cpu_ops"] = {"needed": res.cpu_ops, "available": cfg.max_cpu_ops}
    if prof.sram_bytes is not None and res.sram_bytes > prof.sram_bytes:
        reasons.append(f"Vela's plan needs {res.sram_bytes:,} bytes of SRAM > {prof.sram_bytes:,} bytes available")
        misses["sram"] = {"needed": res.sram_bytes, "available": prof.sram_bytes}
    if prof.flash_bytes is not None and res.flash_bytes > prof.flash_bytes:
        reasons.append(f"Vela's plan puts {res.flash_bytes:,} bytes in flash > {prof.flash_bytes:,} bytes available")
        misses["flash"] = {"needed": res.flash_bytes, "available": prof.flash_bytes}
    if prof.ram_bytes is not None and res.dram_bytes > prof.ram_bytes:
        reasons.append(f"Vela's plan puts {res.dram_bytes:,} bytes in DRAM > {prof.ram_bytes:,} bytes available")
        misses["ram"] = {"needed": res.dram_bytes, "available": prof.ram_bytes}
    if prof.latency_budget_ms is not None and res.inference_ms > prof.latency_budget_ms:
        reasons.append(f"Vela's estimated latency {res.inference_ms:.3f} ms > budget {prof.latency_budget_ms:g} ms")
        misses["latency"] = {"needed": res.inference_ms, "available": prof.latency_budget_ms}
    if res.cpu_ops:
        notes.append("CPU-fallback operators run on the Cortex-M host; Vela's cycles cover the NPU part only")
    if data is None:
        return None
    v["accuracy_source"] = f"LiteRT on all {len(data.images)} images (the NPU is not emulated)"
    return _litert_reference(path, blob, data)[1]


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
    blob = check_tflite_file(path)
    work: Workload = analyze(blob)
    measured_rows = read_rows(calibration)  # before this run adds its own
    reasons: list[str] = []
    notes: list[str] = []
    misses: dict[str, dict[str, float]] = {}  # budget -> {needed, available}: how far from fitting
    v: dict[str, Any] = {"device": prof.name, "title": prof.title, "runtime": prof.runtime, "threads": prof.threads,
                         "model": str(path), "model_bytes": len(blob), "workload": work.as_dict(),
                         # the size the device's own budget is checked against (edgeqat.devices.storage)
                         "stored_measure": "flatbuffer" if stores_flatbuffer(prof) else "vela",
                         "stored_bytes": len(blob) if stores_flatbuffer(prof) else None}

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
    if prof.runtime != "vela" and prof.flash_bytes is not None and len(blob) > prof.flash_bytes:
        reasons.append(f"model {len(blob):,} bytes > flash {prof.flash_bytes:,} bytes")
        misses["flash"] = {"needed": len(blob), "available": prof.flash_bytes}

    # Run it on the device's runtime.
    outputs = None
    if prof.runtime == "tflm":
        outputs = _run_on_tflm(path, blob, prof, work, data, latency_runs, parity_samples, tflm_timeout_s,
                               v, reasons, misses, notes)
    elif prof.runtime == "vela":
        outputs = _run_on_vela(path, blob, prof, work, data, v, reasons, misses, notes, vela_cache)
    else:
        try:
            r = _run_litert(path, prof, data, latency_runs)
        except (ModelError, RuntimeError, ValueError) as err:
            reasons.append(f"LiteRT could not run it: {err}")
        else:
            outputs = r["outputs"]
            # The RAM check uses the model's own figure (every activation at once: an upper bound of
            # LiteRT's arena); the host's RSS growth varies from run to run, so it is only reported.
            v["interpreter_bytes"] = work.activation_bytes
            v["host_latency_ms"] = {**_percentiles(r["latency_ms"]), "source": "measured (on this host, not the device)",
                                    "runtime": f"litert, {prof.threads} thread(s), xnnpack {'on' if prof.xnnpack else 'off'}, x86 host",
                                    "rss_growth_bytes": r["memory_bytes"]}
            need = len(blob) + work.activation_bytes
            if prof.ram_bytes is not None and need > prof.ram_bytes:
                reasons.append(f"model + interpreter {need:,} bytes > RAM {prof.ram_bytes:,} bytes")
                misses["ram"] = {"needed": need, "available": prof.ram_bytes}
            if prof.connect is not None:  # the device itself: measured latency, peak RSS, parity
                from edgeqat.devices.on_device import measure_into

                row = measure_into(path, prof, work, data.images if data is not None else None, runs=latency_runs,
                                   samples=emulate_samples, v=v, reasons=reasons, notes=notes)
                if row is not None and calibration is not None:
                    from edgeqat.devices.calibration import append_rows

                    append_rows(calibration, [row])
            elif prof.device_class == "x86":  # this host's x86 kernels at the profile's threads, scaled
                v["x86_evidence"] = latency_gate.x86_evidence(prof, v["host_latency_ms"].get("p50"))

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

    # Latency on the target: measured, x86 evidence or an estimate (Ethos-U: Vela's figure, above).
    if prof.runtime != "vela":
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

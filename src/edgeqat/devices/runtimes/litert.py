"""LiteRT on this host, with the profile's threads and XNNPACK setting: ARM Linux, x86, phone and
Edge TPU profiles. The device's latency is measured on the device when the profile can reach it
(``connect:``), else estimated; the host's own timing is reported, never gated on."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeqat.devices import latency_gate
from edgeqat.devices.runtimes.base import RunContext, Runtime, percentiles, rss_bytes
from edgeqat.errors import ModelError


def run_litert(path: Path, prof: Any, data: Any, latency_runs: int) -> dict[str, Any]:
    from edgeqat.quantization.runtime import TFLiteClassifier

    before = rss_bytes()
    clf = TFLiteClassifier(path, num_threads=prof.threads, xnnpack=prof.xnnpack)
    images = data.images if data is not None else np.zeros((1, *clf.inp["shape"][1:]), np.float32)
    outputs = np.stack([clf(x) for x in images])
    mem = max(rss_bytes() - before, 0)  # host RSS growth: interpreter, arena and weights
    for i in range(min(5, latency_runs)):
        clf.timed_invoke(images[i % len(images)])
    ms = [clf.timed_invoke(images[i % len(images)]) for i in range(latency_runs)]
    return {"outputs": outputs, "latency_ms": ms, "memory_bytes": mem}


def litert_reference(path: Path, blob: bytes, data: Any) -> tuple[np.ndarray, np.ndarray]:
    """LiteRT's own kernels (no XNNPACK) on every image: raw output tensors and float outputs,
    computed once per model (``data.cache``) and shared by every profile."""
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


class LiteRT(Runtime):
    name = "litert"

    def run(self, ctx: RunContext) -> Optional[np.ndarray]:
        path, blob, prof, work, data = ctx.path, ctx.blob, ctx.prof, ctx.work, ctx.data
        latency_runs, v, reasons, misses, notes = ctx.latency_runs, ctx.v, ctx.reasons, ctx.misses, ctx.notes
        outputs = None
        try:
            r = run_litert(path, prof, data, latency_runs)
        except (ModelError, RuntimeError, ValueError) as err:
            reasons.append(f"LiteRT could not run it: {err}")
        else:
            outputs = r["outputs"]
            # The RAM check uses the model's own figure (every activation at once: an upper bound of
            # LiteRT's arena); the host's RSS growth varies from run to run, so it is only reported.
            v["interpreter_bytes"] = work.activation_bytes
            v["host_latency_ms"] = {**percentiles(r["latency_ms"]), "source": "measured (on this host, not the device)",
                                    "runtime": f"litert, {prof.threads} thread(s), xnnpack {'on' if prof.xnnpack else 'off'}, x86 host",
                                    "rss_growth_bytes": r["memory_bytes"]}
            need = len(blob) + work.activation_bytes
            if prof.ram_bytes is not None and need > prof.ram_bytes:
                reasons.append(f"model + interpreter {need:,} bytes > RAM {prof.ram_bytes:,} bytes")
                misses["ram"] = {"needed": need, "available": prof.ram_bytes}
            if prof.connect is not None:  # the device itself: measured latency, peak RSS, parity
                from edgeqat.devices.on_device import measure_into

                row = measure_into(path, prof, work, data.images if data is not None else None, runs=latency_runs,
                                   samples=ctx.emulate_samples, v=v, reasons=reasons, notes=notes)
                if row is not None and ctx.calibration is not None:
                    from edgeqat.devices.calibration import append_rows

                    append_rows(ctx.calibration, [row])
            elif prof.device_class == "x86":  # this host's x86 kernels at the profile's threads, scaled
                v["x86_evidence"] = latency_gate.x86_evidence(prof, v["host_latency_ms"].get("p50"))
        return outputs


LITERT = LiteRT()

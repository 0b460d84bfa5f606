"""Arm Ethos-U NPUs through Vela: Vela's compile and performance model give the verdict's
memory and latency figures (the NPU is not emulated), and a device is shipped Vela's file."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeqat.devices.runtimes.base import RunContext, Runtime
from edgeqat.devices.runtimes.litert import litert_reference
from edgeqat.errors import EdgeqatError


class Vela(Runtime):
    name = "vela"
    stores_flatbuffer = False  # the device keeps Vela's encoding (edgeqat.devices.storage)
    own_latency = True  # Vela's performance model
    compiles = True

    def budgets(self, prof: Any, size: int, work: Any, compiled: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """What Vela's compile of the untrained model says: that it compiled, its flash, SRAM and
        DRAM, its latency and how many ops fall back to the CPU."""
        out: dict[str, dict[str, Any]] = {}
        if not compiled.get("ran", True):  # validation would fail it the same way
            out["compile"] = {"value": 1, "budget": 0, "error": compiled.get("error")}
        for key, budget in (("flash", prof.flash_bytes), ("sram", prof.sram_bytes), ("dram", prof.ram_bytes),
                            ("latency", prof.latency_budget_ms), ("cpu_ops", prof.vela.max_cpu_ops)):
            if compiled.get(key) is not None:
                out[key] = {"value": compiled[key], "budget": budget}
        return out

    def run(self, ctx: RunContext) -> Optional[np.ndarray]:
        """Vela's compile and performance model against the profile's budgets; accuracy from
        LiteRT on the host (the NPU is not emulated; it runs the same int8 arithmetic)."""
        path, blob, prof, work, data = ctx.path, ctx.blob, ctx.prof, ctx.work, ctx.data
        v, reasons, misses, notes = ctx.v, ctx.reasons, ctx.misses, ctx.notes
        from edgeqat.devices.vela import compile_cached

        cfg = prof.vela
        res = compile_cached(path, cfg, dict(work.ops), ctx.vela_cache)
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
        for key, needed, available, plan in (
                ("sram", res.sram_bytes, prof.sram_bytes, f"needs {res.sram_bytes:,} bytes of SRAM"),
                ("flash", res.flash_bytes, prof.flash_bytes, f"puts {res.flash_bytes:,} bytes in flash"),
                ("ram", res.dram_bytes, prof.ram_bytes, f"puts {res.dram_bytes:,} bytes in DRAM")):
            if available is not None and needed > available:
                reasons.append(f"Vela's plan {plan} > {available:,} bytes available")
                misses[key] = {"needed": needed, "available": available}
        if prof.latency_budget_ms is not None and res.inference_ms > prof.latency_budget_ms:
            reasons.append(f"Vela's estimated latency {res.inference_ms:.3f} ms > budget {prof.latency_budget_ms:g} ms")
            misses["latency"] = {"needed": res.inference_ms, "available": prof.latency_budget_ms}
        if res.cpu_ops:
            notes.append("CPU-fallback operators run on the Cortex-M host; Vela's cycles cover the NPU part only")
        if data is None:
            return None
        v["accuracy_source"] = f"LiteRT on all {len(data.images)} images (the NPU is not emulated)"
        return litert_reference(path, blob, data)[1]

    def export(self, tflite: Path, prof: Any) -> tuple[str, bytes, dict[str, Any]]:
        """Vela's compiled file for the profile's NPU, or an error that says why there is none."""
        from edgeqat.devices.vela import compile_model

        res = compile_model(tflite, prof.vela)
        if not res.ran or res.compiled is None:
            raise EdgeqatError(f"export for {prof.name}: {res.error}; nothing exported")
        file = f"{tflite.stem}_vela.tflite"
        return file, res.compiled, {
            "device": prof.name, "file": file, "sha256": hashlib.sha256(res.compiled).hexdigest(),
            "compiler": "vela", "vela_version": res.version, "vela_config": res.config,
            "npu_ops": res.npu_ops, "cpu_ops": res.cpu_ops, "cpu_op_names": res.cpu_op_names,
            "cycles": res.cycles, "inference_ms": res.inference_ms, "latency_source": "vendor performance model (vela)",
            "sram_bytes": res.sram_bytes, "flash_bytes": res.flash_bytes}


def vela_stored(res: Any) -> tuple[str, Optional[int]]:
    """(measure, bytes) of a Vela compile: the memory the weights live in."""
    if "flash" in (res.weights_area or "Flash").lower():
        return "vela_flash", res.flash_bytes
    return "vela_dram", res.dram_bytes


VELA = Vela()

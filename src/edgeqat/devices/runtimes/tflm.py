"""TensorFlow Lite Micro: microcontroller profiles. TFLM runs in a child process on a bounded
sample whose int8 outputs must equal LiteRT's; accuracy on the whole split comes from LiteRT."""

from __future__ import annotations

from importlib import resources
from typing import Any, Optional

import numpy as np

from edgeqat.devices.parity import PARITY_MAX_DIFF
from edgeqat.devices.runtimes.base import RunContext, Runtime, percentiles
from edgeqat.devices.runtimes.litert import litert_reference


def tflm_op_names() -> set[str]:
    text = (resources.files("edgeqat.devices") / "data" / "tflm_ops.txt").read_text()
    return {ln.strip().upper() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")}


class TFLM(Runtime):
    name = "tflm"

    def budgets(self, prof: Any, size: int, work: Any, compiled: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Flash, and the arena's lower bound (the largest op's activations) against SRAM."""
        return {"flash": {"value": size, "budget": prof.flash_bytes},
                "arena": {"value": work.peak_op_activation_bytes, "budget": prof.sram_bytes}}

    def run(self, ctx: RunContext) -> Optional[np.ndarray]:
        """Arena checks and the TFLM run; returns the full-split outputs to score (LiteRT's, once
        TFLM has matched them on the sample), or None when it did not run or did not match."""
        path, blob, prof, work, data = ctx.path, ctx.blob, ctx.prof, ctx.work, ctx.data
        latency_runs, parity_samples = ctx.latency_runs, ctx.parity_samples
        v, reasons, misses, notes = ctx.v, ctx.reasons, ctx.misses, ctx.notes
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
        run = run_tflm(path, sample, timed_runs=min(latency_runs, 20), timeout_s=ctx.tflm_timeout_s)
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
        v["host_latency_ms"] = {**percentiles(run.latency_ms), "runtime": "tflm reference kernels, x86 host",
                                "source": "measured (on this host, not the device)"}
        if prof.sram_bytes is not None and run.arena_bytes is not None and run.arena_bytes > prof.sram_bytes:
            reasons.append(f"arena needs {run.arena_bytes:,} bytes > SRAM {prof.sram_bytes:,} bytes available")
            misses["sram"] = {"needed": run.arena_bytes, "available": prof.sram_bytes}
        if data is None or run.outputs_raw is None:
            return None
        ref_raw, ref_out = litert_reference(path, blob, data)
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


TFLM_RUNTIME = TFLM()

"""A runtime that is not shipped: LiteRT's reference kernels (one thread, no XNNPACK) as if on
an accelerator that keeps its own copy of the model and reports its own latency, and ships a
renamed file. Its entry is all a runtime needs; test_devices.py registers it and validates
a model on a profile that names it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeqat.devices.runtimes.base import RunContext, Runtime

LATENCY_MS = 1.25


class ToyAccelerator(Runtime):
    name = "toy_accel"
    stores_flatbuffer = False
    own_latency = True

    def run(self, ctx: RunContext) -> Optional[np.ndarray]:
        from edgeqat.quantization.runtime import TFLiteClassifier

        clf = TFLiteClassifier(ctx.path, num_threads=1, xnnpack=False)
        images = ctx.data.images if ctx.data is not None else np.zeros((1, *clf.inp["shape"][1:]), np.float32)
        ctx.v["latency_ms"] = ctx.v["latency_ms_estimate"] = LATENCY_MS
        ctx.v["latency_source"] = "toy accelerator's own figure"
        if ctx.prof.latency_budget_ms is not None and LATENCY_MS > ctx.prof.latency_budget_ms:
            ctx.reasons.append(f"toy latency {LATENCY_MS} ms > budget {ctx.prof.latency_budget_ms:g} ms")
            ctx.misses["latency"] = {"needed": LATENCY_MS, "available": ctx.prof.latency_budget_ms}
        return np.stack([clf(x) for x in images])

    def budgets(self, prof: Any, size: int, work: Any, compiled: dict[str, Any]) -> dict[str, dict[str, Any]]:
        # checked before training on what it keeps on chip: the largest op's activations vs SRAM
        return {"toy_sram": {"value": work.peak_op_activation_bytes, "budget": prof.sram_bytes}}

    def export(self, tflite: Path, prof: Any) -> tuple[str, bytes, dict[str, Any]]:
        file = f"{tflite.stem}_{prof.name}.tflite"
        return file, tflite.read_bytes(), {"device": prof.name, "file": file, "compiler": self.name}


TOY = ToyAccelerator()

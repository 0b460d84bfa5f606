"""Before any training: the budgets a device can be checked against from the model graph alone.

The run's model, converted untrained, already has the size, ops, activations and
multiply-accumulates the trained one will have. So each required device's budgets that need
no run are checked up front: flash (the flatbuffer), the arena's lower bound (TFLite Micro:
the largest op's activations vs SRAM), RAM (LiteRT: the model plus every activation), the
latency estimate (the profile's speed model, :mod:`edgeqat.devices.speed`) and integer-only
ops; on Ethos-U, Vela's compile (flash, SRAM, DRAM and its latency). These are the figures
device validation gates on later (:mod:`edgeqat.devices.validate`).

Another version of the model (narrower, a smaller input, channel-pruned) is judged without
converting it: the figures of the converted model are scaled by the ratios of the two layer
graphs' censuses (:mod:`edgeqat.models.census`), which is what makes suggesting a setting
that passes take seconds.
"""

from __future__ import annotations

import tempfile
from copy import deepcopy
from pathlib import Path
from typing import Any, Optional

from edgeqat.devices.profiles import DeviceProfile
from edgeqat.devices.runtimes.registry import runtime_for
from edgeqat.devices.speed import estimate_latency
from edgeqat.devices.workload import Workload, analyze

# What each figure is, for messages: (label, unit).
LABELS = {"flash": ("flash", "bytes"), "arena": ("tensor arena (lower bound)", "bytes"), "sram": ("SRAM", "bytes"),
          "ram": ("RAM (model + activations)", "bytes"), "dram": ("DRAM", "bytes"), "latency": ("latency", "ms"),
          "cpu_ops": ("operators left to the CPU", "ops"), "float_ops": ("float operators", "ops")}
# Figures that shrink with the input's pixels (flash does not: weights do not depend on it).
PIXEL_BOUND = {"arena", "sram", "ram", "dram", "latency"}


class Graph:
    """The int8 model's size and workload, and Vela's compile of it per Ethos-U profile (made once).

    Either from a converted file (``blob``), or counted from the layer graph of a model whose
    every layer the census knows (``census``: the zoo's, int8, where the counts equal the
    converted file's; no Vela figures then, which need the file)."""

    def __init__(self, blob: Optional[bytes] = None, census: Optional[dict[str, int]] = None) -> None:
        self.blob = blob
        if blob is not None:
            self.size, self.work, self.source = len(blob), analyze(blob), "converted"
        else:
            assert census is not None
            self.size, self.work, self.source = census["stored_bytes"], _counted(census), "counted from the layer graph"
        self._vela: dict[str, dict[str, Any]] = {}

    def vela(self, prof: DeviceProfile) -> dict[str, Any]:
        if self.blob is None:
            raise ValueError("Vela figures need the converted file")
        if prof.name not in self._vela:
            from edgeqat.devices.vela import compile_model

            with tempfile.TemporaryDirectory(prefix="edgeqat-preflight-") as tmp:
                path = Path(tmp) / "model.tflite"
                path.write_bytes(self.blob)
                res = compile_model(path, prof.vela, dict(self.work.ops))
            self._vela[prof.name] = {"ran": res.ran, "error": res.error, "flash": res.flash_bytes,
                                     "sram": res.sram_bytes, "dram": res.dram_bytes, "latency": res.inference_ms,
                                     "cpu_ops": res.cpu_ops}
        return self._vela[prof.name]


def _counted(census: dict[str, int]) -> Workload:
    """An int8 model's workload from its layer census (one byte per activation element)."""
    w = Workload(compute_dtype="int8")
    w.macs = {c: int(census[c]) for c in ("dense", "depthwise", "fc", "other")}
    w.peak_op_activation_bytes, w.activation_bytes = int(census["peak_activation"]), int(census["activations"])
    return w


def figures(prof: DeviceProfile, size: int, work: Workload, vela: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Every budgeted figure of ``prof`` for a model: {figure: {"value", "budget"}} (budget None:
    the profile sets none), plus ``notes``."""
    runtime = runtime_for(prof)  # each runtime says what it is checked on (Runtime.budgets)
    out: dict[str, Any] = runtime.budgets(prof, size, work, vela or {})
    notes: list[str] = []
    if not runtime.own_latency:
        est = estimate_latency(prof, work)
        if est.get("latency_ms_estimate") is not None:
            out["latency"] = {"value": est["latency_ms_estimate"], "budget": prof.latency_budget_ms}
        elif est.get("note"):
            notes.append(est["note"])
    if prof.int8_only and work.float_ops:
        out["float_ops"] = {"value": len(set(work.float_ops)), "budget": 0}
    return {"figures": out, "notes": notes}


def misses(figs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The figures over their budget."""
    return {k: f for k, f in figs["figures"].items() if f["budget"] is not None and f["value"] > f["budget"]}


def scaled(size: int, work: Workload, vela: Optional[dict[str, Any]], base: dict[str, int],
           other: dict[str, int]) -> tuple[int, Workload, Optional[dict[str, Any]]]:
    """The converted model's figures carried over to another version of it (models.census):
    the flatbuffer by the difference of the two censuses' stored bytes, the rest by ratios."""

    def r(key: str) -> float:
        return other[key] / base[key] if base[key] else 1.0

    w = deepcopy(work)
    w.macs = {c: int(round(v * r(c))) for c, v in work.macs.items()}
    w.peak_op_activation_bytes = int(round(work.peak_op_activation_bytes * r("peak_activation")))
    w.activation_bytes = int(round(work.activation_bytes * r("activations")))
    v = None
    if vela is not None:
        macs = lambda c: sum(c[k] for k in ("dense", "depthwise", "fc"))  # noqa: E731
        ratio = {"flash": r("stored_bytes"), "sram": r("peak_activation"), "dram": r("stored_bytes"),
                 "latency": macs(other) / macs(base) if macs(base) else 1.0}
        v = {k: (val * ratio[k] if k in ratio and val is not None else val) for k, val in vela.items()}
    return max(size + other["stored_bytes"] - base["stored_bytes"], 0), w, v


def describe(key: str, fig: dict[str, Any]) -> str:
    if fig.get("error"):
        return f"no Vela figures: {fig['error']}"
    label, unit = LABELS.get(key, (key, ""))
    fmt = (lambda x: f"{x:,.1f}") if unit == "ms" else (lambda x: f"{int(x):,}")
    if fig["budget"] is None:
        return f"{label} {fmt(fig['value'])} {unit}"
    over = fig["value"] > fig["budget"]
    return f"{label} {fmt(fig['value'])} {unit}" + (f" > budget {fmt(fig['budget'])} {unit}" if over else
                                                   f" (budget {fmt(fig['budget'])} {unit})")

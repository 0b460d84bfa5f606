"""What a runtime is to the rest of edgeqat: the device profile's ``runtime:`` names one, and
validation, the storage measure and export ask it rather than comparing names.

A runtime runs a model for a verdict (:meth:`Runtime.run`, given a :class:`RunContext` whose
verdict dict, reasons, misses and notes it fills), says whether the device keeps the
flatbuffer as it is and whether latency is its own figure or the profile's estimate, and
may turn the registered file into the file a device is shipped (:meth:`Runtime.export`).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np


@dataclass
class RunContext:
    """One model on one profile: the inputs a runtime may use and the verdict it adds to."""

    path: Path
    blob: bytes
    prof: Any  # DeviceProfile
    work: Any  # Workload
    data: Any  # EvalData or None
    latency_runs: int = 50
    parity_samples: int = 256
    tflm_timeout_s: float = 300.0
    emulate_samples: int = 16
    vela_cache: Optional[dict] = None
    calibration: Optional[str | Path] = None
    v: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    misses: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Runtime(ABC):
    name: str = ""
    #: the device keeps the .tflite as it is, so its flash budget checks the flatbuffer's bytes
    #: (False: the runtime stores its own compiled form and checks it itself)
    stores_flatbuffer: bool = True
    #: latency is the runtime's own figure, set in run(); False: the profile's estimate or a measurement
    own_latency: bool = False
    #: the runtime compiles the model into its own form, whose figures its budgets read: preflight
    #: compiles the untrained model first and hands them to :meth:`budgets` as ``compiled``
    compiles: bool = False

    @abstractmethod
    def run(self, ctx: RunContext) -> Optional[np.ndarray]:
        """Run the model; return the full-split outputs to score, or None (not run, or not trusted)."""

    def export(self, tflite: Path, prof: Any) -> Optional[tuple[str, bytes, dict[str, Any]]]:
        """(file name, bytes, deployment record) a device of ``prof`` is shipped, or None: the
        registered .tflite as it is."""
        return None

    def budgets(self, prof: Any, size: int, work: Any, compiled: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The figures a device of ``prof`` is checked on before training (preflight), from the
        converted model's ``size`` and ``work`` (a Workload): {figure: {"value", "budget"}}, budget
        None where the profile sets none. Here: the flatbuffer against flash (when the device keeps
        it as it is), and the model plus every activation against RAM. The latency estimate is
        added by preflight unless :attr:`own_latency`."""
        flash = {"flash": {"value": size, "budget": prof.flash_bytes}} if self.stores_flatbuffer else {}
        return {**flash, "ram": {"value": size + work.activation_bytes, "budget": prof.ram_bytes}}


# Profile ``runtime:`` name -> its Runtime, as ``module:attribute`` until a model first runs on
# it (edgeqat.devices.runtimes.registry.runtime_for), so profiles check names against this table
# without loading any runtime. A new runtime is its module and one line here, or register().
RUNTIMES: dict[str, Union[str, Runtime]] = {
    "litert": "edgeqat.devices.runtimes.litert:LITERT",
    "tflm": "edgeqat.devices.runtimes.tflm:TFLM_RUNTIME",
    "vela": "edgeqat.devices.runtimes.vela:VELA",
}


def register(runtime: Runtime) -> Runtime:
    """Add (or replace) a runtime under its name."""
    RUNTIMES[runtime.name] = runtime
    return runtime


def known() -> str:
    return ", ".join(RUNTIMES)


def percentiles(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {}
    return {f"p{q}": float(np.percentile(ms, q)) for q in (50, 90, 99)}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

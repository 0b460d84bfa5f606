"""Do two runtimes compute the same outputs? One tolerance for every comparison edgeqat makes
against host LiteRT: TFLite Micro, the emulated aarch64 build, and a real device.

Integer outputs may differ by up to ``PARITY_MAX_DIFF`` raw units (rounding in a kernel's
requantization) as long as no top-1 changes; float outputs by a relative ``FLOAT_RTOL`` of the
largest reference magnitude (fused multiply-adds and summation order differ between ISAs).
Anything more means the host's accuracy does not hold on that runtime.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Raw output units a runtime may differ from LiteRT by (rounding), top-1 unchanged. Measured: 1 unit
# out of TFLM's FULLY_CONNECTED requantization; 2 behind an int8 Softmax layer, which carries a
# one-unit logit difference to its output (a user's model ending in a Softmax layer); a real
# disagreement (a RELU6 model TFLM computes differently) was 128.
PARITY_MAX_DIFF = 2
FLOAT_RTOL = 1e-3


def compare(ref: np.ndarray, got: np.ndarray, max_units: int = PARITY_MAX_DIFF) -> dict[str, Any]:
    """``ref`` (host LiteRT) vs ``got`` (the other runtime), one row per sample: how far apart,
    whether within tolerance, and the first output beyond it (else the first that differs)."""
    a, b = np.asarray(ref), np.asarray(got)
    n = a.shape[0] if a.ndim else 1
    if a.shape != b.shape:
        raise ValueError(f"output shapes differ: host {a.shape} vs device {b.shape}")
    fa, fb = a.reshape(n, -1), b.reshape(n, -1)
    integer = np.issubdtype(a.dtype, np.integer)
    diff = np.abs(fa.astype(np.float64) - fb.astype(np.float64))
    if integer:
        limit, tolerance = float(max_units), f"{max_units} raw unit(s), same top-1"
    else:
        limit = FLOAT_RTOL * float(np.max(np.abs(fa))) if fa.size else 0.0
        tolerance = f"{FLOAT_RTOL:g} x the largest output ({limit:.3g}), same top-1"
    flips = np.argmax(fa, axis=1) != np.argmax(fb, axis=1) if fa.size else np.zeros(n, bool)
    differs = diff > 0
    beyond = (diff > limit) | (flips[:, None] & differs)
    where = np.argwhere(beyond if beyond.any() else differs)
    first = None
    if len(where):
        i, j = (int(v) for v in where[0])
        first = {"sample": i, "output": j, "host": fa[i, j].item(), "device": fb[i, j].item()}
    return {"samples": n, "bit_exact": bool(a.dtype == b.dtype and a.tobytes() == b.tobytes()),
            "mismatched": int(np.count_nonzero(differs.any(axis=1))), "max_abs_diff": float(diff.max()) if diff.size else 0.0,
            "top1_mismatched": int(flips.sum()), "within_tolerance": not bool(beyond.any()), "tolerance": tolerance,
            "first_difference": first}


def describe(cmp: dict[str, Any], what: str) -> str:
    """One line: how ``what`` (e.g. "the emulated aarch64 run") differs from host LiteRT."""
    f = cmp.get("first_difference")
    at = (f" first at sample {f['sample']}, output {f['output']} (host {f['host']:g}, {what} {f['device']:g});"
          if f else "")
    return (f"{what} differs from host LiteRT beyond the parity tolerance ({cmp['tolerance']}):{at} "
            f"{cmp['mismatched']} of {cmp['samples']} samples differ, max |diff| {cmp['max_abs_diff']:g}, "
            f"top-1 changed on {cmp['top1_mismatched']}")

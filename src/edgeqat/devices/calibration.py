"""Estimates that learn: latencies measured on a project's own devices, and the fit on them.

Every measurement edgeqat makes on a device (``validate``, ``recommend``, ``devices
calibrate``) becomes a row of the project's calibration file -- ``measured.csv`` in the
profiles folder (``validate.profiles_dir``), else ``devices/measured.csv`` -- with the
model's workload (MACs by op class, :mod:`edgeqat.devices.workload`), its compute dtype,
the thread count and XNNPACK setting, and the p50 latency. An estimate for a device with
measured rows of the same dtype, threads and XNNPACK setting fits those rows only (the
published figures are used only where no measurement exists):

    latency_ms = c0 + dense_MACs * k_dense + depthwise_MACs * k_dw + fc_MACs * k_fc + other * k_other

non-negative, by least *relative* squared error: the constant ``c0`` is the per-inference
cost (the interpreter, tiny ops) that dominates small models and that published figures of
ImageNet-size models cannot show. With fewer than six rows the op classes share one rate
(weighted as in the published fit). Its held-out error is leave-one-out over the rows.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeqat.errors import ConfigError
from edgeqat.io import write_text

FILE_NAME = "measured.csv"
COLUMNS = ("device", "date", "model", "sha256", "dtype", "threads", "xnnpack", "dense_macs", "depthwise_macs", "fc_macs",
           "other_elems", "latency_ms", "p90_ms", "runs", "cpu", "runtime", "source")
CLASSES = ("dense", "depthwise", "fc", "other")
FULL_FIT_ROWS = 6  # rows needed before each op class gets its own rate


def calibration_file(profiles_dir: str | Path | None = None) -> Path:
    """The project's calibration file: in the profiles folder, else ``devices/``."""
    return Path(profiles_dir or "devices") / FILE_NAME


def read_rows(path: str | Path | None) -> list[dict[str, Any]]:
    """The measured rows (none when the file does not exist); a malformed row names its line."""
    if path is None or not Path(path).is_file():
        return []
    rows = []
    with Path(path).open(newline="") as f:
        for i, r in enumerate(csv.DictReader(f), start=2):
            try:
                r.update({k: int(r[k]) for k in ("threads", "dense_macs", "depthwise_macs", "fc_macs", "other_elems", "runs")})
                r["latency_ms"], r["p90_ms"] = float(r["latency_ms"]), float(r["p90_ms"])
                r["xnnpack"] = r["xnnpack"].strip().lower() in ("true", "1", "yes")
            except (KeyError, ValueError, TypeError, AttributeError) as err:
                raise ConfigError(f"{path}:{i}: bad measured row ({err}); expected columns {', '.join(COLUMNS)}") from None
            if r["latency_ms"] <= 0:
                raise ConfigError(f"{path}:{i}: latency_ms must be > 0, got {r['latency_ms']}")
            rows.append(r)
    return rows


def compute_kind(work: Any) -> str:
    """int8, int16 (16x8: LiteRT's reference kernels, far slower) or fp32: rows fit only their own kind."""
    return {"fp32": "fp32", "float32": "fp32", "int16": "int16"}.get(work.compute_dtype, "int8")


def row(device: str, model: str, sha256: str, work: Any, measurement: dict[str, Any], source: str) -> dict[str, Any]:
    """A calibration row from a workload and a measurement (:meth:`Measurement.as_dict`)."""
    return {"device": device, "date": measurement["date"], "model": model, "sha256": sha256[:16],
            "dtype": compute_kind(work),
            "threads": measurement.get("threads", 1), "xnnpack": bool(measurement.get("xnnpack", True)),
            "dense_macs": work.macs["dense"], "depthwise_macs": work.macs["depthwise"], "fc_macs": work.macs["fc"],
            "other_elems": work.macs["other"], "latency_ms": round(measurement["p50_ms"], 6),
            "p90_ms": round(measurement["p90_ms"], 6), "runs": measurement["runs"],
            "cpu": str(measurement.get("cpu", "")), "runtime": f"{measurement.get('runtime', '')} {measurement.get('runtime_version', '')}".strip(),
            "source": source}


def append_rows(path: str | Path, new: list[dict[str, Any]]) -> Path:
    """Add rows, replacing an older measurement of the same file on the same device and
    settings; written atomically (a crash leaves the old file whole)."""
    key = lambda r: (r["device"], r["sha256"], int(r["threads"]), bool(r["xnnpack"]))  # noqa: E731
    fresh = {key(r) for r in new}
    rows = [r for r in read_rows(path) if key(r) not in fresh] + list(new)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return write_text(path, buf.getvalue())


def _x(r: dict[str, Any]) -> np.ndarray:
    return np.array([r["dense_macs"], r["depthwise_macs"], r["fc_macs"], r["other_elems"]], float) / 1e6


@dataclass(frozen=True)
class MeasuredFit:
    """latency_ms = const_ms + sum(ms_per_mmac[c] * MACs[c] / 1e6)."""

    const_ms: float
    ms_per_mmac: dict
    rows: int
    macs_range: tuple[int, int]

    def predict(self, macs: dict[str, float]) -> float:
        return self.const_ms + sum(self.ms_per_mmac[c] * macs.get(c, 0) / 1e6 for c in CLASSES)


def fit(rows: list[dict[str, Any]], weights: Optional[dict[str, float]] = None) -> MeasuredFit:
    """Non-negative least relative squares on the rows (see the module docstring)."""
    from scipy.optimize import nnls

    if not rows:
        raise ValueError("no measured rows to fit")
    X = np.array([_x(r) for r in rows])
    y = np.array([r["latency_ms"] for r in rows], float)
    total = [int(r["dense_macs"] + r["depthwise_macs"] + r["fc_macs"]) for r in rows]
    if len(rows) >= FULL_FIT_ROWS:
        A = np.hstack([np.ones((len(rows), 1)), X])
        beta, _ = nnls(A / y[:, None], np.ones(len(rows)))
        const, per = float(beta[0]), dict(zip(CLASSES, map(float, beta[1:])))
    else:
        w = np.array([(weights or {}).get(c, d) for c, d in zip(CLASSES, (1.0, 1.0, 1.0, 0.0))])
        eff = X @ w
        A = np.stack([np.ones(len(rows)), eff], axis=1) if len(rows) >= 2 else eff[:, None]
        beta, _ = nnls(A / y[:, None], np.ones(len(rows)))
        const, rate = (float(beta[0]), float(beta[1])) if len(rows) >= 2 else (0.0, float(beta[0]))
        per = {c: rate * float(wc) for c, wc in zip(CLASSES, w)}
    return MeasuredFit(const, per, len(rows), (min(total), max(total)))


def leave_one_out(rows: list[dict[str, Any]], weights: Optional[dict[str, float]] = None) -> list[dict[str, Any]]:
    """Each row predicted by a fit on all the others: the held-out error of the measured fit."""
    out = []
    for i, r in enumerate(rows):
        rest = rows[:i] + rows[i + 1:]
        if not rest:
            continue
        est = fit(rest, weights).predict(dict(zip(CLASSES, (r["dense_macs"], r["depthwise_macs"], r["fc_macs"], r["other_elems"]))))
        out.append({"model": r["model"], "measured_ms": r["latency_ms"], "estimate_ms": est,
                    "rel_error": abs(est - r["latency_ms"]) / r["latency_ms"]})
    return out


def rows_for(rows: list[dict[str, Any]], device: str, dtype: str, threads: int, xnnpack: bool) -> list[dict[str, Any]]:
    """The rows an estimate for ``device`` may fit on: same dtype, threads and XNNPACK setting."""
    return [r for r in rows if r["device"] == device and r["dtype"] == dtype and int(r["threads"]) == threads
            and bool(r["xnnpack"]) == bool(xnnpack)]


def band(errors: list[dict[str, Any]]) -> dict[str, Any]:
    if not errors:
        return {"heldout_points": 0, "basis": "one measured row: no held-out check yet"}
    e = [p["rel_error"] for p in errors]
    return {"heldout_points": len(e), "median_rel_error": float(np.median(e)), "max_rel_error": float(np.max(e)),
            "basis": "leave-one-out over this device's measured rows"}

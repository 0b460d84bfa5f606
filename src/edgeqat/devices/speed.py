"""Latency estimates for a target from published figures, and how wrong they are.

``data/published_latency.csv`` holds latencies other people measured (model, device,
runtime, kernel library, dtype, threads, latency, source), split into calibration and
held-out rows. ``data/reference_workloads.csv`` holds each of those models' MACs, counted
by :mod:`edgeqat.devices.workload` (``bench/reference_workloads.py``). A profile's speed
model names the rows it is fitted on -- one device, one runtime, one kernel library, one
dtype, one thread count: like with like -- and the fit is

    latency_ms = rate * (dense_MACs + w_dw * depthwise_MACs + w_fc * fc_MACs + w_other * other_elements)

with one ``rate`` per device and the op-class weights ``w`` shared by all devices, both
fitted on calibration rows only, by least *relative* squared error. Every estimate is
labelled as one.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import numpy as np

# published_rows: read where profiles are checked (their speed_model rows must exist), used here.
from edgeqat.devices.profiles import DeviceProfile, SpeedModel, data_file, published_rows  # noqa: F401
from edgeqat.devices.workload import Workload
from edgeqat.errors import ConfigError


@lru_cache(maxsize=None)
def reference_workloads(path: Optional[str] = None) -> dict[str, dict[str, int]]:
    p = Path(path) if path else data_file("reference_workloads.csv")
    with p.open(newline="") as f:
        return {r["model"]: {"dense": int(r["dense_macs"]), "depthwise": int(r["depthwise_macs"]),
                             "fc": int(r["fc_macs"]), "other": int(r["other_elems"])} for r in csv.DictReader(f)}


def _key(r: dict) -> tuple:
    return (r["device"], r["runtime"], r["kernel_library"], r["dtype"], int(r["threads"]))


CLASSES = ("dense", "depthwise", "fc", "other")
# Relative cost per MAC (per output element for "other") of each op class vs a dense MAC,
# searched on this grid over every calibration row of the table (see op_class_weights).
_GRID = {"depthwise": (1, 1.5, 2, 3, 4, 6, 8, 12, 16), "fc": (0.5, 1, 2, 4, 8, 16, 32),
         "other": (0, 0.5, 1, 2, 4, 8)}


@dataclass(frozen=True)
class Fit:
    ms_per_mmac: dict  # op class -> milliseconds per million MACs (per million elements for "other")
    calibration: tuple[str, ...]
    heldout: tuple[str, ...]
    skipped: tuple[str, ...]  # listed rows whose model has no reference workload

    def predict(self, macs: dict[str, float]) -> float:
        return sum(macs.get(c, 0) * self.ms_per_mmac[c] for c in CLASSES) / 1e6


def _features(row: dict, work: dict[str, dict[str, int]]) -> list[float] | None:
    w = work.get(row["model"])
    return None if w is None else [w[c] / 1e6 for c in CLASSES]


def _rate(effective: np.ndarray, latency: np.ndarray) -> float:
    """ms per effective M MAC minimising the relative squared error of rate * effective vs latency."""
    u = effective / latency
    return float(np.sum(u) / np.sum(u ** 2))


def op_class_weights(rows: dict | None = None, work: dict | None = None,
                     device_class: str | None = None) -> dict[str, float]:
    """How much a depthwise MAC, a fully-connected MAC and an element of any other op cost
    relative to a dense convolution MAC, shared by the devices of one class (an MCU's SIMD
    dense kernels and a phone's differ in what is cheap): found by a grid search that
    minimises the relative error over the *calibration* rows of every like-with-like group of
    that class (each group keeping its own rate); all classes pooled when the class has no
    group with two calibration rows. Held-out rows never enter it."""
    rows = published_rows() if rows is None else rows
    work = reference_workloads() if work is None else work
    groups: dict[tuple, list] = {}
    for r in rows.values():
        f = _features(r, work)
        if r["split"] == "calibration" and f is not None and device_class in (None, r["device_class"]):
            groups.setdefault(_key(r), []).append((f, r["latency_ms"]))
    groups = {k: v for k, v in groups.items() if len(v) >= 2}  # one row fits any weights exactly
    if not groups and device_class is not None:
        return op_class_weights(rows, work, None)
    best, best_err = {"dense": 1.0, "depthwise": 1.0, "fc": 1.0, "other": 0.0}, np.inf
    for kd in _GRID["depthwise"]:
        for kf in _GRID["fc"]:
            for ko in _GRID["other"]:
                wts = np.array([1.0, kd, kf, ko])
                err = 0.0
                for members in groups.values():
                    X = np.array([m[0] for m in members])
                    y = np.array([m[1] for m in members])
                    eff = X @ wts
                    rel = _rate(eff, y) * eff / y - 1
                    err += float(np.sum(rel ** 2))
                if err < best_err - 1e-12:
                    best, best_err = {"dense": 1.0, "depthwise": kd, "fc": kf, "other": ko}, err
    return best


@lru_cache(maxsize=None)
def _shipped_weights(device_class: str) -> dict[str, float]:
    return op_class_weights(None, None, device_class)


def fit_speed_model(sm: SpeedModel, rows: dict | None = None, work: dict | None = None,
                    weights: dict[str, float] | None = None) -> Fit:
    """One rate per device (least relative squared error over its calibration rows) applied
    to the model's effective MACs: dense + w_dw * depthwise + w_fc * fc + w_other * other,
    the weights shared by the devices of its class (:func:`op_class_weights`)."""
    shipped = rows is None and work is None
    rows = published_rows() if rows is None else rows
    work = reference_workloads() if work is None else work
    unknown = [r for r in sm.rows if r not in rows]
    if unknown:
        raise ConfigError(f"speed_model.rows: {', '.join(unknown)} not in published_latency.csv")
    listed = [rows[r] for r in sm.rows]
    skipped = tuple(r["id"] for r in listed if _features(r, work) is None)
    calib = [r for r in listed if r["split"] == "calibration" and _features(r, work) is not None]
    if not calib:
        raise ConfigError(f"speed_model.rows: no calibration row with a known workload among {sm.rows}")
    keys = {_key(r) for r in calib}
    held = [r for r in rows.values() if r["split"] == "heldout" and _key(r) in keys and _features(r, work) is not None]
    cls = calib[0]["device_class"]
    wts = weights if weights is not None else (_shipped_weights(cls) if shipped else op_class_weights(rows, work, cls))
    X = np.array([_features(r, work) for r in calib], dtype=float)
    y = np.array([r["latency_ms"] * sm.scale for r in calib], dtype=float)
    rate = _rate(X @ np.array([wts[c] for c in CLASSES]), y)
    return Fit({c: rate * wts[c] for c in CLASSES}, calibration=tuple(r["id"] for r in calib),
               heldout=tuple(r["id"] for r in held), skipped=skipped)


def heldout_errors(sm: SpeedModel, rows: dict | None = None, work: dict | None = None) -> list[dict[str, Any]]:
    """Relative error of the fitted estimate on every held-out row of the same kind."""
    fit = fit_speed_model(sm, rows, work)
    rows = published_rows() if rows is None else rows
    work = reference_workloads() if work is None else work
    out = []
    for rid in fit.heldout:
        r = rows[rid]
        est = fit.predict(work[r["model"]]) / sm.scale
        out.append({"id": rid, "model": r["model"], "device": r["device"], "published_ms": r["latency_ms"],
                    "estimate_ms": est, "rel_error": abs(est - r["latency_ms"]) / r["latency_ms"]})
    return out


ESTIMATE = "estimate from published figures"


def _macs(model: str) -> int:
    return sum(v for k, v in reference_workloads()[model].items() if k != "other")


@lru_cache(maxsize=1)
def _shipped_heldout_points() -> tuple:
    return tuple(heldout_report()["points"])


def error_band(device_class: str, macs: float) -> dict[str, Any]:
    """The estimator's held-out relative error on models of a similar size (within 10x this
    model's MACs) of the same device class; all of that class's held-out points when none is."""
    pts = [p for p in _shipped_heldout_points() if p["device_class"] == device_class]
    near = [p for p in pts if macs > 0 and macs / 10 <= _macs(p["model"]) <= macs * 10]
    use = near or pts
    if not use:
        return {"heldout_points": 0, "basis": f"no held-out points for {device_class}"}
    errs = [p["rel_error"] for p in use]
    return {"heldout_points": len(use), "median_rel_error": float(np.median(errs)), "max_rel_error": float(np.max(errs)),
            "basis": (f"held-out {device_class} models within 10x of this model's MACs" if near else
                      f"all held-out {device_class} models (none within 10x of this model's MACs)")}


MEASURED_ESTIMATE = "estimate from measured rows"


def _extrapolation(base: dict[str, Any], total: int, smallest: int, largest: int, what: str) -> None:
    base["calibration_macs"] = [smallest, largest]
    base["extrapolated"] = bool(total < smallest / 10 or total > largest * 10)
    if total < smallest / 10:
        base["note"] = (f"{total / 1e6:.2g} M MACs is far below the smallest {what} ({smallest / 1e6:.3g} M): "
                        "the estimate is extrapolated and ignores fixed per-inference costs")
    elif total > largest * 10:
        base["note"] = f"{total / 1e6:.3g} M MACs is far above the largest {what} ({largest / 1e6:.3g} M): the estimate is extrapolated"


def _from_measured(profile: DeviceProfile, work: Workload, want: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    from edgeqat.devices import calibration

    sm = profile.speed_model_for(want) or profile.speed_model
    weights = _shipped_weights(published_rows()[sm.rows[0]]["device_class"]) if sm is not None else None
    f = calibration.fit(rows, weights)
    base = {"kernel_library": "XNNPACK" if profile.xnnpack else "LiteRT builtin", "runtime": "litert", "dtype": want,
            "threads": profile.threads, "label": "estimate", "source": MEASURED_ESTIMATE,
            "measured_rows": len(rows), "last_measured": max(r["date"] for r in rows)}
    _extrapolation(base, work.total_macs, *f.macs_range, f"model measured on {profile.name}")
    base["error_band"] = calibration.band(calibration.leave_one_out(rows, weights))
    return {**base, "latency_ms_estimate": f.predict(work.macs),
            "fit": {"const_ms": f.const_ms, "ms_per_mmac": f.ms_per_mmac, "rows": f.rows}}


# A device class as a proxy label names it ("ARM proxy: ..., not x86 evidence").
CLASS_WORDS = {"arm_linux": "ARM", "phone": "phone (ARM)", "x86": "x86", "edge_tpu": "Edge TPU", "mcu": "MCU", "npu": "NPU"}


def proxy_label(profile: DeviceProfile, rows: tuple[str, ...] | list[str]) -> str:
    """What an estimate fitted on another device class's published rows is: a proxy for the
    device, not evidence of its own class (j1900, an x86 PC, on the Raspberry Pi 4's ARM row)."""
    first = published_rows()[rows[0]]
    word = CLASS_WORDS.get(first["device_class"], first["device_class"])
    device = first["device"].split(" (")[0]
    return (f"{word} proxy: {device} row{'s' if len(rows) > 1 else ''}, not "
            f"{CLASS_WORDS.get(profile.device_class, profile.device_class)} evidence")


def estimate_latency(profile: DeviceProfile, work: Workload, measured: Optional[list[dict[str, Any]]] = None) -> dict[str, Any]:
    """The profile's estimate for a model, or why there is none (a float model on an int8 fit).

    ``measured``: the project's calibration rows (:mod:`edgeqat.devices.calibration`); those of
    this device with the model's dtype, the profile's threads and XNNPACK setting are fitted
    first, and the published figures are used only where there are none.

    Every estimate says where it comes from (``source``), its held-out error band, and
    whether it is ``extrapolated``: the model's MACs more than 10x outside the range of the
    calibration models it was fitted on; ``proxy`` (:func:`proxy_label`) when those are another
    device class's figures."""
    from edgeqat.devices import calibration

    kind = calibration.compute_kind(work)
    mine = calibration.rows_for(measured or [], profile.name, kind, profile.threads, profile.xnnpack)
    if mine:
        return _from_measured(profile, work, kind, mine)
    want = "fp32" if kind == "fp32" else "int8"  # published figures: int8 or fp32 only
    sm = profile.speed_model_for(want)
    if sm is None:
        sm = profile.speed_model
        if sm is None:
            return {"label": "estimate", "latency_ms_estimate": None, "dtype": want, "threads": profile.threads,
                    "note": f"no {want} latency estimate for {profile.name}: no measured rows at {profile.threads} "
                            f"thread(s) yet (`edgeqat devices calibrate {profile.name}`) and no published speed model"}
        return {"kernel_library": sm.kernel_library, "runtime": sm.runtime, "dtype": sm.dtype, "threads": sm.threads,
                "label": "estimate", "latency_ms_estimate": None,
                "note": f"no {want} speed model for {profile.name} (published figures are {sm.dtype}): no latency estimate"}
    base = {"kernel_library": sm.kernel_library, "runtime": sm.runtime, "dtype": sm.dtype, "threads": sm.threads,
            "label": "estimate", "source": ESTIMATE}
    fit = fit_speed_model(sm)
    cal = [_macs(published_rows()[r]["model"]) for r in fit.calibration]
    _extrapolation(base, work.total_macs, min(cal), max(cal), "calibration model")
    cls = published_rows()[fit.calibration[0]]["device_class"]
    base["error_band"] = error_band(cls, work.total_macs)
    if cls != profile.device_class:
        base["proxy"] = proxy_label(profile, fit.calibration)
    return {**base, "latency_ms_estimate": fit.predict(work.macs),
            "fit": {"ms_per_mmac": fit.ms_per_mmac, "calibration_rows": list(fit.calibration)}}


def heldout_report(rows: dict | None = None, work: dict | None = None) -> dict[str, Any]:
    """The estimator checked on data it never saw: for every like-with-like group of the table
    (one device, runtime, kernel library, dtype, thread count) fit on its calibration rows, predict
    its held-out rows, and summarise the relative errors per device class."""
    given = (rows, work)
    rows = published_rows() if rows is None else rows
    work = reference_workloads() if work is None else work
    groups: dict[tuple, list[dict]] = {}
    for r in rows.values():
        if _features(r, work) is not None:
            groups.setdefault(_key(r), []).append(r)
    points = []
    for key, members in sorted(groups.items()):
        calib = [r["id"] for r in members if r["split"] == "calibration"]
        if not calib or not any(r["split"] == "heldout" for r in members):
            continue
        sm = SpeedModel(kernel_library=key[2], runtime=key[1], dtype=key[3], threads=max(key[4], 1), rows=calib)
        for e in heldout_errors(sm, *given):
            points.append({**e, "device_class": rows[e["id"]]["device_class"], "calibration_rows": len(calib)})
    by_class: dict[str, dict[str, Any]] = {}
    for cls in sorted({p["device_class"] for p in points}):
        errs = [p["rel_error"] for p in points if p["device_class"] == cls]
        by_class[cls] = {"heldout_points": len(errs), "median_rel_error": float(np.median(errs)),
                         "max_rel_error": float(np.max(errs))}
    return {"points": points, "by_class": by_class}

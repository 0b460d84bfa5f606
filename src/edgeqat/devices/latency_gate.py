"""Which latency a verdict checks its budget against, and how much to trust it.

In the order a verdict prefers them:

1. ``measured``: p50 on the device itself (a profile with ``connect:``);
2. ``host-measured x published ratio``: x86 profiles with a ``host_scaling`` ratio (:func:`x86_evidence`);
3. ``vendor performance model (vela)``: Ethos-U, from Vela's compile (set by the Vela runtime);
4. an estimate: from this device's measured rows (``devices/measured.csv``), else from
   published figures; with its held-out error band and ``extrapolated`` when the model's MACs
   lie more than 10x outside the models it was fitted on, and ``latency_proxy`` when those
   models ran on another device class (j1900 on the Raspberry Pi 4's ARM row: "ARM proxy").

``validate.gate_on_extrapolated`` (default true) decides whether an extrapolated estimate may
fail a device; when false, an extrapolated estimate over budget is a note, not a reason, and
the verdict says the latency was not gated. x86 profiles also get x86 evidence
(:func:`x86_evidence`): this host's measurement with the profile's thread count, scaled by the
profile's published ratio when it has one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from edgeqat.devices.profiles import DeviceProfile

MEASURED = "measured"
SCALED = "host-measured x published ratio"


def choose(v: dict[str, Any], est: dict[str, Any], gate_on_extrapolated: bool) -> None:
    """Set the verdict's ``latency_ms``, ``latency_source``, ``latency_extrapolated`` and
    ``latency_gated`` from a measurement (``v["measured"]``) or else the estimate."""
    m = v.get("measured") or {}
    if m.get("ran"):
        v.update(latency_ms=m["p50_ms"], latency_source=MEASURED, latency_extrapolated=False, latency_gated=True,
                 latency_measured_on=f"{m['device']}, {m['date'][:10]}")
        return
    x86 = v.get("x86_evidence") or {}
    if x86.get("latency_ms") is not None:
        v.update(latency_ms=x86["latency_ms"], latency_source=SCALED, latency_extrapolated=False, latency_gated=True)
        return
    v["latency_ms"] = est.get("latency_ms_estimate")
    v["latency_source"] = est.get("source", "estimate from published figures")
    if est.get("proxy"):  # another device class's figures: say so wherever the verdict is shown
        v["latency_proxy"] = est["proxy"]
    v["latency_extrapolated"] = bool(est.get("extrapolated"))
    v["latency_gated"] = v["latency_ms"] is not None and (gate_on_extrapolated or not v["latency_extrapolated"])


def check_budget(prof: DeviceProfile, v: dict[str, Any], reasons: list[str], misses: dict, notes: list[str]) -> None:
    """The budget against the chosen figure; an ungated (extrapolated) figure only gets a note."""
    ms, budget = v.get("latency_ms"), prof.latency_budget_ms
    proxy = v.get("latency_proxy")
    if proxy and ms is not None:
        notes.append(proxy_note(prof, v))
    if budget is None or ms is None or ms <= budget:
        return
    if v.get("latency_source") == MEASURED:
        reasons.append(f"measured latency p50 {ms:.3g} ms on {v.get('latency_measured_on')} > budget {budget:g} ms")
    elif v.get("latency_source") == SCALED:
        x86 = v["x86_evidence"]
        reasons.append(f"latency {ms:.3g} ms (this host's {x86['host_p50_ms']:.3g} ms x {x86['ratio']:g}, "
                       f"{x86['ratio_source']}) > budget {budget:g} ms")
    elif not v.get("latency_gated"):
        notes.append(f"estimated latency {ms:.3g} ms > budget {budget:g} ms, but the estimate is extrapolated and "
                     "validate.gate_on_extrapolated is false: not gated (measure it on the device to be sure)")
        return
    else:
        extra = " (extrapolated outside its calibration range: measure on the device to be sure)" \
            if v.get("latency_extrapolated") else ""
        reasons.append(f"estimated latency {ms:.1f} ms > budget {budget:g} ms{extra}" + (f" ({proxy})" if proxy else ""))
    misses["latency"] = {"needed": ms, "available": budget}


def proxy_note(prof: DeviceProfile, v: dict[str, Any]) -> str:
    """The verdict's note on a proxy estimate, with this host's x86 figure beside it when there is one."""
    note = f"latency {v['latency_ms']:.3g} ms is an estimate on a proxy ({v['latency_proxy']})"
    x86 = v.get("x86_evidence") or {}
    if x86.get("host_p50_ms") is not None:
        note += (f"; this host's x86 run, p50 {x86['host_p50_ms']:.3g} ms at {x86['threads']} thread(s) on "
                 f"{x86['host_cpu']}, is not scaled to {prof.name} (no published ratio for the same workload)")
    return note


def x86_evidence(prof: DeviceProfile, host_p50_ms: Optional[float]) -> Optional[dict[str, Any]]:
    """x86 profiles: the model as timed on this host with the profile's threads and XNNPACK
    setting (x86 kernels, the target's ISA family), times the profile's published ratio when it
    has one. None when this host is not x86 or there is no host figure."""
    import platform

    if host_p50_ms is None or platform.machine() not in ("x86_64", "AMD64", "i686"):
        return None
    out: dict[str, Any] = {"host_p50_ms": host_p50_ms, "threads": prof.threads, "host_cpu": _host_cpu(),
                           "label": "measured on this host (x86)"}
    scale = prof.host_scaling
    if scale is None:
        out["latency_ms"] = None
        out["note"] = (f"not scaled to {prof.name}: its profile has no host_scaling (a published ratio between it and "
                       "this host's CPU on the same workload); x86 evidence, not the device's latency")
        return out
    out.update(latency_ms=host_p50_ms * scale.ratio, ratio=scale.ratio, ratio_source=scale.source, ratio_basis=scale.basis,
               label=f"measured on this host (x86) x published ratio {scale.ratio:g}")
    return out


def _host_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()

"""Every device latency in the report says where it came from: measured on the device (which
device, which day), Vela's performance model, this host x a published ratio, or an estimate
(its held-out error band; extrapolated, and whether it was gated). The verdicts are made by
latency_gate.choose, as validate makes them; no model runs."""

from __future__ import annotations

import pytest

from edgeqat.devices.latency_gate import choose
from edgeqat.devices.profiles import resolve_profiles
from edgeqat.reporting.tables import device_table
from edgeqat.reporting.html import budgets

PUBLISHED = {"latency_ms_estimate": 0.172, "source": "estimate from published figures"}
BAND = {"median_rel_error": 0.23, "max_rel_error": 0.6, "heldout_points": 7}


def _verdict(est: dict | None = None, gate_on_extrapolated: bool = True, band: dict | None = None, **fields) -> dict:
    v = {"passed": True, "runtime": "litert", "reasons": [], **fields}
    if "latency_source" not in v:
        choose(v, est or {}, gate_on_extrapolated)
    if band:
        v["latency_error_band"] = band  # as the validate stage keeps it in summary.json
    return v


@pytest.fixture(scope="module")
def devices() -> dict[str, dict]:
    vela = "vendor performance model (vela)"
    return {
        "host": _verdict(measured={"ran": True, "p50_ms": 0.0435, "device": "host", "date": "2026-12-08T01:35:07+00:00"}),
        "ethos_u55_128": _verdict(latency_ms=1.23, latency_ms_estimate=1.23, latency_source=vela,
                                  latency_extrapolated=False, latency_gated=True, runtime="vela"),
        "j1900": _verdict(x86_evidence={"latency_ms": 0.19}),
        "rpi4": _verdict({**PUBLISHED, "extrapolated": False}, band=BAND),
        "rpi_zero2w": _verdict({**PUBLISHED, "extrapolated": True}, gate_on_extrapolated=False, band=BAND),
        "android_midrange": _verdict({**PUBLISHED, "extrapolated": True}, gate_on_extrapolated=True),
        "coral_edgetpu": _verdict({"latency_ms_estimate": None}),
    }


EXPECTED = {  # device: (the report's latency cell, the HTML budget's label or None when there is no figure)
    "host": ("0.0435 (measured on host, 2026-12-08)", "latency (measured on host, 2026-12-08)"),
    "ethos_u55_128": ("1.23 (vela)", "latency (vela)"),
    "j1900": ("0.19 (this host x published ratio)", "latency (this host x published ratio)"),
    "rpi4": ("0.172 (estimate ±23%)", "latency (estimate ±23%)"),
    "rpi_zero2w": ("0.172 (estimate ±23%, extrapolated, not gated)", "latency (estimate ±23%, extrapolated, not gated)"),
    "android_midrange": ("0.172 (estimate, extrapolated)", "latency (estimate, extrapolated)"),
    "coral_edgetpu": ("–", None),
}


def test_the_device_table_names_each_latencys_source(devices):
    lines = device_table({"validated_model": "qat_int8", "devices": devices})
    header = next(ln for ln in lines if ln.startswith("| device"))
    col = [c.strip() for c in header.strip("|").split("|")].index("latency ms")
    cells = {}
    for ln in lines:
        parts = [c.strip() for c in ln.strip("|").split("|")]
        if ln.startswith("| ") and parts[0] in devices:
            cells[parts[0]] = parts[col]
    assert cells == {name: cell for name, (cell, _) in EXPECTED.items()}
    note = " ".join(lines)
    assert "*measured*" in note and "*vela*" in note and "*extrapolated*" in note and "*not gated*" in note


def test_the_html_budgets_label_the_latency_the_same_way(devices):
    profiles = {p.name: p for p in resolve_profiles(list(devices))}
    rows = budgets(devices, {}, profiles)
    for name, (_, label) in EXPECTED.items():
        latency = [r for r in rows[name] if r["unit"] == "ms"]
        if label is None:
            assert latency == []
            continue
        assert latency == [{"budget": label, "used": devices[name]["latency_ms"],
                            "available": profiles[name].latency_budget_ms, "unit": "ms"}], name

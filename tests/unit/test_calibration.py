"""Estimates that learn: the project's measured rows (devices/measured.csv) and the fit on them."""

from __future__ import annotations

import pytest

from edgeqat.devices import calibration
from edgeqat.devices.profiles import resolve_profiles
from edgeqat.devices.speed import estimate_latency
from edgeqat.devices.workload import Workload
from edgeqat.errors import ConfigError


def _row(device: str, dense: int, dw: int, fc: int, other: int, ms: float, **kw) -> dict:
    return {"device": device, "date": "2026-01-01T00:00:00+00:00", "model": f"m{dense}", "sha256": f"{dense:016x}",
            "dtype": "int8", "threads": 1, "xnnpack": True, "dense_macs": dense, "depthwise_macs": dw, "fc_macs": fc,
            "other_elems": other, "latency_ms": ms, "p90_ms": ms * 1.1, "runs": 30, "cpu": "test", "runtime": "litert",
            "source": "calibrate", **kw}


# A device that costs 0.05 ms per inference, 0.002 ms per dense M MAC, 0.01 per depthwise M MAC, 0.004 per fc M MAC
TRUTH = lambda d, w, f, o: 0.05 + 0.002 * d / 1e6 + 0.01 * w / 1e6 + 0.004 * f / 1e6 + 0.001 * o / 1e6  # noqa: E731
SHAPES = [(2e6, 3e5, 1e4, 5e3), (8e6, 4e5, 2e4, 1e4), (3e7, 2e6, 5e4, 3e4), (1e6, 1e6, 1e4, 2e4), (5e6, 1e5, 6e5, 1e3),
          (1.5e7, 9e5, 1e5, 4e4), (4e6, 2.5e6, 3e4, 1e4)]


def test_fit_recovers_a_device_with_a_per_inference_cost():
    rows = [_row("bench", *map(int, s), TRUTH(*s)) for s in SHAPES]
    f = calibration.fit(rows)
    assert f.const_ms == pytest.approx(0.05, rel=1e-3)
    assert f.ms_per_mmac["dense"] == pytest.approx(0.002, rel=1e-3) and f.ms_per_mmac["depthwise"] == pytest.approx(0.01, rel=1e-3)
    assert max(e["rel_error"] for e in calibration.leave_one_out(rows)) < 1e-3
    # two rows: one shared rate plus the constant, still exact on a dense-only device
    dense = [_row("bench", d, 0, 0, 0, 0.05 + 0.002 * d / 1e6) for d in (1_000_000, 20_000_000)]
    assert calibration.fit(dense).predict({"dense": 5_000_000}) == pytest.approx(0.06, rel=1e-6)


def test_estimate_fits_this_devices_measured_rows_first():
    (host,) = resolve_profiles(["host"])
    work = Workload(macs={"dense": 6_000_000, "depthwise": 500_000, "fc": 20_000, "other": 8_000})
    none = estimate_latency(host, work)  # no rows, no published model: says how to get one
    assert none["latency_ms_estimate"] is None and "edgeqat devices calibrate host" in none["note"]
    rows = [_row("host", *map(int, s), TRUTH(*s)) for s in SHAPES] + [_row("other_board", 6_000_000, 0, 0, 0, 99.0)]
    est = estimate_latency(host, work, rows)
    assert est["source"] == "estimate from measured rows" and est["measured_rows"] == len(SHAPES)
    assert est["latency_ms_estimate"] == pytest.approx(TRUTH(6e6, 5e5, 2e4, 8e3), rel=1e-3)
    assert est["extrapolated"] is False and est["error_band"]["heldout_points"] == len(SHAPES)
    tiny = estimate_latency(host, Workload(macs={"dense": 1000, "depthwise": 0, "fc": 0, "other": 0}), rows)
    assert tiny["extrapolated"] is True and "measured on host" in tiny["note"]
    # other threads or dtype: those rows do not apply
    assert estimate_latency(host, work, [dict(r, threads=4) for r in rows])["latency_ms_estimate"] is None
    # a published profile with rows of its own uses them, not the published figures
    (rpi4,) = resolve_profiles(["rpi4"])
    mine = [_row("rpi4", *map(int, s), TRUTH(*s), threads=4) for s in SHAPES]
    assert estimate_latency(rpi4, work)["source"] == "estimate from published figures"
    assert estimate_latency(rpi4, work, mine)["source"] == "estimate from measured rows"


def test_rows_file_round_trips_replaces_and_names_a_bad_line(tmp_path):
    path = tmp_path / "devices" / "measured.csv"
    a, b = _row("host", 1_000_000, 0, 0, 0, 0.1), _row("host", 2_000_000, 0, 0, 0, 0.2)
    calibration.append_rows(path, [a, b])
    calibration.append_rows(path, [dict(a, latency_ms=0.15)])  # the same file measured again: replaced
    rows = calibration.read_rows(path)
    assert [(r["dense_macs"], r["latency_ms"]) for r in rows] == [(2_000_000, 0.2), (1_000_000, 0.15)]
    assert rows[0]["xnnpack"] is True and rows[0]["threads"] == 1
    assert not [p for p in path.parent.iterdir() if p.name != "measured.csv"]  # no temp file left
    path.write_text(path.read_text() + "host,2026,m,abc,int8,one,True,1,0,0,0,0.1,0.1,3,cpu,rt,validate\n")
    with pytest.raises(ConfigError, match=r"measured\.csv:4: bad measured row"):
        calibration.read_rows(path)
    assert calibration.calibration_file(None) == calibration.calibration_file("devices")
    assert calibration.calibration_file("my_profiles").as_posix() == "my_profiles/measured.csv"


def test_int16x8_rows_never_mix_with_int8_ones():
    """16x8 models run LiteRT's reference kernels (measured here: ~8 ms vs ~0.04 ms for the int8
    twin): their rows must not drag the int8 fit."""
    (host,) = resolve_profiles(["host"])
    int8 = [_row("host", *map(int, s), TRUTH(*s)) for s in SHAPES]
    int16 = [_row("host", *map(int, s), 200 * TRUTH(*s), dtype="int16") for s in SHAPES]
    work = Workload(macs={"dense": 6_000_000, "depthwise": 500_000, "fc": 20_000, "other": 8_000})
    assert estimate_latency(host, work, int8 + int16)["latency_ms_estimate"] == pytest.approx(TRUTH(6e6, 5e5, 2e4, 8e3), rel=1e-3)
    work.compute_dtype = "int16"
    assert estimate_latency(host, work, int8 + int16)["latency_ms_estimate"] == pytest.approx(200 * TRUTH(6e6, 5e5, 2e4, 8e3), rel=1e-3)

"""The latency estimator: fitted on published figures, checked on held-out ones."""

from __future__ import annotations

import pytest

from edgeqat.devices.profiles import SpeedModel, available_profiles
from edgeqat.devices.speed import fit_speed_model, heldout_errors, heldout_report, published_rows, reference_workloads

CLASSES = ("arm_linux", "phone", "edge_tpu", "mcu")


def test_table_has_calibration_and_heldout_points_with_sources_per_class():
    rows = published_rows().values()
    for cls in CLASSES:
        mine = [r for r in rows if r["device_class"] == cls]
        assert len(mine) >= 5, cls
        assert {r["split"] for r in mine} == {"calibration", "heldout"}, cls
        assert all(r["source"].startswith("http") for r in mine), cls


def test_heldout_median_error_is_within_35_percent_per_device_class():
    rep = heldout_report()
    for cls in CLASSES:
        s = rep["by_class"][cls]
        assert s["heldout_points"] >= 2, cls
        assert s["median_rel_error"] <= 0.35, (cls, s)


def test_every_shipped_profile_fits_from_its_rows():
    for name, prof in available_profiles().items():
        for sm in (prof.speed_model, prof.speed_model_fp32):
            if sm is not None:
                fit = fit_speed_model(sm)
                assert fit.calibration and all(v > 0 for v in fit.ms_per_mmac.values()), name


def _synthetic(weights, rates):
    """Two devices whose latencies follow the model exactly: rate[device] * weighted MACs."""
    shapes = [(5e8, 2e7, 1e6, 3e6), (2e8, 1e7, 1e6, 1e6), (4e9, 0, 2e6, 9e6), (1e7, 1e6, 5e5, 2e5),
              (8e8, 5e7, 0, 4e6), (3e9, 1e8, 1e6, 8e6), (6e7, 4e6, 1e5, 7e5)]
    work = {f"m{i}": dict(zip(("dense", "depthwise", "fc", "other"), s)) for i, s in enumerate(shapes)}
    rows = {}
    for dev, rate in rates.items():
        for i, (m, w) in enumerate(work.items()):
            rid = f"{dev}-r{i}"
            rows[rid] = {"id": rid, "split": "calibration" if i < 5 else "heldout", "device_class": "arm_linux",
                         "device": dev, "model": m, "runtime": "litert", "kernel_library": "XNNPACK", "dtype": "int8",
                         "threads": 4, "latency_ms": rate * sum(w[c] * weights[c] for c in weights) / 1e6}
    return rows, work


def test_fit_recovers_a_known_speed_model():
    from edgeqat.devices.speed import op_class_weights

    weights = {"dense": 1.0, "depthwise": 3, "fc": 8, "other": 2}  # points of the search grid
    rows, work = _synthetic(weights, {"a": 0.02, "b": 0.5})
    assert op_class_weights(rows, work) == weights
    sm = SpeedModel(kernel_library="XNNPACK", runtime="litert", threads=4, rows=[f"b-r{i}" for i in range(5)])
    fit = fit_speed_model(sm, rows, work)
    assert fit.ms_per_mmac["dense"] == pytest.approx(0.5) and fit.ms_per_mmac["fc"] == pytest.approx(4.0)
    errs = heldout_errors(sm, rows, work)
    assert [e["id"] for e in errs] == ["b-r5", "b-r6"] and all(e["rel_error"] < 1e-9 for e in errs)


def test_reference_workloads_match_published_mac_counts():
    w = reference_workloads()
    total = {m: sum(v.values()) / 1e6 for m, v in w.items()}
    # MobileNet v1 paper: 569 M mult-adds; v2 paper: 300 M; MLPerf Tiny paper: DS-CNN 2.7 M (approx.)
    assert total["mobilenet_v1_1.0_224"] == pytest.approx(569, rel=0.01)
    assert total["mobilenet_v2_1.0_224"] == pytest.approx(300, rel=0.02)
    assert total["dscnn_kws_mlperf"] == pytest.approx(2.7, rel=0.05)

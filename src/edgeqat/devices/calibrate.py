"""`edgeqat devices calibrate DEVICE`: measure a reference set on a device and write its rows.

The reference set is edgeqat's own zoo (``dscnn``, ``resnet``, ``mobilenetv2``) at a few widths
and input sizes, with seeded random weights (latency does not depend on the weights' values),
converted the way edgeqat converts (full-integer PTQ, or float). Together they span 3 to 62 M
MACs and every op class (dense, depthwise, fully-connected, other). Each is measured on the device (:mod:`edgeqat.devices.runtimes.measured`)
and becomes a row of the calibration file; estimates for the device then fit those rows.

The converted references are cached (``$XDG_CACHE_HOME/edgeqat/reference-models``, keyed by
model, width, size, dtype and TensorFlow version), so a second calibration measures only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeqat.devices import calibration
from edgeqat.devices.profiles import DeviceProfile
from edgeqat.io import log, sha256_file, write_bytes

# (zoo model, width multiplier alpha, input side): 3 channels, 10 classes
REFERENCE = (("dscnn", 0.5, 32), ("dscnn", 1.0, 32), ("dscnn", 2.0, 32),
             ("resnet", 0.5, 32), ("resnet", 1.0, 32), ("resnet", 2.0, 32),
             ("mobilenetv2", 0.35, 48), ("mobilenetv2", 0.5, 64), ("mobilenetv2", 1.0, 64))


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeqat" / "reference-models"


def reference_name(model: str, alpha: float, size: int, dtype: str, channels: int = 3) -> str:
    return f"{model}_a{alpha:g}_{size}x{size}x{channels}_{dtype}"


def reference_model(model: str, alpha: float, size: int, dtype: str = "int8", folder: Optional[Path] = None,
                    channels: int = 3) -> Path:
    """The zoo model ``model`` at width ``alpha`` and ``size`` x ``size`` x ``channels`` inputs,
    10 classes, converted (cached: built once per TensorFlow version)."""
    from edgeqat.models.zoo import build_model
    from edgeqat.quantization.converter import convert_variant
    from edgeqat.tf_compat import keras, tf

    folder = Path(folder) if folder is not None else cache_dir() / tf.__version__
    path = folder / f"{reference_name(model, alpha, size, dtype, channels)}.tflite"
    if path.is_file():
        return path
    keras.utils.set_random_seed(0)
    net = build_model(model, (size, size, channels), 10, alpha=alpha)
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(8):
            yield [rng.random((1, size, size, channels), dtype=np.float32)]

    blob = convert_variant("ptq_int8" if dtype == "int8" else "fp32", net, None, representative, "int8")
    keras.backend.clear_session()
    return write_bytes(path, blob)


def measure_model(prof: DeviceProfile, path: Path, runs: int) -> tuple[Any, dict[str, Any]]:
    """(workload, measurement dict) of one model on the device: seeded random inputs."""
    from edgeqat.devices.on_device import sample_inputs
    from edgeqat.devices.runtimes.measured import measure
    from edgeqat.devices.workload import analyze

    raw, _ = sample_inputs(path, None, 2, prof.xnnpack)
    return analyze(path), measure(prof, path, raw, runs=runs).as_dict()


def calibrate(prof: DeviceProfile, out: str | Path, *, dtype: str = "int8", runs: int = 30,
              reference: tuple = REFERENCE, folder: Optional[Path] = None) -> dict[str, Any]:
    """Measure every reference model on ``prof``, write the rows to ``out`` (replacing older rows
    of the same files) and report the held-out error of the published estimate and of the fit
    on the measured rows (leave-one-out). A failed measurement raises MeasureError: no row is
    written for a partial set."""
    from edgeqat.devices.speed import estimate_latency

    new, report = [], []
    for i, (model, alpha, size) in enumerate(reference, start=1):
        name = reference_name(model, alpha, size, dtype)
        log(f"calibrate {prof.name}: {i}/{len(reference)} {name}")
        path = reference_model(model, alpha, size, dtype, folder)
        work, m = measure_model(prof, path, runs)
        new.append(calibration.row(prof.name, name, sha256_file(path), work, m, "calibrate"))
        published = estimate_latency(prof, work).get("latency_ms_estimate") if prof.speed_model is not None else None
        report.append({"model": name, "macs": work.total_macs, "measured_ms": m["p50_ms"], "published_ms": published})
    calibration.append_rows(out, new)
    loo = calibration.leave_one_out(new)
    for r in report:
        r["loo_ms"] = next((e["estimate_ms"] for e in loo if e["model"] == r["model"]), None)
    before = [abs(r["published_ms"] - r["measured_ms"]) / r["measured_ms"] for r in report if r["published_ms"] is not None]
    return {"device": prof.name, "file": str(out), "rows": report,
            "before": ({"median_rel_error": float(np.median(before)), "max_rel_error": float(np.max(before)),
                        "basis": "published-figure estimate vs these measurements"} if before else {}),
            "after": calibration.band(loo)}

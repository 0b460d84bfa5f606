"""A verdict's measurement on a device that is really there (``connect:``): the sample inputs,
the run (:mod:`edgeqat.devices.runtimes.measured`), parity with host LiteRT on the same inputs,
and the calibration row it leaves behind.

The host reference runs LiteRT with the profile's XNNPACK setting, so an x86 board over SSH
must match it bit for bit and an ARM board within the parity tolerance
(:mod:`edgeqat.devices.parity`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeqat.devices import parity
from edgeqat.devices.profiles import DeviceProfile
from edgeqat.devices.workload import Workload


def sample_inputs(path: Path, images: Optional[np.ndarray], n: int, xnnpack: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(raw inputs in the model input's dtype, host LiteRT's raw outputs on them): the first ``n``
    images, or seeded uniform [0, 1) inputs when there are none."""
    from edgeqat.quantization.runtime import load_interpreter, quantize_input

    it = load_interpreter(path, num_threads=1, xnnpack=xnnpack)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    if images is None:
        images = np.random.default_rng(0).random((n, *inp["shape"][1:]), dtype=np.float32)
    raw = np.stack([quantize_input(x[None], inp)[0] for x in images[:n]])
    ref = []
    for x in raw:
        it.set_tensor(inp["index"], x[None])
        it.invoke()
        ref.append(it.get_tensor(out["index"])[0].copy())
    return raw, np.stack(ref)


def measure_into(path: Path, prof: DeviceProfile, work: Workload, images: Optional[np.ndarray], *, runs: int,
                 samples: int, v: dict[str, Any], reasons: list[str], notes: list[str]) -> Optional[dict[str, Any]]:
    """Measure ``path`` on ``prof``'s device and write the result into the verdict ``v``
    (``measured``); a check that could not run or a parity miss becomes a reason. Returns the
    calibration row, or None when there is no measurement."""
    from edgeqat.devices import calibration
    from edgeqat.devices.runtimes.measured import MeasureError, measure
    from edgeqat.io import sha256_file

    raw, ref = sample_inputs(path, images, samples, prof.xnnpack)
    try:
        m = measure(prof, path, raw, runs=runs)
    except MeasureError as err:
        v["measured"] = {"ran": False, "check": err.check, "why": str(err)}
        reasons.append(f"measured latency could not run ({err.check} check): {err}")
        return None
    v["measured"] = {"ran": True, **m.as_dict()}
    try:
        cmp = parity.compare(ref, m.outputs)
    except ValueError as err:
        cmp = {"within_tolerance": False, "why": str(err)}
        reasons.append(f"{prof.name}: outputs on the device cannot be compared with host LiteRT: {err}")
    else:
        if not cmp["within_tolerance"]:
            reasons.append(f"{prof.name}: " + parity.describe(cmp, "the device"))
        elif not cmp["bit_exact"]:
            notes.append(f"{prof.name} vs host LiteRT: {cmp['mismatched']} of {cmp['samples']} sample outputs differ "
                         f"by at most {cmp['max_abs_diff']:g} (within {cmp['tolerance']})")
    v["measured"]["parity"] = {**cmp, "against": f"host LiteRT ({'XNNPACK' if prof.xnnpack else 'builtin kernels'})"}
    rss = m.info.get("peak_rss_bytes")
    if rss:
        notes.append(f"peak RSS on {prof.name}: {rss / 2**20:.1f} MiB (the measuring Python process, numpy and LiteRT included)")
    return calibration.row(prof.name, path.name, sha256_file(path), work, m.as_dict(), "validate")

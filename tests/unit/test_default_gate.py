"""The default model passes the default device gate on the data shapes the README leads a new
user to: the built-in digits (16x16x1), a 28x28 grayscale IDX set and a 64x64 RGB folder.

The model is built from params.yaml's train section and converted to int8 (ptq_int8: the same
graph and arithmetic as qat_int8; latency, memory and ops do not depend on trained weights),
then checked on every device of params.yaml's validate.required_devices with validate's own
estimators. A default gate naming a device the default model cannot fit (cortex_m7 from 28x28
up, measured in docs/devices.md) fails here, before a user's run fails after ten minutes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeqat.config import load_params

REPO = Path(__file__).resolve().parents[2]
SHAPES = [(16, 1, 10), (28, 1, 10), (64, 3, 3)]


@pytest.mark.slow
@pytest.mark.parametrize("size, channels, classes", SHAPES, ids=[f"{s}x{s}x{c}" for s, c, _ in SHAPES])
def test_the_default_model_passes_the_default_gate(tmp_path, size, channels, classes):
    from edgeqat.devices.profiles import resolve_profiles
    from edgeqat.devices.validate import validate_on_device
    from edgeqat.models.zoo import build_model
    from edgeqat.quantization.converter import convert_variant

    p = load_params(REPO / "params.yaml")
    model = build_model(p.train.model, (size, size, channels), classes, alpha=p.train.alpha, dropout=p.train.dropout)
    rng = np.random.default_rng(0)
    blob = convert_variant("ptq_int8", model, None,
                           lambda: ([rng.random((1, size, size, channels), dtype=np.float32)] for _ in range(4)))
    (tmp_path / "m.tflite").write_bytes(blob)
    assert p.validate.required_devices, "a default gate with no device gates nothing"
    for prof in resolve_profiles(p.validate.required_devices):
        v = validate_on_device(tmp_path / "m.tflite", prof, None, latency_runs=3, emulate=False, parity_samples=4)
        assert v["passed"], f"{prof.name} at {size}x{size}x{channels}: {v['reasons']}"

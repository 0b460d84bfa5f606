"""Keras 3 models, trained by Keras 3, through the stages (make test-slow).

Keras 3 itself (one child process) trains three models of the matrix on tiny synthetic
brightness images and saves them: a Sequential as .keras, a functional with Rescaling as
.keras, and the blocks model (BatchNormalization, DepthwiseConv2D, SeparableConv2D, Add,
Concatenate, ReLU6) as .h5. Each file then goes through train (from_model) -> qat (one
epoch) -> convert -> evaluate -> validate on the quick variant set. Checked per file: the
translated FP32 model computes what Keras 3 computes (max |difference| <= 1e-4 on 32 test
images), and qat_int8 (LiteRT, int8) is within 1 point of the Keras 3 model's own test
accuracy. Every layer of the matrix in both formats, MobileNetV2 included, is translated and
compared in tests/unit/test_keras3.py; a Keras 3 model.export() SavedModel through every
stage is tests/integration/test_keras3_export.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import keras3_models as k3
import user_models as um

pytestmark = pytest.mark.slow

N_IMAGES = 400  # 80 test images
EPOCHS = 12  # Keras 3's own training of these small models
CASES = [("sequential", 1, ".keras"), ("rescaling", 3, ".keras"), ("blocks", 1, ".h5")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Each model trained by Keras 3 on its prepared split, saved in the format it is tested in."""
    d = tmp_path_factory.mktemp("keras3_matrix")
    jobs, prepared = [], {}
    for kind, channels, fmt in CASES:
        p = um.prepared_split(d, channels, k3.normalize_of(kind), size=k3.size_of(kind), n=N_IMAGES)
        prepared[kind] = p
        test = k3.split_arrays(p, "test", d / f"{kind}.test.npz")
        np.save(d / f"{kind}.inputs.npy", np.load(test)["x"][:32])  # the equivalence check's 32 samples
        jobs.append({"kind": kind, "shape": [k3.size_of(kind)] * 2 + [channels], "classes": 4, "out": str(d),
                     "formats": [fmt], "train": str(k3.split_arrays(p, "train", d / f"{kind}.train.npz")),
                     "epochs": EPOCHS, "lr": 0.005, "probe": str(d / f"{kind}.inputs.npy"), "test": str(test)})
    seconds = k3.build(jobs, d)
    print(f"\nKeras 3 trained and saved {len(jobs)} models in {seconds:.0f} s")
    return d, prepared


@pytest.mark.parametrize("kind,channels,fmt", CASES, ids=[f"{k}{f}" for k, _, f in CASES])
def test_keras3_model_goes_through_the_stages(trained, kind, channels, fmt, tmp_path):
    import time

    from edgeqat.models.keras3 import translate_file

    d, prepared = trained
    path = d / f"{kind}{fmt}"
    original = json.loads((d / f"{kind}.json").read_text())["test_accuracy"]

    t0 = time.monotonic()
    model, _ = translate_file(path)
    seconds = time.monotonic() - t0
    diff = k3.max_output_difference(model, d / f"{kind}.probe.npy", d / f"{kind}.inputs.npy")

    out = k3.run_stages(path, prepared[kind], tmp_path)
    table = out["table"]
    fp32, qat = table["fp32"]["accuracy"], table["qat_int8"]["accuracy"]
    print(f"\n{kind}{fmt} ({channels} ch): max |diff| {diff:.3g} on 32 test images (translated in {seconds:.1f} s); "
          f"Keras 3 test accuracy {original:.4f}, fp32 {fp32:.4f}, qat_int8 {qat:.4f}, "
          f"ptq_int8 {table['ptq_int8']['accuracy']:.4f}; stage seconds {out['seconds']}")

    assert diff <= 1e-4
    assert out["train"]["epochs_run"] == 0
    assert original >= 0.9, "Keras 3 should have learnt the brightness classes"
    assert abs(out["train"]["test_accuracy"] - original) <= 0.01  # the translated model, scored by the pipeline
    assert qat >= original - 0.01
    assert sorted(table) == ["fp32", "ptq_int8", "qat_int8"]
    card = json.loads((tmp_path / "tflite" / "model_card.json").read_text())
    assert card["variants"]["qat_int8"]["integer_only"]
    assert {"rpi4", "cortex_m7"} <= set(out["validate"])  # each device's verdict on qat_int8

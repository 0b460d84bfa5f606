"""The issue's Keras 3 matrix through every stage (make test-slow).

Keras 3 itself (a child process) trains each model of the matrix on the prepared train split
and saves it as .keras and as .h5; each file then goes through train (from_model) -> qat ->
prune -> cluster -> convert -> evaluate -> validate. Checked per file: the translated FP32
model computes what Keras 3 computes (max |difference| <= 1e-4 on 32 test images), and
qat_int8 (LiteRT, int8) is within 1 point of the Keras 3 model's own accuracy on the test split.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import keras3_models as k3
import user_models as um

pytestmark = pytest.mark.slow

N_IMAGES = 600  # 120 test images: one point is 1.2 images
EPOCHS = {"sequential": 20, "rescaling": 20, "blocks": 20, "mobilenetv2": 12}
LEARNING_RATE = {"sequential": 0.005, "rescaling": 0.005, "blocks": 0.005, "mobilenetv2": 0.001}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Each matrix model trained by Keras 3 on its prepared split, saved in both formats."""
    d = tmp_path_factory.mktemp("keras3_matrix")
    jobs, prepared = [], {}
    for kind, channels, _ in k3.MATRIX:
        p = um.prepared_split(d, channels, k3.normalize_of(kind), size=k3.size_of(kind), n=N_IMAGES)
        prepared[kind] = p
        test = k3.split_arrays(p, "test", d / f"{kind}.test.npz")
        np.save(d / f"{kind}.inputs.npy", np.load(test)["x"][:32])  # the equivalence check's 32 samples
        jobs.append({"kind": kind, "shape": [k3.size_of(kind)] * 2 + [channels], "classes": 4, "out": str(d),
                     "train": str(k3.split_arrays(p, "train", d / f"{kind}.train.npz")), "epochs": EPOCHS[kind],
                     "lr": LEARNING_RATE[kind], "probe": str(d / f"{kind}.inputs.npy"), "test": str(test)})
    seconds = k3.build(jobs, d)
    print(f"\nKeras 3 trained and saved the matrix in {seconds:.0f} s")
    return d, prepared


@pytest.mark.parametrize("fmt", k3.FORMATS)
@pytest.mark.parametrize("kind,channels,head", k3.MATRIX, ids=[m[0] for m in k3.MATRIX])
def test_keras3_model_goes_through_every_stage(trained, kind, channels, head, fmt, tmp_path):
    import time

    from edgeqat.models.keras3 import translate_file

    d, prepared = trained
    path = d / f"{kind}{fmt}"
    original = json.loads((d / f"{kind}.json").read_text())["test_accuracy"]

    t0 = time.monotonic()
    model, _ = translate_file(path)
    seconds = time.monotonic() - t0
    diff = k3.max_output_difference(model, d / f"{kind}.probe.npy", d / f"{kind}.inputs.npy")

    out = k3.run_every_stage(path, prepared[kind], tmp_path)
    table = out["table"]
    fp32, qat = table["fp32"]["accuracy"], table["qat_int8"]["accuracy"]
    print(f"\n{kind}{fmt} ({channels} ch, {head}): max |diff| {diff:.3g} on 32 test images (translated in "
          f"{seconds:.1f} s); Keras 3 test accuracy {original:.4f}, fp32 {fp32:.4f}, qat_int8 {qat:.4f}; "
          + ", ".join(f"{v} {r['accuracy']:.4f}" for v, r in table.items() if v not in ("fp32", "qat_int8"))
          + f"; stage seconds {out['seconds']}")

    assert diff <= 1e-4
    assert out["train"]["epochs_run"] == 0
    assert original >= 0.9, "Keras 3 should have learnt the brightness classes"
    assert abs(out["train"]["test_accuracy"] - original) <= 0.01  # the translated model, scored by the pipeline
    assert qat >= original - 0.01
    assert sorted(table) == ["cqat_int8", "fp32", "pqat_int8", "qat_int8"]
    card = json.loads((tmp_path / "tflite" / "model_card.json").read_text())
    assert card["variants"]["qat_int8"]["integer_only"]
    assert {"rpi4", "cortex_m7"} <= set(out["validate"])  # each device's verdict on qat_int8

"""A Keras 3 ``model.export()`` SavedModel as train.from_model: a serving graph without Keras
layers. It gets every variant that needs no layers (fp32 and the post-training
quantizations); the QAT family says in one line that it needs the .keras file, and every
stage exits 0 (slow: a Keras 3 child process, and the stages as the CLI runs them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from integration.conftest import BIN, run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PTQ = ["fp32", "ptq_dynamic", "ptq_float16", "ptq_int8", "ptq_int16x8"]
QAT_FAMILY = ["qat_int8", "mixed", "pqat_int8", "cqat_int8", "pcqat_int8", "channel_pruned_qat_int8"]

# Keras 3 as a user has it today: plain `import keras`, no TF_USE_LEGACY_KERAS.
CHILD = r"""
import sys, numpy as np, keras
data = np.load(sys.argv[1])
x, y = data["x"][..., None].astype("float32") / 255.0, data["y"]
inp = keras.Input((16, 16, 1))
h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
h = keras.layers.BatchNormalization(momentum=0.9)(h)
h = keras.layers.MaxPooling2D()(h)
h = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
h = keras.layers.GlobalAveragePooling2D()(h)
model = keras.Model(inp, keras.layers.Dense(4)(h))
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
keras.utils.set_random_seed(0)
model.fit(x, y, epochs=30, batch_size=16, verbose=0)
model.export(sys.argv[2])
print(keras.__version__)
"""


def test_export_gives_fp32_and_ptq_and_the_qat_family_says_why(tmp_path):
    from user_models import brightness_images

    x, y = brightness_images(160)  # a class per brightness: learnable through global pooling
    tiny_npz = tmp_path / "raw.npz"
    np.savez(tiny_npz, x=x, y=y)
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    child = subprocess.run([sys.executable, "-c", CHILD, str(tiny_npz), str(tmp_path / "exported")],
                           env=env, capture_output=True, text=True)
    assert child.returncode == 0, child.stderr[-3000:]
    assert child.stdout.split()[-1].startswith("3."), child.stdout  # Keras 3 wrote it
    assert not (tmp_path / "exported" / "keras_metadata.pb").exists()  # no Keras layers inside

    ws = tmp_path / "ws"
    ws.mkdir()
    p = yaml.safe_load(open(BIN.parents[1] / "params.yaml").read())
    p["prepare"].update(source="npz", path=str(tiny_npz), image_size=16, calibration_size=16, shard_size=32)
    p["train"].update(from_model=str(tmp_path / "exported"))
    p["evaluate"].update(latency_runs=5, warmup_runs=1)
    p["validate"].update(devices=["rpi4", "cortex_m7"], required_devices=["rpi4", "cortex_m7"], latency_runs=5,
                         emulate=False, max_accuracy_drop=0.1)
    (ws / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))

    logs = {}
    for stage in ("prepare", "preflight", "train", "qat", "prune", "cluster", "convert", "evaluate", "validate", "report"):
        proc = run([str(BIN / "edgeqat"), "stage", stage], ws, check=False)
        assert proc.returncode == 0, (stage, proc.stderr[-3000:])
        assert "Traceback" not in proc.stderr, stage
        logs[stage] = [ln for ln in proc.stderr.splitlines() if ln.startswith("[edgeqat] ")]

    # the QAT family: one line each, saying it needs the .keras file
    for stage in ("qat", "prune", "cluster"):
        assert len(logs[stage]) == 1 and "model.save('model.keras')" in logs[stage][0], logs[stage]
    card = json.loads((ws / "models" / "tflite" / "model_card.json").read_text())
    assert sorted(card["variants"]) == sorted(PTQ)
    assert sorted(card["not_built"]) == sorted(QAT_FAMILY)
    for name in PTQ:
        assert (ws / "models" / "tflite" / f"{name}.tflite").stat().st_size > 1000, name
    assert json.loads((ws / "models" / "qat.h5").read_text())["edgeqat_not_built"]["kind"] == "cannot_build"

    # the FP32 reference is the SavedModel's own serving graph: its test accuracy is what the
    # float .tflite scores on the same images
    train = json.loads((ws / "metrics" / "train.json").read_text())
    summary = json.loads((ws / "reports" / "summary.json").read_text())
    print("\n" + logs["qat"][0] + "\n" + "; ".join(f"{n} {summary['variants'][n]['accuracy']:.4f}" for n in PTQ))
    assert train["epochs_run"] == 0 and train["test_accuracy"] >= 0.75, train
    assert abs(summary["variants"]["fp32"]["accuracy"] - train["test_accuracy"]) < 1e-9
    assert summary["variants"]["fp32"]["agreement"] == 1.0
    assert summary["headline"] == summary["validated_model"] == "ptq_int8"  # stands in for qat_int8
    assert summary["variants"]["ptq_int8"]["accuracy"] >= train["test_accuracy"] - 0.1
    assert summary["validation_passed"] is True
    assert (ws / "reports" / "report.html").stat().st_size > 10_000
    assert np.isfinite(summary["variants"]["ptq_int16x8"]["accuracy"])

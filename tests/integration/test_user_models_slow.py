"""Keras-applications backbones as users bring them, through every stage (make test-slow):
MobileNetV2 alpha=0.35 at 96x96x3 with weights=None, whole (its own softmax top) and as
include_top=False under a user head (a nested model the train stage inlines)."""

from __future__ import annotations

import pytest

import user_models as um

pytestmark = pytest.mark.slow

# The QAT-side variants (what a nested, 150-layer graph changes); PTQ is covered on the zoo MobileNetV2.
VARIANTS = ["fp32", "qat_int8", "mixed", "pqat_int8", "channel_pruned_qat_int8"]


@pytest.fixture(scope="module")
def rgb96(tmp_path_factory):
    return um.prepared_split(tmp_path_factory.mktemp("rgb96"), 3, "minus_one_one", size=96, n=96)


@pytest.mark.parametrize("kind", ["mobilenetv2", "mobilenetv2_head"])
def test_keras_applications_model_goes_through_every_stage(kind, rgb96, tmp_path):
    model = um.build(kind, (96, 96, 3), 4)
    um.fit_briefly(model, rgb96, epochs=3)
    path = um.save(model, tmp_path / "model.keras")

    out = um.run_chain(path, rgb96, tmp_path, variants=VARIANTS, recommend_devices=("rpi4",))

    assert out["train"]["epochs_run"] == 0
    assert sorted(out["table"]) == sorted(VARIANTS)
    for name, row in out["table"].items():
        assert 0 <= row["accuracy"] <= 1 and row["size_bytes"] > 0, name
    # the int8 variants are integer end to end: nothing float left for an int8-only MCU
    card = __import__("json").loads((tmp_path / "tflite" / "model_card.json").read_text())
    for name in ("qat_int8", "pqat_int8", "channel_pruned_qat_int8"):
        assert card["variants"][name]["integer_only"], name
    assert out["prune"]["channel_pruned"]["params_ratio"] < 0.9
    assert "rpi4" in out["recommend"]

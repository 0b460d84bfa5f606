"""The foundation's accuracy promises on the real default data (slow: ~6 min on 2 cores).

Relative checks only (QAT vs FP32 and vs PTQ on the same run), no golden numbers.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_qat_int8_keeps_fp32_accuracy_on_digits(tmp_path):
    from edgeqat.config import Params
    from edgeqat.steps.convert import convert
    from edgeqat.steps.evaluate import evaluate
    from edgeqat.steps.prepare import prepare
    from edgeqat.steps.qat import qat
    from edgeqat.steps.train import train

    p = Params()  # the defaults equal the shipped params.yaml (tests/unit/test_config.py)
    prepare(p.prepare, tmp_path / "prepared")
    train(p.train, tmp_path / "prepared", tmp_path / "fp32.keras")
    qat(p.qat, tmp_path / "prepared", tmp_path / "fp32.keras", tmp_path / "qat.h5")
    foundation = p.convert.model_copy(update={"variants": ["fp32", "ptq_int8", "qat_int8"]})
    convert(foundation, tmp_path / "prepared", tmp_path / "fp32.keras", tmp_path / "qat.h5", tmp_path / "tflite")
    evaluate(p.evaluate, tmp_path / "prepared", tmp_path / "tflite", tmp_path / "fp32.keras", tmp_path / "summary.json")
    v = json.loads((tmp_path / "summary.json").read_text())["variants"]
    assert v["fp32"]["accuracy"] >= 0.9, "the baseline should learn the digits"
    assert v["qat_int8"]["accuracy"] >= v["fp32"]["accuracy"] - 0.01
    assert v["qat_int8"]["accuracy"] >= v["ptq_int8"]["accuracy"] - 0.005
    assert v["qat_int8"]["integer_only"] is True

"""The preflight stage: before any training, the model's graph against each required device's
budgets; a device that cannot pass stops the run with the figure, the budget and settings
that would pass."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from edgeqat.config import TrainConfig, ValidateConfig
from edgeqat.errors import DeviceBudgetError
from edgeqat.workspace.stages import Workspace


@pytest.mark.parametrize("name,shape", [("dscnn", (16, 16, 1)), ("resnet", (16, 16, 3))])
def test_the_layer_census_counts_what_the_converted_file_holds(name, shape):
    """What lets the check skip a conversion for the zoo's models: the counts equal the int8
    file's (multiply-accumulates, the largest op's activations, all activations) and its size
    comes within 5% (the check converts the model when a flash budget is that close)."""
    from edgeqat.devices.workload import analyze
    from edgeqat.models.census import census
    from edgeqat.models.zoo import build_model
    from edgeqat.quantization.converter import convert_variant
    from edgeqat.steps.preflight import SIZE_TOLERANCE, _like_trained

    model = build_model(name, shape, 4, alpha=0.5)
    _like_trained(model, 0)
    rng = np.random.default_rng(0)
    blob = convert_variant("ptq_int8", model, None, lambda: ([rng.random((1, *shape), np.float32)] for _ in range(4)))
    work, c = analyze(blob), census(model)
    assert {k: c[k] for k in ("dense", "depthwise", "fc")} == {k: work.macs[k] for k in ("dense", "depthwise", "fc")}
    assert c["peak_activation"] == work.peak_op_activation_bytes and c["activations"] == work.activation_bytes
    assert abs(c["stored_bytes"] - len(blob)) <= SIZE_TOLERANCE * len(blob), (c["stored_bytes"], len(blob))


def _run(prepared, tmp_path, train: TrainConfig, required: list[str]):
    """The stage as the CLI runs it, in a workspace at ``tmp_path`` (the runner writes the metrics)."""
    from edgeqat.adapters.runner import run_stage
    from edgeqat.config import Params

    params = Params(train=train, validate=ValidateConfig(required_devices=required))
    return run_stage("preflight", params, tmp_path, overrides={"prepared": prepared})


def _passed(tmp_path):
    return Workspace(tmp_path).path("preflight_metrics")


def _report(tmp_path):
    return Workspace(tmp_path).path("preflight")


def test_a_pass_writes_the_same_bytes_whatever_the_devices(tiny_prepared, tmp_path):
    """train depends on the metrics file: a new device list must re-run the check, not training."""
    _run(tiny_prepared, tmp_path, TrainConfig(alpha=0.5), ["rpi4"])
    first, report = _passed(tmp_path).read_bytes(), json.loads(_report(tmp_path).read_text())
    _run(tiny_prepared, tmp_path, TrainConfig(alpha=0.5), ["rpi4", "cortex_m7"])
    assert _passed(tmp_path).read_bytes() == first == b'{\n  "passed": true\n}\n'
    again = json.loads(_report(tmp_path).read_text())
    assert set(report["devices"]) == {"rpi4"} and set(again["devices"]) == {"rpi4", "cortex_m7"}
    m7 = again["devices"]["cortex_m7"]
    assert m7["passed"] and m7["figures"]["flash"]["budget"] == 2_097_152 and m7["figures"]["latency"]["value"] > 0


def test_a_device_that_cannot_fit_names_the_figure_the_budget_and_a_setting_that_passes(tiny_prepared, tmp_path):
    """The default DS-CNN's int8 file is over the Cortex-M4's 160 KiB of flash; a narrower one
    is not, and what the message proposes passes the same check, and as a converted file."""
    with pytest.raises(DeviceBudgetError) as err:
        _run(tiny_prepared, tmp_path, TrainConfig(), ["rpi4", "cortex_m4"])
    msg = str(err.value)
    assert "cortex_m4" in msg and "stopped before training" in msg
    assert re.search(r"cortex_m4 \(.*\): flash 1\d\d,\d{3} bytes > budget 163,840 bytes", msg), msg
    assert "passes with train.alpha=0.75" in msg
    assert "validate.required_devices=[rpi4]" in msg
    assert not _passed(tmp_path).exists()  # train would not start
    report = json.loads(_report(tmp_path).read_text())
    assert report["devices"]["cortex_m4"]["passed"] is False and report["devices"]["rpi4"]["passed"] is True
    proposed = report["devices"]["cortex_m4"]["settings"][0]["set"]
    assert proposed == {"train.alpha": 0.75}

    out = _run(tiny_prepared, tmp_path, TrainConfig(alpha=0.75), ["rpi4", "cortex_m4"])
    assert out["passed"]
    # the figures are counted, not converted: check the claim against the converter
    from edgeqat.models.zoo import build_model
    from edgeqat.quantization.converter import convert_variant
    from edgeqat.steps.preflight import _like_trained

    model = build_model("dscnn", (16, 16, 1), 4, alpha=0.75)
    _like_trained(model, 0)
    rng = np.random.default_rng(0)
    blob = convert_variant("ptq_int8", model, None, lambda: ([rng.random((1, 16, 16, 1), np.float32)] for _ in range(4)))
    assert len(blob) <= 163_840

"""A tiny int8 .tflite run by the aarch64 build of LiteRT on an emulated Cortex-A72 (QEMU
user mode, `make arm64`) gives the same bytes as the x86 build.

Skipped where the emulator is not set up, with the reason; under CI (CI=true) that is a
failure instead, since `.ci/run` runs `make arm64` first.
"""

from __future__ import annotations


import numpy as np
import pytest

from conftest import synthetic_images
from integration.conftest import require
from edgeqat.devices.qemu import QemuUnavailable, compare_outputs, qemu_available, run_on_qemu

pytestmark = pytest.mark.integration
N_SAMPLES = 8


def _require(reason: str | None) -> None:
    require(reason, "emulated aarch64")


@pytest.fixture(scope="session")
def qemu_ready() -> None:
    _require(qemu_available())


@pytest.fixture(scope="session")
def tiny_int8(tmp_path_factory, qemu_ready):
    """(path, int8 inputs (N, 16, 16, 1), x86 int8 outputs (N, 4)) for a small untrained
    conv net quantized post-training; logits (no softmax) so the outputs vary per sample."""
    from edgeqat.quantization.converter import convert_variant
    from edgeqat.quantization.runtime import load_interpreter, quantize_input
    from edgeqat.tf_compat import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input((16, 16, 1)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.DepthwiseConv2D(3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(8, 1),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(4),
    ])
    images, _ = synthetic_images(32)
    x = images[..., None].astype(np.float32) / 255.0

    def representative():
        for i in range(16):
            yield [x[i : i + 1]]

    path = tmp_path_factory.mktemp("qemu") / "tiny_int8.tflite"
    path.write_bytes(convert_variant("ptq_int8", model, None, representative, "int8"))

    it = load_interpreter(path)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    xq = quantize_input(x[16 : 16 + N_SAMPLES], inp)
    ys = []
    for i in range(N_SAMPLES):
        it.set_tensor(inp["index"], xq[i : i + 1])
        it.invoke()
        ys.append(it.get_tensor(out["index"])[0].copy())
    return path, xq, np.stack(ys)


def test_aarch64_litert_matches_x86_bit_for_bit(tiny_int8):
    path, xq, y_x86 = tiny_int8
    assert len({row.tobytes() for row in y_x86}) > 1, "degenerate test model: every sample gives the same output"

    res = run_on_qemu(path, xq, cpu="cortex-a72")

    assert res.machine == "aarch64"
    assert res.cpu == "cortex-a72"
    assert res.outputs.dtype == np.int8 and res.outputs.shape == y_x86.shape
    assert len(res.latency_ms) == N_SAMPLES and all(ms > 0 for ms in res.latency_ms)
    assert res.runtime_version.startswith("ai_edge_litert")
    cmp = compare_outputs(y_x86, res.outputs)
    assert cmp == {"bit_exact": True, "max_abs_diff": 0.0, "top1_agreement": 1.0, "mismatched": 0}, cmp


@pytest.mark.slow
def test_unprivileged_cpuinfo_via_the_qemu_prefix(tiny_int8):
    """The no-root way (a per-run -L prefix holding proc/cpuinfo) gives the same bytes."""
    path, xq, y_x86 = tiny_int8
    res = run_on_qemu(path, xq[:2], cpuinfo="sysroot")
    assert res.cpuinfo == "sysroot" and res.machine == "aarch64"
    assert compare_outputs(y_x86[:2], res.outputs)["bit_exact"]


@pytest.mark.slow
def test_a_broken_model_raises_naming_it(tmp_path, qemu_ready):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"this is not a flatbuffer")
    with pytest.raises(RuntimeError, match=r"broken\.tflite.*failed"):
        run_on_qemu(bad, np.zeros((1, 4), np.float32), timeout_s=300)


@pytest.mark.slow
def test_an_emulated_mismatch_fails_the_device_through_validate(tmp_path, qemu_ready, monkeypatch):
    """The emulated aarch64 run gates, through validate_on_device and a real QEMU run: a float
    model's ARM outputs differ from x86 LiteRT's in the last bits (fused multiply-adds, summation
    order), within the float parity tolerance; with that tolerance at 0 the same run is a
    mismatch, and rpi4 FAILS naming the first differing output."""
    from conftest import synthetic_images
    from edgeqat.devices import parity
    from edgeqat.devices.profiles import resolve_profiles
    from edgeqat.devices.validate import EvalData, validate_on_device
    from edgeqat.quantization.converter import convert_variant
    from edgeqat.quantization.runtime import TFLiteClassifier
    from edgeqat.tf_compat import keras

    keras.utils.set_random_seed(1)
    L = keras.layers
    inp = keras.Input((16, 16, 1))
    x = L.Conv2D(32, 3, activation="relu")(inp)
    x = L.Conv2D(32, 3, activation="relu")(x)
    model = keras.Model(inp, L.Dense(4)(L.Flatten()(x)))  # long float dot products: rounding shows
    path = tmp_path / "fp32.tflite"
    path.write_bytes(convert_variant("fp32", model, None, None))
    images = synthetic_images(8)[0][..., None].astype(np.float32) / 255.0
    monkeypatch.setattr(parity, "FLOAT_RTOL", 0.0)

    v = validate_on_device(path, resolve_profiles(["rpi4"])[0], EvalData(images), latency_runs=3, emulate_samples=8)

    emu = v["emulation"]
    assert emu["ran"] and emu["machine"] == "aarch64" and emu["samples"] == 8
    largest = float(np.abs(np.stack([TFLiteClassifier(path, num_threads=1)(im) for im in images])).max())
    assert 0 < emu["max_abs_diff"] <= 1e-3 * largest, emu  # a real difference, within the shipped tolerance
    first = emu["first_difference"]
    x86 = TFLiteClassifier(path, num_threads=1)(images[first["sample"]]).reshape(-1)
    assert first["host"] == float(x86[first["output"]]) and first["device"] != first["host"]
    assert not v["passed"]
    (reason,) = v["reasons"]  # the emulated run is the only thing failing the device
    assert reason.startswith("the emulated aarch64 run differs from host LiteRT beyond the parity tolerance")
    assert f"first at sample {first['sample']}, output {first['output']} (host {first['host']:g}, " in reason


def test_unavailable_reasons(tmp_path, monkeypatch):
    reason = qemu_available(root=tmp_path / "nowhere")
    assert reason is not None and "make arm64" in reason
    assert "expected" in qemu_available(cpuinfo="nope") or qemu_available() is not None
    monkeypatch.setenv("EDGEQAT_ARM64_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(QemuUnavailable):
        run_on_qemu(tmp_path / "m.tflite", np.zeros((1, 1), np.int8))


def test_compare_outputs():
    a = np.array([[1, 5, 2], [7, 0, 0], [0, 0, 9]], np.int8)
    assert compare_outputs(a, a.copy()) == {"bit_exact": True, "max_abs_diff": 0.0, "top1_agreement": 1.0, "mismatched": 0}
    b = a.copy()
    b[0, 2] = 6  # flips sample 0's top-1
    b[2, 0] = 1  # sample 2 differs but keeps its top-1
    cmp = compare_outputs(a, b)
    assert cmp["bit_exact"] is False and cmp["max_abs_diff"] == 4.0 and cmp["mismatched"] == 2
    assert cmp["top1_agreement"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="shapes differ"):
        compare_outputs(a, a[:2])

"""Device validation on real runtimes (LiteRT, TFLite Micro) with tiny models built here."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from edgeqat.devices.profiles import available_profiles, load_profile_file, resolve_profiles
from edgeqat.devices.validate import EvalData, validate_on_device
from edgeqat.errors import ConfigError, EdgeqatError, ModelError


def _convert(model, int8: bool, shape, lo: float = 0.0, hi: float = 1.0) -> bytes:
    from edgeqat.tf_compat import tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([lo + (hi - lo) * rng.random((1, *shape), dtype=np.float32)]
                                               for _ in range(8))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
    return conv.convert()


def _small(keras, activation="relu"):
    L = keras.layers
    inp = keras.Input((16, 16, 1))
    x = L.Conv2D(8, 3, strides=2, activation=activation)(inp)
    x = L.DepthwiseConv2D(3, activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(4)(x))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from edgeqat.tf_compat import keras, tf

    d = tmp_path_factory.mktemp("devmodels")
    keras.utils.set_random_seed(0)  # the same weights every run
    L = keras.layers
    small = _small(keras)
    inp = keras.Input((160, 160, 3))  # two 160x160x32 int8 activations live at once: > 1 MB
    x = L.Conv2D(32, 3, padding="same", activation="relu")(inp)
    x = L.Conv2D(32, 3, padding="same", activation="relu")(x)
    big = keras.Model(inp, L.Dense(4)(L.GlobalAveragePooling2D()(x)))
    # Logits of ~1e-9: the softmax input scale is so small that TFLM's Prepare fails a
    # TFLITE_CHECK (QuantizeMultiplierGreaterThanOne) and aborts the process: a real SIGABRT.
    inp = keras.Input((8, 8, 1))
    x = L.Dense(4, kernel_initializer=keras.initializers.Constant(1e-9), bias_initializer="zeros")(L.Flatten()(inp))
    aborts = keras.Model(inp, L.Softmax()(x))
    # ~260 KB of int8 weights (> cortex_m4's 160 KB flash), with the same aborting softmax behind them.
    inp = keras.Input((16, 16, 1))
    x = L.Dense(1024, activation="relu")(L.Flatten()(inp))
    x = L.Dense(4, kernel_initializer=keras.initializers.Constant(1e-9), bias_initializer="zeros")(x)
    oversized = keras.Model(inp, L.Softmax()(x))
    # DEPTH_TO_SPACE: an int8 op Ethos-U55 lacks, so Vela leaves it to the CPU.
    inp = keras.Input((16, 16, 1))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = L.Lambda(lambda t: tf.nn.depth_to_space(t, 2))(x)
    d2s = keras.Model(inp, L.Dense(4)(L.GlobalAveragePooling2D()(x)))
    # A lone RELU6 calibrated on [-2, 2]: its output scale differs from its input's. LiteRT
    # requantizes; TFLM's int8 RELU6 clamps in the input's scale and does not (outputs off by
    # up to 128 raw units): a real TFLM-vs-LiteRT disagreement.
    inp = keras.Input((32,))
    relu6 = keras.Model(inp, L.Activation(tf.nn.relu6)(inp))
    out = {
        "relu6": _convert(relu6, True, (32,), -2.0, 2.0),
        "d2s": _convert(d2s, True, (16, 16, 1)),
        "aborts": _convert(aborts, True, (8, 8, 1)),
        "oversized": _convert(oversized, True, (16, 16, 1)),
        "int8": _convert(small, True, (16, 16, 1)),
        "fp32": _convert(small, False, (16, 16, 1)),
        "gelu": _convert(_small(keras, "gelu"), False, (16, 16, 1)),
        "big": _convert(big, True, (160, 160, 3)),
    }
    paths = {}
    for k, blob in out.items():
        paths[k] = d / f"{k}.tflite"
        paths[k].write_bytes(blob)
    return paths


def _profile(name):
    return resolve_profiles([name])[0]


def test_shipped_profiles_load_and_cite_sources():
    profs = available_profiles()
    assert {"rpi4", "rpi_zero2w", "j1900", "android_midrange", "coral_edgetpu", "cortex_m7", "esp32s3",
            "ethos_u55_128", "ethos_u55_256", "ethos_u65_256"} <= set(profs)
    for p in profs.values():
        if p.connect is None:  # estimated: every figure cites where it is published
            assert all(s.startswith("http") for s in p.sources), p.name
        else:  # measured on the device: no published figure behind its latency
            assert p.speed_model is None and p.sources, p.name
    assert profs["host"].connect.local
    assert {p.device_class for p in profs.values()} >= {"arm_linux", "phone", "x86", "edge_tpu", "mcu", "npu"}
    for p in (p for p in profs.values() if p.runtime == "vela"):
        assert p.vela.accelerator_config and p.vela.system_config and p.vela.memory_mode, p.name


def test_int8_model_passes_cortex_m7_with_tflm_arena(models):
    v = validate_on_device(models["int8"], _profile("cortex_m7"), EvalData(np.random.default_rng(1).random((6, 16, 16, 1), dtype=np.float32)))
    assert v["passed"], v["reasons"]
    assert 0 < v["arena_bytes"] < 1024 * 1024
    assert "reference kernels" in v["arena_label"]
    assert v["latency_ms_estimate"] > 0 and v["latency_estimate"]["label"] == "estimate"


def test_arena_over_sram_fails_fast_naming_needed_and_available(models):
    v = validate_on_device(models["big"], _profile("cortex_m7"), latency_runs=2)
    assert not v["passed"]
    # Two 160x160x32 int8 activations around the second conv: the arena can be no smaller.
    assert v["arena_lower_bound_bytes"] == 2 * 160 * 160 * 32
    assert any("arena needs at least 1,638,400 bytes (CONV_2D's input + output activations) > SRAM 1,048,576 bytes"
               in r for r in v["reasons"]), v["reasons"]
    assert v["misses"]["sram"] == {"needed": 1638400, "available": 1048576}
    assert v["tflm"]["ran"] is False and "arena_bytes" not in v


def test_tflm_abort_is_a_fail_verdict_not_a_dead_process(models):
    v = validate_on_device(models["aborts"], _profile("cortex_m7"), latency_runs=2)
    assert not v["passed"] and v["hard_failure"]
    assert v["tflm"] == {"ran": True, "loaded": False, "crashed": "SIGABRT"}
    text = " ".join(v["reasons"])
    assert "TFLite Micro crashed: the process died on SIGABRT" in text and "last native output" in text, text


def test_cli_validate_survives_tflm_abort(models):
    from typer.testing import CliRunner

    from edgeqat.adapters.cli.app import app

    r = CliRunner().invoke(app, ["validate", str(models["aborts"]), "--device", "cortex_m7", "--device", "rpi4",
                                 "--no-emulate", "--latency-runs", "2"])
    assert r.exit_code == 1, r.output
    assert re.search(r"^cortex_m7 +FAIL", r.stdout, re.MULTILINE) and "SIGABRT" in r.stdout, r.stdout
    assert "rpi4" in r.output  # the next device was still validated


def test_oversized_model_fails_flash_without_starting_tflm(models):
    size = models["oversized"].stat().st_size
    assert size > 163840
    v = validate_on_device(models["oversized"], _profile("cortex_m4"), latency_runs=2)
    assert not v["passed"]
    assert f"model {size:,} bytes > flash 163,840 bytes" in v["reasons"]
    assert v["misses"]["flash"] == {"needed": size, "available": 163840}
    # Its softmax aborts TFLM (see test above): no SIGABRT here means TFLM never ran.
    assert v["tflm"]["ran"] is False and not any("TFLite Micro" in r for r in v["reasons"]), v["reasons"]


def test_tflm_parity_on_a_bounded_sample_and_accuracy_from_litert(models):
    from edgeqat.quantization.runtime import TFLiteClassifier

    images = np.random.default_rng(3).random((40, 16, 16, 1), dtype=np.float32)
    litert = np.array([np.argmax(TFLiteClassifier(models["int8"], xnnpack=False)(x)) for x in images])
    labels = litert.copy()
    labels[:10] = (labels[:10] + 1) % 4  # 30 of 40 right
    data = EvalData(images, labels=labels)
    v = validate_on_device(models["int8"], _profile("cortex_m7"), data, latency_runs=2, parity_samples=8)
    assert v["passed"], v["reasons"]
    par = v["parity"]
    # Bit for bit, or TFLM's FULLY_CONNECTED rounding one unit off without changing a top-1.
    assert par["samples"] == 8 and par["max_abs_diff"] <= 1 and par["top1_mismatched"] == 0, par
    assert v["accuracy"] == 0.75  # over all 40 images, not the 8 TFLM ran
    assert len(data.cache) == 1
    v2 = validate_on_device(models["int8"], _profile("esp32s3"), data, latency_runs=2, parity_samples=8)
    assert v2["accuracy"] == 0.75 and len(data.cache) == 1  # LiteRT ran once for both profiles


def test_float_model_fails_edge_tpu_naming_its_ops(models):
    v = validate_on_device(models["fp32"], _profile("coral_edgetpu"), latency_runs=2)
    assert not v["passed"]
    text = " ".join(v["reasons"])
    assert "float ops" in text and "CONV_2D" in text and "DEPTHWISE_CONV_2D" in text


def test_op_tflm_lacks_is_named(models):
    v = validate_on_device(models["gelu"], _profile("esp32s3"), latency_runs=2)
    assert not v["passed"]
    assert any("ops TFLite Micro lacks: GELU" in r for r in v["reasons"]), v["reasons"]


def test_litert_profile_measures_and_agrees(models):
    rng = np.random.default_rng(2)
    images = rng.random((8, 16, 16, 1), dtype=np.float32)
    from edgeqat.quantization.runtime import TFLiteClassifier

    ref = np.array([np.argmax(TFLiteClassifier(models["int8"])(x)) for x in images])
    data = EvalData(images, labels=ref, reference_preds=ref)
    v = validate_on_device(models["int8"], _profile("rpi4"), data, latency_runs=5, emulate=False)
    assert v["agreement"] == 1.0 and v["accuracy"] == 1.0
    assert v["host_latency_ms"]["p50"] > 0 and "4 thread" in v["host_latency_ms"]["runtime"]
    assert v["emulation"] == {"ran": False, "why": "emulation off (validate.emulate: false)"}


def test_unknown_device_lists_valid_names():
    with pytest.raises(ConfigError, match=r"unknown device 'pi5'; valid names: .*cortex_m7.*rpi4"):
        resolve_profiles(["pi5"])


def test_malformed_profile_names_the_field(tmp_path):
    raw = load_profile_file(_shipped("rpi4")).model_dump()
    raw["speed_model"]["threads"] = 0
    raw["runtime"] = "onnx"
    f = tmp_path / "bad.yaml"
    import yaml

    f.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as e:
        load_profile_file(f)
    text = str(e.value)
    assert text.startswith(f"{f}: invalid device profile") and "  runtime:" in text and "  speed_model.threads:" in text


def _shipped(name):
    from edgeqat.devices.profiles import shipped_profile_files

    return next(p for p in shipped_profile_files() if p.stem == name)


def test_corrupt_file_is_named(tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="model.tflite: not a TFLite flatbuffer"):
        validate_on_device(bad, _profile("rpi4"))


def test_user_profile_overrides_and_cli_json(models, tmp_path):
    from typer.testing import CliRunner

    from edgeqat.adapters.cli.app import app

    raw = load_profile_file(_shipped("cortex_m7")).model_dump()
    raw.update(name="tiny_mcu", title="an MCU with 1 KB SRAM", sram_bytes=1024)
    prof = tmp_path / "tiny_mcu.yaml"
    import yaml

    prof.write_text(yaml.safe_dump(raw))
    r = CliRunner().invoke(app, ["validate", str(models["int8"]), "--device", "cortex_m7", "--device", str(prof), "--json"])
    assert r.exit_code == 1, r.output
    out = json.loads(r.stdout[r.stdout.index("{"):])
    assert out["devices"]["cortex_m7"]["passed"] is True
    assert out["devices"]["tiny_mcu"]["passed"] is False
    assert "> SRAM 1,024 bytes" in " ".join(out["devices"]["tiny_mcu"]["reasons"])


def test_ethos_u_profile_reports_vela_figures(models):
    from typer.testing import CliRunner

    from edgeqat.adapters.cli.app import app

    r = CliRunner().invoke(app, ["validate", str(models["int8"]), "--device", "ethos_u55_128", "--json"])
    assert r.exit_code == 0, r.output
    v = json.loads(r.stdout[r.stdout.index("{"):])["devices"]["ethos_u55_128"]
    vela = v["vela"]
    assert vela["ran"] and vela["version"] == "5.2.0"
    assert vela["config"]["accelerator_config"] == "ethos-u55-128" and vela["config"]["memory_mode"] == "Shared_Sram"
    assert vela["cycles"] > 0 and 0 < vela["inference_ms"] < 1 and vela["sram_bytes"] > 0 and vela["flash_bytes"] > 0
    assert vela["npu_ops"] > 0 and vela["cpu_ops"] == 0 and vela["tflite_ops_on_cpu"] == 0
    assert {"Original Operator", "Target", "Op Cycles"} <= set(vela["per_layer"][0])
    assert v["latency_ms_estimate"] == vela["inference_ms"]
    assert v["latency_estimate"]["source"] == "vendor performance model (vela)"
    assert v["stored_measure"] == "vela_flash" and v["stored_bytes"] == vela["flash_bytes"]
    # the table: the bytes each device stores, by its own measure, in 100 columns
    table = CliRunner().invoke(app, ["validate", str(models["int8"]), "--device", "ethos_u55_128", "--device", "cortex_m7"],
                               env={"COLUMNS": "100"}).stdout
    assert f"{vela['flash_bytes']:,} (Vela)" in table and f" {models['int8'].stat().st_size:,} " in table, table
    assert max(len(line.rstrip()) for line in table.splitlines()) <= 100, table


def test_cpu_fallback_op_is_named_and_fails_a_no_fallback_profile(models, tmp_path):
    v = validate_on_device(models["d2s"], _profile("ethos_u55_128"))
    assert not v["passed"]
    assert v["vela"]["cpu_op_names"] == ["DEPTH_TO_SPACE"] and v["vela"]["tflite_ops_on_cpu"] == 1
    assert any("fall back to the CPU (DEPTH_TO_SPACE); ethos_u55_128 allows 0" in r for r in v["reasons"]), v["reasons"]
    import yaml

    raw = load_profile_file(_shipped("ethos_u55_128")).model_dump()
    raw["name"], raw["vela"]["max_cpu_ops"] = "u55_one_fallback", v["vela"]["cpu_ops"]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    v2 = validate_on_device(models["d2s"], load_profile_file(tmp_path / "p.yaml"))
    assert v2["passed"], v2["reasons"]


def test_qemu_cell_names_the_command_that_enables_it():
    from edgeqat.devices.qemu import qemu_available
    from edgeqat.reporting.tables import device_table

    why = qemu_available("/nonexistent-arm64-root")
    assert why is not None and "make arm64" in why
    rows = device_table({"validated_model": "qat_int8", "devices": {
        "rpi4": {"passed": True, "runtime": "litert", "emulation": {"ran": False, "why": why}},
        "j1900": {"passed": True, "runtime": "litert", "emulation": {"ran": False, "why": "emulation off (validate.emulate: false)"}}}})
    assert "| skipped: run `make arm64` to enable |" in rows[-2]
    assert "skipped (emulation off (validate.emulate: false))" in rows[-1]


def test_every_latency_says_its_source_and_estimates_flag_extrapolation(models):
    from edgeqat.devices.speed import estimate_latency
    from edgeqat.devices.workload import analyze

    m7 = _profile("cortex_m7")
    # ~0.27 M MACs: inside 10x of the MCU calibration models (0.26 M to 7.5 M MACs)
    near = estimate_latency(m7, analyze(models["oversized"]))
    assert near["source"] == "estimate from published figures" and near["extrapolated"] is False
    band = near["error_band"]
    assert band["heldout_points"] >= 1 and 0 < band["median_rel_error"] <= band["max_rel_error"]
    # 5,560 MACs on an Edge TPU fitted on 569 M+ MAC models: flagged
    v = validate_on_device(models["int8"], _profile("coral_edgetpu"), latency_runs=2)
    assert v["latency_extrapolated"] is True and v["latency_source"] == "estimate from published figures"
    assert "extrapolated" in " ".join(v["notes"])
    assert v["host_latency_ms"]["source"].startswith("measured")
    from edgeqat.reporting.tables import device_table

    rows = device_table({"devices": {"coral_edgetpu": {**v, "required": False}}})
    assert " (estimate, extrapolated) |" in rows[-1]


def test_every_tflm_and_vela_run_has_a_time_limit(models):
    from edgeqat.devices.tflm import run_tflm
    from edgeqat.devices.vela import compile_model

    run = run_tflm(models["int8"], timeout_s=0.01)  # the child cannot even start in 10 ms: killed
    assert run.crashed == "timeout" and not run.loaded and "0.01 s time limit" in run.error
    v = validate_on_device(models["int8"], _profile("cortex_m7"), latency_runs=2, tflm_timeout_s=0.01)
    assert not v["passed"] and any("time limit and was killed" in r for r in v["reasons"]), v["reasons"]
    res = compile_model(models["int8"], _profile("ethos_u55_128").vela, timeout_s=0.01)
    assert not res.ran and "time limit" in res.error


def test_without_vela_the_verdict_says_how_to_install_it(models):
    import subprocess
    import sys

    # A child interpreter in which `ethosu` cannot be imported, as on a machine without it.
    code = ("import sys\n"
            "class NoVela:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'ethosu':\n"
            "            raise ModuleNotFoundError(name)\n"
            "sys.meta_path.insert(0, NoVela())\n"
            "from edgeqat.adapters.cli.app import app\n"
            f"app(['validate', {str(models['int8'])!r}, '--device', 'ethos_u55_128', '--json'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr[-2000:]
    v = json.loads(r.stdout[r.stdout.index("{"):])["devices"]["ethos_u55_128"]
    assert not v["passed"] and v["vela"]["ran"] is False
    assert any("pip install ethos-u-vela==5.2.0" in x for x in v["reasons"]), v["reasons"]


def test_tflm_disagreeing_with_litert_is_a_fail(models):
    images = -2 + 4 * np.random.default_rng(4).random((20, 32), dtype=np.float32)
    v = validate_on_device(models["relu6"], _profile("cortex_m7"), EvalData(images, labels=np.zeros(20, np.int64)),
                           latency_runs=2, parity_samples=10)
    assert not v["passed"]
    assert v["parity"]["samples"] == 10 and v["parity"]["max_abs_diff"] > 1 and not v["parity"]["bit_exact"]
    assert any("TFLite Micro outputs differ from LiteRT's" in r for r in v["reasons"]), v["reasons"]
    assert "accuracy" not in v  # LiteRT's accuracy is not claimed for the device


def _with(name, **changes):
    from edgeqat.devices.profiles import DeviceProfile

    return DeviceProfile.model_validate({**load_profile_file(_shipped(name)).model_dump(), **changes})


def test_an_extrapolated_estimate_says_so_and_gate_on_extrapolated_decides(models):
    # 5,560 MACs on the Edge TPU, fitted on 569 M+ MAC models: extrapolated; a budget it misses
    tight = _with("coral_edgetpu", latency_budget_ms=1e-6)
    gated = validate_on_device(models["int8"], tight, latency_runs=2)
    assert gated["latency_extrapolated"] and gated["latency_gated"] and not gated["passed"]
    assert any("estimated latency" in r and "extrapolated outside its calibration range" in r for r in gated["reasons"])
    assert gated["misses"]["latency"]["available"] == 1e-6
    free = validate_on_device(models["int8"], tight, latency_runs=2, gate_on_extrapolated=False)
    assert free["passed"] and free["latency_gated"] is False and "latency" not in free["misses"]
    assert any("not gated" in n for n in free["notes"])
    # an estimate inside its range gates whatever the switch says (cortex_m7: 0.26-7.5 M MAC models)
    near = validate_on_device(models["oversized"], _with("cortex_m7", latency_budget_ms=1e-6, flash_bytes=None),
                              latency_runs=2, gate_on_extrapolated=False)
    assert near["latency_extrapolated"] is False and any("estimated latency" in r for r in near["reasons"])
    from edgeqat.adapters.cli.devices import verdict_rows

    assert "(extrap., not gated)" in verdict_rows([free])[0][2] and "(extrap.)" in verdict_rows([gated])[0][2]


def test_x86_profiles_get_host_x86_evidence_scaled_by_their_ratio(models):
    """j1900: this host's x86 kernels at the profile's 4 threads are reported; a profile that
    names a ratio (host_scaling) gates on host x ratio, labelled so."""
    import platform

    if platform.machine() != "x86_64":
        pytest.skip("x86 evidence needs an x86 host")
    v = validate_on_device(models["int8"], _profile("j1900"), latency_runs=5)
    ev = v["x86_evidence"]
    assert ev["host_p50_ms"] > 0 and ev["threads"] == 4 and ev["latency_ms"] is None and "not scaled" in ev["note"]
    assert v["latency_source"] == "estimate from published figures"  # no ratio: the estimate still gates
    scaling = {"ratio": 1e9, "basis": "a test ratio", "source": "tests/unit/test_devices.py"}
    scaled = validate_on_device(models["int8"], _with("j1900", host_scaling=scaling), latency_runs=5)
    sev = scaled["x86_evidence"]
    assert scaled["latency_source"] == "host-measured x published ratio"
    assert scaled["latency_ms"] == pytest.approx(sev["host_p50_ms"] * 1e9) and not scaled["passed"]
    assert any("x 1e+09, tests/unit/test_devices.py) > budget 100 ms" in r for r in scaled["reasons"]), scaled["reasons"]


def test_the_j1900_verdict_says_it_rests_on_an_arm_proxy(models):
    """No published same-workload ratio exists for a J1900, so its latency verdict rests on the
    Raspberry Pi 4's ARM row: the verdict, its notes, its failing reason and the tables say so,
    with this host's unscaled x86 time beside it. An ARM profile on an ARM row is no proxy."""
    import platform

    from edgeqat.adapters.cli.devices import verdict_rows
    from edgeqat.reporting.tables import device_rows
    from edgeqat.steps.validate import _slim

    label = "ARM proxy: Raspberry Pi 4 row, not x86 evidence"
    v = validate_on_device(models["int8"], _profile("j1900"), latency_runs=3)
    assert v["passed"] and v["latency_proxy"] == label
    (note,) = [n for n in v["notes"] if label in n]
    row = verdict_rows([v])[0]
    assert row[2].endswith("(extrap., ARM proxy)") and row[3].endswith(f"; {label}")
    cell = device_rows({"devices": {"j1900": _slim(v)}})[0][5]
    assert f"extrapolated; {label}" in cell
    if platform.machine() == "x86_64":  # this host's own x86 time, shown and not scaled
        host = v["x86_evidence"]["host_p50_ms"]
        assert f"p50 {host:.3g} ms at 4 thread(s)" in note and "not scaled to j1900" in note
        assert f"this x86 host at 4 threads: {host:.3g}, unscaled" in cell
    tight = validate_on_device(models["int8"], _with("j1900", latency_budget_ms=1e-6), latency_runs=3)
    assert not tight["passed"] and any(r.endswith(f"({label})") for r in tight["reasons"]), tight["reasons"]
    arm = validate_on_device(models["int8"], _profile("rpi4"), latency_runs=3, emulate=False)
    assert "latency_proxy" not in arm and not any("proxy" in n for n in arm["notes"])


def test_emulated_aarch64_mismatch_fails_naming_the_first_differing_output():
    from edgeqat.devices import parity
    from edgeqat.devices.validate import emulation_reasons

    x86 = np.array([[10, -3, 7, 0], [1, 2, 3, 4], [5, 5, -9, 0]], np.int8)
    arm = x86.copy()
    arm[1, 0] += 1  # a rounding unit, same top-1: within tolerance
    assert emulation_reasons({"ran": True, **parity.compare(x86, arm)}) == []
    arm[2, 1] = 12  # 7 units off and sample 2's top-1 moves
    (reason,) = emulation_reasons({"ran": True, **parity.compare(x86, arm)})
    assert reason.startswith("the emulated aarch64 run differs from host LiteRT beyond the parity tolerance")
    assert "first at sample 2, output 1 (host 5, the emulated aarch64 run 12)" in reason
    assert "2 of 3 samples differ, max |diff| 7, top-1 changed on 1" in reason
    assert emulation_reasons({"ran": False, "why": "not set up: run `make arm64`"}) == []  # a skip, not a failure
    assert emulation_reasons({"ran": False, "error": "segfault"}) == ["the emulated aarch64 run could not run: segfault"]


def test_float_parity_allows_rounding_between_isas_only():
    from edgeqat.devices import parity

    ref = np.array([[0.5, 2.0, -1.0]], np.float32)
    assert parity.compare(ref, ref + 1e-6)["within_tolerance"]
    far = parity.compare(ref, ref + np.float32(0.01))
    assert not far["within_tolerance"] and far["first_difference"]["output"] == 0


def test_connect_block_short_form_and_bad_values_named(tmp_path):
    import yaml

    from edgeqat.devices.profiles import DeviceProfile

    p = DeviceProfile.model_validate({**load_profile_file(_shipped("rpi4")).model_dump(), "connect": "ssh://pi@bench-pi:2222"})
    assert p.connect.url == "ssh://pi@bench-pi:2222" and p.connect.python is None and not p.connect.local
    assert p.expected_arch()[0] == "aarch64"
    raw = {**load_profile_file(_shipped("cortex_m7")).model_dump(), "connect": "telnet://board"}
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as e:
        load_profile_file(f)
    assert "  connect.url:" in str(e.value)
    raw["connect"] = "ssh://me@mcu"
    f.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="connect: measures with LiteRT on the device; runtime 'tflm'"):
        load_profile_file(f)


def test_calibrate_needs_a_device_that_is_really_there():
    from typer.testing import CliRunner

    from edgeqat.adapters.cli.app import app

    r = CliRunner().invoke(app, ["devices", "calibrate", "rpi4"])  # `edgeqat` turns it into one line, exit 2
    assert isinstance(r.exception, EdgeqatError) and "rpi4: its profile has no connect: block" in str(r.exception)
    listing = CliRunner().invoke(app, ["devices"])  # the group still lists the profiles
    assert listing.exit_code == 0 and "host" in listing.output and "measured" in listing.output


# --- `shipped`: the default device list, resolved from the profiles folder ---------------------

# What config.SHIPPED_DEVICES listed before the list moved to the profiles folder: the same
# devices, in the same order, so a default run validates (and reports) exactly as before.
FORMER_DEFAULT = ["rpi4", "rpi_zero2w", "j1900", "android_midrange", "coral_edgetpu", "cortex_m7", "cortex_m4",
                  "esp32s3", "ethos_u55_128", "ethos_u55_256", "ethos_u65_256"]


def test_shipped_is_the_default_and_resolves_to_every_shipped_device_but_host():
    from edgeqat.adapters.run_params import default_params, parse_run_params
    from edgeqat.config import Params, parse_params

    assert Params().validate.devices == ["shipped"]
    assert default_params().validate.devices == FORMER_DEFAULT
    assert parse_run_params({"validate": {"devices": "shipped"}}, "p").validate.devices == FORMER_DEFAULT
    # an item of a list, beside a profile of one's own; each device once
    got = parse_run_params({"validate": {"devices": ["cortex_m4", "shipped"]}}, "p").validate.devices
    assert got == ["cortex_m4"] + [d for d in FORMER_DEFAULT if d != "cortex_m4"]
    assert [p.name for p in resolve_profiles(["shipped"])] == FORMER_DEFAULT  # a step given the raw value
    assert parse_params({"validate": {"devices": "shipped"}}).validate.devices == ["shipped"]  # config cannot resolve


def test_a_profile_added_to_the_folder_is_shipped_without_another_edit(tmp_path, monkeypatch):
    from edgeqat.devices import profiles

    extra = tmp_path / "my_board.yaml"
    extra.write_text((profiles.shipped_profile_files()[0]).read_text().replace("name: android_midrange", "name: my_board"))
    files = profiles.shipped_profile_files() + [extra]
    monkeypatch.setattr(profiles, "shipped_profile_files", lambda: files)
    profiles.shipped_devices.cache_clear()
    try:
        assert profiles.shipped_devices() == (*FORMER_DEFAULT, "my_board")
    finally:
        profiles.shipped_devices.cache_clear()


def test_a_required_device_outside_shipped_is_refused_naming_the_key():
    from edgeqat.adapters.run_params import parse_run_params

    with pytest.raises(ConfigError, match=r"validate.required_devices: \['nope'\] not in validate.devices"):
        parse_run_params({"validate": {"devices": "shipped", "required_devices": ["nope"]}}, "p")


# --- a runtime added by its entry -------------------------------------------------------------


def _toy_profile(tmp_path, **changes):
    import yaml

    raw = load_profile_file(_shipped("rpi4")).model_dump(exclude_none=True)
    raw.update(name="toy_board", runtime="toy_accel", **changes)
    f = tmp_path / "toy_board.yaml"
    f.write_text(yaml.safe_dump(raw))
    return f


def test_a_registered_runtime_validates_and_exports_through_its_entry(models, tmp_path, monkeypatch):
    import toy_runtime

    from edgeqat.devices.runtimes.base import RUNTIMES
    from edgeqat.devices.runtimes.registry import runtime_for

    monkeypatch.setitem(RUNTIMES, toy_runtime.TOY.name, toy_runtime.TOY)
    # flash smaller than the model: a runtime that keeps its own copy is not checked against it
    prof = load_profile_file(_toy_profile(tmp_path, flash_bytes=64))
    rng = np.random.default_rng(0)
    images = rng.random((12, 16, 16, 1), dtype=np.float32)
    data = EvalData(images, labels=rng.integers(0, 4, 12), reference_preds=rng.integers(0, 4, 12))
    v = validate_on_device(models["int8"], prof, data, latency_runs=2)
    assert v["runtime"] == "toy_accel" and v["passed"], v["reasons"]
    assert v["latency_ms"] == toy_runtime.LATENCY_MS and "latency_estimate" not in v  # its own figure, not an estimate
    assert v["stored_measure"] == "vela" and v["stored_bytes"] is None and "flash" not in v["misses"]
    assert 0.0 <= v["accuracy"] <= 1.0 and "agreement" in v  # scored on the toy runtime's outputs
    file, blob, extra = runtime_for(prof).export(models["int8"], prof)
    assert file == "int8_toy_board.tflite" and blob == models["int8"].read_bytes() and extra["compiler"] == "toy_accel"
    # over its budget: the reason is the runtime's own
    slow = load_profile_file(_toy_profile(tmp_path, latency_budget_ms=1.0))
    v = validate_on_device(models["int8"], slow, data, latency_runs=2)
    assert not v["passed"] and v["misses"]["latency"]["needed"] == toy_runtime.LATENCY_MS


def test_preflight_checks_a_registered_runtime_on_its_own_budgets(models, tmp_path, monkeypatch):
    import toy_runtime

    from edgeqat.devices.preflight import figures, misses
    from edgeqat.devices.runtimes.base import RUNTIMES
    from edgeqat.devices.workload import analyze

    monkeypatch.setitem(RUNTIMES, toy_runtime.TOY.name, toy_runtime.TOY)
    blob = models["int8"].read_bytes()
    work = analyze(blob)
    prof = load_profile_file(_toy_profile(tmp_path, flash_bytes=64, sram_bytes=work.peak_op_activation_bytes - 1))
    figs = figures(prof, len(blob), work)
    # its own figure, no flash (it keeps its own copy) and no latency estimate (its latency is its own)
    assert figs["figures"] == {"toy_sram": {"value": work.peak_op_activation_bytes, "budget": work.peak_op_activation_bytes - 1}}
    assert set(misses(figs)) == {"toy_sram"}
    # the same model on the shipped LiteRT board: flash, RAM and the latency estimate
    assert set(figures(load_profile_file(_shipped("rpi4")), len(blob), work)["figures"]) == {"flash", "ram", "latency"}


def test_a_profile_naming_an_unregistered_runtime_is_refused_with_the_known_ones(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_profile_file(_toy_profile(tmp_path))
    assert "  runtime: unknown runtime (known: litert, tflm, vela) (got 'toy_accel')" in str(e.value)


def test_vela_runtime_ships_the_compiled_file_and_litert_the_tflite_as_it_is(models):
    from edgeqat.devices.runtimes.registry import runtime_for
    from edgeqat.devices.vela import compiled_ops

    npu, cpu = _profile("ethos_u55_128"), _profile("rpi4")
    file, blob, extra = runtime_for(npu).export(models["int8"], npu)
    assert file == "int8_vela.tflite" and extra["compiler"] == "vela" and extra["device"] == "ethos_u55_128"
    assert "ethos-u" in compiled_ops(blob)  # Vela's NPU op: the compiled file, not the registered one
    assert runtime_for(cpu).export(models["int8"], cpu) is None

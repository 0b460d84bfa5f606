"""Weight clustering, CQAT and PCQAT on the tiny compressed chain (the `comp` fixture, 4 clusters):
each test reads the defining property from the .tflite that ships."""

from __future__ import annotations

import numpy as np
import pytest

from edgeqat.config import ClusterConfig
from edgeqat.errors import ModelError

from compressed_chain import TINY_CLUSTER, tiny_model

N = TINY_CLUSTER["number_of_clusters"]


def _values(comp, variant):
    from edgeqat.quantization.inspect import weight_values

    return weight_values(comp["dir"] / "tflite" / f"{variant}.tflite")


def test_cqat_tflite_holds_at_most_n_values_per_output_channel(comp):
    cq, q = _values(comp, "cqat_int8"), _values(comp, "qat_int8")
    ops = {v["op"] for v in cq["per_tensor"].values()}
    assert ops == {"CONV_2D", "FULLY_CONNECTED"}
    # every conv/dense kernel: <= N distinct int8 values in the whole tensor, the stem's
    # BatchNorm-followed convolution included (folded before clustering, one scale per tensor)
    assert all(v["tensor"] <= N for v in cq["per_tensor"].values()), cq
    assert cq["max_per_tensor"] <= N
    # the plain QAT model of the same weights is not clustered: the bound is not a coincidence
    assert q["max_per_channel"] > N and q["max_per_tensor"] > N
    card = comp["card"]["variants"]
    assert card["cqat_int8"]["weight_values_per_channel"] == cq["max_per_channel"] <= N
    m = comp["cluster"]["cqat"]
    assert m["max_values_per_tensor"] <= N and m["clustered_layers"] == 3  # stem, pointwise conv, dense
    assert "block1_dw" in m["unclustered_layers"]  # tfmot clusters no depthwise kernel


def test_pcqat_keeps_the_pruned_zeros_and_the_clusters_in_the_tflite(comp):
    from edgeqat.quantization.inspect import weight_sparsity

    tfl = comp["dir"] / "tflite"
    pcq, pq = weight_sparsity(tfl / "pcqat_int8.tflite"), weight_sparsity(tfl / "pqat_int8.tflite")
    # the prune stage's 50 % of all kernel weights (the depthwise kernel, which tfmot does not prune, included)
    assert pcq["sparsity"] > 0.45 and pcq["sparsity"] == pytest.approx(pq["sparsity"], abs=0.03)
    values = _values(comp, "pcqat_int8")
    assert all(v["tensor"] <= N for v in values["per_tensor"].values()), values  # zero is one of the N
    m = comp["cluster"]["pcqat"]
    assert m["keras_sparsity_before"] == pytest.approx(0.5, abs=0.01)
    assert m["keras_sparsity_after_qat"] == pytest.approx(m["keras_sparsity_before"], abs=0.01)
    # CQAT of the unpruned model has no such zeros
    assert weight_sparsity(tfl / "cqat_int8.tflite")["sparsity"] < 0.1


def test_per_channel_clustering_bounds_each_channel_not_the_tensor(tiny_prepared, tmp_path):
    from edgeqat.compression.recipes import PruneData, train_clustered_qat
    from edgeqat.models.io import save_model
    from edgeqat.quantization.converter import convert_variant
    from edgeqat.quantization.inspect import weight_values

    save_model(tiny_model(), tmp_path / "fp32.keras")
    cfg = ClusterConfig(**{**TINY_CLUSTER, "per_channel": True})
    model, m = train_clustered_qat(cfg, tmp_path / "fp32.keras", PruneData(tiny_prepared, 16, 0), preserve_sparsity=False)
    # tfmot 0.8.1's own cluster_weights would have skipped these bias-less convolutions
    assert m["max_values_per_channel"] <= N < m["max_values_per_tensor"]
    blob = convert_variant("cqat_int8", None, model, None, "int8")
    per = weight_values(blob)["per_tensor"]
    pw = next(v for k, v in per.items() if "pw_conv" in k)
    assert pw["per_channel"] <= N < pw["tensor"]


def test_the_fp32_teacher_changes_what_clustering_learns(tiny_prepared, tmp_path):
    """cluster.distillation > 0 trains toward the FP32 model's soft labels too: same seed, same
    data, different kernels than labels alone."""
    import numpy as np

    from edgeqat.compression.recipes import PruneData, train_clustered_qat
    from edgeqat.models.io import save_model
    from edgeqat.tf_compat import set_determinism

    save_model(tiny_model(), tmp_path / "fp32.keras")
    kernels = {}
    for alpha in (0.0, 0.9):
        set_determinism(0)
        cfg = ClusterConfig(**{**TINY_CLUSTER, "distillation": alpha})
        model, m = train_clustered_qat(cfg, tmp_path / "fp32.keras", PruneData(tiny_prepared, 16, 0),
                                       preserve_sparsity=False)
        assert m["distillation"] == alpha and m["batchnorm_folded"] == 3
        kernels[alpha] = [w.numpy() for w in model.weights if w.name.endswith("kernel:0")]
    assert any(not np.array_equal(a, b) for a, b in zip(kernels[0.0], kernels[0.9]))


def test_cqat_weights_survive_the_default_qat_wrapping_and_a_reload(tiny_prepared, tmp_path):
    """The cluster stage saves CQAT in tfmot's default QAT wrapping: the converter must write the
    very weights the cluster-preserving wrappers trained."""
    from edgeqat.compression.clustering import as_default_qat, cluster_preserving_quantize, cluster_wrap, strip
    from edgeqat.compression.recipes import PruneData
    from edgeqat.models.io import load_model, save_model
    from edgeqat.models.training import compile_classifier, fit
    from edgeqat.quantization.converter import convert_variant
    from edgeqat.quantization.inspect import _weight_arrays

    data = PruneData(tiny_prepared, 16, 0)
    wrapped, _ = cluster_wrap(tiny_model(), N, "linear")
    compile_classifier(wrapped, 1e-3)
    fit(wrapped, data.train, data.val, 1, tag="test clustering")
    clustered = strip(wrapped)
    cqat = cluster_preserving_quantize(clustered, preserve_sparsity=False)
    compile_classifier(cqat, 1e-3)
    fit(cqat, data.train, data.val, 1, tag="test cqat")
    direct = convert_variant("cqat_int8", None, cqat, None, "int8")
    save_model(as_default_qat(cqat, clustered), tmp_path / "cqat.h5")
    reloaded = convert_variant("cqat_int8", None, load_model(tmp_path / "cqat.h5", quantized=True), None, "int8")
    a, b = _weight_arrays(direct), _weight_arrays(reloaded)
    assert len(a) == len(b) == 4
    for (name, x), (_, y) in zip(a, b):
        np.testing.assert_array_equal(x, y, err_msg=name)


def test_a_model_with_nothing_to_cluster_is_refused_naming_the_key():
    from edgeqat.compression.clustering import cluster_wrap
    from edgeqat.tf_compat import keras

    inp = keras.Input((4, 4, 1))
    m = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(inp)), name="small")  # 32 weights
    with pytest.raises(ModelError, match=r"'small'.*cluster.number_of_clusters \(64\)"):
        cluster_wrap(m, 64, "linear")
    _, report = cluster_wrap(m, 16, "linear")
    assert report["clustered"] == [m.layers[-1].name]


def test_validate_gives_every_variant_the_size_each_device_stores(comp, tmp_path):
    """Flatbuffer bytes on LiteRT/TFLM devices (pruning and clustering do not shrink them), Vela's
    encoded flash and cycles on Ethos-U (they do), in summary.json, the report and MLflow's metrics."""
    import json

    from edgeqat.config import ValidateConfig
    from edgeqat.steps.validate import validate

    d = comp["dir"]
    cfg = ValidateConfig(devices=["rpi4", "ethos_u55_128"], required_devices=[], emulate=False, latency_runs=3)
    m = validate(cfg, comp["prepared"], d / "tflite", d / "fp32.keras", d / "summary.json", tmp_path / "s.json",
                 tmp_path / "s.md")
    storage = json.loads((tmp_path / "s.json").read_text())["storage"]
    card = comp["card"]["variants"]
    assert set(storage) == set(card)
    for v in ("qat_int8", "pqat_int8", "cqat_int8", "pcqat_int8"):
        assert storage[v]["rpi4"] == {"measure": "flatbuffer", "bytes": card[v]["size_bytes"]}
        if v == "pqat_int8":  # zeros are stored as such (tensor names differ by a few bytes)
            assert card[v]["size_bytes"] == pytest.approx(card["qat_int8"]["size_bytes"], abs=32)
        else:  # clusters too; only their per-tensor scales save the per-channel ones
            assert card[v]["size_bytes"] <= card["qat_int8"]["size_bytes"] + 32
        npu = storage[v]["ethos_u55_128"]
        assert npu["measure"] == "vela_flash" and npu["cycles"] > 0
        assert m["vela_figures"][v]["ethos_u55_128"] == {"flash_bytes": npu["bytes"], "cycles": npu["cycles"]}
    flash = {v: storage[v]["ethos_u55_128"]["bytes"] for v in ("qat_int8", "pqat_int8", "cqat_int8", "pcqat_int8")}
    assert max(flash["pqat_int8"], flash["cqat_int8"], flash["pcqat_int8"]) < flash["qat_int8"]
    assert flash["pcqat_int8"] < min(flash["pqat_int8"], flash["cqat_int8"])  # zeros and clusters both pay
    fp32 = storage["fp32"]["ethos_u55_128"]
    assert fp32["bytes"] is None and "integer ops only" in fp32["why"]
    md = (tmp_path / "s.md").read_text()
    assert "## Size each device stores" in md and "| ethos_u55_128 flash | ethos_u55_128 cycles |" in md
    table = md.split("## Size each device stores")[1]
    row = next(line for line in table.splitlines() if line.startswith("| pcqat_int8 |"))
    assert f"{flash['pcqat_int8']:,}" in row

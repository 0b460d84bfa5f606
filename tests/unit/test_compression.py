"""prune / mixed precision / 16x8 / channel pruning / sensitivity / comparison report, on a
tiny model in one module-scoped chain. Each test pins a variant's defining property in
the .tflite that ships, never a golden accuracy."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from edgeqat.config import ConvertConfig, EvaluateConfig, QatConfig, parse_params
from edgeqat.errors import ConfigError, ModelError

from compressed_chain import ALL, TINY_PRUNE, tiny_model  # noqa: F401  (the `comp` fixture: tests/conftest.py)


def _ops(comp, variant):
    from edgeqat.quantization.inspect import op_dtypes

    return op_dtypes(comp["dir"] / "tflite" / f"{variant}.tflite")


def test_pqat_sparsity_survives_into_the_tflite(comp):
    from edgeqat.quantization.inspect import weight_sparsity

    tfl = comp["dir"] / "tflite"
    pq, q = weight_sparsity(tfl / "pqat_int8.tflite"), weight_sparsity(tfl / "qat_int8.tflite")
    assert comp["card"]["variants"]["pqat_int8"]["weight_sparsity"] == pytest.approx(pq["sparsity"], abs=1e-6)
    # sparsity_scope "model": 50 % of all kernel weights are zero; tfmot cannot prune the
    # depthwise kernel, so the stem, the pointwise conv and the head go further than 50 %
    assert comp["prune"]["pqat"]["keras_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert pq["sparsity"] > 0.45 and q["sparsity"] < 0.1
    pointwise = [v for k, v in pq["per_tensor"].items() if "pw_conv" in k]
    assert pointwise and min(pointwise) > 0.55
    gz = {v: len(gzip.compress((tfl / f"{v}.tflite").read_bytes(), 9)) for v in ("pqat_int8", "qat_int8")}
    assert gz["pqat_int8"] < gz["qat_int8"]
    # PQAT training kept the pruned zeros at zero
    assert comp["prune"]["pqat"]["keras_sparsity_after_pqat"] == pytest.approx(comp["prune"]["pqat"]["keras_sparsity"], abs=0.01)


def test_mixed_keeps_the_head_float_in_the_flatbuffer(comp):
    head = [o for o in _ops(comp, "mixed") if o["op"] == "FULLY_CONNECTED"]
    assert head and head[-1]["inputs"][:2] == ["float32", "float32"] and head[-1]["outputs"] == ["float32"]
    int_head = [o for o in _ops(comp, "qat_int8") if o["op"] == "FULLY_CONNECTED"]
    assert int_head[-1]["inputs"][:2] == ["int8", "int8"]
    convs = [o for o in _ops(comp, "mixed") if o["op"] == "CONV_2D"]
    assert convs and all(o["inputs"][:2] == ["int8", "int8"] for o in convs)
    v = comp["card"]["variants"]
    assert v["mixed"]["integer_only"] is False and v["qat_int8"]["integer_only"] is True
    assert comp["qat"]["mixed"]["keep_float_layers"] == "logits"


def test_int16x8_activations_are_int16(comp):
    ops = [o for o in _ops(comp, "ptq_int16x8") if o["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert ops and all(o["inputs"][0] == "int16" and o["inputs"][1] == "int8" and o["outputs"] == ["int16"] for o in ops)
    v = comp["card"]["variants"]["ptq_int16x8"]
    assert v["input"]["dtype"] == "int16" and v["integer_only"] is True


def test_channel_pruned_model_is_narrower_and_smaller(comp):
    from edgeqat.quantization.inspect import filter_counts

    tfl = comp["dir"] / "tflite"
    cp, q = filter_counts(tfl / "channel_pruned_qat_int8.tflite"), filter_counts(tfl / "qat_int8.tflite")
    assert len(cp) == len(q)
    assert all(a <= b for a, b in zip(cp, q)) and sum(cp[:-1]) <= 0.6 * sum(q[:-1])
    assert cp[-1] == q[-1] == 4  # the classifier keeps one output per class
    v = comp["card"]["variants"]
    assert v["channel_pruned_qat_int8"]["size_bytes"] < v["qat_int8"]["size_bytes"]
    m = comp["prune"]["channel_pruned"]
    assert m["params_after"] < m["params_before"] and m["filters"] == {"stem_conv": [16, 8], "block1_pw_conv": [32, 16]}


def test_per_tensor_switch_gives_one_scale_per_weight_tensor(comp, tmp_path):
    from edgeqat.quantization.runtime import load_interpreter
    from edgeqat.steps.convert import convert

    d = comp["dir"]
    convert(ConvertConfig(variants=["ptq_int8"], per_channel=False), comp["prepared"], d / "fp32.keras", None, tmp_path / "t")

    def scales(path):
        it = load_interpreter(path)
        t = {x["index"]: x for x in it.get_tensor_details()}
        return [t[o["inputs"][1]]["quantization_parameters"]["scales"].size
                for o in it._get_ops_details() if o["op_name"] == "CONV_2D"]

    assert set(scales(tmp_path / "t" / "ptq_int8.tflite")) == {1}
    assert max(scales(d / "tflite" / "ptq_int8.tflite")) > 1
    # the card reads it from the file (tests/unit/test_model_card.py flips every setting)
    assert json.loads((tmp_path / "t" / "model_card.json").read_text())["variants"]["ptq_int8"]["weights"][
        "granularity"] == "per-tensor"


def test_sensitivity_report_ranks_every_quantized_layer(comp):
    doc = json.loads((comp["dir"] / "sensitivity.json").read_text())
    assert "keras" in doc["method"] and "isolated" in doc["method"]
    names = [r["layer"] for r in doc["layers"]]
    assert sorted(names) == ["block1_dw", "block1_pw_conv", "logits", "stem_conv"]
    errs = [r["relative_error"] for r in doc["layers"]]
    assert errs == sorted(errs, reverse=True) and all(e >= 0 for e in errs)
    assert "| layer |" in (comp["dir"] / "sensitivity.md").read_text()


def test_summary_compares_every_variant(comp):
    s = json.loads((comp["dir"] / "summary.json").read_text())
    assert set(s["variants"]) == set(ALL)
    for name, v in s["variants"].items():
        assert {"accuracy", "accuracy_delta", "size_bytes", "gzip_bytes", "weight_sparsity", "integer_only"} <= set(v), name
    assert s["variants"]["fp32"]["accuracy_delta"] == 0 and s["variants"]["pqat_int8"]["weight_sparsity"] > 0.35
    md = (comp["dir"] / "summary.md").read_text()
    assert "| sparsity |" in md and "Pareto front" in md
    rows = [line.split(" | ")[0].lstrip("| ") for line in md.splitlines() if line.startswith("| ") and "|---" not in line]
    assert rows[1:] == ALL  # the table lists variants in pipeline order, not the card's sorted keys
    png = (comp["dir"] / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_model_scope_sparsity_reaches_the_target_over_every_kernel():
    from edgeqat.compression.pruning import layer_target

    assert layer_target(0.5, 1000, 800) == pytest.approx(0.625)
    assert layer_target(0.5, 1000, 1000) == 0.5
    with pytest.raises(ModelError, match=r"target_sparsity 0.9 .* needs 112.5% .*sparsity_scope: layer"):
        layer_target(0.9, 1000, 800)
    with pytest.raises(ModelError, match="no prunable weights"):
        layer_target(0.5, 1000, 0)


def test_pareto_front_keeps_only_undominated_variants():
    from edgeqat.reporting.tables import pareto_front

    s = {"variants": {"a": {"accuracy": 0.9, "size_bytes": 100}, "b": {"accuracy": 0.95, "size_bytes": 400},
                      "c": {"accuracy": 0.85, "size_bytes": 300}, "d": {"accuracy": 0.9, "size_bytes": 50}}}
    assert pareto_front(s) == ["d", "b"]


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5])
def test_sparsity_outside_unit_interval_is_refused(value):
    with pytest.raises(ConfigError, match=r"prune\.target_sparsity: must be in \[0, 1\).*got"):
        parse_params({"prune": {"target_sparsity": value}})


def test_keep_float_pattern_matching_nothing_is_named():
    from edgeqat.compression.mixed import resolve_keep_float
    from edgeqat.models.zoo import build_model

    m = build_model("dscnn", (16, 16, 1), 4, alpha=0.25)
    with pytest.raises(ConfigError, match=r"qat.keep_float: pattern 'nope\*' matches no layer"):
        resolve_keep_float(m, ["@first", "nope*"])
    with pytest.raises(ConfigError, match=r"'block3_pw_conv'.*between quantized layers"):
        resolve_keep_float(m, ["block3_pw_conv"])
    assert resolve_keep_float(m, ["@first", "logits"]) == ["stem_conv", "logits"]


def test_channel_pruning_refuses_models_it_cannot_handle():
    from edgeqat.compression.channels import channel_prune
    from edgeqat.tf_compat import keras

    L = keras.layers
    inp = keras.Input((8, 8, 1))
    flat = keras.Model(inp, L.Dense(2)(L.Flatten()(L.Conv2D(4, 3, name="c")(inp))), name="flatnet")
    with pytest.raises(ModelError, match="cannot handle model 'flatnet': no Conv2D"):
        channel_prune(flat, 0.3)
    inner = keras.Sequential([L.Conv2D(4, 3, input_shape=(8, 8, 1)), L.Conv2D(4, 3)], name="inner")
    outer = keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(inner(inp))), name="outer")
    with pytest.raises(ModelError, match="layer 'inner' is a nested model"):
        channel_prune(outer, 0.3)


def test_channel_groups_tied_to_the_input_or_a_concatenate_keep_their_width():
    from edgeqat.compression.channels import channel_prune, prunable_convs
    from edgeqat.tf_compat import keras

    L = keras.layers
    inp = keras.Input((8, 8, 4))
    res = L.Add(name="res")([inp, L.Conv2D(4, 3, padding="same", name="onto_input")(inp)])
    a, b = L.Conv2D(6, 3, padding="same", name="a")(res), L.Conv2D(6, 1, name="b")(res)
    cat = L.Concatenate(name="cat")([a, L.ReLU(name="b_relu")(b)])
    c = L.Conv2D(8, 3, padding="same", name="c")(cat)
    d = L.Conv2D(8, 1, name="d")(L.BatchNormalization(name="c_bn")(c))
    m = keras.Model(inp, L.Dense(3, name="head")(L.GlobalAveragePooling2D(name="pool")(d)), name="tied")
    assert prunable_convs(m) == ["c", "d"]
    narrow, rep = channel_prune(m, 0.5)
    assert rep["pruned_layers"] == {"c": [8, 4], "d": [8, 4]}
    assert narrow.get_layer("head").get_weights()[0].shape == (4, 3)


def test_channel_importance_counts_the_batchnorm_scale():
    """A filter with a large kernel whose BatchNorm scales it to nothing goes first."""
    from edgeqat.compression.channels import channel_prune
    from edgeqat.tf_compat import keras

    L = keras.layers
    inp = keras.Input((8, 8, 1))
    x = L.BatchNormalization(name="bn")(L.Conv2D(4, 3, padding="same", name="c")(inp))
    m = keras.Model(inp, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(L.Conv2D(4, 1, name="d")(x))))
    kernel, bias = m.get_layer("c").get_weights()
    kernel[:] = np.array([4.0, 1.0, 2.0, 3.0])  # by L1 alone, filter 1 is the weakest
    m.get_layer("c").set_weights([kernel, bias])
    gamma, beta, mean, var = m.get_layer("bn").get_weights()
    gamma[:] = [0.01, 1.0, 1.0, 1.0]  # but BN shrinks filter 0 400-fold
    m.get_layer("bn").set_weights([gamma, beta, mean, var])
    narrow, _ = channel_prune(m, 0.25)
    np.testing.assert_allclose(narrow.get_layer("c").get_weights()[0][0, 0, 0], [1.0, 2.0, 3.0])


@pytest.mark.parametrize("name", ["dscnn", "resnet"])
def test_channel_pruning_carries_the_surviving_weights(name):
    """Filters zeroed in a fresh model (BN of a zero channel outputs zero) are exactly the
    ones removed, so the narrower model computes the same function."""
    from edgeqat.compression.channels import channel_prune, prunable_convs
    from edgeqat.models.zoo import build_model

    m = build_model(name, (16, 16, 1), 4, alpha=0.5)
    targets = prunable_convs(m)
    if name == "resnet":  # residual streams are pruned as groups, across their adds
        assert len(targets) == len([l for l in m.layers if type(l).__name__ == "Conv2D"])
    for t in targets:
        k = m.get_layer(t).kernel
        a = k.numpy()
        a[..., : int(round(a.shape[-1] * 0.3))] = 0
        k.assign(a)
    narrow, rep = channel_prune(m, 0.3)
    for t in targets:
        before, after = rep["pruned_layers"][t]
        assert narrow.get_layer(t).filters == after < before
    if name == "resnet":
        assert rep["residual_groups"] == 3
        for add in ("res1_add", "res2_add", "res3_add"):
            assert narrow.get_layer(add).output_shape[-1] < m.get_layer(add).output_shape[-1]
    x = np.random.default_rng(0).random((4, 16, 16, 1)).astype("float32")
    want = m(x).numpy()
    np.testing.assert_allclose(narrow(x).numpy(), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def _sensitive_model():
    """Quadrant brightness -> a Dense whose per-tensor int8 weight scale is blown up by one
    huge weight on an output the head ignores: quantized, its useful weights round to zero."""
    from edgeqat.tf_compat import keras

    L = keras.layers
    inp = keras.Input((16, 16, 1), name="image")
    h = L.Flatten(name="flat")(L.AveragePooling2D(8, name="pool")(inp))
    h = L.Dense(8, name="sensitive")(h)
    m = keras.Model(inp, L.Dense(4, name="head")(h), name="sensitive_net")
    w = np.zeros((4, 8), "float32")
    w[:4, :4] = np.eye(4)
    w[0, 7] = 1000.0
    m.get_layer("sensitive").set_weights([w, np.zeros(8, "float32")])
    w2 = np.zeros((8, 4), "float32")
    w2[:4, :4] = 10 * np.eye(4)
    m.get_layer("head").set_weights([w2, np.zeros(4, "float32")])
    return m


def test_auto_keep_float_meets_the_drop_plain_int8_misses(tiny_prepared, tmp_path):
    from edgeqat.models.io import save_model
    from edgeqat.steps.convert import convert
    from edgeqat.steps.evaluate import evaluate
    from edgeqat.steps.qat import qat

    save_model(_sensitive_model(), tmp_path / "fp32.keras")
    m = qat(QatConfig(epochs=1, batch_size=16, auto_keep_float=True, max_accuracy_drop=0.05), tiny_prepared,
            tmp_path / "fp32.keras", tmp_path / "qat.h5", mixed_out=tmp_path / "mixed.h5",
            sensitivity_json=tmp_path / "s.json")
    mixed = m["mixed"]
    assert mixed["fp32_val_accuracy"] - mixed["plain_val_accuracy"] > 0.05, "plain int8 should miss the target"
    assert mixed["met_max_accuracy_drop"] and mixed["keep_float_layers"] == "sensitive"
    assert m["most_sensitive_layer"] == "sensitive"
    convert(ConvertConfig(variants=["fp32", "qat_int8", "mixed"]), tiny_prepared, tmp_path / "fp32.keras",
            tmp_path / "qat.h5", tmp_path / "t", mixed_model=tmp_path / "mixed.h5")
    s = evaluate(EvaluateConfig(latency_runs=2, warmup_runs=0, headline="mixed"), tiny_prepared, tmp_path / "t",
                 tmp_path / "fp32.keras", tmp_path / "summary.json")
    # through LiteRT too: the mixed model keeps the FP32 accuracy, plain int8 does not
    assert s["fp32"]["accuracy"] - s["mixed"]["accuracy"] <= 0.05 < s["fp32"]["accuracy"] - s["qat_int8"]["accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("name, shape", [("mobilenetv2", (32, 32, 3)), ("dscnn", (32, 32, 3)), ("resnet", (32, 32, 3))])
def test_channel_pruning_every_zoo_model_converts_smaller(name, shape):
    """Every zoo model (MobileNetV2's inverted residuals included) is pruned exactly and its
    QAT conversion is smaller than the unpruned one's."""
    from edgeqat.compression.channels import channel_prune, prunable_convs
    from edgeqat.models.zoo import build_model
    from edgeqat.quantization.converter import convert_variant
    from edgeqat.quantization.inspect import filter_counts
    from edgeqat.compression.recipes import quantize

    m = build_model(name, shape, 10, alpha=0.35 if name == "mobilenetv2" else 1.0)
    targets = prunable_convs(m)
    assert targets
    for t in targets:
        k = m.get_layer(t).kernel
        a = k.numpy()
        a[..., : int(round(a.shape[-1] * 0.3))] = 0
        k.assign(a)
    narrow, rep = channel_prune(m, 0.3)
    x = np.random.default_rng(0).random((2, *shape)).astype("float32")
    want = m(x).numpy()  # fresh deep models output tiny logits: compare relative to their size
    np.testing.assert_allclose(narrow(x).numpy(), want, rtol=1e-3, atol=1e-4 * np.abs(want).max())
    full = convert_variant("qat_int8", m, quantize(m), None, "int8")
    small = convert_variant("channel_pruned_qat_int8", narrow, quantize(narrow), None, "int8")
    assert len(small) < len(full)
    assert sum(filter_counts(small)) < sum(filter_counts(full))


def test_prune_history_records_the_sparsity_reached_per_epoch(comp):
    import csv

    rows = list(csv.DictReader((comp["dir"] / "prune_history.csv").open()))
    assert rows and list(rows[0]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "sparsity"]
    assert len(rows) == TINY_PRUNE["epochs"]
    assert float(rows[-1]["sparsity"]) == pytest.approx(comp["prune"]["pqat"]["keras_sparsity"], abs=0.02)


def test_two_of_four_sparsity_holds_in_every_group_of_input_channels(tiny_prepared):
    from edgeqat.compression.pruning import magnitude_prune
    from edgeqat.data.shards import make_dataset

    ds = make_dataset(tiny_prepared / "train", "zero_one", 16)
    pruned, _ = magnitude_prune(tiny_model(), ds, ds, target_sparsity=0.5, epochs=1, steps_per_epoch=4,
                                learning_rate=0.01, m_by_n=(2, 4))
    checked = 0
    for w in pruned.weights:
        a = w.numpy()
        if "kernel" not in w.name or a.ndim not in (2, 4) or a.shape[-2] % 4 or "depthwise" in w.name:
            continue
        groups = np.moveaxis(a, -2, -1).reshape(-1, 4)  # consecutive input channels, per output and tap
        assert np.all((groups == 0).sum(axis=1) >= 2), w.name
        checked += 1
    assert checked >= 2


@pytest.mark.slow
def test_two_of_four_sparsity_holds_in_the_tflite_of_the_pruned_variants(tiny_prepared, tmp_path):
    """prune.m_by_n through the prune and cluster stages: in the int8 files that ship (pqat_int8,
    pcqat_int8), every run of 4 consecutive input channels of a conv/dense kernel holds at least
    2 zeros (tfmot prunes no depthwise kernel; the stem's single input channel has no group of 4).
    ~1.5 min on 2 cores."""
    from ai_edge_litert.interpreter import Interpreter

    from compressed_chain import TINY_CLUSTER
    from edgeqat.config import ClusterConfig, PruneConfig
    from edgeqat.models.io import save_model
    from edgeqat.steps.cluster import cluster
    from edgeqat.steps.convert import convert
    from edgeqat.steps.prune import prune

    d = tmp_path
    save_model(tiny_model(), d / "fp32.keras")
    prune(PruneConfig(**{**TINY_PRUNE, "m_by_n": True}), tiny_prepared, d / "fp32.keras", d / "pqat.h5", d / "cp.h5",
          pruned_out=d / "pruned.keras")
    cluster(ClusterConfig(**TINY_CLUSTER), tiny_prepared, d / "fp32.keras", d / "pruned.keras", d / "cqat.h5",
            d / "pcqat.h5")
    convert(ConvertConfig(variants=["pqat_int8", "pcqat_int8"]), tiny_prepared, d / "fp32.keras", None, d / "t",
            pqat_model=d / "pqat.h5", pcqat_model=d / "pcqat.h5")
    for variant in ("pqat_int8", "pcqat_int8"):
        it = Interpreter(model_path=str(d / "t" / f"{variant}.tflite"))
        tensors = {t["index"]: t for t in it.get_tensor_details()}
        checked = 0
        for op in it._get_ops_details():
            if op["op_name"] not in ("CONV_2D", "FULLY_CONNECTED"):
                continue
            w = it.get_tensor(op["inputs"][1])  # OHWI / OI: input channels last
            assert tensors[op["inputs"][1]]["dtype"] == np.int8
            if w.shape[-1] % 4:
                continue
            groups = w.reshape(-1, 4)
            assert np.all((groups == 0).sum(axis=1) >= 2), (variant, op["op_name"], tensors[op["inputs"][1]]["name"])
            checked += 1
        assert checked >= 2, variant  # the pointwise conv and the dense head


def test_distillation_pulls_the_student_toward_the_teacher(tiny_prepared):
    """With the labels' weight at zero, the student learns only from the teacher: its
    predictions come to agree with the teacher's, not with the labels."""
    from edgeqat.compression.distill import distiller
    from edgeqat.data.shards import load_meta, make_dataset
    from edgeqat.models.training import fit
    from edgeqat.tf_compat import keras

    teacher = tiny_model()
    # a teacher that ignores its input and always says class 3
    w, b = teacher.get_layer("logits").get_weights()
    b[:] = 0
    b[3] = 10.0
    teacher.get_layer("logits").set_weights([np.zeros_like(w), b])
    student = keras.models.clone_model(tiny_model())
    norm = load_meta(tiny_prepared)["normalization"]["scheme"]
    ds = make_dataset(tiny_prepared / "train", norm, 16)
    trainer = distiller(student, teacher, alpha=1.0, learning_rate=0.01)
    rows = fit(trainer, ds, ds, 3, 0, tag="distill-test")
    assert len(rows) == 3 and {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(rows[0])
    x = np.concatenate([xb.numpy() for xb, _ in ds])
    assert np.mean(np.argmax(student.predict(x, verbose=0), -1) == 3) > 0.9


def test_distiller_of_a_softmax_headed_student_scores_probabilities():
    """The wrapper has no head of its own: its loss must follow the student's softmax."""
    from edgeqat.compression.distill import distiller
    from edgeqat.tf_compat import keras

    m = tiny_model()
    soft = keras.Model(m.input, keras.layers.Dense(4, activation="softmax", name="probs")(m.layers[-2].output))
    assert distiller(soft, soft, 0.5, 0.01).loss.get_config()["from_logits"] is False
    assert distiller(m, m, 0.5, 0.01).loss.get_config()["from_logits"] is True


def test_distillation_weight_outside_unit_interval_is_refused():
    from edgeqat.compression.distill import distiller

    with pytest.raises(ConfigError, match=r"channel_distillation must be in \[0, 1\] \(got 1.5\)"):
        distiller(tiny_model(), tiny_model(), 1.5, 0.01)
    with pytest.raises(ConfigError, match="channel_distillation"):
        parse_params({"prune": {"channel_distillation": -0.1}})

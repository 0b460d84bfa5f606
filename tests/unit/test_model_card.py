"""The model card says what each .tflite holds, read from the file: every convert setting is
flipped and the card compared with LiteRT's own view of the flatbuffer (tensor details before
any kernel or delegate prepares it). And the served model (the pyfunc MLflow loads) returns the
model's own probabilities, for a logits head and for a softmax head."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeqat.config import ConvertConfig, QatConfig

WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
# (model, convert settings): every setting the card reports takes more than one value here
SETUPS = {
    "per_channel": ("logits", dict(variants=["fp32", "ptq_dynamic", "ptq_float16", "ptq_int8", "ptq_int16x8"])),
    "per_tensor_uint8": ("logits", dict(variants=["ptq_float16", "ptq_int8"], per_channel=False, io_dtype="uint8")),
    "softmax_float_io": ("softmax", dict(variants=["fp32", "ptq_int8"], io_dtype="float32")),
    # the QAT family: trained with fake-quant, converted from tfmot's wrapped model
    "qat_softmax": ("softmax", dict(variants=["qat_int8"])),
}
QAT_FAMILY = ("qat_int8",)


def small_model(softmax: bool):
    """Conv-BN-ReLU, a depthwise-separable block whose pointwise kernel (16 x 96) is big enough
    for dynamic-range quantization (TFLite leaves kernels under 1024 weights float), a head."""
    from edgeqat.models.zoo import _conv_bn_relu, _ds_block
    from edgeqat.tf_compat import keras, set_determinism

    set_determinism(0)
    inp = keras.Input((16, 16, 1), name="image")
    x = _ds_block(keras, _conv_bn_relu(keras, inp, 16, 3, 1, "stem"), 96, 2, "block1")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    out = keras.layers.Dense(4, activation="softmax" if softmax else None, name="probs" if softmax else "logits")(x)
    return keras.Model(inp, out, name="small")


@pytest.fixture(scope="module")
def converted(tmp_path_factory, tiny_prepared):
    """Both heads trained to confident predictions, then converted under each setup."""
    from edgeqat.data.shards import make_dataset
    from edgeqat.models.io import save_model
    from edgeqat.models.training import compile_classifier, fit
    from edgeqat.steps.convert import convert
    from edgeqat.steps.qat import qat

    d = tmp_path_factory.mktemp("card")
    train = make_dataset(tiny_prepared / "train", "zero_one", 16, shuffle_buffer=256, seed=0)
    for head in ("logits", "softmax"):
        model = small_model(head == "softmax")
        compile_classifier(model, 0.01)
        fit(model, train, make_dataset(tiny_prepared / "val", "zero_one", 16), 10)
        save_model(model, d / f"{head}.keras")
    for name, (head, settings) in SETUPS.items():
        qat_model = None
        if set(settings["variants"]) & set(QAT_FAMILY):
            qat_model = d / f"{name}_qat.h5"
            qat(QatConfig(epochs=1, batch_size=16), tiny_prepared, d / f"{head}.keras", qat_model,
                variants=settings["variants"], per_channel=settings.get("per_channel", True))
        convert(ConvertConfig(**settings), tiny_prepared, d / f"{head}.keras", qat_model, d / name)
    return d


def file_view(path) -> dict:
    """What LiteRT reads from the flatbuffer: weight dtypes and scale counts, their scales' range
    and zero points, the dtypes compute ops produce, I/O dtypes, and the op that makes the output."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))  # not allocated: the tensors as the file stores them
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = it._get_ops_details()
    producer = {o: op for op in ops for o in op["outputs"]}
    weights, quantization = [], []
    for op in ops:
        if op["op_name"] in WEIGHTED:
            i = op["inputs"][1]
            if i in producer:  # float16 / dynamic storage goes through a DEQUANTIZE
                i = producer[i]["inputs"][0]
            q = tensors[i]["quantization_parameters"]
            weights.append((np.dtype(tensors[i]["dtype"]).name, q["scales"].size))
            quantization.append((float(q["scales"].min()), float(q["scales"].max()), sorted(set(q["zero_points"].tolist())))
                                if q["scales"].size else None)
    last = producer[it.get_output_details()[0]["index"]]
    while last["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
        last = producer[last["inputs"][0]]
    return {"weights": weights, "quantization": quantization, "last_op": last["op_name"],
            "activations": {np.dtype(tensors[o]["dtype"]).name for op in ops
                            if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE") for o in op["outputs"]},
            "input": it.get_input_details()[0], "output": it.get_output_details()[0]}


@pytest.mark.parametrize("setup", list(SETUPS))
def test_the_card_says_what_each_file_holds(converted, setup):
    head, settings = SETUPS[setup]
    card = json.loads((converted / setup / "model_card.json").read_text())
    for name in settings["variants"]:
        entry, view = card["variants"][name], file_view(converted / setup / f"{name}.tflite")
        # weights: dtype and scale count per tensor, as stored
        assert [(w["dtype"], w["scales"]) for w in entry["weights"]["tensors"]] == view["weights"], name
        # and their scales and zero points, as stored
        assert [(w["scale_min"], w["scale_max"], w["zero_points"]) if w["scales"] else None
                for w in entry["weights"]["tensors"]] == view["quantization"], name
        quantized = [n for dtype, n in view["weights"] if dtype == "int8"]
        kinds = {"per-tensor" if n == 1 else "per-channel" for n in quantized}
        # per-channel QAT keeps tfmot's per-tensor Dense kernel: "mixed", as the file holds it
        assert entry["weights"]["granularity"] == ("none" if not kinds else kinds.pop() if len(kinds) == 1 else "mixed")
        if quantized and settings.get("per_channel", True):
            assert max(quantized) > 1, name
        elif quantized:
            assert set(quantized) == {1}, name
        assert entry["activations"]["dtypes"] == sorted(view["activations"]), name
        for side in ("input", "output"):
            detail = view[side]
            assert entry[side]["dtype"] == np.dtype(detail["dtype"]).name, (name, side)
            assert (entry[side]["scale"], entry[side]["zero_point"]) == pytest.approx(detail["quantization"]), name
        assert entry["outputs"] == ("probabilities" if view["last_op"] == "SOFTMAX" else "logits"), name
        assert entry["outputs"] == ("probabilities" if head == "softmax" else "logits"), name
    v = card["variants"]
    # each setting as it should reach the file
    if setup == "per_channel":
        assert v["ptq_int16x8"]["activations"]["dtypes"] == ["int16"] and v["ptq_int16x8"]["input"]["dtype"] == "int16"
        assert v["ptq_int8"]["input"]["dtype"] == "int8" and v["ptq_int8"]["activations"]["dtypes"] == ["int8"]
    if setup == "per_tensor_uint8":
        assert v["ptq_int8"]["input"]["dtype"] == v["ptq_int8"]["output"]["dtype"] == "uint8"
    if setup == "softmax_float_io":
        assert v["ptq_int8"]["input"]["dtype"] == "float32" and "int8" in v["ptq_int8"]["activations"]["dtypes"]
    if setup == "qat_softmax":
        assert v["qat_int8"]["activations"]["dtypes"] == ["int8"] and v["qat_int8"]["outputs"] == "probabilities"


def test_dynamic_range_stores_int8_weights_and_computes_in_float(converted):
    view = file_view(converted / "per_channel" / "ptq_dynamic.tflite")
    dtypes = [dtype for dtype, _ in view["weights"]]
    assert "int8" in dtypes and set(dtypes) <= {"int8", "float32"}  # kernels under 1024 weights stay float
    assert view["activations"] == {"float32"}
    assert np.dtype(view["input"]["dtype"]).name == np.dtype(view["output"]["dtype"]).name == "float32"


def test_float16_stores_every_kernel_in_float16(converted):
    view = file_view(converted / "per_channel" / "ptq_float16.tflite")
    assert {dtype for dtype, _ in view["weights"]} == {"float16"} and view["activations"] == {"float32"}


@pytest.mark.parametrize("head, setup, variant", [("logits", "per_channel", "fp32"), ("logits", "per_channel", "ptq_int8"),
                                                  ("softmax", "softmax_float_io", "fp32"),
                                                  ("softmax", "softmax_float_io", "ptq_int8")])
def test_the_served_model_returns_the_models_own_probabilities(converted, tiny_prepared, tmp_path, head, setup, variant):
    """Through the pyfunc MLflow serves (mlflow.pyfunc.load_model), against Keras on the same images."""
    import mlflow

    from edgeqat.data.shards import load_split_arrays
    from edgeqat.models.io import load_model
    from edgeqat.lifecycle.registry import save_pyfunc, single_variant_card

    card = json.loads((converted / setup / "model_card.json").read_text())
    save_pyfunc(converted / setup / f"{variant}.tflite", single_variant_card(card, variant), tmp_path / "model")
    x, _ = load_split_arrays(tiny_prepared / "test")
    served = np.stack(mlflow.pyfunc.load_model(str(tmp_path / "model")).predict(x)["probabilities"])
    out = load_model(converted / f"{head}.keras")(x[..., None].astype("float32") / 255.0).numpy()
    if head == "logits":
        out = np.exp(out - out.max(axis=1, keepdims=True))
        out /= out.sum(axis=1, keepdims=True)
    assert out.max(axis=1).mean() > 0.6  # confident predictions: a second softmax would flatten them
    np.testing.assert_allclose(served, out, atol=1e-4 if variant == "fp32" else 0.05)

"""Keras models in the shapes users bring them (not the zoo's), and the whole chain of
stages run on each: train (from_model) -> qat (mixed + sensitivity) -> prune (magnitude +
channel) -> convert -> evaluate -> validate -> recommend. Shared by the make-test matrix
(tiny models) and the slow Keras-applications cases."""

from __future__ import annotations

import json
import time
from pathlib import Path

from edgeqat.config import (ConvertConfig, EvaluateConfig, PruneConfig, QatConfig, RecommendConfig, TrainConfig,
                            ValidateConfig)

VARIANTS = ["fp32", "ptq_dynamic", "ptq_float16", "ptq_int8", "ptq_int16x8", "qat_int8", "mixed", "pqat_int8",
            "channel_pruned_qat_int8"]
TINY_PRUNE = dict(target_sparsity=0.5, epochs=1, pqat_epochs=1, channel_fraction=0.5, channel_epochs=1,
                  qat_epochs=1, batch_size=16, learning_rate=0.005)


def _body(keras, x, name: str = ""):
    """Conv/BN/ReLU, MaxPool, depthwise, 1x1 conv, GAP: the issue's Sequential, in layers."""
    L = keras.layers
    return [L.Conv2D(8, 3, padding="same", use_bias=False, name=f"{name}conv1"), L.BatchNormalization(momentum=0.9, name=f"{name}bn1"),
            L.ReLU(name=f"{name}relu1"), L.MaxPooling2D(name=f"{name}pool1"),
            L.DepthwiseConv2D(3, padding="same", name=f"{name}dw"), L.ReLU(name=f"{name}relu2"),
            L.Conv2D(16, 1, name=f"{name}pw", activation="relu"), L.GlobalAveragePooling2D(name=f"{name}gap")]


def build(kind: str, shape: tuple[int, int, int], classes: int):
    """A fresh (untrained) model of one user shape."""
    from edgeqat.tf_compat import keras

    L = keras.layers
    if kind == "sequential_input":
        return keras.Sequential([keras.Input(shape), *_body(keras, None), L.Dense(classes)], name="seq_input")
    if kind == "sequential_input_shape":  # the first layer carries input_shape, no Input object
        layers = _body(keras, None)
        first = layers[0]
        layers[0] = L.Conv2D(8, 3, padding="same", use_bias=False, name="conv1", input_shape=shape)
        del first
        return keras.Sequential([*layers, L.Dense(classes)], name="seq_input_shape")
    if kind == "sequential_deferred":  # no input shape at all: built by its first call
        m = keras.Sequential([*_body(keras, None), L.Dense(classes)], name="seq_deferred")
        m.build((None, *shape))
        return m
    inp = keras.Input(shape, name="pixels")
    if kind in ("functional_softmax", "functional_logits"):
        x = inp
        for layer in _body(keras, None):
            x = layer(x)
        act = "softmax" if kind == "functional_softmax" else None
        return keras.Model(inp, L.Dense(classes, activation=act, name="head")(x), name=kind)
    if kind == "softmax_layer":
        x = inp
        for layer in _body(keras, None):
            x = layer(x)
        return keras.Model(inp, L.Softmax(name="probs")(L.Dense(classes, name="head")(x)), name=kind)
    if kind == "rescaling":  # the model maps raw 0..255 pixels itself (prepare.normalize: raw)
        x = L.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inp)
        for layer in _body(keras, None):
            x = layer(x)
        return keras.Model(inp, L.Dense(classes, name="head")(x), name=kind)
    if kind == "normalization":
        norm = L.Normalization(axis=-1, mean=[0.3] * shape[-1], variance=[0.09] * shape[-1], name="norm")
        x = norm(inp)
        for layer in _body(keras, None):
            x = layer(x)
        return keras.Model(inp, L.Dense(classes, name="head")(x), name=kind)
    if kind == "nested_backbone":  # a functional backbone called as one layer, plus a user head
        b_in = keras.Input(shape, name="backbone_in")
        y = b_in
        for layer in _body(keras, None, "bb_")[:-1]:
            y = layer(y)
        backbone = keras.Model(b_in, y, name="backbone")
        x = L.GlobalAveragePooling2D(name="head_gap")(backbone(inp))
        return keras.Model(inp, L.Dense(classes, name="head")(L.Dropout(0.1, name="head_drop")(x)), name=kind)
    if kind == "nested_sequential":  # Sequential([backbone, head layers]), the Keras-docs transfer recipe
        b_in = keras.Input(shape, name="backbone_in")
        y = b_in
        for layer in _body(keras, None, "bb_")[:-1]:
            y = layer(y)
        backbone = keras.Model(b_in, y, name="backbone")
        return keras.Sequential([keras.Input(shape), backbone, L.GlobalAveragePooling2D(name="head_gap"),
                                 L.Dense(classes, name="head")], name=kind)
    if kind == "mobilenetv2":
        return keras.applications.MobileNetV2(input_shape=shape, alpha=0.35, weights=None, classes=classes)
    if kind == "mobilenetv2_head":
        base = keras.applications.MobileNetV2(input_shape=shape, alpha=0.35, weights=None, include_top=False)
        x = L.GlobalAveragePooling2D(name="head_gap")(base(inp))
        return keras.Model(inp, L.Dense(classes, name="head")(x), name=kind)
    if kind == "subclassed":
        class Tiny(keras.Model):
            def __init__(self) -> None:
                super().__init__(name="tiny_subclassed")
                self.conv, self.gap, self.dense = L.Conv2D(4, 3), L.GlobalAveragePooling2D(), L.Dense(classes)

            def call(self, x):
                return self.dense(self.gap(self.conv(x)))

        m = Tiny()
        m.build((None, *shape))
        return m
    raise ValueError(kind)


def fit_briefly(model, prepared: Path, epochs: int = 15) -> None:
    """A few epochs on the prepared train split, as the user would have trained it."""
    from edgeqat.data.shards import load_meta, make_dataset
    from edgeqat.models.training import compile_classifier
    from edgeqat.tf_compat import set_determinism

    meta = load_meta(prepared)
    ds = make_dataset(prepared / "train", meta["normalization"]["scheme"], 16, shuffle_buffer=256, seed=0)
    set_determinism(0)
    compile_classifier(model, 0.01)
    model.fit(ds, epochs=epochs, verbose=0)


def save(model, dest: Path) -> Path:
    """By suffix: .keras, .h5, or a SavedModel folder (no suffix)."""
    if dest.suffix in (".keras", ".h5"):
        model.save(dest)
    else:
        model.save(dest, save_format="tf")
    return dest


def run_chain(model_path: Path, prepared: Path, d: Path, *, variants=VARIANTS, recommend_devices=("cortex_m7",)) -> dict:
    """Every stage on ``model_path``; returns each stage's metrics and the per-variant table."""
    from edgeqat.steps.convert import convert
    from edgeqat.steps.evaluate import evaluate
    from edgeqat.steps.prune import prune
    from edgeqat.steps.qat import qat
    from edgeqat.steps.recommend import recommend
    from edgeqat.steps.train import train
    from edgeqat.steps.validate import validate

    out: dict = {"seconds": {}}
    clock = [time.monotonic()]

    def lap(stage: str) -> None:
        now = time.monotonic()
        out["seconds"][stage], clock[0] = round(now - clock[0], 1), now

    out["train"] = train(TrainConfig(from_model=str(model_path), batch_size=16), prepared, d / "fp32.keras")
    lap("train")
    out["qat"] = qat(QatConfig(epochs=1, batch_size=16, keep_float=["@last"]), prepared, d / "fp32.keras", d / "qat.h5",
                     mixed_out=d / "mixed.h5", sensitivity_json=d / "sensitivity.json")
    lap("qat")
    out["prune"] = prune(PruneConfig(**TINY_PRUNE), prepared, d / "fp32.keras", d / "pqat.h5", d / "cp.h5")
    lap("prune")
    out["convert"] = convert(ConvertConfig(variants=list(variants)), prepared, d / "fp32.keras", d / "qat.h5", d / "tflite",
                             mixed_model=d / "mixed.h5", pqat_model=d / "pqat.h5", channel_pruned_model=d / "cp.h5")
    lap("convert")
    out["evaluate"] = evaluate(EvaluateConfig(latency_runs=2, warmup_runs=1), prepared, d / "tflite", d / "fp32.keras",
                               d / "evaluation.json", d / "evaluation.md")
    lap("evaluate")
    out["validate"] = validate(ValidateConfig(devices=["rpi4", "cortex_m7"], required_devices=[], latency_runs=2, emulate=False),
                               prepared, d / "tflite", d / "fp32.keras", d / "evaluation.json", d / "summary.json",
                               devices_json=d / "devices.json")
    lap("validate")
    out["recommend"] = recommend(RecommendConfig(devices=list(recommend_devices), sparsities=[], channel_fractions=[],
                                                 latency_runs=2, max_minutes=2), prepared,
                                 d / "tflite", d / "fp32.keras", d / "qat.h5", d / "recommend", d / "recommended",
                                 prune=PruneConfig(**TINY_PRUNE), force=True,
                                 validate=ValidateConfig(emulate=False))  # the choice's final check: no QEMU here
    lap("recommend")
    summary = json.loads((d / "summary.json").read_text())
    out["table"], out["devices"] = summary["variants"], summary["devices"]
    return out


def brightness_images(n: int, size: int = 16, classes: int = 4, channels: int = 1, seed: int = 0):
    """uint8 images whose class is their brightness (plus noise): learnable by a model that
    global-average-pools early, as users' models often do."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    rng.shuffle(y)
    base = 30 + 180 * y / max(classes - 1, 1)
    x = base[:, None, None, None] + rng.normal(0, 12, size=(n, size, size, channels))
    x = np.clip(x, 0, 255).astype(np.uint8)
    return (x[..., 0] if channels == 1 else x), y.astype(np.int64)


def prepared_split(tmp: Path, channels: int, normalize: str = "zero_one", size: int = 16, n: int = 160) -> Path:
    import numpy as np

    from edgeqat.config import PrepareConfig
    from edgeqat.steps.prepare import prepare

    x, y = brightness_images(n, size, channels=channels)
    np.savez(tmp / "raw.npz", x=x, y=y)
    out = tmp / f"prepared_{channels}_{normalize}"
    prepare(PrepareConfig(source="npz", path=str(tmp / "raw.npz"), image_size=size, channels=channels,
                          normalize=normalize, calibration_size=16, shard_size=64), out)
    return out

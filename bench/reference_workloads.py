"""Count the MACs of the models behind the published latency figures, with edgeqat's own counter.

Each reference model is rebuilt in Keras with random weights (MACs do not depend on the
weights; nothing is downloaded), converted to a float .tflite, and analysed by
``edgeqat.devices.workload.analyze`` -- the function that analyses users' models -- so the
speed model is fitted and applied on one scale. Writes
``src/edgeqat/devices/data/reference_workloads.csv``. Run: ``python bench/reference_workloads.py``.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

from edgeqat.devices.workload import analyze
from edgeqat.tf_compat import keras, tf

OUT = Path(__file__).resolve().parents[1] / "src/edgeqat/devices/data/reference_workloads.csv"
L = keras.layers


def _dscnn_kws() -> keras.Model:
    # MLPerf Tiny KWS reference (Zhang et al. "Hello Edge" DS-CNN-S): 49x10 MFCC, 64 filters.
    inp = keras.Input((49, 10, 1))
    x = L.Conv2D(64, (10, 4), strides=2, padding="same", use_bias=False)(inp)
    x = L.ReLU()(L.BatchNormalization()(x))
    for _ in range(4):
        x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)))
        x = L.ReLU()(L.BatchNormalization()(L.Conv2D(64, 1, use_bias=False)(x)))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(12)(x))


def _resnet8() -> keras.Model:
    # MLPerf Tiny image-classification reference: ResNet-8 on CIFAR-10 (16/32/64 filters).
    inp = keras.Input((32, 32, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same")(inp)))
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        y = L.ReLU()(L.BatchNormalization()(L.Conv2D(filters, 3, strides=stride, padding="same")(x)))
        y = L.BatchNormalization()(L.Conv2D(filters, 3, padding="same")(y))
        if stride != 1:
            x = L.Conv2D(filters, 1, strides=stride)(x)
        x = L.ReLU()(L.Add()([x, y]))
    x = L.Flatten()(L.AveragePooling2D(8)(x))
    return keras.Model(inp, L.Dense(10)(x))


def _fc_autoencoder() -> keras.Model:
    # MLPerf Tiny anomaly-detection reference: 640 -> 4x128 -> 8 -> 4x128 -> 640.
    inp = keras.Input((640,))
    x = inp
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        x = L.ReLU()(L.BatchNormalization()(L.Dense(units)(x)))
    return keras.Model(inp, L.Dense(640)(x))


def _squeezenet() -> keras.Model:
    # SqueezeNet v1.1 (Iandola et al. 2016; the variant TFLite's hosted models shipped): fire modules.
    def fire(x, s, e):
        x = L.Conv2D(s, 1, activation="relu")(x)
        return L.Concatenate()([L.Conv2D(e, 1, activation="relu")(x), L.Conv2D(e, 3, padding="same", activation="relu")(x)])

    inp = keras.Input((224, 224, 3))
    x = L.MaxPooling2D(3, 2)(L.Conv2D(64, 3, strides=2, activation="relu")(inp))
    x = L.MaxPooling2D(3, 2)(fire(fire(x, 16, 64), 16, 64))
    x = L.MaxPooling2D(3, 2)(fire(fire(x, 32, 128), 32, 128))
    x = fire(fire(fire(fire(x, 48, 192), 48, 192), 64, 256), 64, 256)
    x = L.GlobalAveragePooling2D()(L.Conv2D(1000, 1, activation="relu")(x))
    return keras.Model(inp, L.Softmax()(x))


A = keras.applications
MODELS = {
    "mobilenet_v3_large_1.0_224": lambda: A.MobileNetV3Large(input_shape=(224, 224, 3), weights=None),
    "mobilenet_v3_small_1.0_224": lambda: A.MobileNetV3Small(input_shape=(224, 224, 3), weights=None),
    "nasnet_mobile_224": lambda: A.NASNetMobile(input_shape=(224, 224, 3), weights=None),
    "inception_resnet_v2_299": lambda: A.InceptionResNetV2(input_shape=(299, 299, 3), weights=None),
    "densenet_224": lambda: A.DenseNet121(input_shape=(224, 224, 3), weights=None),
    "vgg16_224": lambda: A.VGG16(input_shape=(224, 224, 3), weights=None),
    "resnet50_299": lambda: A.ResNet50(input_shape=(299, 299, 3), weights=None),
    "squeezenet_224": _squeezenet,
    "mobilenet_v1_1.0_224": lambda: A.MobileNet((224, 224, 3), alpha=1.0, weights=None),
    "mobilenet_v1_0.75_192": lambda: A.MobileNet((192, 192, 3), alpha=0.75, weights=None),
    "mobilenet_v1_0.5_160": lambda: A.MobileNet((160, 160, 3), alpha=0.5, weights=None),
    "mobilenet_v1_0.25_128": lambda: A.MobileNet((128, 128, 3), alpha=0.25, weights=None),
    "mobilenet_v1_0.25_96": lambda: A.MobileNet((96, 96, 3), alpha=0.25, weights=None, classes=2),
    "person_detect_tflm": lambda: A.MobileNet((96, 96, 1), alpha=0.25, weights=None, classes=2),
    "mobilenet_v2_1.0_224": lambda: A.MobileNetV2((224, 224, 3), alpha=1.0, weights=None),
    "mobilenet_v2_0.35_96": lambda: A.MobileNetV2((96, 96, 3), alpha=0.35, weights=None),
    "inception_v3_299": lambda: A.InceptionV3(input_shape=(299, 299, 3), weights=None),
    "resnet50_224": lambda: A.ResNet50(input_shape=(224, 224, 3), weights=None),
    "efficientnet_b0_224": lambda: A.EfficientNetB0(input_shape=(224, 224, 3), weights=None),
    "dscnn_kws_mlperf": _dscnn_kws,
    "resnet8_cifar_mlperf": _resnet8,
    "fc_autoencoder_mlperf": _fc_autoencoder,
}


def main(names: list[str]) -> None:
    rows = {}
    if OUT.is_file() and names:  # recount some models, keep the others
        rows = {r["model"]: r for r in csv.DictReader(OUT.open())}
    for name in names or list(MODELS):
        t = time.time()
        model = MODELS[name]()
        blob = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        w = analyze(blob)
        rows[name] = {"model": name, "input": "x".join(str(d) for d in model.input_shape[1:]),
                      "dense_macs": w.macs["dense"], "depthwise_macs": w.macs["depthwise"], "fc_macs": w.macs["fc"],
                      "other_elems": w.macs["other"], "params": model.count_params()}
        print(f"{name}: {w.total_macs / 1e6:.1f} M MACs ({time.time() - t:.0f} s)", file=sys.stderr, flush=True)
        _write(rows)  # after every model: a long run keeps what it counted


def _write(rows: dict) -> None:
    tmp = OUT.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=["model", "input", "dense_macs", "depthwise_macs", "fc_macs", "other_elems", "params"])
        wr.writeheader()
        wr.writerows(sorted(rows.values(), key=lambda r: r["model"]))
    tmp.replace(OUT)


if __name__ == "__main__":
    main(sys.argv[1:])
